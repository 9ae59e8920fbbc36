//! CLI parity of the admin API, through the real `eskit` binary: DLQ filters, replay
//! and discard by filter, enable/disable, list paging; and `eskit relay` serving the
//! admin endpoints from its config, with the token from `ESKIT_ADMIN_TOKEN`.

#[allow(dead_code, unused_imports)]
#[path = "../src/admin/mod.rs"]
mod admin;
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use eskit::{EntryFilter, EntryState};
use eskit_testkit::wait_until;
use serde_json::{Value, json};
use support::{Fixture, Setup, WAIT};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eskit"));
    cmd.current_dir(dir).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ESKIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

fn eskit(dir: &Path, args: &[&str]) -> Run {
    let out = command(dir, args).output().expect("run eskit");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A config for the fixture's database, destination `name` (never contacted here).
fn write_config(dir: &Path, db: &Path, name: &str, extra: &str) {
    let config = format!(
        "database = \"sqlite://{}\"\n[relay]\npartitions = 4\n[[routes]]\ndestination = \"{name}\"\n\
         [[destinations]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         secret = \"{SECRET}\"\nallowed_cidrs = [\"127.0.0.0/8\"]\n{extra}",
        db.display()
    );
    std::fs::write(dir.join("eskit.toml"), config).unwrap();
}

async fn dead_fixture(name: &str) -> (Fixture, Vec<uuid::Uuid>) {
    let f = Fixture::start(name, Setup::default()).await;
    let timeout = f.append("a", json!({"error": "timeout after 5s"})).await;
    let rejected = f.append("b", json!({"error": "HTTP 400: rejected"})).await;
    let other = f.append("c", json!({"error": "HTTP 400: rejected"})).await;
    for (s, id) in [("a", timeout), ("b", rejected), ("c", other)] {
        f.wait_state(s, id, "dead").await;
    }
    (f, vec![timeout, rejected, other])
}

async fn state(f: &Fixture, id: uuid::Uuid) -> Option<EntryState> {
    f.store
        .list_entries(&EntryFilter {
            destination: Some(f.destination.clone()),
            state: None,
            stream_id: None,
            after_seq: None,
            limit: Some(1000),
        })
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.id == id)
        .map(|e| e.state)
}

#[tokio::test]
async fn dlq_commands_filter_replay_discard_and_page() {
    let (f, ids) = dead_fixture("cli-hooks").await;
    // The binary works on the same file; stop this process's relay first.
    let f = {
        let mut f = f;
        if let Some(r) = f.relay.take() {
            r.shutdown().await;
        }
        f
    };
    let dir = tempfile::tempdir().unwrap();
    let db = f._dir.path().join("admin.db");
    write_config(dir.path(), &db, "cli-hooks", "");
    let ids_of = |run: &Run| -> Vec<String> {
        run.json_lines()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };

    let all = eskit(dir.path(), &["outbox", "dlq", "list", "--json"]).ok();
    assert_eq!(ids_of(&all).len(), 3, "{}", all.stdout);
    let t = eskit(dir.path(), &["outbox", "dlq", "list", "--error", "TIMEOUT", "--json"]).ok();
    assert_eq!(ids_of(&t), vec![ids[0].to_string()]);
    let recent = eskit(dir.path(), &["outbox", "dlq", "list", "--dead-from", "1h", "--json"]).ok();
    assert_eq!(ids_of(&recent).len(), 3);
    let old = eskit(
        dir.path(),
        &["outbox", "dlq", "list", "--dead-to", "2000-01-01T00:00:00Z", "--json"],
    )
    .ok();
    assert!(ids_of(&old).is_empty());
    let bad = eskit(dir.path(), &["outbox", "dlq", "list", "--dead-from", "whenever"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);

    // Paging: a full page says how to get the next one.
    let page = eskit(dir.path(), &["outbox", "dlq", "list", "--limit", "2", "--json"]).ok();
    assert_eq!(ids_of(&page).len(), 2);
    let last_seq = page.json_lines()[1]["seq"].as_i64().unwrap();
    assert!(
        page.stderr.contains(&format!("--after-seq {last_seq}")),
        "{}",
        page.stderr
    );
    let next = eskit(
        dir.path(),
        &["outbox", "dlq", "list", "--after-seq", &last_seq.to_string(), "--json"],
    )
    .ok();
    assert_eq!(ids_of(&next), vec![ids[2].to_string()]);
    let listed = eskit(
        dir.path(),
        &["outbox", "list", "--after-seq", &last_seq.to_string(), "--json"],
    )
    .ok();
    assert_eq!(ids_of(&listed), vec![ids[2].to_string()]);

    // --id cannot be combined with a filter.
    let conflict = eskit(
        dir.path(),
        &["outbox", "dlq", "replay", "--id", &ids[0].to_string(), "--error", "x"],
    );
    assert_eq!(conflict.code, Some(2), "{}", conflict.stderr);

    // Replay by filter touches only the match; discard by destination + filter.
    let run = eskit(dir.path(), &["outbox", "dlq", "replay", "--error", "timeout"]).ok();
    assert!(run.stdout.contains("replayed 1 dead entry"), "{}", run.stdout);
    assert_eq!(state(&f, ids[0]).await, Some(EntryState::Pending));
    assert_eq!(state(&f, ids[1]).await, Some(EntryState::Dead));
    let run = eskit(
        dir.path(),
        &[
            "outbox",
            "dlq",
            "discard",
            "--destination",
            "cli-hooks",
            "--error",
            "rejected",
        ],
    )
    .ok();
    assert!(run.stdout.contains("discarded 2 dead entries"), "{}", run.stdout);
    assert_eq!(state(&f, ids[1]).await, None);
    assert_eq!(state(&f, ids[2]).await, None);

    // Disable and enable.
    eskit(
        dir.path(),
        &[
            "outbox",
            "disable",
            "--destination",
            "cli-hooks",
            "--reason",
            "maintenance",
        ],
    )
    .ok();
    let status = eskit(dir.path(), &["outbox", "status", "--json"]).ok();
    let rows: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(rows[0]["disabled"], "maintenance", "{rows}");
    let run = eskit(dir.path(), &["outbox", "enable", "--destination", "cli-hooks"]).ok();
    assert!(run.stdout.contains("enabled cli-hooks"), "{}", run.stdout);
    let run = eskit(dir.path(), &["outbox", "enable", "--destination", "cli-hooks"]).ok();
    assert!(run.stdout.contains("was not disabled"), "{}", run.stdout);
    f.stop().await;
}

#[tokio::test]
async fn relay_daemon_serves_the_admin_api_from_its_config() {
    let (f, ids) = dead_fixture("daemon-hooks").await;
    let mut f = f;
    if let Some(r) = f.relay.take() {
        r.shutdown().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = f._dir.path().join("admin.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let token = "daemon-token-from-the-environment";
    write_config(
        dir.path(),
        &db,
        "daemon-hooks",
        &format!(
            "[admin]\nbind = \"127.0.0.1:{port}\"\ntoken = \"file-token-not-used-here\"\nsample_interval = \"100ms\"\n\
             [retention]\ndelivered = \"1d\"\n"
        ),
    );
    let mut child = command(dir.path(), &["relay", "--log-format", "json"])
        .env("ESKIT_ADMIN_TOKEN", token)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eskit relay");
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let up = wait_until(WAIT, || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "the admin server did not come up:\n{}", log.lock().unwrap());

    let status = http
        .get(format!("{base}/api/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let body: Value = status.json().await.unwrap();
    assert_eq!(body["destinations"][0]["destination"], "daemon-hooks");
    assert_eq!(body["destinations"][0]["dead"], 3);
    let refused = http
        .get(format!("{base}/api/status"))
        .bearer_auth("file-token-not-used-here")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "ESKIT_ADMIN_TOKEN wins over admin.token");

    let ok = wait_until(WAIT, || async {
        let m = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        m.contains("eskit_dead_entries{destination=\"daemon-hooks\"} 3")
            && m.contains("eskit_owned_partitions{destination=\"daemon-hooks\"} 4")
    })
    .await;
    assert!(
        ok,
        "{}",
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    );
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // Stop with SIGTERM: a clean exit; the token never reached the logs.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = child.wait().unwrap();
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(exit.success(), "{log}");
    assert!(log.contains("admin API listening"), "{log}");
    assert!(
        !log.contains(token) && !log.contains("file-token-not-used-here"),
        "{log}"
    );
    assert_eq!(state(&f, ids[0]).await, Some(EntryState::Dead));
    f.stop().await;
}
