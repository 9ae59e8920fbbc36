//! SQLite-specific transactions: appending and writing messages inside the
//! application's own sqlx transaction (`append_in` / `write_outbox_in`, `BEGIN
//! IMMEDIATE`), and the single-writer lock. The backend-independent atomicity checks
//! are in the conformance suite (`eskit_testkit::suite`).

mod common;

use common::{ev, open};
use eskit::{EntryFilter, Error, EventStore, ExpectedVersion, OutboxMessage, OutboxStore, RouteFilter, StoreOptions};
use eskit_sqlite::SqliteStore;
use serde_json::json;
use sqlx::{Connection, SqliteConnection};

fn options() -> StoreOptions {
    StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .destination("emails")
}

async fn create_app_table(store: &SqliteStore) {
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")
        .execute(store.pool())
        .await
        .unwrap();
}

async fn app_write(conn: &mut SqliteConnection, id: &str) {
    sqlx::query("INSERT INTO orders (id) VALUES (?1)")
        .bind(id)
        .execute(conn)
        .await
        .unwrap();
}

async fn app_rows(store: &SqliteStore) -> Vec<String> {
    sqlx::query_scalar("SELECT id FROM orders ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

async fn counts(store: &SqliteStore) -> (usize, usize) {
    let events = store.read_all(0, 1000).await.unwrap().len();
    let entries = store
        .list_entries(&EntryFilter {
            limit: Some(1000),
            ..EntryFilter::default()
        })
        .await
        .unwrap()
        .len();
    (events, entries)
}

#[tokio::test]
async fn the_applications_own_sqlx_transaction() {
    let (store, _dir) = open(options()).await;
    create_app_table(&store).await;

    // Committed: everything is there.
    let mut own = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    app_write(&mut own, "o-1").await;
    let r = store
        .append_in(
            &mut own,
            "order-1",
            ExpectedVersion::NoStream,
            vec![ev("Placed", json!({}))],
        )
        .await
        .unwrap();
    assert_eq!((r.first_version, r.outbox_entries), (1, 1));
    // A failing append inside it leaves the rest untouched.
    let err = store
        .append_in(
            &mut own,
            "order-1",
            ExpectedVersion::NoStream,
            vec![ev("Placed", json!({}))],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err}");
    let id = store
        .write_outbox_in(
            &mut own,
            OutboxMessage::json("emails", "order-1", "SendEmail", &json!({})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(counts(&store).await, (0, 0));
    own.commit().await.unwrap();
    store.notify_relay();
    assert_eq!(counts(&store).await, (1, 2));
    assert_eq!(app_rows(&store).await, vec!["o-1"]);
    let entry = store
        .list_entries(&EntryFilter {
            destination: Some("emails".into()),
            ..EntryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(entry[0].id, id);

    // Rolled back: nothing of it is there.
    let mut own = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    app_write(&mut own, "o-2").await;
    store
        .append_in(
            &mut own,
            "order-2",
            ExpectedVersion::NoStream,
            vec![ev("Placed", json!({}))],
        )
        .await
        .unwrap();
    store
        .write_outbox_in(
            &mut own,
            OutboxMessage::json("emails", "order-2", "SendEmail", &json!({})).unwrap(),
        )
        .await
        .unwrap();
    own.rollback().await.unwrap();
    assert_eq!(counts(&store).await, (1, 2));
    assert_eq!(app_rows(&store).await, vec!["o-1"]);

    // Dropped: the same.
    {
        let mut own = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
        store
            .append_in(
                &mut own,
                "order-3",
                ExpectedVersion::NoStream,
                vec![ev("Placed", json!({}))],
            )
            .await
            .unwrap();
    }
    assert_eq!(counts(&store).await, (1, 2));

    // A plain connection outside a transaction: the append is its own transaction.
    let mut conn = store.pool().acquire().await.unwrap();
    store
        .append_in(
            &mut conn,
            "order-4",
            ExpectedVersion::NoStream,
            vec![ev("Placed", json!({}))],
        )
        .await
        .unwrap();
    assert!(!conn.is_in_transaction());
    drop(conn);
    assert_eq!(counts(&store).await, (2, 3));

    // A separate connection (not from the store's pool) works the same.
    let path = _dir.path().join("eskit.db");
    let mut own_conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mut own = own_conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
    store
        .append_in(
            &mut own,
            "order-5",
            ExpectedVersion::NoStream,
            vec![ev("Placed", json!({}))],
        )
        .await
        .unwrap();
    own.commit().await.unwrap();
    assert_eq!(store.stream_version("order-5").await.unwrap(), Some(1));
}

#[tokio::test]
async fn writers_wait_for_an_open_transaction() {
    let (store, _dir) = open(options()).await;
    let mut tx = store.begin().await.unwrap();
    tx.append("s", ExpectedVersion::NoStream, vec![ev("A", json!(1))])
        .await
        .unwrap();
    let other = store.clone();
    let waiter = tokio::spawn(async move {
        other
            .append("s", ExpectedVersion::Exact(1), vec![ev("B", json!(2))])
            .await
    });
    // Reads are not blocked by the open write transaction.
    assert_eq!(store.stream_version("s").await.unwrap(), None);
    tx.commit().await.unwrap();
    let r = waiter.await.unwrap().unwrap();
    assert_eq!(r.first_version, 2);
}
