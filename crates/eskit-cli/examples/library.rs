//! The library example of the README, compiled by `cargo test --workspace` so it stays
//! true. Run it with `cargo run -p eskit-cli --example library`.

use std::sync::Arc;
use std::time::Duration;

use eskit::{Destinations, EventData, EventStore, ExpectedVersion, OutboxMessage, Relay, RelayConfig, RouteFilter};
use eskit_destinations::webhook::{WebhookConfig, WebhookDestination};
use eskit_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("eskit-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());

    // A store whose appends write outbox entries: every event of an `order-` stream
    // goes to the "billing" destination; "emails" takes explicit messages.
    let store = SqliteStore::builder(url) // or PgStore::builder("postgres://…")
        .with_outbox("billing", RouteFilter::all().stream_prefix("order-"))
        .destination("emails")
        .open()
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, paid INTEGER NOT NULL DEFAULT 0)")
        .execute(store.pool())
        .await?;

    // A plain append: the event and its outbox entry commit together.
    store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![EventData::json("OrderPlaced", &serde_json::json!({"total": 42}))?],
        )
        .await?;

    // One transaction: events, an explicit outbox message and the application's own
    // SQL on the same connection. Dropping `tx` without commit rolls everything back.
    let mut tx = store.begin().await?;
    tx.append(
        "order-1",
        ExpectedVersion::Exact(1),
        vec![EventData::json("OrderPaid", &serde_json::json!({}))?],
    )
    .await?;
    tx.write_outbox(OutboxMessage::json(
        "emails",
        "order-1",
        "SendReceipt",
        &serde_json::json!({"to": "a@example.com"}),
    )?)
    .await?;
    sqlx::query("INSERT INTO orders (id, paid) VALUES ('order-1', 1)")
        .execute(tx.conn())
        .await?;
    tx.commit().await?;

    // The relay: a background task delivering to the destinations.
    let mut destinations = Destinations::new();
    destinations.insert(
        "billing",
        WebhookDestination::new(WebhookConfig::new(
            "https://billing.example.com/hooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ))?,
    );
    destinations.insert("emails", |entry: eskit::OutboxEntry| async move {
        println!("send {} for {}", entry.event_type, entry.stream_id); // your own destination
        Ok::<(), eskit::DeliveryError>(())
    });
    let relay = Relay::new(Arc::new(store.clone()), destinations)
        .config(RelayConfig::default().poll_interval(Duration::from_millis(200)))
        .start();

    // ... on shutdown: in-flight deliveries finish, nothing is lost.
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
