//! Event store behaviour of the SQLite backend: open, append, read, versions,
//! idempotency, validation, concurrency.

mod common;

use std::collections::BTreeSet;

use common::{ev, open, reopen};
use eskit::{
    EntryFilter, Error, EventData, EventStore, ExpectedVersion, Limits, OutboxStore, ReadDirection, RouteFilter,
    StoreOptions, ValidationError,
};
use eskit_sqlite::SqliteStore;
use serde_json::json;
use uuid::Uuid;

async fn outbox_count(store: &SqliteStore) -> usize {
    store
        .list_entries(&EntryFilter {
            limit: Some(100_000),
            ..EntryFilter::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn open_creates_the_file_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub.db");
    assert!(!path.exists());
    let store = SqliteStore::builder(path.to_string_lossy().into_owned())
        .open()
        .await
        .unwrap();
    assert!(path.exists(), "opening a plain path creates the file");
    store
        .append("s", ExpectedVersion::Any, vec![ev("A", json!({}))])
        .await
        .unwrap();

    // Own migrations table, not sqlx's default.
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(tables.contains(&"eskit_migrations".to_string()), "{tables:?}");
    assert!(!tables.contains(&"_sqlx_migrations".to_string()), "{tables:?}");
    for t in ["events", "streams", "outbox", "outbox_leases"] {
        assert!(tables.contains(&t.to_string()), "missing {t}: {tables:?}");
    }
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(journal.to_lowercase(), "wal");

    // Reopening through a URL finds the data and does not migrate again.
    let again = SqliteStore::builder(format!("sqlite://{}", path.display()))
        .open()
        .await
        .unwrap();
    assert_eq!(again.stream_version("s").await.unwrap(), Some(1));
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM eskit_migrations")
        .fetch_one(again.pool())
        .await
        .unwrap();
    assert_eq!(applied, 2);
}

#[tokio::test]
async fn opening_a_database_with_a_foreign_schema_version_fails() {
    let (store, dir) = open(StoreOptions::default()).await;
    sqlx::query(
        "INSERT INTO eskit_migrations (version, description, checksum, applied_at) VALUES (99, 'future', 'x', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let path = dir.path().join("eskit.db");
    let err = SqliteStore::builder(path.to_string_lossy().into_owned())
        .open()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(ref m) if m.contains("99")), "{err}");

    sqlx::query("DELETE FROM eskit_migrations WHERE version = 99")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE eskit_migrations SET checksum = 'edited' WHERE version = 1")
        .execute(store.pool())
        .await
        .unwrap();
    let err = SqliteStore::builder(path.to_string_lossy().into_owned())
        .open()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(ref m) if m.contains("differs")), "{err}");
}

#[tokio::test]
async fn in_memory_store_works() {
    let store = SqliteStore::builder("sqlite::memory:")
        .with_outbox("hook", RouteFilter::all())
        .open()
        .await
        .unwrap();
    let r = store
        .append(
            "s",
            ExpectedVersion::NoStream,
            vec![ev("A", json!(1)), ev("B", json!(2))],
        )
        .await
        .unwrap();
    assert_eq!((r.first_version, r.last_version, r.outbox_entries), (1, 2, 2));
    let mut tx = store.begin().await.unwrap();
    tx.append("s", ExpectedVersion::Exact(2), vec![ev("C", json!(3))])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.read_all(0, 10).await.unwrap().len(), 3);
    assert_eq!(outbox_count(&store).await, 3);
}

#[tokio::test]
async fn append_and_read() {
    let (store, _dir) = open(StoreOptions::default()).await;
    let a = ev("Opened", json!({"n": 1}))
        .with_metadata(&json!({"traceparent": "00-abc-def-01"}))
        .unwrap();
    let r = store
        .append(
            "acc-1",
            ExpectedVersion::NoStream,
            vec![a.clone(), ev("Deposited", json!({"n": 2}))],
        )
        .await
        .unwrap();
    assert_eq!((r.first_version, r.last_version), (1, 2));
    assert_eq!((r.first_position, r.last_position), (1, 2));
    assert!(!r.idempotent_repeat);
    store
        .append("acc-2", ExpectedVersion::Any, vec![ev("Opened", json!({}))])
        .await
        .unwrap();
    let r = store
        .append(
            "acc-1",
            ExpectedVersion::Exact(2),
            vec![ev("Withdrawn", json!({"n": 3}))],
        )
        .await
        .unwrap();
    assert_eq!((r.first_version, r.first_position), (3, 4));

    let fwd = store
        .read_stream("acc-1", 1, 100, ReadDirection::Forward)
        .await
        .unwrap();
    assert_eq!(fwd.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(fwd[0].event_id, a.id);
    assert_eq!(fwd[0].payload, json!({"n": 1}));
    assert_eq!(fwd[0].metadata, Some(json!({"traceparent": "00-abc-def-01"})));
    assert_eq!(fwd[1].metadata, None);
    assert!(
        (time::OffsetDateTime::now_utc() - fwd[0].recorded_at)
            .whole_seconds()
            .abs()
            < 60
    );

    let from2 = store.read_stream("acc-1", 2, 1, ReadDirection::Forward).await.unwrap();
    assert_eq!(from2.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![2]);
    let back = store
        .read_stream("acc-1", u64::MAX, 2, ReadDirection::Backward)
        .await
        .unwrap();
    assert_eq!(back.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![3, 2]);
    let back1 = store
        .read_stream("acc-1", 1, 10, ReadDirection::Backward)
        .await
        .unwrap();
    assert_eq!(back1.len(), 1);

    let all = store.read_all(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(all[2].stream_id, "acc-2");
    let page = store.read_all(3, 1).await.unwrap();
    assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), vec![3]);

    assert_eq!(store.stream_version("acc-1").await.unwrap(), Some(3));
    assert_eq!(store.stream_version("nope").await.unwrap(), None);
    assert!(
        store
            .read_stream("nope", 1, 10, ReadDirection::Forward)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn expected_version_conflicts_carry_the_actual_version_and_write_nothing() {
    let (store, _dir) = open(StoreOptions::default().with_outbox("hook", RouteFilter::all())).await;
    let err = store
        .append("s", ExpectedVersion::StreamExists, vec![ev("A", json!(1))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { actual: None, .. }), "{err}");
    let err = store
        .append("s", ExpectedVersion::Exact(3), vec![ev("A", json!(1))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { actual: None, .. }), "{err}");
    // Exact(0) is the version of a stream that does not exist.
    store
        .append(
            "s",
            ExpectedVersion::Exact(0),
            vec![ev("A", json!(1)), ev("A", json!(2))],
        )
        .await
        .unwrap();
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(1),
        ExpectedVersion::Exact(3),
    ] {
        let err = store.append("s", expected, vec![ev("B", json!(1))]).await.unwrap_err();
        match err {
            Error::WrongExpectedVersion {
                stream,
                expected: e,
                actual,
            } => {
                assert_eq!(stream, "s");
                assert_eq!(e, expected);
                assert_eq!(actual, Some(2));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(store.stream_version("s").await.unwrap(), Some(2));
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 2);
    assert_eq!(outbox_count(&store).await, 2);
    store
        .append("s", ExpectedVersion::StreamExists, vec![ev("B", json!(1))])
        .await
        .unwrap();
}

#[tokio::test]
async fn idempotent_repeat_returns_the_original_result_and_writes_nothing() {
    let (store, _dir) = open(StoreOptions::default().with_outbox("hook", RouteFilter::all())).await;
    store
        .append("other", ExpectedVersion::Any, vec![ev("X", json!(0))])
        .await
        .unwrap();
    let a = EventData::from_json_str("A", r#"{"a": 1, "b": [1, 2]}"#).unwrap();
    let b = ev("B", json!({"x": "y"})).with_metadata(&json!({"m": 1})).unwrap();
    let first = store
        .append("s", ExpectedVersion::NoStream, vec![a.clone(), b.clone()])
        .await
        .unwrap();
    assert!(!first.idempotent_repeat);

    // Same ids, same content (different whitespace and key order): a no-op, even with
    // an expected version that no longer holds.
    let a_again = EventData::from_json_str("A", r#"{ "b":[1,2],"a":1 }"#)
        .unwrap()
        .with_id(a.id);
    let repeat = store
        .append("s", ExpectedVersion::NoStream, vec![a_again, b.clone()])
        .await
        .unwrap();
    assert!(repeat.idempotent_repeat);
    assert_eq!(
        (
            repeat.first_version,
            repeat.last_version,
            repeat.first_position,
            repeat.last_position,
            repeat.outbox_entries
        ),
        (
            first.first_version,
            first.last_version,
            first.first_position,
            first.last_position,
            first.outbox_entries
        )
    );
    // Inside a transaction too.
    let mut tx = store.begin().await.unwrap();
    let r = tx
        .append("s", ExpectedVersion::Any, vec![a.clone(), b.clone()])
        .await
        .unwrap();
    assert!(r.idempotent_repeat);
    tx.commit().await.unwrap();

    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 3);
    assert_eq!(outbox_count(&store).await, 3);
    assert_eq!(store.stream_version("s").await.unwrap(), Some(2));

    // Same id, different payload / type / metadata.
    let changed = [
        EventData::from_json_str("A", r#"{"a": 2, "b": [1, 2]}"#)
            .unwrap()
            .with_id(a.id),
        EventData::from_json_str("A2", r#"{"a": 1, "b": [1, 2]}"#)
            .unwrap()
            .with_id(a.id),
        ev("B", json!({"x": "y"})).with_id(b.id),
    ];
    for event in changed {
        let id = event.id;
        let err = store.append("s", ExpectedVersion::Any, vec![event]).await.unwrap_err();
        assert!(
            matches!(err, Error::IdempotencyConflict { event_id } if event_id == id),
            "{err}"
        );
    }
    // Same id in another stream.
    let err = store
        .append("s2", ExpectedVersion::Any, vec![a.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::IdempotencyConflict { event_id } if event_id == a.id),
        "{err}"
    );
    // Partial overlap: one known id, one new.
    let err = store
        .append("s", ExpectedVersion::Any, vec![a.clone(), ev("C", json!(1))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IdempotencyConflict { .. }), "{err}");

    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 3);
    assert_eq!(outbox_count(&store).await, 3);
    assert_eq!(store.stream_version("s2").await.unwrap(), None);
}

#[tokio::test]
async fn invalid_input_is_rejected_before_anything_is_written() {
    let options = StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .limits(Limits {
            max_payload_bytes: 100,
            ..Limits::default()
        });
    let (store, _dir) = open(options).await;
    let nul = EventData::from_json_str("A", r#"{"a": "x\u0000y"}"#).unwrap();
    let big = ev("A", json!("x".repeat(200)));
    let dup = ev("A", json!(1));
    let long = "x".repeat(300);
    let cases: Vec<(&str, Vec<EventData>)> = vec![
        ("", vec![ev("A", json!(1))]),
        ("bad\nstream", vec![ev("A", json!(1))]),
        (&long, vec![ev("A", json!(1))]),
        ("s", vec![]),
        ("s", vec![ev("A", json!(1)), nul]),
        ("s", vec![ev("A", json!(1)), big]),
        ("s", vec![dup.clone(), dup]),
        ("s", vec![ev("", json!(1))]),
    ];
    for (stream, events) in cases {
        let err = store
            .append(stream, ExpectedVersion::Any, events.clone())
            .await
            .unwrap_err();
        assert!(err.is_validation(), "{err}");
        let mut tx = store.begin().await.unwrap();
        let err = tx.append(stream, ExpectedVersion::Any, events).await.unwrap_err();
        assert!(err.is_validation(), "{err}");
        tx.commit().await.unwrap();
    }
    assert!(matches!(
        store.append("", ExpectedVersion::Any, vec![ev("A", json!(1))]).await,
        Err(Error::Validation(ValidationError::EmptyStreamId))
    ));
    assert!(store.read_all(0, 100).await.unwrap().is_empty());
    assert_eq!(outbox_count(&store).await, 0);
}

#[tokio::test]
async fn large_appends_are_written_in_bulk_and_in_order() {
    let options = StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .with_outbox("evens", RouteFilter::all().predicate(|_, e| e.event_type == "Even"));
    let (store, _dir) = open(options).await;
    let events: Vec<EventData> = (0..5000)
        .map(|i| ev(if i % 2 == 0 { "Even" } else { "Odd" }, json!({"i": i})))
        .collect();
    let r = store.append("big", ExpectedVersion::NoStream, events).await.unwrap();
    assert_eq!((r.first_version, r.last_version, r.outbox_entries), (1, 5000, 7500));
    let read = store
        .read_stream("big", 1, 10_000, ReadDirection::Forward)
        .await
        .unwrap();
    assert_eq!(read.len(), 5000);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.stream_version, i as u64 + 1);
        assert_eq!(e.payload, json!({"i": i}));
        assert_eq!(e.position, i as i64 + 1);
    }
    let entries = store
        .list_entries(&EntryFilter {
            limit: Some(10_000),
            ..EntryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 7500);
    // Entries follow event order, and route order within an event.
    let versions: Vec<(u64, &str)> = entries
        .iter()
        .map(|e| (e.stream_version.unwrap(), e.destination.as_str()))
        .collect();
    let mut sorted = versions.clone();
    sorted.sort_by_key(|(v, d)| (*v, *d != "hook"));
    assert_eq!(versions, sorted);
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn concurrent_appends_to_one_stream_serialize() {
    let (store, _dir) = open(StoreOptions::default()).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                store
                    .append("shared", ExpectedVersion::Any, vec![ev("A", json!({"t": t, "i": i}))])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read = store
        .read_stream("shared", 1, 1000, ReadDirection::Forward)
        .await
        .unwrap();
    assert_eq!(
        read.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (1..=160).collect::<Vec<_>>()
    );

    // Optimistic concurrency: of several writers expecting the same version, one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append("shared", ExpectedVersion::Exact(160), vec![ev("B", json!({}))])
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::WrongExpectedVersion { actual: Some(161), .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn two_stores_on_one_file_share_the_data_under_concurrent_writes() {
    let options = StoreOptions::default().with_outbox("hook", RouteFilter::all());
    let (a, dir) = open(options.clone()).await;
    let b = reopen(&dir, options).await;
    let mut tasks = Vec::new();
    for (n, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                store
                    .append(
                        &format!("s{}", i % 5),
                        ExpectedVersion::Any,
                        vec![ev("A", json!({"n": n, "i": i}))],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = b.read_all(0, 1000).await.unwrap();
    assert_eq!(all.len(), 100);
    let ids: BTreeSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 100);
    for s in 0..5 {
        let read = a
            .read_stream(&format!("s{s}"), 1, 100, ReadDirection::Forward)
            .await
            .unwrap();
        assert_eq!(
            read.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
    }
    assert_eq!(outbox_count(&a).await, 100);
}
