//! Helpers shared by the suite's tests.

use std::sync::Arc;
use std::time::Duration;

use eskit::{
    BreakerConfig, Destination, DestinationPolicy, Destinations, EntryFilter, EntryOutcome, EntryResult, EntryState,
    EventData, EventStore, OutboxEntry, OutboxStore, RecordedEvent, Relay, RelayConfig, RelayHandle, RetryPolicy,
};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::checker::{Checker, Report};
use crate::wait::wait_until;

/// How long a test waits for the relay to settle before failing.
pub const SETTLE: Duration = Duration::from_secs(90);
/// How long a test waits for something quick (a notification, a lease) before failing.
pub const SHORT: Duration = Duration::from_secs(20);

/// An event of type `event_type` with payload `{"n": n}`.
pub fn ev(event_type: &str, n: u64) -> EventData {
    EventData::json(event_type, &json!({ "n": n })).expect("serializable payload")
}

/// Lease time the outbox-contract tests take leases for.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// The ids of `entries`, in order.
pub fn ids(entries: &[OutboxEntry]) -> Vec<Uuid> {
    entries.iter().map(|e| e.id).collect()
}

/// A delivered result.
pub fn delivered(id: Uuid, attempts: u32, at: OffsetDateTime) -> EntryResult {
    EntryResult {
        id,
        attempts,
        outcome: EntryOutcome::Delivered { at },
    }
}

/// A retry result.
pub fn retry(id: Uuid, attempts: u32, next_attempt_at: OffsetDateTime, error: &str) -> EntryResult {
    EntryResult {
        id,
        attempts,
        outcome: EntryOutcome::Retry {
            next_attempt_at,
            error: error.to_string(),
        },
    }
}

/// A dead-letter result.
pub fn dead(id: Uuid, attempts: u32, at: OffsetDateTime, error: &str) -> EntryResult {
    EntryResult {
        id,
        attempts,
        outcome: EntryOutcome::Dead {
            at,
            error: error.to_string(),
        },
    }
}

/// A store routing everything to `hook` over one partition, with `count` events appended
/// to stream `s` in one append, and `relay-a`'s lease on that partition: the set-up of
/// the tests that write results directly. Returns the store, the events and the lease.
pub async fn hook_stream_leased<H: crate::Harness>(h: &H, count: u64) -> (Arc<H::Store>, Vec<EventData>, eskit::Lease) {
    let store = h
        .open(
            eskit::StoreOptions::default()
                .with_outbox("hook", eskit::RouteFilter::all())
                .partitions(1),
        )
        .await;
    let events: Vec<_> = (0..count).map(|n| ev("A", n)).collect();
    store
        .append("s", eskit::ExpectedVersion::Any, events.clone())
        .await
        .expect("append");
    let lease = store
        .try_acquire_lease("hook", 0, "relay-a", LEASE_TTL)
        .await
        .expect("acquire")
        .expect("granted");
    (store, events, lease)
}

/// The outbox entry id a route gives `event` for `destination`.
pub fn entry_id(event: &EventData, destination: &str) -> Uuid {
    eskit::route_entry_id(event.id, destination)
}

/// The relay options the suite uses: short timings, fast retries.
pub fn relay_config(owner: &str) -> RelayConfig {
    RelayConfig::default()
        .owner(owner)
        .batch_size(50)
        .concurrency(8)
        .poll_interval(Duration::from_millis(25))
        .lease_ttl(Duration::from_secs(2))
        .rescan_interval(Duration::from_millis(200))
        .shutdown_grace(Duration::from_secs(10))
        .retry(fast_retry(30))
}

/// A retry policy with 10 ms initial backoff, a 100 ms cap and `max_attempts`.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .initial(Duration::from_millis(10))
        .max(Duration::from_millis(100))
        .multiplier(2.0)
        .jitter(0.2)
        .max_attempts(max_attempts)
}

/// A destination policy whose circuit breaker never opens, for tests about per-entry
/// retries and order (random failures would otherwise open the circuit now and then).
pub fn no_breaker() -> DestinationPolicy {
    DestinationPolicy::default().breaker(BreakerConfig {
        failure_threshold: u32::MAX,
        open_for: Duration::from_millis(50),
    })
}

/// Starts a relay over `store` with one destination (circuit breaker off, see
/// [`no_breaker`]).
pub fn start_relay<S: OutboxStore>(
    store: &Arc<S>,
    name: &str,
    destination: impl Destination,
    config: RelayConfig,
) -> RelayHandle {
    start_relay_with(store, name, destination, config, no_breaker())
}

/// Starts a relay over `store` with one destination and its policy.
pub fn start_relay_with<S: OutboxStore>(
    store: &Arc<S>,
    name: &str,
    destination: impl Destination,
    config: RelayConfig,
    policy: DestinationPolicy,
) -> RelayHandle {
    let mut destinations = Destinations::new();
    destinations.insert(name, destination);
    let store: Arc<dyn OutboxStore> = store.clone();
    Relay::new(store, destinations)
        .config(config)
        .policy(name, policy)
        .start()
}

/// Every outbox entry matching `filter` (paged), oldest first.
pub async fn all_entries<S: OutboxStore>(store: &S, mut filter: EntryFilter) -> Vec<OutboxEntry> {
    const PAGE: u32 = 500;
    let mut out: Vec<OutboxEntry> = Vec::new();
    filter.limit = Some(PAGE);
    loop {
        let page = store.list_entries(&filter).await.expect("list_entries");
        let n = page.len();
        if let Some(last) = page.last() {
            filter.after_seq = Some(last.seq);
        }
        out.extend(page);
        if n < PAGE as usize {
            return out;
        }
    }
}

/// Every entry of one destination.
pub async fn entries_of<S: OutboxStore>(store: &S, destination: &str) -> Vec<OutboxEntry> {
    all_entries(
        store,
        EntryFilter {
            destination: Some(destination.to_string()),
            ..EntryFilter::default()
        },
    )
    .await
}

/// Entries of one destination in one state.
pub async fn entries_in<S: OutboxStore>(store: &S, destination: &str, state: EntryState) -> Vec<OutboxEntry> {
    all_entries(
        store,
        EntryFilter {
            destination: Some(destination.to_string()),
            state: Some(state),
            ..EntryFilter::default()
        },
    )
    .await
}

/// One entry by id.
pub async fn entry<S: OutboxStore>(store: &S, id: Uuid) -> Option<OutboxEntry> {
    all_entries(store, EntryFilter::default())
        .await
        .into_iter()
        .find(|e| e.id == id)
}

/// Every event (paged).
pub async fn all_events<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    const PAGE: usize = 500;
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut from = 0i64;
    loop {
        let page = store.read_all(from, PAGE).await.expect("read_all");
        let n = page.len();
        if let Some(last) = page.last() {
            from = last.position + 1;
        }
        out.extend(page);
        if n < PAGE {
            return out;
        }
    }
}

/// Waits until `destination` has no pending entry; panics with `what` otherwise.
pub async fn settle<S: OutboxStore>(store: &S, destination: &str, what: &str) {
    let filter = EntryFilter {
        destination: Some(destination.to_string()),
        state: Some(EntryState::Pending),
        limit: Some(1),
        ..EntryFilter::default()
    };
    let settled = wait_until(SETTLE, || async {
        store.list_entries(&filter).await.expect("list_entries").is_empty()
    })
    .await;
    if !settled {
        let pending = entries_in(store, destination, EntryState::Pending).await;
        panic!(
            "{what}: {} entries of {destination:?} still pending after {SETTLE:?}; first: {:?}",
            pending.len(),
            pending
                .first()
                .map(|e| (&e.stream_id, e.seq, e.attempts, &e.last_error, e.next_attempt_at))
        );
    }
}

/// Waits until the entry `id` is in `state`.
pub async fn wait_state<S: OutboxStore>(store: &S, id: Uuid, state: EntryState, what: &str) -> OutboxEntry {
    let found =
        crate::wait::wait_for_value(SETTLE, || async { entry(store, id).await.filter(|e| e.state == state) }).await;
    match found {
        Some(e) => e,
        None => panic!(
            "{what}: entry {id} not {state:?} after {SETTLE:?}: {:?}",
            entry(store, id).await
        ),
    }
}

/// The checker's report for one destination's stored entries and a list of observed attempts.
pub async fn report<S: OutboxStore>(store: &S, destination: &str, observed: Vec<crate::checker::Observed>) -> Report {
    let entries = entries_of(store, destination).await;
    Checker::new().entries(&entries).observed(observed).check()
}

/// Snapshot of what a store holds, to show that a failed call wrote nothing.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    /// Event ids in position order.
    pub events: Vec<Uuid>,
    /// Entry ids in seq order.
    pub entries: Vec<Uuid>,
}

/// Takes a [`Snapshot`].
pub async fn snapshot<S: EventStore + OutboxStore>(store: &S) -> Snapshot {
    Snapshot {
        events: all_events(store).await.into_iter().map(|e| e.event_id).collect(),
        entries: all_entries(store, EntryFilter::default())
            .await
            .into_iter()
            .map(|e| e.id)
            .collect(),
    }
}
