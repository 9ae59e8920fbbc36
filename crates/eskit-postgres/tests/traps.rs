//! The three PostgreSQL outbox traps (see docs/postgres.md), each with a test that fails
//! on a relay or store that falls into it:
//!
//! 1. Skips: a "delivered everything up to id N" watermark misses a row whose
//!    transaction drew a lower id but committed later.
//! 2. Stalls: gating reads on the oldest running transaction (`pg_snapshot_xmin`)
//!    stops all delivery while any write transaction stays open.
//! 3. Xid order: ordering by transaction id instead of a per-stream commit order
//!    delivers a stream's later version first when its transaction started earlier.
//!
//! All entries live in one partition, so one relay worker sees them all in one scan.

mod common;

use std::time::Duration;

use common::{Sink, TestSchema, all_entries, hook_options, relay_config, start_relay};
use eskit::{EventData, EventStore, ExpectedVersion, OutboxMessage};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(20);

fn ev(n: u64) -> EventData {
    EventData::json("Happened", &json!({ "n": n })).unwrap()
}

/// Entry ids of a stream's entries, in seq order.
async fn entry_ids(store: &eskit_postgres::PgStore, stream: &str) -> Vec<(Uuid, i64)> {
    all_entries(store, "hook")
        .await
        .into_iter()
        .filter(|e| e.stream_id == stream)
        .map(|e| (e.id, e.seq))
        .collect()
}

/// Whether a session is idle in transaction and holds a transaction id (so it pins the
/// xmin horizon for everyone).
async fn idle_in_transaction_with_xid(observer: &mut PgConnection, pid: i32) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT state = 'idle in transaction' AND backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = $1",
    )
    .bind(pid)
    .fetch_optional(observer)
    .await
    .unwrap()
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap1_late_commit_with_lower_seq_is_delivered() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1)).await;
    let sink = Sink::new();
    let relay = start_relay(&store, &sink, relay_config("r1"));

    // Session A draws the lower seq, then stays open.
    let mut conn_a = schema.connect().await;
    let mut tx_a = conn_a.begin().await.unwrap();
    store
        .append_in(&mut tx_a, "late", ExpectedVersion::NoStream, vec![ev(1)])
        .await
        .unwrap();

    // Session B draws a higher seq and commits first; the relay delivers it (and more
    // after it), so its scan position moves past A's seq.
    let mut conn_b = schema.connect().await;
    let mut tx_b = conn_b.begin().await.unwrap();
    store
        .append_in(&mut tx_b, "early", ExpectedVersion::NoStream, vec![ev(2)])
        .await
        .unwrap();
    tx_b.commit().await.unwrap();
    for i in 0..20 {
        store
            .append(&format!("more-{i}"), ExpectedVersion::Any, vec![ev(i)])
            .await
            .unwrap();
    }
    let first_wave: Vec<Uuid> = all_entries(&store, "hook").await.iter().map(|e| e.id).collect();
    assert_eq!(first_wave.len(), 21, "A's entry is not visible before it commits");
    assert!(
        sink.wait_delivered(&first_wave, DEADLINE).await,
        "entries committed after the open transaction were delivered"
    );

    // A commits last, with the lowest seq of all.
    tx_a.commit().await.unwrap();
    let late = entry_ids(&store, "late").await;
    let early = entry_ids(&store, "early").await;
    assert!(late[0].1 < early[0].1, "the late commit drew the lower seq");
    assert!(
        sink.wait_delivered(&[late[0].0], DEADLINE).await,
        "an entry that committed after higher seqs were delivered must still be delivered (no skip)"
    );
    relay.shutdown().await;
}

/// Trap 1 behind a backlog: the periodic re-scan from the oldest pending entry must not
/// stop at its first page. A failing stream with more pending entries than a batch fills
/// that page; a late commit further on (below the fast path's position) must still be
/// found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap1_late_commit_behind_a_parked_backlog_is_delivered() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1)).await;
    let sink = Sink::new();
    sink.fail_stream("poison");
    // The failing stream's 50 entries are the oldest of the partition: more than a batch.
    for round in 0..5 {
        let events: Vec<EventData> = (0..10).map(|i| ev(round * 10 + i)).collect();
        store.append("poison", ExpectedVersion::Any, events).await.unwrap();
    }
    let relay = start_relay(&store, &sink, relay_config("r1").batch_size(20));
    assert!(
        common::wait_until(DEADLINE, || async {
            sink.attempts().iter().any(|a| a.stream_id == "poison")
        })
        .await
    );

    let mut tx_a = store.pool().begin().await.unwrap();
    store
        .append_in(&mut tx_a, "late", ExpectedVersion::NoStream, vec![ev(1)])
        .await
        .unwrap();
    for i in 0..10 {
        store
            .append(&format!("other-{i}"), ExpectedVersion::Any, vec![ev(i)])
            .await
            .unwrap();
    }
    let others: Vec<Uuid> = all_entries(&store, "hook")
        .await
        .iter()
        .filter(|e| e.stream_id.starts_with("other-"))
        .map(|e| e.id)
        .collect();
    assert!(
        sink.wait_delivered(&others, DEADLINE).await,
        "other streams go past the failing one"
    );

    tx_a.commit().await.unwrap();
    let late = entry_ids(&store, "late").await;
    assert!(
        sink.wait_delivered(&[late[0].0], DEADLINE).await,
        "a late commit behind a failing stream's backlog is delivered"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap2_open_transaction_does_not_stall_delivery() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1)).await;
    let sink = Sink::new();
    let relay = start_relay(&store, &sink, relay_config("r1"));

    // A session with a write transaction (an xid) and no outbox entries, left idle.
    let mut blocker = schema.connect().await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    let mut open_tx = blocker.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *open_tx)
        .await
        .unwrap();
    let mut observer = schema.connect().await;
    assert!(idle_in_transaction_with_xid(&mut observer, pid).await);

    for i in 0..50 {
        store
            .append(&format!("s-{}", i % 10), ExpectedVersion::Any, vec![ev(i)])
            .await
            .unwrap();
    }
    let ids: Vec<Uuid> = all_entries(&store, "hook").await.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 50);
    assert!(
        sink.wait_delivered(&ids, DEADLINE).await,
        "committed entries are delivered while another session holds a write transaction open"
    );
    assert!(
        idle_in_transaction_with_xid(&mut observer, pid).await,
        "the other transaction was open the whole time"
    );
    open_tx.rollback().await.unwrap();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap2_open_transaction_with_its_own_outbox_entries_does_not_stall_delivery() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1).destination("hook")).await;
    let sink = Sink::new();
    let relay = start_relay(&store, &sink, relay_config("r1"));

    // A session that wrote outbox entries (the lowest seqs of the partition: an event
    // and an explicit message), left idle in transaction.
    let mut blocker = schema.connect().await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    let mut open_tx = blocker.begin().await.unwrap();
    store
        .append_in(&mut open_tx, "batch-job", ExpectedVersion::Any, vec![ev(0)])
        .await
        .unwrap();
    let message = OutboxMessage::json("hook", "batch-job-messages", "Note", &json!({})).unwrap();
    let message_id = store.write_outbox_in(&mut open_tx, message).await.unwrap();
    let mut observer = schema.connect().await;
    assert!(idle_in_transaction_with_xid(&mut observer, pid).await);

    for i in 0..50 {
        store
            .append(&format!("s-{}", i % 10), ExpectedVersion::Any, vec![ev(i)])
            .await
            .unwrap();
    }
    let ids: Vec<Uuid> = all_entries(&store, "hook").await.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 50, "the open transaction's entries are not visible yet");
    assert!(
        sink.wait_delivered(&ids, DEADLINE).await,
        "committed entries are delivered while another session holds its own entries uncommitted"
    );
    assert!(idle_in_transaction_with_xid(&mut observer, pid).await);

    // Once it commits, its entries (lower seqs than everything delivered) go too.
    open_tx.commit().await.unwrap();
    let late: Vec<Uuid> = entry_ids(&store, "batch-job").await.into_iter().map(|e| e.0).collect();
    assert_eq!(late.len(), 1);
    assert!(sink.wait_delivered(&[late[0], message_id], DEADLINE).await);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap3_xid_order_differs_from_stream_order() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1)).await;

    // A starts first and takes the lower transaction id.
    let mut tx_a = store.pool().begin().await.unwrap();
    let xid_a: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *tx_a)
        .await
        .unwrap();
    // B starts later (higher xid) and appends version 1 of the stream.
    let mut tx_b = store.pool().begin().await.unwrap();
    let xid_b: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *tx_b)
        .await
        .unwrap();
    assert!(xid_a < xid_b);
    let v1 = store
        .append_in(&mut tx_b, "order-7", ExpectedVersion::NoStream, vec![ev(1)])
        .await
        .unwrap();
    assert_eq!(v1.first_version, 1);

    // A appends version 2: it waits for B's stream lock, then sees B's commit.
    let a_store = store.clone();
    let a = tokio::spawn(async move {
        let r = a_store
            .append_in(&mut tx_a, "order-7", ExpectedVersion::Exact(1), vec![ev(2)])
            .await;
        (tx_a, r)
    });
    let mut observer = schema.connect().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let waiting = loop {
        let blocked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                .fetch_one(&mut observer)
                .await
                .unwrap();
        if blocked > 0 || tokio::time::Instant::now() >= deadline {
            break blocked > 0;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(waiting, "A waits for B's lock on the stream");
    tx_b.commit().await.unwrap();
    let (tx_a, r) = a.await.unwrap();
    let v2 = r.unwrap();
    assert_eq!(v2.first_version, 2);
    tx_a.commit().await.unwrap();

    // The relay sees both at once and must deliver version 1 first, although version 2
    // belongs to the transaction with the lower xid.
    let sink = Sink::new();
    let relay = start_relay(&store, &sink, relay_config("r1"));
    let entries = entry_ids(&store, "order-7").await;
    assert_eq!(entries.len(), 2);
    let ids: Vec<Uuid> = entries.iter().map(|e| e.0).collect();
    assert!(sink.wait_delivered(&ids, DEADLINE).await);
    relay.shutdown().await;
    let versions: Vec<Option<u64>> = sink
        .first_deliveries_by_stream()
        .remove("order-7")
        .unwrap()
        .iter()
        .map(|a| a.stream_version)
        .collect();
    assert_eq!(
        versions,
        vec![Some(1), Some(2)],
        "stream order, not transaction-id order (xid A {xid_a} < xid B {xid_b})"
    );
}

/// Explicit messages take the stream's lock before drawing their seq, like appends, so
/// within one stream seq order stays commit order whatever mixes of events and messages
/// the transactions write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_take_the_stream_lock_before_drawing_their_seq() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1).destination("hook")).await;

    // A writes a message to the stream and stays open.
    let mut tx_a = store.pool().begin().await.unwrap();
    let message = OutboxMessage::json("hook", "order-9", "Note", &json!({ "from": "a" })).unwrap();
    let a_id = store.write_outbox_in(&mut tx_a, message).await.unwrap();

    // B appends to the same stream: it must wait for A, not draw a seq meanwhile.
    let b_store = store.clone();
    let b = tokio::spawn(async move {
        let mut tx_b = b_store.pool().begin().await.unwrap();
        b_store
            .append_in(&mut tx_b, "order-9", ExpectedVersion::Any, vec![ev(1)])
            .await
            .unwrap();
        tx_b.commit().await.unwrap();
    });
    let mut observer = schema.connect().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let waiting = loop {
        let blocked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                .fetch_one(&mut observer)
                .await
                .unwrap();
        if blocked > 0 || tokio::time::Instant::now() >= deadline {
            break blocked > 0;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(waiting, "B waits for A's lock on the stream");
    assert!(!b.is_finished());
    tx_a.commit().await.unwrap();
    b.await.unwrap();

    let entries = entry_ids(&store, "order-9").await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].0, a_id, "the first committed holds the lower seq");
}
