//! The `eskit` binary end to end: every test runs the real binary in its own temp
//! directory (own config, own SQLite file).

mod common;

use std::time::Duration;

use common::{SECRET, SECRET_BODY, Sandbox};
use eskit_testkit::receiver::{FaultPlan, Receiver, ReceiverConfig};

// ---------------------------------------------------------------------------------
// demo

#[test]
fn demo_with_small_numbers_loses_nothing() {
    let sb = Sandbox::new("");
    let run = sb.run(&["demo", "--events", "500", "--streams", "20"]).ok();
    let row = |name: &str| {
        run.stdout
            .lines()
            .find(|l| l.split(['│', '┆']).nth(1).is_some_and(|c| c.trim() == name))
            .unwrap_or_else(|| panic!("no {name:?} row in:\n{}", run.stdout))
            .to_string()
    };
    assert!(row("appended").contains("500"), "{}", run.stdout);
    for must_be_zero in ["lost", "order violations", "phantoms", "bad signatures"] {
        assert!(row(must_be_zero).contains("0 ✓"), "{must_be_zero}: {}", run.stdout);
    }
    assert!(run.stdout.contains("OK: every committed entry"), "{}", run.stdout);
    // The temporary database is gone.
    let leftovers: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("eskit-demo"))
        .collect();
    assert!(leftovers.is_empty(), "demo left {leftovers:?}");
    assert!(!run.stdout.contains("whsec_") && !run.stderr.contains("whsec_"));
}

#[test]
fn demo_keeps_its_database_when_asked_and_refuses_an_existing_one() {
    let sb = Sandbox::new("");
    sb.run(&[
        "demo",
        "--events",
        "60",
        "--streams",
        "3",
        "--db",
        "sqlite://kept.db",
        "--keep",
    ])
    .ok();
    assert!(sb.path().join("kept.db").exists());
    // The kept database is a normal store: the operator commands work on it.
    let run = sb
        .run_env(
            &["outbox", "dlq", "list", "--json"],
            &[("ESKIT_DATABASE", "sqlite://kept.db")],
        )
        .ok();
    assert!(
        !run.json_lines().is_empty(),
        "the poison stream's entries are in the DLQ"
    );
    let run = sb
        .run(&["demo", "--events", "10", "--db", "sqlite://kept.db"])
        .fails_with(2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
}

/// The PostgreSQL server the tests use (the same variable as eskit-postgres' tests).
fn pg_url() -> String {
    std::env::var("ESKIT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

#[tokio::test]
async fn demo_on_postgres_runs_in_a_fresh_schema_and_drops_it() {
    let sb = Sandbox::new("");
    let url = pg_url();
    let run = tokio::task::spawn_blocking(move || {
        sb.run(&["demo", "--events", "300", "--streams", "10", "--db", &url])
            .ok()
    })
    .await
    .unwrap();
    assert!(run.stdout.contains("OK: every committed entry"), "{}", run.stdout);
    let schema = run
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("eskit_demo_"))
        .unwrap_or_else(|| panic!("no schema name in:\n{}", run.stdout))
        .to_string();
    let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
        .bind(&schema)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "schema {schema} was not dropped");
}

// ---------------------------------------------------------------------------------
// append and read

#[test]
fn append_and_read_round_trip() {
    let sb = Sandbox::sqlite();
    let id = "0190a3f4-1c2d-7e5f-8a9b-0c1d2e3f4a5b";
    let first = sb
        .run(&[
            "append",
            "--stream",
            "order-1",
            "--type",
            "OrderPlaced",
            "--data",
            r#"{"total":42}"#,
            "--id",
            id,
            "--expected-version",
            "no-stream",
        ])
        .ok()
        .json_lines();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["first_version"], 1);
    assert_eq!(first[0]["last_version"], 1);
    assert_eq!(first[0]["idempotent_repeat"], false);

    // Same id, same content: a no-op that reports the original positions.
    let again = sb
        .run(&[
            "append",
            "--stream",
            "order-1",
            "--type",
            "OrderPlaced",
            "--data",
            r#"{"total":42}"#,
            "--id",
            id,
        ])
        .ok()
        .json_lines();
    assert_eq!(again[0]["idempotent_repeat"], true);
    assert_eq!(again[0]["first_position"], first[0]["first_position"]);

    sb.run(&[
        "append",
        "--stream",
        "order-1",
        "--type",
        "OrderPaid",
        "--data",
        r#"{"paid":true}"#,
        "--expected-version",
        "1",
        "--metadata",
        r#"{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#,
    ])
    .ok();

    let events = sb.run(&["read", "--stream", "order-1"]).ok().json_lines();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_id"], id);
    assert_eq!(events[0]["event_type"], "OrderPlaced");
    assert_eq!(events[0]["payload"], serde_json::json!({"total": 42}));
    assert_eq!(events[1]["stream_version"], 2);
    assert_eq!(
        events[1]["metadata"]["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );

    let backward = sb
        .run(&["read", "--stream", "order-1", "--backward", "--limit", "1"])
        .ok()
        .json_lines();
    assert_eq!(backward.len(), 1);
    assert_eq!(backward[0]["event_type"], "OrderPaid");
    let from2 = sb
        .run(&["read", "--stream", "order-1", "--from", "2"])
        .ok()
        .json_lines();
    assert_eq!(from2.len(), 1);
    assert!(sb.run(&["read", "--stream", "nope"]).ok().stdout.is_empty());
}

#[test]
fn append_file_one_transaction_per_line_or_batched() {
    let sb = Sandbox::sqlite();
    let mut lines = String::new();
    for i in 0..7 {
        lines.push_str(&format!(
            "{{\"stream\":\"s-{}\",\"type\":\"T{i}\",\"data\":{{\"i\":{i}}}}}\n",
            i % 2
        ));
    }
    sb.file("a.jsonl", &lines);
    let results = sb.run(&["append", "--file", "a.jsonl"]).ok().json_lines();
    assert_eq!(results.len(), 7);
    assert_eq!(results[6]["line"], 7);

    let mut batched = String::new();
    for i in 0..5 {
        batched.push_str(&format!(
            "{{\"stream\":\"b-{i}\",\"type\":\"T\",\"data\":[{i}],\"id\":\"{}\"}}\n",
            uuid::Uuid::now_v7()
        ));
    }
    sb.file("b.jsonl", &batched);
    let results = sb
        .run(&["append", "--file", "b.jsonl", "--batch", "2"])
        .ok()
        .json_lines();
    assert_eq!(results.len(), 5);

    let all = sb.run(&["read", "--all"]).ok().json_lines();
    assert_eq!(all.len(), 12);
    let positions: Vec<i64> = all.iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let s0 = sb.run(&["read", "--stream", "s-0"]).ok().json_lines();
    assert_eq!(
        s0.iter().map(|e| e["event_type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["T0", "T2", "T4", "T6"]
    );
    let page = sb
        .run(&["read", "--all", "--from", "3", "--limit", "2"])
        .ok()
        .json_lines();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["position"], all[2]["position"]);
}

#[test]
fn bad_input_fails_with_one_line_and_writes_nothing() {
    let sb = Sandbox::sqlite();
    sb.run(&["append", "--stream", "s", "--type", "T", "--data", "{}"]).ok();

    let run = sb
        .run(&["append", "--stream", "s", "--type", "T", "--data", "{not json"])
        .fails_with(1);
    assert!(run.stderr.contains("JSON"), "{}", run.stderr);
    let run = sb
        .run(&["append", "--stream", "", "--type", "T", "--data", "{}"])
        .fails_with(1);
    assert!(run.stderr.contains("stream id is empty"), "{}", run.stderr);
    let run = sb
        .run(&["append", "--stream", "s", "--type", "T", "--data", r#"{"a":"\u0000"}"#])
        .fails_with(1);
    assert!(run.stderr.contains("NUL"), "{}", run.stderr);
    let run = sb
        .run(&[
            "append",
            "--stream",
            "s",
            "--type",
            "T",
            "--data",
            "{}",
            "--expected-version",
            "no-stream",
        ])
        .fails_with(1);
    assert!(run.stderr.contains("wrong expected version"), "{}", run.stderr);
    let run = sb
        .run(&[
            "append",
            "--stream",
            "s",
            "--type",
            "T",
            "--data",
            "{}",
            "--expected-version",
            "7",
        ])
        .fails_with(1);
    assert!(run.stderr.contains("actual 1"), "{}", run.stderr);
    // Usage errors exit 2.
    sb.run(&[
        "append",
        "--stream",
        "s",
        "--type",
        "T",
        "--data",
        "{}",
        "--expected-version",
        "soon",
    ])
    .fails_with_usage();
    assert_eq!(sb.event_count(), 1);

    // A bad line anywhere in a file: nothing from the file is written, the line is named.
    sb.file(
        "bad.jsonl",
        "{\"stream\":\"f\",\"type\":\"T\",\"data\":1}\n{\"stream\":\"f\",\"type\":\"T\",\"data\":2}\n{\"stream\":\"f\",\"type\":\"T\",\"data\":{oops}\n",
    );
    let run = sb.run(&["append", "--file", "bad.jsonl"]).fails_with(1);
    assert!(run.stderr.contains("line 3"), "{}", run.stderr);
    sb.file(
        "empty-stream.jsonl",
        "{\"stream\":\"f\",\"type\":\"T\",\"data\":1}\n{\"stream\":\"\",\"type\":\"T\",\"data\":2}\n",
    );
    let run = sb.run(&["append", "--file", "empty-stream.jsonl"]).fails_with(1);
    assert!(
        run.stderr.contains("line 2") && run.stderr.contains("stream id is empty"),
        "{}",
        run.stderr
    );
    assert_eq!(sb.event_count(), 1);

    // A conflict inside a batch rolls the whole batch back and names the line.
    sb.file(
        "conflict.jsonl",
        "{\"stream\":\"c\",\"type\":\"T\",\"data\":1}\n{\"stream\":\"s\",\"type\":\"T\",\"data\":2,\"expected_version\":\"no-stream\"}\n",
    );
    let run = sb
        .run(&["append", "--file", "conflict.jsonl", "--batch", "10"])
        .fails_with(1);
    assert!(
        run.stderr.contains("line 2") && run.stderr.contains("rolled back"),
        "{}",
        run.stderr
    );
    assert_eq!(sb.event_count(), 1);
    assert!(sb.run(&["read", "--stream", "c"]).ok().stdout.is_empty());
}

trait UsageError {
    fn fails_with_usage(self) -> common::Run;
}

impl UsageError for common::Run {
    /// Command-line usage errors exit 2 with one line that points at --help.
    #[track_caller]
    fn fails_with_usage(self) -> common::Run {
        let run = self.fails_with(2);
        assert!(run.stderr.contains("--help"), "{}", run.stderr);
        run
    }
}

// ---------------------------------------------------------------------------------
// configuration

#[test]
fn config_errors_name_the_key_and_exit_2() {
    let sb = Sandbox::new("database = \"sqlite://x.db\"\n[relay]\nbatch_sise = 10\n");
    let run = sb.run(&["outbox", "status"]).fails_with(2);
    assert!(run.stderr.contains("relay.batch_sise"), "{}", run.stderr);

    let sb = Sandbox::new("[retry]\ninitial = \"soonish\"\n");
    let run = sb.run(&["read", "--all"]).fails_with(2);
    assert!(
        run.stderr.contains("retry.initial") && run.stderr.contains("soonish"),
        "{}",
        run.stderr
    );

    let sb = Sandbox::new(&format!(
        "[[destinations]]\nname = \"hooks\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"{SECRET}\"\ntimeout = \"forever\"\nallowed_cidrs = [\"127.0.0.0/8\"]\n"
    ));
    let run = sb.run(&["outbox", "status"]).fails_with(2);
    assert!(run.stderr.contains("destinations.0.timeout"), "{}", run.stderr);

    let sb = Sandbox::new("[[routes]]\ndestination = \"nowhere\"\n");
    let run = sb.run(&["outbox", "status"]).fails_with(2);
    assert!(
        run.stderr.contains("routes.0.destination") && run.stderr.contains("nowhere"),
        "{}",
        run.stderr
    );

    let sb = Sandbox::new("database = \"mysql://db/x\"\n");
    let run = sb.run(&["read", "--all"]).fails_with(2);
    assert!(
        run.stderr.contains("database") && run.stderr.contains("mysql"),
        "{}",
        run.stderr
    );

    // An explicit config file that does not exist is an error; the default one is optional.
    let run = sb.run(&["read", "--all", "--config", "missing.toml"]).fails_with(2);
    assert!(run.stderr.contains("missing.toml"), "{}", run.stderr);
    let empty = Sandbox::sqlite();
    std::fs::remove_file(empty.path().join("eskit.toml")).unwrap();
    empty.run(&["read", "--all"]).ok();
    assert!(empty.path().join("eskit.db").exists(), "defaults use sqlite://eskit.db");
}

#[test]
fn env_overrides_the_file_and_config_goes_before_or_after_the_command() {
    let sb = Sandbox::sqlite();
    std::fs::rename(sb.path().join("eskit.toml"), sb.path().join("other.toml")).unwrap();
    sb.run(&[
        "--config",
        "other.toml",
        "append",
        "--stream",
        "a",
        "--type",
        "T",
        "--data",
        "1",
    ])
    .ok();
    sb.run(&[
        "append",
        "--stream",
        "a",
        "--type",
        "T",
        "--data",
        "2",
        "--config",
        "other.toml",
    ])
    .ok();
    assert!(sb.path().join("events.db").exists());

    // ESKIT_DATABASE wins over the file.
    sb.run_env(
        &[
            "append",
            "--stream",
            "b",
            "--type",
            "T",
            "--data",
            "3",
            "--config",
            "other.toml",
        ],
        &[("ESKIT_DATABASE", "sqlite://from-env.db")],
    )
    .ok();
    assert!(sb.path().join("from-env.db").exists());
    let in_env = sb
        .run_env(
            &["read", "--all", "--config", "other.toml"],
            &[("ESKIT_DATABASE", "sqlite://from-env.db")],
        )
        .ok()
        .json_lines();
    assert_eq!(in_env.len(), 1);
    // Nested keys use `__`; a bad value names the key and the variable.
    let run = sb
        .run_env(
            &["read", "--all", "--config", "other.toml"],
            &[("ESKIT_RELAY__POLL_INTERVAL", "often")],
        )
        .fails_with(2);
    assert!(
        run.stderr.contains("relay.poll_interval") && run.stderr.contains("ESKIT_RELAY__POLL_INTERVAL"),
        "{}",
        run.stderr
    );
    let run = sb
        .run_env(
            &["read", "--all", "--config", "other.toml"],
            &[("ESKIT_RETRY__MAX_ATTEMPTS", "0")],
        )
        .fails_with(2);
    assert!(run.stderr.contains("retry.max_attempts"), "{}", run.stderr);
    let run = sb
        .run_env(&["read", "--all"], &[("ESKIT_NOT_A_KEY", "1")])
        .fails_with(2);
    assert!(run.stderr.contains("not_a_key"), "{}", run.stderr);
    // ESKIT_TEST_* are the test suite's knobs, never configuration.
    let listed = sb
        .run_env(
            &["read", "--all", "--config", "other.toml"],
            &[
                ("ESKIT_TEST_PG_URL", "postgres://elsewhere"),
                ("ESKIT_TEST_ANYTHING", "1"),
            ],
        )
        .ok()
        .json_lines();
    assert_eq!(listed.len(), 2, "the file's database, read as usual");
}

// ---------------------------------------------------------------------------------
// outbox operations against a store with dead entries, and the relay daemon

fn hooks_config(receiver_url: &str, secret: &str) -> String {
    format!(
        r#"database = "sqlite://outbox.db"
[relay]
poll_interval = "50ms"
rescan_interval = "200ms"
shutdown_grace = "2s"
[retry]
initial = "20ms"
max = "100ms"
max_attempts = 3
[[routes]]
destination = "hooks"
[[destinations]]
name = "hooks"
type = "webhook"
url = "{receiver_url}"
secret = "{secret}"
timeout = "2s"
allowed_cidrs = ["127.0.0.0/8"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_outbox_commands_with_dead_entries() {
    let receiver = Receiver::start(
        ReceiverConfig::new()
            .secret(SECRET)
            .faults(FaultPlan::new(1).failing_stream("poison", 422)),
    )
    .await
    .unwrap();
    let sb = Sandbox::new(&hooks_config(&receiver.url(), SECRET));
    let sb = std::sync::Arc::new(sb);
    let run = {
        let sb = sb.clone();
        move |args: Vec<&'static str>| {
            let sb = sb.clone();
            async move { tokio::task::spawn_blocking(move || sb.run(&args)).await.unwrap() }
        }
    };

    for (stream, n) in [("ok-1", 3), ("poison", 2), ("ok-2", 2)] {
        for i in 0..n {
            let data = format!("{{\"i\":{i}}}");
            let sb2 = sb.clone();
            let stream = stream.to_string();
            tokio::task::spawn_blocking(move || {
                let r = sb2
                    .run(&["append", "--stream", &stream, "--type", "T", "--data", &data])
                    .ok();
                assert_eq!(r.json_lines()[0]["outbox_entries"], 1);
            })
            .await
            .unwrap();
        }
    }
    // Before the relay: all pending.
    let row = {
        let sb = sb.clone();
        tokio::task::spawn_blocking(move || sb.wait_status("hooks", Duration::from_secs(5), |r| r["pending"] == 7))
            .await
            .unwrap()
    };
    assert_eq!(row["dead"], 0);

    let relay = sb.spawn(&["relay", "--log-format", "json"], &[("RUST_LOG", "debug")]);
    let row = {
        let sb = sb.clone();
        tokio::task::spawn_blocking(move || {
            sb.wait_status("hooks", Duration::from_secs(60), |r| {
                r["pending"] == 0 && r["dead"] == 2
            })
        })
        .await
        .unwrap()
    };
    assert_eq!(row["delivered"], 5);
    let relay_run = tokio::task::spawn_blocking(move || relay.terminate()).await.unwrap();
    assert_eq!(relay_run.code, Some(0), "relay exit\n{}", relay_run.stderr);
    for line in relay_run.stderr.lines() {
        let log: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("relay log line is not JSON ({e}): {line}"));
        assert!(log.get("level").is_some(), "{line}");
    }
    assert!(relay_run.stderr.contains("shutting down"), "{}", relay_run.stderr);
    assert!(!relay_run.stderr.contains(SECRET_BODY), "the relay logged the secret");
    assert_eq!(receiver.accepted_ids().len(), 5);
    assert_eq!(receiver.counts().bad_signatures, 0);

    // Status as a table and as JSON.
    let table = run(vec!["outbox", "status"]).await.ok();
    assert!(table.stdout.contains("hooks"), "{}", table.stdout);
    // The DLQ lists the poison stream's two entries with their error.
    let dead = run(vec!["outbox", "dlq", "list", "--json"]).await.ok().json_lines();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|e| e["stream_id"] == "poison" && e["state"] == "dead"));
    assert!(dead[0]["last_error"].as_str().unwrap().contains("422"), "{}", dead[0]);
    let table = run(vec!["outbox", "dlq", "list"]).await.ok();
    assert!(
        table.stdout.contains("poison") && table.stdout.contains("422"),
        "{}",
        table.stdout
    );
    let listed = run(vec![
        "outbox",
        "list",
        "--state",
        "delivered",
        "--stream",
        "ok-1",
        "--json",
    ])
    .await
    .ok()
    .json_lines();
    assert_eq!(listed.len(), 3);
    let table = run(vec!["outbox", "list", "--destination", "hooks", "--limit", "2"])
        .await
        .ok();
    assert!(table.stdout.contains("hooks"), "{}", table.stdout);

    // Replay one by id: it is pending again.
    let first = dead[0]["id"].as_str().unwrap().to_string();
    let sb2 = sb.clone();
    let id = first.clone();
    let replayed = tokio::task::spawn_blocking(move || sb2.run(&["outbox", "dlq", "replay", "--id", &id]).ok())
        .await
        .unwrap();
    assert!(replayed.stdout.contains("replayed 1"), "{}", replayed.stdout);
    let row = {
        let sb = sb.clone();
        tokio::task::spawn_blocking(move || sb.wait_status("hooks", Duration::from_secs(5), |_| true))
            .await
            .unwrap()
    };
    assert_eq!((row["pending"].as_u64(), row["dead"].as_u64()), (Some(1), Some(1)));
    // The same id is no longer dead: replaying it again fails with one line.
    let sb2 = sb.clone();
    let again = tokio::task::spawn_blocking(move || sb2.run(&["outbox", "dlq", "replay", "--id", &first]))
        .await
        .unwrap();
    let again = again.fails_with(1);
    assert!(again.stderr.contains("no dead entry"), "{}", again.stderr);

    // Discard the rest of the destination's DLQ.
    let discarded = run(vec!["outbox", "dlq", "discard", "--destination", "hooks"])
        .await
        .ok();
    assert!(discarded.stdout.contains("discarded 1"), "{}", discarded.stdout);
    assert!(
        run(vec!["outbox", "dlq", "list", "--json"])
            .await
            .ok()
            .stdout
            .is_empty()
    );
    // Selector is required.
    run(vec!["outbox", "dlq", "discard"]).await.fails_with_usage();

    // Purge delivered entries.
    let purged = run(vec!["outbox", "purge", "--older-than", "0s"]).await.ok();
    assert!(purged.stdout.contains("purged 5"), "{}", purged.stdout);
    let status = run(vec!["outbox", "status", "--json"]).await.ok();
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(rows[0]["delivered"], 0);
    assert_eq!(rows[0]["pending"], 1);

    // No command printed the secret, not even with debug logging.
    for args in [
        vec!["outbox", "status"],
        vec!["outbox", "status", "--json"],
        vec!["outbox", "list", "--json"],
        vec!["outbox", "dlq", "list"],
        vec!["read", "--all"],
    ] {
        let sb2 = sb.clone();
        let out = tokio::task::spawn_blocking(move || sb2.run_env(&args, &[("RUST_LOG", "trace")]))
            .await
            .unwrap();
        assert!(
            !out.stdout.contains(SECRET_BODY) && !out.stderr.contains(SECRET_BODY),
            "secret printed"
        );
    }
    receiver.shutdown().await;
}

#[test]
fn secrets_never_appear_in_errors_or_logs() {
    // A malformed secret: the error names the key but not the value.
    let bad = "whsec_c2hvcnQ=";
    let sb = Sandbox::new(&format!(
        "[[destinations]]\nname = \"hooks\"\ntype = \"webhook\"\nurl = \"https://example.com/x\"\nsecret = \"{bad}\"\n"
    ));
    let run = sb.run(&["outbox", "status"]).fails_with(2);
    assert!(
        run.stderr.contains("secret") && !run.stderr.contains("c2hvcnQ"),
        "{}",
        run.stderr
    );
    // A valid one, with every command and debug logs: never printed.
    let sb = Sandbox::new(&format!(
        "database = \"sqlite://s.db\"\n[[routes]]\ndestination = \"hooks\"\n[[destinations]]\nname = \"hooks\"\ntype = \"webhook\"\nurl = \"http://user:pw-in-url@127.0.0.1:9/x?token=abc\"\nsecret = \"{SECRET}\"\nallowed_cidrs = [\"127.0.0.0/8\"]\n[relay]\nshutdown_grace = \"1s\"\n"
    ));
    for args in [
        vec!["append", "--stream", "s", "--type", "T", "--data", "{}"],
        vec!["read", "--all"],
        vec!["outbox", "status"],
        vec!["outbox", "list"],
        vec!["outbox", "dlq", "list", "--json"],
    ] {
        let run = sb.run_env(&args, &[("RUST_LOG", "trace")]).ok();
        for leaked in [SECRET_BODY, "pw-in-url"] {
            assert!(
                !run.stdout.contains(leaked) && !run.stderr.contains(leaked),
                "{args:?} printed {leaked}:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    }
    // The relay's own logs, with a secret passed through the environment.
    let mut relay = sb.spawn(&["relay"], &[("RUST_LOG", "trace")]);
    relay.wait_for_stderr("relay started", Duration::from_secs(30));
    let run = relay.terminate();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !run.stderr.contains(SECRET_BODY) && !run.stderr.contains("pw-in-url"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_database_is_one_line_without_the_password() {
    let sb = Sandbox::sqlite();
    let run = sb
        .run_env(
            &["read", "--all"],
            &[("ESKIT_DATABASE", "postgres://app:hunter2@127.0.0.1:1/x")],
        )
        .fails_with(1);
    assert!(run.stderr.contains("connecting to PostgreSQL"), "{}", run.stderr);
    assert!(
        run.stderr.contains("app:***@127.0.0.1:1") && !run.stderr.contains("hunter2"),
        "{}",
        run.stderr
    );
    let run = sb
        .run_env(
            &["read", "--all"],
            &[("ESKIT_DATABASE", "sqlite:///nonexistent-dir/x/y.db")],
        )
        .fails_with(1);
    assert!(run.stderr.contains("y.db"), "{}", run.stderr);
}

#[test]
fn relay_without_destinations_is_a_config_error() {
    let sb = Sandbox::sqlite();
    let run = sb.run(&["relay"]).fails_with(2);
    assert!(run.stderr.contains("destinations"), "{}", run.stderr);
}

#[test]
fn help_lists_every_command() {
    let sb = Sandbox::sqlite();
    let run = sb.run(&["--help"]).ok();
    for cmd in ["demo", "append", "read", "relay", "outbox"] {
        assert!(run.stdout.contains(cmd), "{}", run.stdout);
    }
    let run = sb.run(&["append", "--stream", "s"]).fails_with_usage();
    assert!(run.stderr.contains("--type"), "{}", run.stderr);
    let run = sb.run(&["read"]).fails_with_usage();
    assert!(
        run.stderr.contains("--stream") || run.stderr.contains("--all"),
        "{}",
        run.stderr
    );
    let run = sb.run(&["outbox", "dlq", "--help"]).ok();
    for cmd in ["list", "replay", "discard"] {
        assert!(run.stdout.contains(cmd), "{}", run.stdout);
    }
}
