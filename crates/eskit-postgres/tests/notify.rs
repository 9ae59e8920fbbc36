//! LISTEN/NOTIFY wakeups: one notification per committing transaction (never per row,
//! none for a rollback), and a listener that reconnects when its connection is killed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestSchema, hook_options};
use eskit::{EventData, EventStore, ExpectedVersion, OutboxMessage, OutboxStore};
use serde_json::json;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

const DEADLINE: Duration = Duration::from_secs(20);
const MARKER: &str = "marker";

fn events(n: u64) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::json("Happened", &json!({ "n": i })).unwrap())
        .collect()
}

/// Sends the marker notification from another session.
async fn send_marker(conn: &mut sqlx::PgConnection, channel: &str) {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(MARKER)
        .execute(conn)
        .await
        .unwrap();
}

/// Receives notifications until the marker arrives; returns the others' payloads.
async fn notifications_before_marker(listener: &mut PgListener) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let n = tokio::time::timeout(DEADLINE, listener.recv())
            .await
            .expect("the marker notification arrives")
            .expect("listener");
        if n.payload() == MARKER {
            return seen;
        }
        seen.push(n.payload().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_transaction_however_many_rows() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(16).destination("emails")).await;
    let mut listener = PgListener::connect(&common::url()).await.unwrap();
    listener.listen(store.notify_channel()).await.unwrap();
    let mut marker_conn = schema.connect().await;
    // A rolled-back transaction with entries: no notification.
    let mut tx = store.begin().await.unwrap();
    tx.append("gone", ExpectedVersion::Any, events(10)).await.unwrap();
    tx.rollback().await.unwrap();
    send_marker(&mut marker_conn, store.notify_channel()).await;
    assert_eq!(notifications_before_marker(&mut listener).await.len(), 0);

    // One transaction: three appends of 100 events each and five explicit messages
    // (eight insert statements, 305 rows) → one notification.
    let mut tx = store.begin().await.unwrap();
    for s in ["a", "b", "c"] {
        tx.append(s, ExpectedVersion::Any, events(100)).await.unwrap();
    }
    for i in 0..5 {
        let m = OutboxMessage::json("emails", format!("m-{i}"), "Mail", &json!({ "i": i })).unwrap();
        tx.write_outbox(m).await.unwrap();
    }
    tx.commit().await.unwrap();
    send_marker(&mut marker_conn, store.notify_channel()).await;
    assert_eq!(
        notifications_before_marker(&mut listener).await.len(),
        1,
        "one NOTIFY per committing transaction"
    );

    // An append outside an explicit transaction: one as well.
    store.append("d", ExpectedVersion::Any, events(250)).await.unwrap();
    send_marker(&mut marker_conn, store.notify_channel()).await;
    assert_eq!(notifications_before_marker(&mut listener).await.len(), 1);

    // The application's own transaction, through append_in / write_outbox_in: one.
    let mut own = store.pool().begin().await.unwrap();
    store
        .append_in(&mut own, "e", ExpectedVersion::Any, events(50))
        .await
        .unwrap();
    let m = OutboxMessage::json("emails", "e", "Mail", &json!({})).unwrap();
    store.write_outbox_in(&mut own, m).await.unwrap();
    own.commit().await.unwrap();
    send_marker(&mut marker_conn, store.notify_channel()).await;
    assert_eq!(notifications_before_marker(&mut listener).await.len(), 1);

    // Three transactions: three notifications.
    for s in ["f", "g", "h"] {
        store.append(s, ExpectedVersion::Any, events(3)).await.unwrap();
    }
    send_marker(&mut marker_conn, store.notify_channel()).await;
    assert_eq!(notifications_before_marker(&mut listener).await.len(), 3);
}

/// The backend pid of this store's LISTEN connection (other than `not`), once it listens.
async fn listener_pid(observer: &mut sqlx::PgConnection, channel: &str, not: Option<i32>) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = 'eskit-listener' AND query LIKE '%LISTEN%' \
               AND position($1 in query) > 0 AND ($2::int IS NULL OR pid <> $2)",
        )
        .bind(format!("\"{channel}\""))
        .bind(not)
        .fetch_optional(&mut *observer)
        .await
        .unwrap();
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a commit by another store (another process's pool) wakes `wakeup`.
async fn commit_elsewhere_wakes(wakeup: &Arc<Notify>, other: &eskit_postgres::PgStore, n: u64) -> bool {
    let notified = wakeup.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    other
        .append(&format!("elsewhere-{n}"), ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), notified).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_reconnects_after_its_backend_is_terminated() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(4)).await;
    // Another handle on the schema, as another process would have: its commits reach
    // this store only through NOTIFY.
    let other = schema.open(hook_options(4)).await;
    let wakeup = store.wakeup();
    let mut observer = schema.connect().await;
    let channel = store.notify_channel().to_string();

    let first = listener_pid(&mut observer, &channel, None)
        .await
        .expect("the store listens once the relay asks for wakeups");
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        n += 1;
        if commit_elsewhere_wakes(&wakeup, &other, n).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a commit elsewhere wakes this store"
        );
    }

    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert!(terminated);
    let second = listener_pid(&mut observer, &channel, Some(first))
        .await
        .expect("the listener reconnects");
    assert_ne!(first, second);

    // Wakeups resume: several in a row (the listener's own wake-up after reconnecting
    // can account for at most one of them).
    let mut consecutive = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let resumed = loop {
        n += 1;
        if commit_elsewhere_wakes(&wakeup, &other, n).await {
            consecutive += 1;
        } else {
            consecutive = 0;
        }
        if consecutive >= 3 {
            break true;
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
    };
    assert!(resumed, "wakeups resume after the listener's connection was killed");
}
