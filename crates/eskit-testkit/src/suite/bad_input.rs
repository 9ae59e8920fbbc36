//! The bad-input corpus: one table of hostile inputs, each with the typed error every
//! backend must return, and the proof that nothing was written.

use std::collections::BTreeSet;
use std::sync::Arc;

use eskit::{
    Error, EventData, EventStore, ExpectedVersion, OutboxMessage, OutboxStore, RouteFilter, StoreOptions,
    StoreTransaction, TransactionalStore, ValidationError,
};
use serde_json::json;

use super::support::{ev, snapshot};
use crate::Harness;

/// The payload cap the corpus store is opened with.
const CAP: usize = 1024;

/// What a case must fail with.
#[derive(Debug, Clone)]
enum Expect {
    /// Exactly this validation error.
    Is(ValidationError),
    /// A validation error this predicate accepts (for errors carrying parser text).
    Matches(&'static str, fn(&ValidationError) -> bool),
    /// `UnknownDestination` naming this destination.
    UnknownDestination(&'static str),
}

impl Expect {
    fn check(&self, case: &str, result: Result<(), Error>) {
        match (self, result) {
            (Expect::Is(want), Err(Error::Validation(got))) if *want == got => {}
            (Expect::Matches(_, pred), Err(Error::Validation(got))) if pred(&got) => {}
            (Expect::UnknownDestination(want), Err(Error::UnknownDestination(got))) if *want == got => {}
            (want, got) => panic!("{case}: expected {}, got {got:?}", want.describe()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Expect::Is(v) => format!("Validation({v:?})"),
            Expect::Matches(what, _) => format!("Validation({what})"),
            Expect::UnknownDestination(d) => format!("UnknownDestination({d:?})"),
        }
    }
}

/// The input of a case.
enum Input {
    /// Append to a stream: the stream id and the events, or the error building them.
    Append(String, Result<Vec<EventData>, ValidationError>),
    /// An explicit outbox message, or the error building it.
    Message(Result<OutboxMessage, ValidationError>),
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

fn append(stream: impl Into<String>, events: Vec<EventData>) -> Input {
    Input::Append(stream.into(), Ok(events))
}

fn append_built(stream: &str, event: Result<EventData, ValidationError>) -> Input {
    Input::Append(stream.into(), event.map(|e| vec![e]))
}

fn raw(payload: &str) -> Result<EventData, ValidationError> {
    EventData::from_json_str("T", payload)
}

fn message(destination: &str, stream: &str, payload: &str) -> Input {
    Input::Message(OutboxMessage::from_json_str(destination, stream, "M", payload))
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn is_invalid_json(v: &ValidationError) -> bool {
    matches!(v, ValidationError::InvalidJson { field: "payload", .. })
}

fn is_invalid_or_deep(v: &ValidationError) -> bool {
    matches!(
        v,
        ValidationError::InvalidJson { field: "payload", .. } | ValidationError::TooDeep { field: "payload", .. }
    )
}

fn is_too_large(v: &ValidationError) -> bool {
    matches!(v, ValidationError::PayloadTooLarge { max: CAP, .. })
}

fn control(field: &'static str, at: usize) -> Expect {
    Expect::Is(ValidationError::ControlCharacter { field, at })
}

/// The corpus.
fn corpus() -> Vec<Case> {
    use ValidationError as V;
    let ten_kb = "s".repeat(10 * 1024);
    let big = format!("{{\"blob\":\"{}\"}}", "z".repeat(CAP));
    let twice = ev("T", 1);
    vec![
        // Stream ids.
        Case {
            name: "empty stream id",
            input: append("", vec![ev("T", 1)]),
            expect: Expect::Is(V::EmptyStreamId),
        },
        Case {
            name: "10 KB stream id",
            input: append(ten_kb.clone(), vec![ev("T", 1)]),
            expect: Expect::Is(V::StreamIdTooLong {
                len: 10 * 1024,
                max: 256,
            }),
        },
        Case {
            name: "stream id with NUL",
            input: append("ab\0c", vec![ev("T", 1)]),
            expect: control("stream id", 2),
        },
        Case {
            name: "stream id with newline",
            input: append("ab\nc", vec![ev("T", 1)]),
            expect: control("stream id", 2),
        },
        Case {
            name: "stream id with tab",
            input: append("\tabc", vec![ev("T", 1)]),
            expect: control("stream id", 0),
        },
        Case {
            name: "stream id with ESC",
            input: append("ab\u{1b}[31m", vec![ev("T", 1)]),
            expect: control("stream id", 2),
        },
        Case {
            name: "stream id with DEL",
            input: append("abc\u{7f}", vec![ev("T", 1)]),
            expect: control("stream id", 3),
        },
        Case {
            name: "stream id with C1 NEL",
            input: append("ab\u{85}", vec![ev("T", 1)]),
            expect: control("stream id", 2),
        },
        // Event types.
        Case {
            name: "empty event type",
            input: append("ok", vec![ev("", 1)]),
            expect: Expect::Is(V::Empty { field: "event type" }),
        },
        Case {
            name: "10 KB event type",
            input: append("ok", vec![ev(&"t".repeat(10 * 1024), 1)]),
            expect: Expect::Is(V::TooLong {
                field: "event type",
                len: 10 * 1024,
                max: 256,
            }),
        },
        Case {
            name: "event type with NUL",
            input: append("ok", vec![ev("T\0", 1)]),
            expect: control("event type", 1),
        },
        // Appends.
        Case {
            name: "no events",
            input: append("ok", vec![]),
            expect: Expect::Is(V::NoEvents),
        },
        Case {
            name: "one event id twice",
            input: append("ok", vec![twice.clone(), twice.clone()]),
            expect: Expect::Is(V::DuplicateEventId(twice.id)),
        },
        // Payloads.
        Case {
            name: "truncated JSON",
            input: append_built("ok", raw("{\"a\": ")),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "not JSON at all",
            input: append_built("ok", raw("hello")),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "trailing garbage",
            input: append_built("ok", raw("{} {}")),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "raw NUL byte in a JSON string",
            input: append_built("ok", raw("\"a\0b\"")),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "\\u0000 in a string",
            input: append_built("ok", raw(r#"{"a":"x\u0000y"}"#)),
            expect: Expect::Is(V::NulInJson { field: "payload" }),
        },
        Case {
            name: "\\u0000 in a key",
            input: append_built("ok", raw(r#"{"\u0000":1}"#)),
            expect: Expect::Is(V::NulInJson { field: "payload" }),
        },
        Case {
            name: "\\u0000 in metadata",
            input: Input::Append(
                "ok".into(),
                ev("T", 1).with_metadata(&json!({"m": "\u{0}"})).map(|e| vec![e]),
            ),
            expect: Expect::Is(V::NulInJson { field: "metadata" }),
        },
        Case {
            name: "nesting one level too deep",
            input: append_built("ok", raw(&nested(65))),
            expect: Expect::Is(V::TooDeep {
                field: "payload",
                max: 64,
            }),
        },
        Case {
            name: "nesting 500 levels deep",
            input: append_built("ok", raw(&nested(500))),
            expect: Expect::Matches("InvalidJson or TooDeep", is_invalid_or_deep),
        },
        Case {
            name: "lone surrogate escape",
            input: append_built("ok", raw(r#"{"a":"\ud800"}"#)),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "lone low surrogate escape in a key",
            input: append_built("ok", raw(r#"{"\udc00":1}"#)),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "number beyond the f64 range",
            input: append_built("ok", raw(r#"{"a":1e400}"#)),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "400-digit integer",
            input: append_built("ok", raw(&format!("[1{}]", "0".repeat(400)))),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
        Case {
            name: "payload over the cap",
            input: append_built("ok", raw(&big)),
            expect: Expect::Matches("PayloadTooLarge", is_too_large),
        },
        Case {
            name: "metadata over the cap",
            input: Input::Append(
                "ok".into(),
                ev("T", 1)
                    .with_metadata(&json!({"m": "z".repeat(CAP)}))
                    .map(|e| vec![e]),
            ),
            expect: Expect::Is(V::PayloadTooLarge {
                field: "metadata",
                len: CAP + 8,
                max: CAP,
            }),
        },
        Case {
            name: "one bad event among good ones",
            input: Input::Append(
                "ok".into(),
                raw(r#"["\u0000"]"#).map(|bad| vec![ev("T", 1), bad, ev("T", 2)]),
            ),
            expect: Expect::Is(V::NulInJson { field: "payload" }),
        },
        // Outbox messages.
        Case {
            name: "unknown destination",
            input: message("nowhere", "s", "{}"),
            expect: Expect::UnknownDestination("nowhere"),
        },
        Case {
            name: "destination differing only in case",
            input: message("Hook", "s", "{}"),
            expect: Expect::UnknownDestination("Hook"),
        },
        Case {
            name: "message with an empty stream id",
            input: message("hook", "", "{}"),
            expect: Expect::Is(V::EmptyStreamId),
        },
        Case {
            name: "message with a control character in its stream id",
            input: message("hook", "a\rb", "{}"),
            expect: control("stream id", 1),
        },
        Case {
            name: "message with \\u0000",
            input: message("hook", "s", r#"{"a":"\u0000"}"#),
            expect: Expect::Is(V::NulInJson { field: "payload" }),
        },
        Case {
            name: "message over the cap",
            input: message("hook", "s", &big),
            expect: Expect::Matches("PayloadTooLarge", is_too_large),
        },
        Case {
            name: "message with invalid JSON",
            input: message("hook", "s", "{\"a\""),
            expect: Expect::Matches("InvalidJson", is_invalid_json),
        },
    ]
}

/// Runs one case twice, outside a transaction and inside one (which stays usable and
/// commits); returns the two results.
async fn attempt<S>(store: &S, input: &Input) -> (Result<(), Error>, Result<(), Error>)
where
    S: TransactionalStore,
{
    match input {
        Input::Append(_, Err(e)) => (Err(Error::Validation(e.clone())), Err(Error::Validation(e.clone()))),
        Input::Message(Err(e)) => (Err(Error::Validation(e.clone())), Err(Error::Validation(e.clone()))),
        Input::Append(stream, Ok(events)) => {
            let direct = store
                .append(stream, ExpectedVersion::Any, events.clone())
                .await
                .map(|_| ());
            let mut tx = store.begin().await.expect("begin");
            let in_tx = tx
                .append(stream, ExpectedVersion::Any, events.clone())
                .await
                .map(|_| ());
            tx.commit()
                .await
                .expect("a transaction stays usable after rejected input");
            (direct, in_tx)
        }
        Input::Message(Ok(message)) => {
            let mut tx = store.begin().await.expect("begin");
            let first = tx.write_outbox(message.clone()).await.map(|_| ());
            tx.commit().await.expect("commit");
            let mut tx = store.begin().await.expect("begin");
            let second = tx.write_outbox(message.clone()).await.map(|_| ());
            tx.rollback().await.expect("rollback");
            (first, second)
        }
    }
}

/// Every input of the corpus (hostile stream ids and event types, invalid JSON, NUL
/// bytes and `\u0000`, deep nesting, payloads and metadata over the cap, unknown
/// destinations, bad outbox messages) fails with the same typed error on every backend,
/// outside and inside a transaction, and writes nothing. Values at the limits pass.
/// Then concurrent writers race for each version of a stream (`Exact`) and for the
/// creation of streams (`NoStream`): one winner per version, the others get
/// `WrongExpectedVersion` with the actual version, and versions are contiguous.
pub async fn bad_input_corpus<H: Harness>(h: &H) {
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .max_payload_bytes(CAP),
        )
        .await;
    store
        .append("ok", ExpectedVersion::Any, vec![ev("T", 0)])
        .await
        .expect("a valid append");

    for case in corpus() {
        let before = snapshot(&*store).await;
        let (direct, in_tx) = attempt(&*store, &case.input).await;
        case.expect.check(case.name, direct);
        case.expect
            .check(&format!("{} (second try / in a transaction)", case.name), in_tx);
        assert_eq!(snapshot(&*store).await, before, "{}: nothing may be written", case.name);
    }

    // The limits themselves are fine.
    let at_cap = format!("\"{}\"", "z".repeat(CAP - 2));
    let at_depth = nested(64);
    for (name, stream, payload) in [
        ("stream id of 256 bytes", "s".repeat(256), "{}".to_string()),
        (
            "stream id with non-ASCII letters",
            "ordre-é-注文-🦀".to_string(),
            "{}".to_string(),
        ),
        ("payload at the cap", "ok".to_string(), at_cap),
        ("nesting at the limit", "ok".to_string(), at_depth),
        (
            "escaped backslash before u0000",
            "ok".to_string(),
            r#"{"a":"\\u0000"}"#.to_string(),
        ),
        (
            "surrogate pair escape",
            "ok".to_string(),
            r#"{"a":"\ud83e\udd80"}"#.to_string(),
        ),
        (
            "tiny and large numbers",
            "ok".to_string(),
            "[1e308, -1.5e-400, 12345678901234567890]".to_string(),
        ),
    ] {
        let before = snapshot(&*store).await;
        let event = EventData::from_json_str("T", &payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(snapshot(&*store).await.events.len(), before.events.len() + 1, "{name}");
    }

    version_races(&store).await;
}

/// Racing writers: one winner per version, contiguous versions, `NoStream` once.
async fn version_races<S>(store: &Arc<S>)
where
    S: EventStore + OutboxStore + TransactionalStore,
{
    const RACERS: usize = 6;
    const ROUNDS: u64 = 8;
    for round in 0..ROUNDS {
        let mut tasks = tokio::task::JoinSet::new();
        for racer in 0..RACERS {
            let store = Arc::clone(store);
            tasks.spawn(async move {
                let expected = if round == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(round)
                };
                let events = vec![ev("Raced", round * 100 + racer as u64)];
                let result = if racer % 2 == 0 {
                    store.append("raced", expected, events).await
                } else {
                    let mut tx = store.begin().await.expect("begin");
                    match tx.append("raced", expected, events).await {
                        Ok(r) => tx.commit().await.map(|_| r),
                        Err(e) => {
                            let _ = tx.rollback().await;
                            Err(e)
                        }
                    }
                };
                (expected, result)
            });
        }
        let mut winners = 0;
        while let Some(done) = tasks.join_next().await {
            let (expected, result) = done.expect("racer");
            match result {
                Ok(r) => {
                    winners += 1;
                    assert_eq!(
                        r.first_version,
                        round + 1,
                        "round {round}: the winner appends the next version"
                    );
                }
                Err(Error::WrongExpectedVersion {
                    stream,
                    expected: e,
                    actual,
                }) => {
                    assert_eq!((stream.as_str(), e), ("raced", expected));
                    assert_eq!(
                        actual,
                        Some(round + 1),
                        "round {round}: losers see the winner's version"
                    );
                }
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one winner");
    }
    let versions: BTreeSet<u64> = store
        .read_stream("raced", 1, 1000, eskit::ReadDirection::Forward)
        .await
        .expect("read")
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(
        versions,
        (1..=ROUNDS).collect::<BTreeSet<_>>(),
        "versions are contiguous"
    );
    let entries = super::support::entries_of(&**store, "hook").await;
    let raced = entries.iter().filter(|e| e.stream_id == "raced").count() as u64;
    assert_eq!(
        raced, ROUNDS,
        "one outbox entry per winning append, none for the losers"
    );
}
