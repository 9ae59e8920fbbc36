//! The whole story in one file: a store with a route, one transaction holding events,
//! an explicit outbox message and the application's own row, and a relay delivering to
//! a closure. Run with `cargo run -p eskit-examples --example quickstart`.

use std::sync::Arc;
use std::time::Duration;

use eskit::{
    DeliveryError, Destinations, EventData, ExpectedVersion, OutboxEntry, OutboxMessage, Relay, RelayConfig,
    RouteFilter,
};
use eskit_sqlite::SqliteStore;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::builder("sqlite::memory:")
        .with_outbox("billing", RouteFilter::all().stream_prefix("order-"))
        .destination("emails")
        .open()
        .await?;
    sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL)")
        .execute(store.pool())
        .await?;

    // One transaction: the event, its routed outbox entry, an explicit message and the
    // application's own write commit together, or not at all.
    let mut tx = store.begin().await?;
    tx.append(
        "order-1",
        ExpectedVersion::NoStream,
        vec![EventData::json("OrderPlaced", &serde_json::json!({ "total": 42 }))?],
    )
    .await?;
    tx.write_outbox(OutboxMessage::json(
        "emails",
        "order-1",
        "SendReceipt",
        &serde_json::json!({ "to": "a@example.com" }),
    )?)
    .await?;
    sqlx::query("INSERT INTO orders (id, total) VALUES ('order-1', 42)")
        .execute(tx.conn())
        .await?;
    tx.commit().await?;

    // Deliver both destinations to closures that forward to a channel.
    let (sent, mut received) = mpsc::unbounded_channel::<String>();
    let mut destinations = Destinations::new();
    for name in ["billing", "emails"] {
        let sent = sent.clone();
        destinations.insert(name, move |entry: OutboxEntry| {
            let sent = sent.clone();
            async move {
                sent.send(format!(
                    "{} <- {} {} (id {})",
                    entry.destination, entry.stream_id, entry.event_type, entry.id
                ))
                .map_err(|_| DeliveryError::retryable("receiver closed"))
            }
        });
    }
    let relay = Relay::new(Arc::new(store), destinations)
        .config(RelayConfig::default().poll_interval(Duration::from_millis(50)))
        .start();
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await?
            .ok_or("channel closed")?;
        println!("{line}");
    }
    relay.shutdown().await;
    Ok(())
}
