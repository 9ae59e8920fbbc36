//! A destination of your own: every delivered entry is appended as one JSON line to a
//! file. Run with `cargo run -p eskit-examples --example custom_destination`.
//!
//! Implement [`eskit::Destination`]: return `Ok(())` only once the entry is durably
//! accepted, a retryable [`DeliveryError`] for transient trouble, a permanent one for
//! an entry that can never succeed. The relay calls `deliver` for one entry of a stream
//! at a time, in order, and concurrently across streams.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eskit::{
    DeliveryError, Destination, Destinations, EntryState, EventData, EventStore, ExpectedVersion, OutboxEntry,
    OutboxStore, Relay, RelayConfig, RouteFilter,
};
use eskit_sqlite::SqliteStore;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// Writes entries as JSON lines, fsyncing each before reporting success.
struct JsonLinesFile {
    path: PathBuf,
    lock: Mutex<()>,
}

#[async_trait::async_trait]
impl Destination for JsonLinesFile {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let line = serde_json::json!({
            "id": entry.id,               // the idempotency key: dedupe on it
            "stream": entry.stream_id,
            "type": entry.event_type,
            "payload": entry.payload,
        });
        let _guard = self.lock.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| DeliveryError::retryable(format!("open: {e}")))?;
        file.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| DeliveryError::retryable(format!("write: {e}")))?;
        file.sync_data()
            .await
            .map_err(|e| DeliveryError::retryable(format!("sync: {e}")))?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("eskit-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("delivered.jsonl");

    let store = SqliteStore::builder(dir.join("example.db").display().to_string())
        .with_outbox("file", RouteFilter::all().event_types(["OrderPlaced"]))
        .open()
        .await?;
    for i in 0..10 {
        let event = EventData::json("OrderPlaced", &serde_json::json!({ "order": i }))?;
        store
            .append(&format!("order-{}", i % 3), ExpectedVersion::Any, vec![event])
            .await?;
    }

    let mut destinations = Destinations::new();
    destinations.insert(
        "file",
        JsonLinesFile {
            path: out.clone(),
            lock: Mutex::new(()),
        },
    );
    let store = Arc::new(store);
    let relay = Relay::new(store.clone(), destinations)
        .config(RelayConfig::default().poll_interval(Duration::from_millis(50)))
        .start();

    // Wait (with a deadline) until the outbox has nothing pending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = store.status().await?;
        if status.iter().all(|s| s.pending == 0) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("entries still pending after 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.shutdown().await;

    let delivered = store
        .list_entries(&eskit::EntryFilter {
            state: Some(EntryState::Delivered),
            ..Default::default()
        })
        .await?;
    println!("{} entries delivered to {}", delivered.len(), out.display());
    print!("{}", std::fs::read_to_string(&out)?);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
