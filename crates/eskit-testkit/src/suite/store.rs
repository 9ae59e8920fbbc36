//! Event store: append, read, expected versions, concurrency, idempotency, validation.

use std::collections::BTreeSet;
use std::sync::Arc;

use eskit::{
    Error, EventData, EventStore, ExpectedVersion, OutboxMessage, ReadDirection, RouteFilter, StoreOptions,
    StoreTransaction, TransactionalStore, ValidationError,
};
use serde_json::json;
use serde_json::value::RawValue;

use super::support::{all_events, ev, snapshot};
use crate::Harness;

/// Appends five events and reads them forward, backward and in pieces: versions,
/// ids, types, payloads, metadata and increasing positions come back as written, each
/// with the time it was recorded.
pub async fn append_and_read_stream<H: Harness>(h: &H) {
    let store = h.open(StoreOptions::default()).await;
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let mut events: Vec<EventData> = (1..=5).map(|n| ev("Counted", n)).collect();
    events[0] = events[0]
        .clone()
        .with_metadata(&json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}))
        .expect("metadata");
    let r = store
        .append("counter-1", ExpectedVersion::NoStream, events.clone())
        .await
        .expect("append");
    let after = time::OffsetDateTime::now_utc() + time::Duration::seconds(5);
    assert_eq!((r.first_version, r.last_version), (1, 5));
    assert!(
        r.last_position >= r.first_position + 4,
        "positions of one append increase: {r:?}"
    );
    assert!(r.first_position >= 1, "positions start at 1: {r:?}");
    assert!(!r.idempotent_repeat);
    assert_eq!(r.outbox_entries, 0, "no routes, no entries");

    let forward = store
        .read_stream("counter-1", 1, 100, ReadDirection::Forward)
        .await
        .expect("read forward");
    assert_eq!(forward.len(), 5);
    for (i, (got, sent)) in forward.iter().zip(&events).enumerate() {
        assert_eq!(got.stream_id, "counter-1");
        assert_eq!(got.stream_version, i as u64 + 1);
        assert_eq!(got.event_id, sent.id);
        assert_eq!(got.event_type, "Counted");
        assert_eq!(got.payload, json!({"n": i as u64 + 1}));
        assert!(
            before <= got.recorded_at && got.recorded_at <= after,
            "recorded_at {} is the append time",
            got.recorded_at
        );
    }
    assert_eq!(forward[0].position, r.first_position);
    assert_eq!(forward[4].position, r.last_position);
    assert!(forward.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        forward[0].metadata,
        Some(json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}))
    );
    assert_eq!(forward[1].metadata, None);

    let middle = store
        .read_stream("counter-1", 3, 2, ReadDirection::Forward)
        .await
        .expect("read middle");
    assert_eq!(middle.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![3, 4]);

    let backward = store
        .read_stream("counter-1", u64::MAX, 100, ReadDirection::Backward)
        .await
        .expect("read backward");
    assert_eq!(
        backward.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1]
    );
    let back_part = store
        .read_stream("counter-1", 3, 2, ReadDirection::Backward)
        .await
        .expect("read backward from 3");
    assert_eq!(
        back_part.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![3, 2]
    );
    let back_from_first = store
        .read_stream("counter-1", 1, 10, ReadDirection::Backward)
        .await
        .expect("read backward from 1");
    assert_eq!(
        back_from_first.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![1]
    );

    let past_end = store
        .read_stream("counter-1", 6, 10, ReadDirection::Forward)
        .await
        .expect("read past the end");
    assert!(past_end.is_empty());
    let missing = store
        .read_stream("no-such-stream", 1, 10, ReadDirection::Forward)
        .await
        .expect("read a missing stream");
    assert!(missing.is_empty(), "a missing stream reads as empty");
}

/// `read_all` returns every stream's events in position order, from a position, with a limit.
pub async fn read_all_in_position_order<H: Harness>(h: &H) {
    let store = h.open(StoreOptions::default()).await;
    assert!(store.read_all(0, 10).await.expect("read_all empty").is_empty());
    store
        .append("a", ExpectedVersion::Any, vec![ev("A", 1)])
        .await
        .expect("a1");
    store
        .append("b", ExpectedVersion::Any, vec![ev("B", 1), ev("B", 2)])
        .await
        .expect("b");
    store
        .append("a", ExpectedVersion::Any, vec![ev("A", 2)])
        .await
        .expect("a2");

    let all = store.read_all(0, 100).await.expect("read_all");
    let got: Vec<(&str, u64)> = all.iter().map(|e| (e.stream_id.as_str(), e.stream_version)).collect();
    assert_eq!(got, vec![("a", 1), ("b", 1), ("b", 2), ("a", 2)]);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    let from_second = store.read_all(all[1].position, 2).await.expect("read_all from");
    assert_eq!(
        from_second.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![all[1].event_id, all[2].event_id]
    );
    let after_end = store
        .read_all(all[3].position + 1, 10)
        .await
        .expect("read_all after end");
    assert!(after_end.is_empty());
}

/// `stream_version` is `None` for a missing stream and follows appends.
pub async fn stream_version_follows_appends<H: Harness>(h: &H) {
    let store = h.open(StoreOptions::default()).await;
    assert_eq!(store.stream_version("s").await.expect("version"), None);
    store
        .append("s", ExpectedVersion::Any, vec![ev("A", 1), ev("A", 2)])
        .await
        .expect("append");
    assert_eq!(store.stream_version("s").await.expect("version"), Some(2));
    store
        .append("s", ExpectedVersion::Exact(2), vec![ev("A", 3)])
        .await
        .expect("append");
    assert_eq!(store.stream_version("s").await.expect("version"), Some(3));
    assert_eq!(store.stream_version("other").await.expect("version"), None);
}

fn assert_conflict(
    result: eskit::Result<eskit::AppendResult>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match result {
        Err(Error::WrongExpectedVersion {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual), "conflict details");
        }
        other => panic!("expected a WrongExpectedVersion conflict on {stream:?} ({expected}), got {other:?}"),
    }
}

/// `Any`, `NoStream`, `StreamExists` and `Exact(n)`: each accepts what it should; a
/// conflict carries the stream, the expectation and the actual version, and writes
/// neither events nor outbox entries.
pub async fn expected_version_semantics<H: Harness>(h: &H) {
    let store = h
        .open(StoreOptions::default().with_outbox("hook", RouteFilter::all()))
        .await;

    // A missing stream.
    assert_conflict(
        store.append("s", ExpectedVersion::StreamExists, vec![ev("A", 1)]).await,
        "s",
        ExpectedVersion::StreamExists,
        None,
    );
    assert_conflict(
        store.append("s", ExpectedVersion::Exact(3), vec![ev("A", 1)]).await,
        "s",
        ExpectedVersion::Exact(3),
        None,
    );
    assert_eq!(store.stream_version("s").await.expect("version"), None);
    store
        .append("s", ExpectedVersion::NoStream, vec![ev("A", 1)])
        .await
        .expect("NoStream on a missing stream");

    // An existing stream at version 1.
    assert_conflict(
        store.append("s", ExpectedVersion::NoStream, vec![ev("A", 2)]).await,
        "s",
        ExpectedVersion::NoStream,
        Some(1),
    );
    store
        .append("s", ExpectedVersion::StreamExists, vec![ev("A", 2)])
        .await
        .expect("StreamExists on an existing stream");
    store
        .append("s", ExpectedVersion::Exact(2), vec![ev("A", 3), ev("A", 4)])
        .await
        .expect("Exact(2) at version 2");
    store
        .append("s", ExpectedVersion::Any, vec![ev("A", 5)])
        .await
        .expect("Any");
    // Exact(0) means "no events yet", like NoStream.
    store
        .append("t", ExpectedVersion::Exact(0), vec![ev("A", 1)])
        .await
        .expect("Exact(0) on a missing stream");

    let before = snapshot(&*store).await;
    for stale in [0, 1, 4, 6] {
        assert_conflict(
            store
                .append("s", ExpectedVersion::Exact(stale), vec![ev("A", 99), ev("A", 100)])
                .await,
            "s",
            ExpectedVersion::Exact(stale),
            Some(5),
        );
    }
    assert_eq!(snapshot(&*store).await, before, "a conflict writes nothing");
    assert_eq!(store.stream_version("s").await.expect("version"), Some(5));
    assert_eq!(before.entries.len(), 6, "one entry per stored event");
}

/// `TASKS` tasks each append `PER_TASK` events to one stream with `Exact(v)`, re-reading
/// the version after each conflict: every version has exactly one winner, the stream's
/// versions are contiguous, nothing is lost or doubled. Then `Any` appends from two
/// handles on one database race to create the same streams: all succeed, versions are
/// contiguous, and each event has its entry, in version order.
pub async fn concurrent_appends_to_one_stream<H: Harness>(h: &H) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 10;
    let store = h.open(StoreOptions::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0u32;
            while won.len() < PER_TASK {
                let current = store.stream_version("contended").await.expect("version").unwrap_or(0);
                let event = ev("Bumped", (t * 1000 + won.len()) as u64);
                match store
                    .append("contended", ExpectedVersion::Exact(current), vec![event.clone()])
                    .await
                {
                    Ok(r) => {
                        assert_eq!(
                            r.first_version,
                            current + 1,
                            "a winner appends right after the version it saw"
                        );
                        won.push((r.first_version, event.id));
                    }
                    Err(Error::WrongExpectedVersion { actual, .. }) => {
                        conflicts += 1;
                        assert!(
                            actual.unwrap_or(0) > current,
                            "a conflict reports a newer version ({actual:?} after {current})"
                        );
                    }
                    Err(other) => panic!("unexpected append error: {other}"),
                }
                assert!(conflicts < 10_000, "no progress");
            }
            won
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        winners.extend(done.expect("append task"));
    }
    let total = (TASKS * PER_TASK) as u64;
    let versions: BTreeSet<u64> = winners.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions.len(), winners.len(), "one winner per version");
    assert_eq!(
        versions,
        (1..=total).collect::<BTreeSet<_>>(),
        "versions are contiguous"
    );
    assert_eq!(store.stream_version("contended").await.expect("version"), Some(total));
    let stored = store
        .read_stream("contended", 1, 10_000, ReadDirection::Forward)
        .await
        .expect("read");
    assert_eq!(stored.len() as u64, total);
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e.stream_version, i as u64 + 1);
        let (_, id) = winners.iter().find(|(v, _)| *v == e.stream_version).expect("winner");
        assert_eq!(e.event_id, *id, "the stored event at each version is its winner's");
    }

    // `Any` appends racing to create the same streams all succeed: each writer waits for
    // the one creating the stream and appends after it. Their entries follow the versions.
    // Half of the writers go through a second handle (its own pool, as another process).
    const STREAMS: usize = 20;
    let options = StoreOptions::default().with_outbox("hook", RouteFilter::all());
    let store = h.open(options.clone()).await;
    let other = h.reopen(&store, options).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = Arc::clone(if t % 2 == 0 { &store } else { &other });
        tasks.spawn(async move {
            for k in 0..STREAMS {
                store
                    .append(&format!("fresh-{k}"), ExpectedVersion::Any, vec![ev("Raced", t as u64)])
                    .await
                    .unwrap_or_else(|e| panic!("task {t}, stream fresh-{k}: {e}"));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("append task");
    }
    let events = all_events(&*other).await;
    assert_eq!(events.len(), TASKS * STREAMS, "the second handle sees every event");
    let distinct: BTreeSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(distinct.len(), events.len(), "no event stored twice");
    let entries = super::support::entries_of(&*store, "hook").await;
    assert_eq!(entries.len(), TASKS * STREAMS, "one entry per event");
    for k in 0..STREAMS {
        let stream = format!("fresh-{k}");
        assert_eq!(
            store.stream_version(&stream).await.expect("version"),
            Some(TASKS as u64)
        );
        let versions: Vec<u64> = entries
            .iter()
            .filter(|e| e.stream_id == stream)
            .map(|e| e.stream_version.expect("a route entry has its version"))
            .collect();
        assert_eq!(
            versions,
            (1..=TASKS as u64).collect::<Vec<_>>(),
            "{stream}: entries in seq order follow versions"
        );
    }
}

/// One append of 5 000 events with two routes (one of them a predicate) stores every
/// event in order (versions, payloads, increasing positions within the reported range)
/// and writes one entry per event and matching route, each destination's entries in
/// version order.
pub async fn large_append_keeps_order<H: Harness>(h: &H) {
    const N: u64 = 5000;
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .with_outbox("evens", RouteFilter::all().predicate(|_, e| e.event_type == "Even")),
        )
        .await;
    store
        .append("before", ExpectedVersion::Any, vec![ev("Odd", 0)])
        .await
        .expect("a first append");
    let events: Vec<EventData> = (0..N).map(|n| ev(if n % 2 == 0 { "Even" } else { "Odd" }, n)).collect();
    let r = store
        .append("big", ExpectedVersion::NoStream, events.clone())
        .await
        .expect("large append");
    assert_eq!(
        (r.first_version, r.last_version, r.outbox_entries),
        (1, N, (N + N / 2) as usize),
        "{r:?}"
    );

    let read = store
        .read_stream("big", 1, 10_000, ReadDirection::Forward)
        .await
        .expect("read");
    assert_eq!(read.len() as u64, N);
    for (i, (got, sent)) in read.iter().zip(&events).enumerate() {
        assert_eq!(got.stream_version, i as u64 + 1);
        assert_eq!((got.event_id, &got.event_type), (sent.id, &sent.event_type));
        assert_eq!(got.payload, json!({"n": i}));
    }
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        (read[0].position, read[read.len() - 1].position),
        (r.first_position, r.last_position)
    );

    for (destination, every) in [("hook", 1), ("evens", 2)] {
        let entries: Vec<_> = super::support::entries_of(&*store, destination)
            .await
            .into_iter()
            .filter(|e| e.stream_id == "big")
            .collect();
        let versions: Vec<u64> = entries.iter().filter_map(|e| e.stream_version).collect();
        assert_eq!(
            versions,
            (1..=N).step_by(every).collect::<Vec<_>>(),
            "{destination}: one entry per routed event, in version order"
        );
        for e in &entries {
            let event = &events[e.stream_version.expect("version") as usize - 1];
            assert_eq!(e.id, super::support::entry_id(event, destination));
        }
    }
}

/// Re-appending the same event ids with the same content is a no-op that returns the
/// original positions and outbox entry count; nothing new is stored (events or outbox
/// entries). Content is compared as JSON: whitespace and key order do not matter.
pub async fn idempotent_append_is_noop<H: Harness>(h: &H) {
    let store = h
        .open(StoreOptions::default().with_outbox("hook", RouteFilter::all()))
        .await;
    let spelled = |payload: &str, metadata: &str| {
        let mut event = EventData::from_json_str("A", payload).expect("valid JSON");
        event.metadata = Some(RawValue::from_string(metadata.to_string()).expect("valid JSON"));
        event
    };
    let first_event = spelled(r#"{"a": 1, "b": [1, 2]}"#, r#"{"m": 1, "k": [true]}"#);
    let events = vec![first_event.clone(), ev("A", 2)];
    let first = store
        .append("s", ExpectedVersion::NoStream, events.clone())
        .await
        .expect("first append");
    assert_eq!(first.outbox_entries, 2);
    store
        .append("other", ExpectedVersion::Any, vec![ev("B", 1)])
        .await
        .expect("other");
    let before = snapshot(&*store).await;

    // The same content spelled differently (whitespace, key order).
    let respelled = vec![
        spelled(r#"{ "b":[1,2],"a":1 }"#, r#"{"k":[ true ],"m":1}"#).with_id(first_event.id),
        events[1].clone(),
    ];
    let again = store
        .append("s", ExpectedVersion::Any, respelled)
        .await
        .expect("idempotent repeat");
    assert!(again.idempotent_repeat, "the repeat is reported as such: {again:?}");
    assert_eq!(
        (
            again.first_version,
            again.last_version,
            again.first_position,
            again.last_position,
            again.outbox_entries
        ),
        (
            first.first_version,
            first.last_version,
            first.first_position,
            first.last_position,
            first.outbox_entries
        ),
        "the repeat returns the original positions and entry count"
    );
    assert_eq!(snapshot(&*store).await, before, "the repeat stores nothing");
    assert_eq!(store.stream_version("s").await.expect("version"), Some(2));

    // The repeat wins over the expected version it was first appended with (which no
    // longer holds).
    let stale = store
        .append("s", ExpectedVersion::NoStream, events.clone())
        .await
        .expect("idempotent repeat with its original expected version");
    assert!(stale.idempotent_repeat);
    assert_eq!(stale.first_position, first.first_position);

    // Also inside a transaction.
    let mut tx = store.begin().await.expect("begin");
    let in_tx = tx
        .append("s", ExpectedVersion::Any, vec![events[1].clone()])
        .await
        .expect("idempotent repeat in a transaction");
    assert!(in_tx.idempotent_repeat);
    assert_eq!(in_tx.first_version, 2);
    tx.commit().await.expect("commit");
    assert_eq!(
        snapshot(&*store).await,
        before,
        "the repeat in a transaction stores nothing"
    );

    // Absent metadata and JSON `null` metadata are the same content, either way round.
    let with_null = spelled(r#"{"n": 1}"#, "null");
    let without = EventData::from_json_str("A", r#"{"n": 1}"#).expect("valid JSON");
    for (first, repeat) in [
        (
            with_null.clone(),
            EventData {
                metadata: None,
                ..with_null
            },
        ),
        (without.clone(), spelled(r#"{"n": 1}"#, "null").with_id(without.id)),
    ] {
        let stream = format!("null-{}", first.id);
        store
            .append(&stream, ExpectedVersion::NoStream, vec![first])
            .await
            .expect("append");
        let again = store
            .append(&stream, ExpectedVersion::Any, vec![repeat])
            .await
            .expect("absent and null metadata repeat each other");
        assert!(again.idempotent_repeat, "{again:?}");
    }
}

/// The same event id with different content (payload, type or metadata) or in another
/// stream is an `IdempotencyConflict` naming the id; nothing is written.
pub async fn idempotent_append_conflicts_on_different_content<H: Harness>(h: &H) {
    let store = h
        .open(StoreOptions::default().with_outbox("hook", RouteFilter::all()))
        .await;
    let original = ev("A", 1);
    store
        .append("s", ExpectedVersion::Any, vec![original.clone()])
        .await
        .expect("append");
    let before = snapshot(&*store).await;

    let changed_payload = ev("A", 2).with_id(original.id);
    let changed_type = ev("B", 1).with_id(original.id);
    let added_metadata = ev("A", 1)
        .with_metadata(&json!({"m": 1}))
        .expect("metadata")
        .with_id(original.id);
    for (what, stream, event) in [
        ("different payload", "s", changed_payload),
        ("different type", "s", changed_type),
        ("different metadata", "s", added_metadata),
        ("another stream", "elsewhere", original.clone()),
    ] {
        match store.append(stream, ExpectedVersion::Any, vec![event]).await {
            Err(Error::IdempotencyConflict { event_id }) => assert_eq!(event_id, original.id, "{what}"),
            other => panic!("{what}: expected IdempotencyConflict, got {other:?}"),
        }
    }
    // A conflicting id in a batch with new events rejects the whole batch.
    let batch = vec![ev("A", 7), ev("A", 9).with_id(original.id)];
    assert!(
        matches!(
            store.append("s", ExpectedVersion::Any, batch.clone()).await,
            Err(Error::IdempotencyConflict { .. })
        ),
        "a batch containing a conflicting id is rejected"
    );
    assert_eq!(snapshot(&*store).await, before, "conflicts write nothing");
    assert_eq!(store.stream_version("elsewhere").await.expect("version"), None);

    // Inside a transaction the same batch fails alone: nothing of it stays, and the
    // transaction goes on and commits.
    let mut tx = store.begin().await.expect("begin");
    assert!(
        matches!(
            tx.append("s", ExpectedVersion::Any, batch).await,
            Err(Error::IdempotencyConflict { .. })
        ),
        "a batch containing a conflicting id is rejected in a transaction"
    );
    let after = tx
        .append("t", ExpectedVersion::NoStream, vec![ev("B", 1)])
        .await
        .expect("the transaction stays usable");
    assert_eq!(after.first_version, 1);
    tx.commit().await.expect("commit");
    assert_eq!(store.stream_version("s").await.expect("version"), Some(1));
    assert_eq!(store.stream_version("t").await.expect("version"), Some(1));
    let hook = super::support::entries_of(&*store, "hook").await;
    assert_eq!(hook.len(), 2, "the original entry and t's: {hook:?}");
}

fn expect_validation<T: std::fmt::Debug>(
    what: &str,
    result: eskit::Result<T>,
    check: impl Fn(&ValidationError) -> bool,
) {
    match result {
        Err(Error::Validation(v)) if check(&v) => {}
        other => panic!("{what}: expected a matching validation error, got {other:?}"),
    }
}

/// Empty, over-long and control-character stream ids, empty appends, duplicate ids,
/// empty event types, NUL (`\u0000`) in payload or metadata and payloads over the cap
/// are typed validation errors; invalid JSON is rejected when the event is built.
/// Nothing is written by any of them, also when one bad event sits among good ones.
pub async fn validation_rejects_bad_input<H: Harness>(h: &H) {
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .max_payload_bytes(1024),
        )
        .await;
    store
        .append("ok", ExpectedVersion::Any, vec![ev("A", 1)])
        .await
        .expect("a valid append");
    let before = snapshot(&*store).await;
    let any = ExpectedVersion::Any;

    expect_validation("empty stream id", store.append("", any, vec![ev("A", 1)]).await, |v| {
        *v == ValidationError::EmptyStreamId
    });
    expect_validation(
        "over-long stream id",
        store.append(&"x".repeat(257), any, vec![ev("A", 1)]).await,
        |v| matches!(v, ValidationError::StreamIdTooLong { len: 257, max: 256 }),
    );
    store
        .append(&"y".repeat(256), any, vec![ev("A", 1)])
        .await
        .expect("a stream id at the limit is fine");
    assert_eq!(snapshot(&*store).await.events.len(), before.events.len() + 1);
    let before = snapshot(&*store).await;
    for (what, id) in [
        ("newline", "bad\nid"),
        ("NUL", "bad\0id"),
        ("escape", "bad\u{1b}id"),
        ("DEL", "bad\u{7f}id"),
    ] {
        expect_validation(what, store.append(id, any, vec![ev("A", 1)]).await, |v| {
            matches!(v, ValidationError::ControlCharacter { at: 3, .. })
        });
    }
    expect_validation("no events", store.append("ok", any, vec![]).await, |v| {
        *v == ValidationError::NoEvents
    });
    let twice = ev("A", 1);
    expect_validation(
        "duplicate id in one append",
        store.append("ok", any, vec![twice.clone(), twice.clone()]).await,
        |v| *v == ValidationError::DuplicateEventId(twice.id),
    );
    expect_validation(
        "empty event type",
        store.append("ok", any, vec![ev("", 1)]).await,
        |v| matches!(v, ValidationError::Empty { .. }),
    );

    assert!(
        matches!(
            EventData::from_json_str("A", "{\"unterminated\": "),
            Err(ValidationError::InvalidJson { field: "payload", .. })
        ),
        "invalid JSON is rejected when the event is built"
    );
    let nul_payload = EventData::from_json_str("A", r#"{"text":"a\u0000b"}"#).expect("valid JSON");
    expect_validation(
        "NUL in payload",
        store.append("ok", any, vec![nul_payload]).await,
        |v| *v == ValidationError::NulInJson { field: "payload" },
    );
    let nul_metadata = ev("A", 1).with_metadata(&json!({"who": "a\u{0}b"})).expect("metadata");
    expect_validation(
        "NUL in metadata",
        store.append("ok", any, vec![nul_metadata]).await,
        |v| *v == ValidationError::NulInJson { field: "metadata" },
    );
    let big = EventData::json("A", &json!({"blob": "z".repeat(2000)})).expect("payload");
    expect_validation("payload over the cap", store.append("ok", any, vec![big]).await, |v| {
        matches!(v, ValidationError::PayloadTooLarge { max: 1024, .. })
    });
    let mixed = vec![
        ev("A", 2),
        EventData::from_json_str("A", r#"["\u0000"]"#).expect("valid JSON"),
    ];
    expect_validation(
        "one bad event among good ones",
        store.append("ok", any, mixed).await,
        |v| matches!(v, ValidationError::NulInJson { .. }),
    );

    // The same checks inside a transaction; the transaction stays usable.
    let mut tx = store.begin().await.expect("begin");
    expect_validation(
        "empty stream id in a transaction",
        tx.append("", any, vec![ev("A", 1)]).await,
        |v| *v == ValidationError::EmptyStreamId,
    );
    let nul = EventData::from_json_str("A", r#""\u0000""#).expect("valid JSON");
    expect_validation("NUL in a transaction", tx.append("ok", any, vec![nul]).await, |v| {
        matches!(v, ValidationError::NulInJson { .. })
    });
    tx.commit().await.expect("commit after rejected input");

    assert_eq!(snapshot(&*store).await, before, "rejected input writes nothing");
    assert_eq!(store.stream_version("ok").await.expect("version"), Some(1));
}

/// An explicit outbox message naming an unknown destination is `UnknownDestination`;
/// a message with bad content is a validation error; neither writes anything, and the
/// transaction stays usable for the rest of its work.
pub async fn outbox_message_validation<H: Harness>(h: &H) {
    let store = h
        .open(StoreOptions::default().destination("hook").max_payload_bytes(1024))
        .await;
    let mut tx = store.begin().await.expect("begin");
    let unknown = OutboxMessage::json("nowhere", "s", "Ping", &json!({})).expect("message");
    match tx.write_outbox(unknown).await {
        Err(Error::UnknownDestination(name)) => assert_eq!(name, "nowhere"),
        other => panic!("expected UnknownDestination, got {other:?}"),
    }
    let nul = OutboxMessage::from_json_str("hook", "s", "Ping", r#"{"a":"\u0000"}"#).expect("valid JSON");
    expect_validation("NUL in a message payload", tx.write_outbox(nul).await, |v| {
        matches!(v, ValidationError::NulInJson { .. })
    });
    let bad_stream = OutboxMessage::json("hook", "", "Ping", &json!({})).expect("message");
    expect_validation("empty message stream id", tx.write_outbox(bad_stream).await, |v| {
        *v == ValidationError::EmptyStreamId
    });
    let no_type = OutboxMessage::json("hook", "s", "", &json!({})).expect("message");
    expect_validation("empty message type", tx.write_outbox(no_type).await, |v| {
        matches!(v, ValidationError::Empty { .. })
    });
    let big = OutboxMessage::json("hook", "s", "Ping", &json!({"blob": "z".repeat(2000)})).expect("message");
    expect_validation("message payload over the cap", tx.write_outbox(big).await, |v| {
        matches!(v, ValidationError::PayloadTooLarge { .. })
    });
    let good = OutboxMessage::json("hook", "s", "Ping", &json!({"ok": true})).expect("message");
    let good_id = good.id;
    assert_eq!(tx.write_outbox(good).await.expect("a valid message"), good_id);
    tx.commit().await.expect("commit");

    let snap = snapshot(&*store).await;
    assert!(snap.events.is_empty());
    assert_eq!(snap.entries, vec![good_id], "only the valid message was written");
    assert!(all_events(&*store).await.is_empty());
}
