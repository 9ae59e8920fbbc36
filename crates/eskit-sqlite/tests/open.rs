//! Opening a SQLite store: the database file, WAL mode, the migrations table, a
//! foreign or edited schema version, and an in-memory database.

mod common;

use common::{ev, open};
use eskit::{EntryFilter, Error, EventStore, ExpectedVersion, OutboxStore, RouteFilter, StoreOptions};
use eskit_sqlite::SqliteStore;
use serde_json::json;

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
