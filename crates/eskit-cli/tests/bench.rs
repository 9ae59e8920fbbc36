//! `eskit bench` smoke tests: a tiny burn-down runs and prints its table (SQLite) or
//! its JSON (PostgreSQL). No timing is asserted: the bench measures, tests only check
//! that it runs.

mod common;

use common::Sandbox;

const SMALL: [&str; 8] = [
    "--entries",
    "500",
    "--delivered-rows",
    "2000",
    "--latency-events",
    "100",
    "--latency-rate",
    "1000",
];

#[test]
fn bench_prints_the_table() {
    let sb = Sandbox::sqlite();
    let mut args = vec!["bench"];
    args.extend(SMALL);
    let run = sb.run(&args).ok();
    for row in [
        "append, 1 event per transaction",
        "append, 100 events per transaction",
        "relay → null destination",
        "relay → loopback webhook",
        "commit → delivery latency",
        "a transaction held open",
        "2000 delivered rows in the table",
        "plain INSERTs",
        "select-and-mark loop",
    ] {
        assert!(run.stdout.contains(row), "missing {row:?}:\n{}", run.stdout);
    }
    let leftovers: Vec<_> = std::fs::read_dir(sb.path())
        .expect("sandbox")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("eskit-bench-"))
        .collect();
    assert!(leftovers.is_empty(), "the temporary database is removed");
}

#[test]
fn bench_on_postgres_prints_json() {
    let url =
        std::env::var("ESKIT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let sb = Sandbox::sqlite();
    let mut args = vec!["bench", "--db", url.as_str(), "--json", "--batch", "50"];
    args.extend(SMALL);
    let run = sb.run(&args).ok();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON results");
    assert_eq!(json["backend"], "postgres");
    for phase in [
        "append_single",
        "append_batched",
        "relay_null",
        "relay_webhook",
        "relay_open_transaction",
        "relay_delivered_rows",
    ] {
        assert!(
            json[phase]["eskit"]["count"].as_u64() > Some(0),
            "{phase}: {}",
            json[phase]
        );
        assert!(
            json[phase]["bound"]["count"].as_u64() > Some(0),
            "{phase}: {}",
            json[phase]
        );
    }
    assert_eq!(json["append_batched"]["eskit"]["count"], 500);
    assert_eq!(json["latency"]["samples"], 100);
    assert_eq!(json["delivered_rows"], 2000);
}

#[test]
fn bench_refuses_an_existing_database() {
    let sb = Sandbox::sqlite();
    std::fs::write(sb.path().join("old.db"), b"").expect("write");
    let run = sb.run(&["bench", "--db", "sqlite://old.db"]).fails_with(2);
    assert!(run.stderr.contains("fresh database"), "{}", run.stderr);
}
