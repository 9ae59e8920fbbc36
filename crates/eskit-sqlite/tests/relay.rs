//! The core relay engine driven by the SQLite backend, end to end, with a closure
//! destination.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ev, open, reopen, wait_until};
use eskit::relay::{BreakerConfig, DestinationPolicy};
use eskit::{
    DeliveryError, Destinations, EntryFilter, EntryState, EventStore, ExpectedVersion, OutboxEntry, OutboxStore, Relay,
    RelayConfig, RetryPolicy, RouteFilter, StoreOptions,
};
use eskit_sqlite::SqliteStore;
use serde_json::json;
use uuid::Uuid;

/// Every delivery attempt the destination accepted: (stream, version, entry id).
type Log = Arc<Mutex<Vec<(String, u64, Uuid)>>>;

/// A destination that accepts everything, except that the first attempt of every
/// fourth event of a stream fails (retryable), and `poison-*` streams fail for good.
fn flaky_destination(
    log: Log,
) -> impl Fn(OutboxEntry) -> futures::future::BoxFuture<'static, Result<(), DeliveryError>> + Send + Sync + 'static {
    move |entry: OutboxEntry| {
        let log = log.clone();
        Box::pin(async move {
            let version = entry.stream_version.unwrap_or(0);
            if entry.stream_id.starts_with("poison") && version == 2 {
                return Err(DeliveryError::permanent("rejected"));
            }
            if entry.attempts == 0 && version.is_multiple_of(4) {
                return Err(DeliveryError::retryable("try again"));
            }
            log.lock().unwrap().push((entry.stream_id.clone(), version, entry.id));
            Ok(())
        })
    }
}

fn relay_config(owner: &str) -> RelayConfig {
    RelayConfig::default()
        .poll_interval(Duration::from_millis(50))
        .rescan_interval(Duration::from_millis(200))
        .lease_ttl(Duration::from_secs(2))
        .owner(owner)
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(10))
                .max(Duration::from_millis(50))
                .jitter(0.0)
                .max_attempts(5),
        )
}

/// The injected failures are per entry, not an outage: keep the circuit breaker out of
/// the way.
fn patient() -> DestinationPolicy {
    DestinationPolicy::default().breaker(BreakerConfig {
        failure_threshold: u32::MAX,
        open_for: Duration::from_millis(10),
    })
}

async fn append_streams(store: &SqliteStore, streams: usize, per_stream: usize, prefix: &str) {
    // Interleave streams so that entries of different streams alternate in seq order.
    for round in 0..per_stream {
        for s in 0..streams {
            store
                .append(
                    &format!("{prefix}{s}"),
                    ExpectedVersion::Exact(round as u64),
                    vec![ev("Tick", json!({"round": round}))],
                )
                .await
                .unwrap();
        }
    }
}

async fn count(store: &SqliteStore, state: EntryState) -> u64 {
    let status = store.status().await.unwrap();
    status
        .iter()
        .map(|s| match state {
            EntryState::Pending => s.pending,
            EntryState::Delivered => s.delivered,
            EntryState::Dead => s.dead,
        })
        .sum()
}

/// Checks that, per stream, first deliveries came in version order, and returns how
/// many distinct entries were delivered.
fn check_order(log: &Log) -> usize {
    let log = log.lock().unwrap();
    let mut seen = HashSet::new();
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (stream, version, id) in log.iter() {
        if !seen.insert(*id) {
            continue; // a duplicate (at-least-once) is allowed
        }
        let prev = last.insert(stream.as_str(), *version).unwrap_or(0);
        assert!(
            prev < *version,
            "stream {stream}: version {version} delivered after {prev}"
        );
    }
    seen.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_delivers_everything_in_per_stream_order() {
    let (store, _dir) = open(
        StoreOptions::default()
            .with_outbox("sink", RouteFilter::all())
            .partitions(4),
    )
    .await;
    let log: Log = Arc::default();
    let mut destinations = Destinations::new();
    destinations.insert("sink", flaky_destination(log.clone()));
    let relay = Relay::new(Arc::new(store.clone()), destinations)
        .config(relay_config("relay-1"))
        .policy("sink", patient())
        .start();

    // 200 events over 20 streams, appended while the relay runs; two more streams
    // have an entry that fails permanently.
    append_streams(&store, 20, 10, "order-").await;
    append_streams(&store, 2, 3, "poison-").await;

    let done = wait_until(Duration::from_secs(60), || async {
        count(&store, EntryState::Delivered).await == 204 && count(&store, EntryState::Dead).await == 2
    })
    .await;
    relay.shutdown().await;
    assert!(done, "not all delivered: {:?}", store.status().await.unwrap());
    assert_eq!(count(&store, EntryState::Pending).await, 0);
    assert_eq!(check_order(&log), 204);

    // Retried entries carry their attempts; dead ones their error.
    let entries = store
        .list_entries(&EntryFilter {
            limit: Some(1000),
            ..EntryFilter::default()
        })
        .await
        .unwrap();
    let retried = entries
        .iter()
        .filter(|e| e.state == EntryState::Delivered && e.attempts == 2)
        .count();
    assert_eq!(retried, 20 * 2, "versions 4 and 8 of each order stream failed once");
    let dead: Vec<_> = entries.iter().filter(|e| e.state == EntryState::Dead).collect();
    assert!(
        dead.iter()
            .all(|e| e.last_error.as_deref() == Some("rejected") && e.attempts == 1)
    );
    // Leases were released on shutdown.
    assert!(store.list_leases("sink").await.unwrap().iter().all(|l| !l.live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_file_and_a_crash_lose_nothing_and_keep_order() {
    let options = StoreOptions::default()
        .with_outbox("sink", RouteFilter::all())
        .partitions(8);
    let (store, dir) = open(options.clone()).await;
    let other = reopen(&dir, options).await;
    let log: Log = Arc::default();
    let start = |store: &SqliteStore, owner: &str| {
        let mut destinations = Destinations::new();
        destinations.insert("sink", flaky_destination(log.clone()));
        Relay::new(Arc::new(store.clone()), destinations)
            .config(relay_config(owner))
            .policy("sink", patient())
            .start()
    };
    let a = start(&store, "relay-a");
    let b = start(&other, "relay-b");

    append_streams(&store, 20, 5, "s-").await;
    // Crash one relay part-way (no results recorded for in-flight work, leases left
    // to expire); the other takes its partitions over.
    let some = wait_until(Duration::from_secs(30), || async {
        count(&store, EntryState::Delivered).await >= 20
    })
    .await;
    assert!(some);
    a.abort();
    append_streams(&other, 20, 5, "t-").await;

    let done = wait_until(Duration::from_secs(60), || async {
        count(&other, EntryState::Delivered).await == 200
    })
    .await;
    b.shutdown().await;
    assert!(done, "not all delivered: {:?}", other.status().await.unwrap());
    assert_eq!(check_order(&log), 200);
}
