//! PostgreSQL restarted while a relay runs: the relay logs, retries with backoff,
//! resumes and loses nothing; the LISTEN connection comes back.
//!
//! This restarts the shared server, which breaks every other test running against it,
//! so it only runs when `ESKIT_TEST_PG_RESTART=1`, in a run of this test binary alone:
//!
//! ```text
//! ESKIT_TEST_PG_RESTART=1 cargo test -p eskit-postgres --test pg_restart
//! ```
//!
//! The restart command is `pg_ctlcluster --skip-systemctl-redirect <version> main
//! restart` for the (only) cluster in `/etc/postgresql`; `ESKIT_TEST_PG_RESTART_CMD`
//! overrides it (run through `sh -c`).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestSchema, all_entries, hook_options, relay_config};
use eskit::{Destinations, EventData, EventStore, ExpectedVersion, OutboxStore, Relay};
use eskit_testkit::{Checker, RecordingSink};
use serde_json::json;
use uuid::Uuid;

const STREAMS: usize = 100;
const PER_STREAM: usize = 20;
const TOTAL: usize = STREAMS * PER_STREAM;

/// Log lines captured from the relay (and everything else), to check it logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn restart_command() -> String {
    if let Ok(cmd) = std::env::var("ESKIT_TEST_PG_RESTART_CMD") {
        return cmd;
    }
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql lists the clusters (or set ESKIT_TEST_PG_RESTART_CMD)")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .expect("a PostgreSQL cluster");
    format!("pg_ctlcluster --skip-systemctl-redirect {version} main restart")
}

/// Appends one event, retrying through the outage. The event id makes a retry of an
/// append that did commit (but whose reply was lost) an idempotent no-op.
async fn append_until_done(store: &eskit_postgres::PgStore, stream: &str, event: EventData) {
    let mut delay = Duration::from_millis(20);
    loop {
        match store.append(stream, ExpectedVersion::Any, vec![event.clone()]).await {
            Ok(_) => return,
            Err(err) => {
                eprintln!("append to {stream} failed ({err}); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_survives_a_postgres_restart() {
    if std::env::var("ESKIT_TEST_PG_RESTART").as_deref() != Ok("1") {
        eprintln!("skipped: set ESKIT_TEST_PG_RESTART=1 to restart PostgreSQL (run this binary alone)");
        return;
    }
    let logs = Captured::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,eskit=info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init();

    let schema = TestSchema {
        name: format!("t_{}", Uuid::new_v4().simple()),
    };
    let store = schema.open(hook_options(4)).await;
    let sink = RecordingSink::new();
    let mut destinations = Destinations::new();
    destinations.insert("hook", sink.clone());
    let relay_store: Arc<dyn OutboxStore> = Arc::new(store.clone());
    let relay = Relay::new(relay_store, destinations)
        .config(relay_config("relay-restart"))
        .start();

    // Writes go on across the restart (one event per append, streams interleaved).
    let write_store = store.clone();
    let writes = tokio::spawn(async move {
        for n in 0..PER_STREAM {
            for s in 0..STREAMS {
                let event = EventData::json("Step", &json!({ "n": n })).unwrap();
                append_until_done(&write_store, &format!("stream-{s}"), event).await;
            }
        }
    });

    assert!(
        sink.wait_for(Duration::from_secs(60), |r| r.len() >= TOTAL / 5).await,
        "the relay delivers before the restart"
    );
    let command = restart_command();
    eprintln!("restarting PostgreSQL: {command}");
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .await
        .expect("run the restart command");
    assert!(status.success(), "{command} failed: {status}");

    writes.await.expect("writer");
    let settled = common::wait_until(Duration::from_secs(90), || async {
        match store.status().await {
            Ok(status) => status.iter().all(|s| s.pending == 0),
            Err(_) => false,
        }
    })
    .await;
    relay.shutdown().await;
    assert!(settled, "everything is delivered after the restart");

    let entries = all_entries(&store, "hook").await;
    let report = Checker::new().entries(&entries).observed(sink.observed()).check();
    println!("PostgreSQL restarted mid-run:\n{report}");
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.committed, report.delivered, report.dead),
        (TOTAL as u64, TOTAL as u64, 0),
        "{report}"
    );
    // The relay's pooled connections may be replaced silently (sqlx tests them before
    // use), so whether a relay step fails depends on timing; the LISTEN connection is
    // always cut by the restart, and its loss must be logged.
    let logged = common::wait_until(Duration::from_secs(20), || async {
        let text = logs.text();
        text.contains("outbox listener") || text.contains("could not listen")
    })
    .await;
    assert!(logged, "the listener logged its lost connection");
    // The LISTEN connection is back.
    let mut observer = schema.connect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let listening = loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eskit-listener' \
             AND position($1 in query) > 0",
        )
        .bind(store.notify_channel())
        .fetch_one(&mut observer)
        .await
        .unwrap();
        if n > 0 || tokio::time::Instant::now() >= deadline {
            break n > 0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(listening, "the listener reconnected");
}
