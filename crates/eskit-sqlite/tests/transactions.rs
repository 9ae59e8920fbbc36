//! Atomicity: events, outbox entries and the application's own writes commit or roll
//! back together, through `SqliteStore::begin` and through the application's own sqlx
//! transaction.

mod common;

use std::time::Duration;

use common::{ev, open};
use eskit::{
    EntryFilter, Error, EventStore, ExpectedVersion, OutboxMessage, OutboxStore, RouteFilter, StoreOptions,
    StoreTransaction, TransactionalStore,
};
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
async fn commit_keeps_events_entries_and_app_rows_together() {
    let (store, _dir) = open(options()).await;
    create_app_table(&store).await;
    let wakeup = store.wakeup();
    let notified = wakeup.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();

    let mut tx = store.begin().await.unwrap();
    tx.append(
        "order-1",
        ExpectedVersion::NoStream,
        vec![ev("Placed", json!({"n": 1}))],
    )
    .await
    .unwrap();
    tx.append(
        "order-2",
        ExpectedVersion::NoStream,
        vec![ev("Placed", json!({"n": 2}))],
    )
    .await
    .unwrap();
    let msg = OutboxMessage::json("emails", "order-1", "SendEmail", &json!({"to": "a@example.com"})).unwrap();
    let msg_id = msg.id;
    assert_eq!(tx.write_outbox(msg).await.unwrap(), msg_id);
    app_write(tx.conn(), "order-1").await;

    // Not visible to other connections before the commit.
    assert_eq!(counts(&store).await, (0, 0));
    tx.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("commit wakes the relay");

    assert_eq!(counts(&store).await, (2, 3));
    assert_eq!(app_rows(&store).await, vec!["order-1"]);
    let emails = store
        .list_entries(&EntryFilter {
            destination: Some("emails".into()),
            ..EntryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].id, msg_id);
    assert_eq!(emails[0].event_type, "SendEmail");
    assert_eq!(emails[0].event_id, None);
    assert_eq!(emails[0].partition, eskit::partition_of("order-1", 16));
}

#[tokio::test]
async fn rollback_and_drop_leave_nothing() {
    let (store, _dir) = open(options()).await;
    create_app_table(&store).await;

    let mut tx = store.begin().await.unwrap();
    tx.append("order-1", ExpectedVersion::Any, vec![ev("Placed", json!({}))])
        .await
        .unwrap();
    tx.write_outbox(OutboxMessage::json("emails", "order-1", "SendEmail", &json!({})).unwrap())
        .await
        .unwrap();
    app_write(tx.conn(), "rolled-back").await;
    tx.rollback().await.unwrap();

    {
        let mut tx = store.begin().await.unwrap();
        tx.append("order-1", ExpectedVersion::Any, vec![ev("Placed", json!({}))])
            .await
            .unwrap();
        app_write(tx.conn(), "dropped").await;
        // Dropped without commit.
    }

    // Through the trait objects too.
    let mut tx = TransactionalStore::begin(&store).await.unwrap();
    StoreTransaction::append(&mut tx, "order-1", ExpectedVersion::Any, vec![ev("Placed", json!({}))])
        .await
        .unwrap();
    StoreTransaction::rollback(tx).await.unwrap();

    assert_eq!(counts(&store).await, (0, 0));
    assert!(app_rows(&store).await.is_empty());
    assert_eq!(store.stream_version("order-1").await.unwrap(), None);

    // The store still works afterwards (the write lock and connection were released).
    store
        .append("order-1", ExpectedVersion::NoStream, vec![ev("Placed", json!({}))])
        .await
        .unwrap();
    assert_eq!(counts(&store).await, (1, 1));
}

#[tokio::test]
async fn a_failed_append_inside_a_transaction_leaves_the_rest_of_it_intact() {
    let (store, _dir) = open(options()).await;
    create_app_table(&store).await;
    let mut tx = store.begin().await.unwrap();
    tx.append("a", ExpectedVersion::NoStream, vec![ev("A", json!(1))])
        .await
        .unwrap();
    let err = tx
        .append("a", ExpectedVersion::NoStream, vec![ev("A", json!(2))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::WrongExpectedVersion { actual: Some(1), .. }),
        "{err}"
    );
    let err = tx
        .write_outbox(OutboxMessage::json("nowhere", "a", "T", &json!({})).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownDestination(ref d) if d == "nowhere"),
        "{err}"
    );
    app_write(tx.conn(), "kept").await;
    tx.commit().await.unwrap();
    assert_eq!(counts(&store).await, (1, 1));
    assert_eq!(app_rows(&store).await, vec!["kept"]);
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

#[tokio::test]
async fn explicit_messages_are_validated() {
    let (store, _dir) = open(options().max_payload_bytes(64)).await;
    let mut tx = store.begin().await.unwrap();
    let cases = [
        OutboxMessage::json("unknown", "s", "T", &json!({})).unwrap(),
        OutboxMessage::json("emails", "", "T", &json!({})).unwrap(),
        OutboxMessage::json("emails", "s", "", &json!({})).unwrap(),
        OutboxMessage::json("emails", "s", "T", &json!("x".repeat(100))).unwrap(),
        OutboxMessage::from_json_str("emails", "s", "T", r#"{"a":"\u0000"}"#).unwrap(),
    ];
    for (i, msg) in cases.into_iter().enumerate() {
        let err = tx.write_outbox(msg).await.unwrap_err();
        if i == 0 {
            assert!(matches!(err, Error::UnknownDestination(_)), "{err}");
        } else {
            assert!(err.is_validation(), "{err}");
        }
    }
    tx.commit().await.unwrap();
    assert_eq!(counts(&store).await, (0, 0));
}
