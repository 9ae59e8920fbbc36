//! Routes: which appended events become outbox entries, and what an entry holds.

use eskit::{
    EntryState, EventData, EventStore, ExpectedVersion, OutboxMessage, OutboxStore, RouteFilter, StoreOptions,
    StoreTransaction, TransactionalStore, partition_of,
};
use serde_json::json;
use time::OffsetDateTime;

use super::support::{entries_of, entry_id};
use crate::Harness;

fn event(event_type: &str, vip: bool) -> EventData {
    EventData::json(event_type, &json!({ "vip": vip })).expect("payload")
}

/// Event-type, stream-prefix and predicate routes select their events; one event can
/// go to several destinations, each entry with its own stable id.
pub async fn routes_select_events<H: Harness>(h: &H) {
    let options = StoreOptions::default()
        .with_outbox(
            "by-type",
            RouteFilter::all().event_types(["OrderPlaced", "OrderShipped"]),
        )
        .with_outbox("by-prefix", RouteFilter::all().stream_prefix("order-"))
        .with_outbox(
            "by-predicate",
            RouteFilter::all().predicate(|_, e| e.payload.get().contains("\"vip\":true")),
        )
        .with_outbox(
            "combined",
            RouteFilter::all().stream_prefix("order-").event_types(["OrderPlaced"]),
        )
        .with_outbox("everything", RouteFilter::all());
    let store = h.open(options).await;

    let order = vec![event("OrderPlaced", true), event("OrderNoted", false)];
    let user = vec![event("OrderPlaced", false), event("UserRenamed", true)];
    let r = store
        .append("order-1", ExpectedVersion::Any, order.clone())
        .await
        .expect("append order-1");
    assert_eq!(r.outbox_entries, 1 + 2 + 1 + 1 + 2, "order-1 entries: {r:?}");
    let r = store
        .append("user-1", ExpectedVersion::Any, user.clone())
        .await
        .expect("append user-1");
    assert_eq!(r.outbox_entries, 1 + 1 + 2, "user-1 entries: {r:?}");
    store
        .append("order-2", ExpectedVersion::Any, vec![event("OrderCancelled", false)])
        .await
        .expect("append order-2");

    let picked = |entries: Vec<eskit::OutboxEntry>| -> Vec<(String, Option<u64>)> {
        entries.into_iter().map(|e| (e.stream_id, e.stream_version)).collect()
    };
    let s = |id: &str, v: u64| (id.to_string(), Some(v));
    assert_eq!(
        picked(entries_of(&*store, "by-type").await),
        vec![s("order-1", 1), s("user-1", 1)]
    );
    assert_eq!(
        picked(entries_of(&*store, "by-prefix").await),
        vec![s("order-1", 1), s("order-1", 2), s("order-2", 1)]
    );
    assert_eq!(
        picked(entries_of(&*store, "by-predicate").await),
        vec![s("order-1", 1), s("user-1", 2)]
    );
    assert_eq!(picked(entries_of(&*store, "combined").await), vec![s("order-1", 1)]);
    assert_eq!(entries_of(&*store, "everything").await.len(), 5);

    // The first event went to four destinations, each with its own stable id.
    let first = &order[0];
    let mut ids = Vec::new();
    for dest in ["by-type", "by-prefix", "by-predicate", "combined", "everything"] {
        let entries = entries_of(&*store, dest).await;
        let e = entries
            .iter()
            .find(|e| e.event_id == Some(first.id))
            .unwrap_or_else(|| panic!("{dest} has an entry for the first event"));
        assert_eq!(e.id, entry_id(first, dest), "entry id = UUIDv5(event id, destination)");
        assert_eq!(e.destination, dest);
        ids.push(e.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each destination's entry has its own id");

    let mut names = store.destinations().await.expect("destinations");
    names.sort();
    assert_eq!(
        names,
        vec!["by-predicate", "by-prefix", "by-type", "combined", "everything"]
    );
}

/// A route entry carries the stream id, event type, payload, metadata, destination,
/// event id and stream version, its partition, a creation time, no attempts and the
/// pending state; an explicit message's entry carries the message's id and fields.
pub async fn entry_fields<H: Harness>(h: &H) {
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .destination("mail")
                .partitions(8),
        )
        .await;
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    store
        .append("order-7", ExpectedVersion::Any, vec![event("OrderPlaced", false)])
        .await
        .expect("append");
    let placed = EventData::json(
        "OrderPaid",
        &json!({"amount": 12.5, "items": [1, 2], "note": "ünïcødé ✓"}),
    )
    .expect("payload")
    .with_metadata(&json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}))
    .expect("metadata");
    store
        .append("order-7", ExpectedVersion::Exact(1), vec![placed.clone()])
        .await
        .expect("append");
    let mut tx = store.begin().await.expect("begin");
    let message =
        OutboxMessage::json("mail", "customer-3", "SendReceipt", &json!({"to": "c@example.com"})).expect("message");
    let message_id = message.id;
    tx.write_outbox(message).await.expect("write_outbox");
    tx.commit().await.expect("commit");
    let after = OffsetDateTime::now_utc() + time::Duration::seconds(5);

    let hook = entries_of(&*store, "hook").await;
    assert_eq!(hook.len(), 2);
    assert!(hook[0].seq < hook[1].seq, "seq follows commit order");
    let e = &hook[1];
    assert_eq!(e.id, entry_id(&placed, "hook"));
    assert_eq!(e.destination, "hook");
    assert_eq!(e.stream_id, "order-7");
    assert_eq!(e.partition, partition_of("order-7", 8));
    assert_eq!(e.event_type, "OrderPaid");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(e.payload.get()).expect("payload JSON"),
        json!({"amount": 12.5, "items": [1, 2], "note": "ünïcødé ✓"})
    );
    assert_eq!(
        e.metadata
            .as_ref()
            .map(|m| serde_json::from_str::<serde_json::Value>(m.get()).expect("metadata JSON")),
        Some(json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}))
    );
    assert_eq!(e.event_id, Some(placed.id));
    assert_eq!(e.stream_version, Some(2));
    assert_eq!(e.state, EntryState::Pending);
    assert_eq!(e.attempts, 0);
    assert_eq!(e.last_error, None);
    assert_eq!(e.delivered_at, None);
    assert_eq!(e.dead_at, None);
    assert!(
        before <= e.created_at && e.created_at <= after,
        "created_at {} is the commit time",
        e.created_at
    );
    assert!(
        e.next_attempt_at <= after,
        "a new entry is due at once ({})",
        e.next_attempt_at
    );

    let mail = entries_of(&*store, "mail").await;
    assert_eq!(mail.len(), 1);
    let m = &mail[0];
    assert_eq!(m.id, message_id);
    assert_eq!(
        (m.stream_id.as_str(), m.event_type.as_str()),
        ("customer-3", "SendReceipt")
    );
    assert_eq!(m.partition, partition_of("customer-3", 8));
    assert_eq!((m.event_id, m.stream_version), (None, None));
    assert_eq!((m.state, m.attempts), (EntryState::Pending, 0));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(m.payload.get()).expect("payload JSON"),
        json!({"to": "c@example.com"})
    );
    assert!(hook[1].seq < m.seq, "the message was committed last");
    assert_eq!(store.partitions(), 8);
}
