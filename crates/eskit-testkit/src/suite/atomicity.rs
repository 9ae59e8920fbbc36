//! Transactions: events, outbox entries and the application's own writes commit
//! together or not at all.

use eskit::{
    Error, EventStore, ExpectedVersion, OutboxMessage, RouteFilter, StoreOptions, StoreTransaction, TransactionalStore,
};
use serde_json::json;
use uuid::Uuid;

use super::support::{all_events, ev, snapshot};
use crate::Harness;

fn options() -> StoreOptions {
    StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .destination("mail")
}

/// Writes two streams, an explicit message and an application row into `tx`; returns
/// the message id.
async fn fill<H: Harness>(h: &H, tx: &mut <H::Store as TransactionalStore>::Transaction, key: &str) -> Uuid {
    let a = tx
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![ev("OrderPlaced", 1), ev("OrderPaid", 2)],
        )
        .await
        .expect("append order-1 in tx");
    assert_eq!((a.first_version, a.last_version, a.outbox_entries), (1, 2, 2));
    let b = tx
        .append("invoice-1", ExpectedVersion::Any, vec![ev("InvoiceIssued", 1)])
        .await
        .expect("append invoice-1 in tx");
    assert_eq!(b.outbox_entries, 1);
    // A later append to the same stream in the same transaction sees the first.
    tx.append("order-1", ExpectedVersion::Exact(2), vec![ev("OrderShipped", 3)])
        .await
        .expect("append order-1 again in tx");
    let message =
        OutboxMessage::json("mail", "customer-7", "SendReceipt", &json!({"to": "a@example.com"})).expect("message");
    let id = message.id;
    assert_eq!(tx.write_outbox(message).await.expect("write_outbox"), id);
    h.app_write(tx, key).await;
    id
}

async fn assert_nothing<H: Harness>(h: &H, store: &H::Store, key: &str, what: &str) {
    let snap = snapshot(store).await;
    assert!(snap.events.is_empty(), "{what}: no events, found {}", snap.events.len());
    assert!(
        snap.entries.is_empty(),
        "{what}: no outbox entries, found {}",
        snap.entries.len()
    );
    assert_eq!(store.stream_version("order-1").await.expect("version"), None, "{what}");
    assert!(!h.app_row_exists(store, key).await, "{what}: no application row");
}

/// A rolled-back transaction leaves no events, no outbox entries and no application row.
pub async fn rollback_leaves_nothing<H: Harness>(h: &H) {
    let store = h.open(options()).await;
    let mut tx = store.begin().await.expect("begin");
    fill(h, &mut tx, "rolled-back").await;
    tx.rollback().await.expect("rollback");
    assert_nothing(h, &store, "rolled-back", "after rollback").await;
}

/// A transaction dropped without commit leaves nothing, and the store stays usable.
pub async fn drop_without_commit_leaves_nothing<H: Harness>(h: &H) {
    let store = h.open(options()).await;
    {
        let mut tx = store.begin().await.expect("begin");
        fill(h, &mut tx, "dropped").await;
        drop(tx);
    }
    assert_nothing(h, &store, "dropped", "after drop").await;
    // The next writer is not blocked by the abandoned transaction.
    let mut tx = store.begin().await.expect("begin after a dropped transaction");
    fill(h, &mut tx, "after-drop").await;
    tx.commit().await.expect("commit after a dropped transaction");
    assert!(!h.app_row_exists(&store, "dropped").await);
    assert!(h.app_row_exists(&store, "after-drop").await);
}

/// A committed transaction keeps all of it: events of both streams, route entries,
/// the explicit message and the application row. Until the commit none of it is
/// visible outside the transaction (and reading does not wait for it).
pub async fn commit_keeps_everything<H: Harness>(h: &H) {
    let store = h.open(options()).await;
    let mut tx = store.begin().await.expect("begin");
    let message_id = fill(h, &mut tx, "committed").await;
    assert_nothing(h, &store, "committed", "before the commit").await;
    tx.commit().await.expect("commit");

    let events = all_events(&*store).await;
    let got: Vec<(&str, u64, &str)> = events
        .iter()
        .map(|e| (e.stream_id.as_str(), e.stream_version, e.event_type.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("order-1", 1, "OrderPlaced"),
            ("order-1", 2, "OrderPaid"),
            ("invoice-1", 1, "InvoiceIssued"),
            ("order-1", 3, "OrderShipped"),
        ]
    );
    let hook = super::support::entries_of(&*store, "hook").await;
    assert_eq!(hook.len(), 4, "one route entry per event");
    let mail = super::support::entries_of(&*store, "mail").await;
    assert_eq!(mail.iter().map(|e| e.id).collect::<Vec<_>>(), vec![message_id]);
    assert!(
        h.app_row_exists(&store, "committed").await,
        "the application row committed"
    );
    assert_eq!(store.stream_version("order-1").await.expect("version"), Some(3));
}

/// A conflict inside a transaction fails that append only: what the transaction wrote
/// before it stays (a conflict with the transaction's own append reports that version),
/// as after a rejected message; the rest commits.
pub async fn conflict_in_transaction_writes_nothing<H: Harness>(h: &H) {
    let store = h.open(options()).await;
    store
        .append("s", ExpectedVersion::Any, vec![ev("A", 1)])
        .await
        .expect("seed");
    let mut tx = store.begin().await.expect("begin");
    h.app_write(&mut tx, "before-conflict").await;
    tx.append("u", ExpectedVersion::NoStream, vec![ev("C", 1)])
        .await
        .expect("append u");
    match tx.append("s", ExpectedVersion::NoStream, vec![ev("A", 2)]).await {
        Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(1)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match tx.append("u", ExpectedVersion::NoStream, vec![ev("C", 2)]).await {
        Err(Error::WrongExpectedVersion { actual, .. }) => {
            assert_eq!(actual, Some(1), "the transaction's own append counts")
        }
        other => panic!("expected a conflict with the transaction's own append, got {other:?}"),
    }
    let unknown = OutboxMessage::json("nowhere", "u", "Ping", &json!({})).expect("message");
    assert!(
        matches!(tx.write_outbox(unknown).await, Err(Error::UnknownDestination(_))),
        "a message to an unknown destination is refused"
    );
    tx.append("t", ExpectedVersion::NoStream, vec![ev("B", 1)])
        .await
        .expect("the transaction stays usable");
    h.app_write(&mut tx, "after-conflict").await;
    tx.commit().await.expect("commit");
    let events = all_events(&*store).await;
    assert_eq!(
        events
            .iter()
            .map(|e| (e.stream_id.as_str(), e.stream_version))
            .collect::<Vec<_>>(),
        vec![("s", 1), ("u", 1), ("t", 1)],
        "the failed appends wrote nothing, the work before them stayed"
    );
    assert_eq!(super::support::entries_of(&*store, "hook").await.len(), 3);
    assert!(super::support::entries_of(&*store, "mail").await.is_empty());
    assert!(h.app_row_exists(&store, "before-conflict").await);
    assert!(h.app_row_exists(&store, "after-conflict").await);
}
