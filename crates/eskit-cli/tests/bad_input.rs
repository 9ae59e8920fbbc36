//! The bad-input corpus at the command line: stream ids the shell can pass (invalid
//! UTF-8 included), malformed configuration values, webhook secrets of the wrong form.
//! Each fails with one clear line (exit 2 for usage and configuration, 1 for rejected
//! input) and writes nothing. The store-level corpus is the conformance test
//! `bad_input_corpus` in eskit-testkit.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use common::{Run, SECRET, SECRET_BODY, Sandbox};

/// Runs `eskit` with raw (possibly non-UTF-8) arguments.
fn run_os(sb: &Sandbox, args: &[&OsStr]) -> Run {
    let out = sb.command(&[]).args(args).output().expect("run eskit");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn append_args(stream: &OsStr) -> Vec<&OsStr> {
    let mut args: Vec<&OsStr> = ["append", "--stream"].iter().map(OsStr::new).collect();
    args.push(stream);
    args.extend(["--type", "T", "--data", "{}"].iter().map(OsStr::new));
    args
}

#[test]
fn hostile_stream_ids_fail_clearly_and_write_nothing() {
    let sb = Sandbox::sqlite();
    sb.run(&["append", "--stream", "s", "--type", "T", "--data", "{}"]).ok();

    // Not UTF-8 at all: refused before anything runs.
    for bytes in [&b"ab\xffcd"[..], b"\xc3\x28", b"\xed\xa0\x80", b"\x80"] {
        let run = run_os(&sb, &append_args(OsStr::from_bytes(bytes))).fails_with(2);
        assert!(run.stderr.contains("UTF-8"), "{bytes:?}: {}", run.stderr);
    }
    // UTF-8, but not a valid stream id: the store's typed error, on one line.
    let ten_kb = "x".repeat(10 * 1024);
    for (stream, message) in [
        ("", "stream id is empty"),
        ("a\nb", "stream id contains a control character at byte 1"),
        ("a\tb", "stream id contains a control character at byte 1"),
        ("\u{1b}[31mred", "stream id contains a control character at byte 0"),
        ("a\u{7f}", "stream id contains a control character at byte 1"),
        ("a\u{85}b", "stream id contains a control character at byte 1"),
        (ten_kb.as_str(), "stream id is 10240 bytes long; the limit is 256"),
    ] {
        let run = run_os(&sb, &append_args(OsStr::new(stream))).fails_with(1);
        assert!(run.stderr.contains(message), "{stream:?}: {}", run.stderr);
    }
    // Reading a stream with a bad id is a plain "nothing there" or the same error, never a crash.
    let run = run_os(
        &sb,
        &[OsStr::new("read"), OsStr::new("--stream"), OsStr::from_bytes(b"\xff")],
    )
    .fails_with(2);
    assert!(run.stderr.contains("UTF-8"), "{}", run.stderr);

    // The same in a JSONL file: a line that is not UTF-8, or carries a bad stream id.
    let mut bytes = b"{\"stream\":\"f\",\"type\":\"T\",\"data\":1}\n".to_vec();
    bytes.extend_from_slice(b"{\"stream\":\"f\xff\",\"type\":\"T\",\"data\":2}\n");
    std::fs::write(sb.path().join("latin1.jsonl"), bytes).expect("write file");
    let run = sb.run(&["append", "--file", "latin1.jsonl"]).fails_with(1);
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    sb.file(
        "control.jsonl",
        "{\"stream\":\"f\",\"type\":\"T\",\"data\":1}\n{\"stream\":\"f\\u0007\",\"type\":\"T\",\"data\":2}\n",
    );
    let run = sb
        .run(&["append", "--file", "control.jsonl", "--batch", "5"])
        .fails_with(1);
    assert!(
        run.stderr.contains("line 2") && run.stderr.contains("control character"),
        "{}",
        run.stderr
    );

    assert_eq!(sb.event_count(), 1, "rejected input writes nothing");
}

/// A config with one route and one webhook destination whose keys are `webhook`.
fn webhook_config(webhook: &str) -> String {
    format!(
        "database = \"sqlite://events.db\"\n[[routes]]\ndestination = \"hooks\"\n[[destinations]]\nname = \"hooks\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nallowed_cidrs = [\"127.0.0.0/8\"]\n{webhook}\n"
    )
}

/// Runs an append under `config` (plus `env`): it must fail with exit 2, name every
/// `needle`, and leave no database behind.
#[track_caller]
fn config_fails(config: &str, env: &[(&str, &str)], needles: &[&str]) -> Run {
    let sb = Sandbox::new(config);
    let run = sb
        .run_env(&["append", "--stream", "s", "--type", "T", "--data", "{}"], env)
        .fails_with(2);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "config {config:?} {env:?}: expected {needle:?} in: {}",
            run.stderr
        );
    }
    assert!(
        !sb.path().join("events.db").exists(),
        "config {config:?}: a bad configuration must not create or write the database"
    );
    run
}

#[test]
fn malformed_config_values_name_the_key_and_write_nothing() {
    let db = "database = \"sqlite://events.db\"\n";
    for (snippet, key) in [
        ("[relay]\nbatch_size = -1", "relay.batch_size"),
        ("[relay]\nbatch_size = 0", "relay.batch_size"),
        ("[relay]\nbatch_size = \"ten\"", "relay.batch_size"),
        ("[relay]\nbatch_size = 1.5", "relay.batch_size"),
        ("[relay]\nbatch_size = 99999999999", "relay.batch_size"),
        ("[relay]\npartitions = 0", "relay.partitions"),
        ("[relay]\nconcurrency = 0", "relay.concurrency"),
        ("[relay]\npoll_interval = \"-5s\"", "relay.poll_interval"),
        ("[relay]\npoll_interval = 5", "relay.poll_interval"),
        ("[relay]\npoll_interval = \"0s\"", "relay.poll_interval"),
        ("[relay]\nlease_ttl = \"1 fortnight\"", "relay.lease_ttl"),
        ("[retry]\njitter = 1.5", "retry.jitter"),
        ("[retry]\njitter = -0.1", "retry.jitter"),
        ("[retry]\nmultiplier = 0.5", "retry.multiplier"),
        ("[retry]\nmultiplier = nan", "retry.multiplier"),
        ("[retry]\nmax_attempts = 0", "retry.max_attempts"),
        ("[retry]\ninitial = \"10s\"\nmax = \"1s\"", "retry.initial"),
        ("max_payload_bytes = 0", "max_payload_bytes"),
        ("max_payload_bytes = -1", "max_payload_bytes"),
        ("routes = 5", "routes"),
        ("[[routes]]\ndestination = 7", "routes.0.destination"),
        ("[[routes]]\ndestination = \"nowhere\"", "routes.0.destination"),
        ("[relay]\nbatch_size = 10\nbatch_size = 20", "batch_size"),
        ("[relay\nbatch_size = 10", "eskit.toml"),
        ("[unknown_table]\nx = 1", "unknown_table"),
    ] {
        config_fails(&format!("{db}{snippet}\n"), &[], &[key]);
    }
    for (database, needle) in [
        ("", "database"),
        ("   ", "database"),
        ("mysql://db/x", "mysql"),
        ("http://example.com/db", "\"http\""),
    ] {
        config_fails(&format!("database = {database:?}\n"), &[], &[needle]);
    }
    // Environment overrides are checked the same way, and name the variable.
    for (var, value, needle) in [
        ("ESKIT_RELAY__BATCH_SIZE", "abc", "relay.batch_size"),
        ("ESKIT_RETRY__JITTER", "7", "retry.jitter"),
        ("ESKIT_RELAY__NO_SUCH_KEY", "1", "no_such_key"),
    ] {
        config_fails(db, &[(var, value)], &[needle]);
    }
}

#[test]
fn webhook_secrets_of_the_wrong_form_are_clear_config_errors() {
    let too_long = format!("whsec_{}", "QUFB".repeat(40));
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        // (secret key line, what the error says, a part of the value that must not leak)
        (
            "secret = \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"".into(),
            "whsec_",
            Some("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ),
        ("secret = \"whsec_\"".into(), "24 to 64 bytes", None),
        (
            "secret = \"whsec_not base64 at all!!\"".into(),
            "base64",
            Some("not base64 at all"),
        ),
        ("secret = \"whsec_c2hvcnQ=\"".into(), "24 to 64 bytes", Some("c2hvcnQ")),
        (format!("secret = \"{too_long}\""), "24 to 64 bytes", Some("QUFBQUFB")),
        ("secret = \"\"".into(), "whsec_", None),
        ("secret = []".into(), "secret", None),
        ("secret = 42".into(), "secret", None),
        (
            format!("secret = [\"{SECRET}\", \"whsec_c2hvcnQ=\"]"),
            "24 to 64 bytes",
            Some("c2hvcnQ"),
        ),
        // No secret at all.
        (String::new(), "missing", None),
    ];
    for (line, message, secret_part) in &cases {
        let run = config_fails(&webhook_config(line), &[], &["destinations.0", message]);
        if let Some(part) = secret_part {
            assert!(!run.stderr.contains(part), "{line}: the secret leaked: {}", run.stderr);
        }
        assert!(!run.stderr.contains(SECRET_BODY), "{}", run.stderr);
    }
    // Through the environment too.
    let run = config_fails(
        &webhook_config(&format!("secret = \"{SECRET}\"")),
        &[(
            "ESKIT_DESTINATIONS",
            "[{name=\"hooks\",type=\"webhook\",url=\"http://127.0.0.1:9/\",allowed_cidrs=[\"127.0.0.0/8\"],secret=\"whsec_c2hvcnQ=\"}]",
        )],
        &["destinations.0", "24 to 64 bytes"],
    );
    assert!(!run.stderr.contains("c2hvcnQ"), "{}", run.stderr);
}
