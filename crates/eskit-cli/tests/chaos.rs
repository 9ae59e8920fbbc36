//! `eskit chaos` in CI: a small seeded crash loop on each backend, through the real
//! binary (relays are child processes of it, SIGKILLed three times).
//!
//! The PostgreSQL restart variant restarts the server and so must not run beside other
//! PostgreSQL tests: it only runs with `ESKIT_TEST_PG_RESTART=1`, on its own, e.g.
//! `ESKIT_TEST_PG_RESTART=1 cargo test -p eskit-cli --test chaos -- --test-threads 1`.

mod common;

use common::Sandbox;
use serde_json::Value;

fn pg_url() -> String {
    std::env::var("ESKIT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Runs `eskit chaos --json` with `args`; returns the exit code, the report and stderr.
fn chaos(args: &[&str]) -> (Option<i32>, Value, String) {
    let sb = Sandbox::sqlite();
    let mut all = vec!["chaos", "--json"];
    all.extend_from_slice(args);
    let run = sb.run(&all);
    let json: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "chaos printed no JSON report ({e})\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    (run.code, json, run.stderr)
}

/// The checks every passing run must show.
#[track_caller]
fn assert_passed(code: Option<i32>, json: &Value, stderr: &str, events: u64, kills: usize) {
    let r = &json["report"];
    assert_eq!(
        r["violations"].as_array().map(Vec::len),
        Some(0),
        "violations: {}\nstderr:\n{stderr}",
        r["violations"]
    );
    assert_eq!(code, Some(0), "exit code\nstderr:\n{stderr}");
    let committed = r["committed"].as_u64().unwrap_or_default();
    assert_eq!(
        r["appends"]["events_stored"], committed,
        "the store holds what was committed"
    );
    assert_eq!(r["delivered"], committed, "every committed event was delivered");
    // Writers count an append whose commit failed (`unknown`, e.g. during a PostgreSQL
    // restart) towards their quota; the ones that turn out rolled back (at most three
    // events each) are the only way committed can fall short of the quota.
    let rolled_back = r["appends"]["unknown_rolled_back"].as_u64().unwrap_or_default();
    assert!(
        committed <= events && committed + 3 * rolled_back >= events && (rolled_back > 0 || committed == events),
        "committed {committed} of {events} events with {rolled_back} unknown appends rolled back"
    );
    for key in [
        "lost",
        "phantoms",
        "order_violations",
        "gaps",
        "delivered_without_record",
        "pending_after_drain",
    ] {
        assert_eq!(r[key], 0, "{key}");
    }
    assert_eq!(r["kills"].as_array().map(Vec::len), Some(kills));
    assert!(r["duplicates"].as_u64() <= r["duplicate_bound"].as_u64());
    assert!(r["sink"]["server_errors"].as_u64() > Some(0), "the sink injected 503s");
    let replay = json["replay"].as_str().unwrap_or_default();
    assert!(replay.contains(&format!("--seed {}", r["seed"])), "{replay}");
}

#[test]
fn chaos_on_sqlite_loses_nothing() {
    let (code, json, stderr) = chaos(&["--kills", "3", "--events", "2000", "--seed", "6001"]);
    assert_passed(code, &json, &stderr, 2000, 3);
    let dir = json["report"]["work_dir"].as_str().unwrap_or_default();
    assert!(!std::path::Path::new(dir).exists(), "a passing run cleans up {dir}");
}

#[test]
fn chaos_on_postgres_loses_nothing() {
    let url = pg_url();
    let (code, json, stderr) = chaos(&["--db", &url, "--kills", "3", "--events", "2000", "--seed", "6002"]);
    assert_passed(code, &json, &stderr, 2000, 3);
}

#[test]
fn chaos_on_postgres_with_a_server_restart() {
    if std::env::var("ESKIT_TEST_PG_RESTART").as_deref() != Ok("1") {
        eprintln!("skipped: restarts PostgreSQL; set ESKIT_TEST_PG_RESTART=1 and run it alone");
        return;
    }
    let url = pg_url();
    let (code, json, stderr) = chaos(&[
        "--db",
        &url,
        "--kills",
        "3",
        "--events",
        "2000",
        "--seed",
        "6003",
        "--restart-postgres",
    ]);
    assert_passed(code, &json, &stderr, 2000, 3);
    let restart = &json["report"]["db_restart"];
    assert!(restart["error"].is_null(), "{restart}");
    assert!(
        restart["recovery_ms"].is_u64(),
        "deliveries resumed after the restart: {restart}"
    );
}

#[test]
fn a_seed_replays_its_plan() {
    let args = ["--kills", "4", "--events", "200", "--streams", "10", "--seed", "77"];
    let (code_a, a, err_a) = chaos(&args);
    let (code_b, b, err_b) = chaos(&args);
    assert_eq!((code_a, code_b), (Some(0), Some(0)), "{err_a}\n{err_b}");
    assert_eq!(
        a["report"]["plan"], b["report"]["plan"],
        "same seed, same kill schedule and fault plan"
    );
    assert_eq!(a["replay"], b["replay"]);
    let (_, c, _) = chaos(&["--kills", "4", "--events", "200", "--streams", "10", "--seed", "78"]);
    assert_ne!(a["report"]["plan"]["kills"], c["report"]["plan"]["kills"]);
}

#[test]
fn chaos_refuses_bad_arguments() {
    let sb = Sandbox::sqlite();
    let run = sb.run(&["chaos", "--restart-postgres"]).fails_with(2);
    assert!(run.stderr.contains("postgres"), "{}", run.stderr);
    let run = sb.run(&["chaos", "--db", "sqlite::memory:"]).fails_with(2);
    assert!(run.stderr.contains("SQLite file"), "{}", run.stderr);
    std::fs::write(sb.path().join("taken.db"), b"").expect("write");
    let run = sb.run(&["chaos", "--db", "sqlite://taken.db"]).fails_with(2);
    assert!(run.stderr.contains("fresh database"), "{}", run.stderr);
    sb.run(&["chaos", "--events", "0"]).fails_with(2);
}
