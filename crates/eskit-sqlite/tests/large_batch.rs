//! Appends larger than one multi-row insert (`sql::ROWS_PER_INSERT` rows): the events
//! and their outbox entries are written in chunks, in order, with consecutive versions
//! and positions, atomically.

use eskit::{
    EntryFilter, EventData, EventStore, ExpectedVersion, OutboxStore, ReadDirection, RouteFilter, StoreOptions,
};
use eskit_sqlite::SqliteStore;
use serde_json::json;

async fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::builder(dir.path().join("big.db").to_string_lossy().into_owned())
        .options(StoreOptions::default().with_outbox("hook", RouteFilter::all()))
        .open()
        .await
        .expect("open")
}

fn events(n: usize) -> Vec<EventData> {
    (0..n)
        .map(|i| {
            EventData::json("Big", &json!({"i": i, "text": "x".repeat(i % 50)}))
                .expect("event")
                .with_metadata(&json!({"m": i}))
                .expect("metadata")
        })
        .collect()
}

#[tokio::test]
async fn an_append_of_1001_events_is_chunked_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir).await;
    store
        .append("before", ExpectedVersion::Any, events(3))
        .await
        .expect("first append");
    let batch = events(1001);
    let r = store
        .append("big", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("big append");
    assert_eq!((r.first_version, r.last_version, r.outbox_entries), (1, 1001, 1001));
    assert_eq!((r.first_position, r.last_position), (4, 1004));

    let stored = store
        .read_stream("big", 1, 5000, ReadDirection::Forward)
        .await
        .expect("read");
    assert_eq!(stored.len(), 1001);
    for (i, (e, sent)) in stored.iter().zip(&batch).enumerate() {
        assert_eq!(e.stream_version, i as u64 + 1);
        assert_eq!(e.position, 4 + i as i64);
        assert_eq!(e.event_id, sent.id);
        assert_eq!(e.payload, json!({"i": i, "text": "x".repeat(i % 50)}));
        assert_eq!(e.metadata, Some(json!({"m": i})));
    }
    let entries = store
        .list_entries(&EntryFilter {
            stream_id: Some("big".into()),
            limit: Some(5000),
            ..EntryFilter::default()
        })
        .await
        .expect("entries");
    assert_eq!(entries.len(), 1001);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.stream_version, Some(i as u64 + 1), "entries in version order");
        assert_eq!(e.event_id, Some(batch[i].id));
        assert_eq!(
            e.payload.get(),
            batch[i].payload.get(),
            "the caller's payload text, as is"
        );
    }
}

#[tokio::test]
async fn a_chunked_append_rolls_back_as_a_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir).await;
    let mut tx = store.begin().await.expect("begin");
    tx.append("big", ExpectedVersion::NoStream, events(600))
        .await
        .expect("append in a transaction");
    tx.rollback().await.expect("rollback");
    assert_eq!(store.stream_version("big").await.expect("version"), None);
    assert!(store.read_all(0, 10).await.expect("read").is_empty());
    assert!(
        store
            .list_entries(&EntryFilter::default())
            .await
            .expect("entries")
            .is_empty()
    );
}
