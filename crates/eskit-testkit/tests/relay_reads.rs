//! The relay's read volume: a drain without failures reads each pending entry once
//! (a re-scan that went on past the fast path's cursor once read every page twice).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eskit::{
    EventData, EventStore, ExpectedVersion, OutboxEntry, OutboxStore, Relay, RelayConfig, RouteFilter, StoreOptions,
};
use eskit_testkit::memory::MemoryStore;
use tokio::time::Instant;

#[tokio::test]
async fn a_drain_reads_each_entry_once() {
    const STREAMS: u64 = 20;
    const PER_STREAM: u64 = 150;
    let store = Arc::new(MemoryStore::new(
        StoreOptions::default()
            .partitions(1)
            .with_outbox("d", RouteFilter::all()),
    ));
    // Interleaved streams, written before the relay starts: a backlog of 30 pages.
    for i in 0..PER_STREAM {
        for s in 0..STREAMS {
            store
                .append(
                    &format!("s-{s}"),
                    ExpectedVersion::Any,
                    vec![EventData::json("T", &i).unwrap()],
                )
                .await
                .unwrap();
        }
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let counter = delivered.clone();
    let mut destinations = eskit::Destinations::new();
    destinations.insert("d", move |_entry: OutboxEntry| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    });
    let relay = Relay::new(store.clone(), destinations)
        .config(
            RelayConfig::default()
                .batch_size(100)
                .rescan_interval(Duration::from_secs(3600)),
        )
        .start();
    let total = STREAMS * PER_STREAM;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.status().await.unwrap()[0].pending > 0 {
        assert!(Instant::now() < deadline, "not drained");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.shutdown().await;
    assert_eq!(delivered.load(Ordering::Relaxed), total);
    assert_eq!(
        store.rows_fetched(),
        total,
        "each entry read once ({} rows read for {total} entries)",
        store.rows_fetched()
    );
}
