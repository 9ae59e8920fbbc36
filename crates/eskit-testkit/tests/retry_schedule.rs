//! The relay's retry schedule under tokio's paused time: attempts happen exactly when the
//! policy says (exponential backoff with its cap, a destination's retry-after winning),
//! and the entry is dead-lettered after the last attempt. Uses the in-memory backend so
//! nothing but the relay's own timers advances the clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eskit::{
    BreakerConfig, DeliveryError, DestinationPolicy, Destinations, EntryFilter, EntryState, EventData, EventStore,
    ExpectedVersion, OutboxEntry, OutboxStore, Relay, RelayConfig, RetryPolicy, RouteFilter, StoreOptions,
};
use eskit_testkit::memory::MemoryStore;
use tokio::time::Instant;

/// A destination that fails with `errors` in turn (then succeeds), recording when each
/// attempt happened on tokio's clock.
fn scripted(errors: Vec<DeliveryError>, times: Arc<Mutex<Vec<Instant>>>) -> impl eskit::Destination {
    let errors = Arc::new(Mutex::new(errors.into_iter()));
    move |_entry: OutboxEntry| {
        let (errors, times) = (errors.clone(), times.clone());
        async move {
            times.lock().unwrap().push(Instant::now());
            match errors.lock().unwrap().next() {
                Some(err) => Err(err),
                None => Ok(()),
            }
        }
    }
}

async fn run(errors: Vec<DeliveryError>, retry: RetryPolicy, attempts: usize) -> (Vec<Duration>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new(
        StoreOptions::default().with_outbox("d", RouteFilter::all()),
    ));
    let times = Arc::new(Mutex::new(Vec::new()));
    let mut destinations = Destinations::new();
    destinations.insert("d", scripted(errors, times.clone()));
    let relay = Relay::new(store.clone(), destinations)
        .config(
            RelayConfig::default()
                .poll_interval(Duration::from_secs(30))
                .rescan_interval(Duration::from_secs(3600))
                .retry(retry),
        )
        .policy(
            "d",
            DestinationPolicy::default().breaker(BreakerConfig {
                failure_threshold: 1000,
                ..Default::default()
            }),
        )
        .start();
    store
        .append("s", ExpectedVersion::Any, vec![EventData::json("T", &1).unwrap()])
        .await
        .unwrap();
    // Paused time auto-advances whenever every task waits on a timer; the deadline is on
    // the same (virtual) clock.
    let deadline = Instant::now() + Duration::from_secs(3600);
    while times.lock().unwrap().len() < attempts {
        assert!(
            Instant::now() < deadline,
            "only {} attempts",
            times.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Let the last result be recorded.
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.status().await.unwrap()[0].pending > 0 {
        assert!(Instant::now() < deadline, "last result not recorded");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    relay.shutdown().await;
    let times = times.lock().unwrap().clone();
    (times.windows(2).map(|w| w[1] - w[0]).collect(), store)
}

fn assert_gaps(gaps: &[Duration], expected_ms: &[u64]) {
    assert_eq!(gaps.len(), expected_ms.len(), "{gaps:?}");
    for (gap, want) in gaps.iter().zip(expected_ms) {
        let want = Duration::from_millis(*want);
        // Exact up to the relay's own scheduling granularity (a few virtual ms).
        assert!(
            *gap >= want && *gap <= want + Duration::from_millis(5),
            "gap {gap:?}, want {want:?} (all: {gaps:?})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_to_its_cap_then_dead_letters() {
    let retry = RetryPolicy::default()
        .initial(Duration::from_millis(100))
        .multiplier(2.0)
        .max(Duration::from_millis(500))
        .jitter(0.0)
        .max_attempts(6);
    let errors = (0..6).map(|i| DeliveryError::retryable(format!("503 #{i}"))).collect();
    let (gaps, store) = run(errors, retry, 6).await;
    assert_gaps(&gaps, &[100, 200, 400, 500, 500]);
    let dead = store
        .list_entries(&EntryFilter {
            state: Some(EntryState::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "dead-lettered after max attempts");
    assert_eq!(dead[0].attempts, 6);
    assert_eq!(dead[0].last_error.as_deref(), Some("503 #5"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_over_backoff() {
    let retry = RetryPolicy::default().initial(Duration::from_millis(100)).jitter(0.0);
    let errors = vec![
        DeliveryError::retryable("429").with_retry_after(Some(Duration::from_secs(7))),
        DeliveryError::retryable("503"),
    ];
    let (gaps, store) = run(errors, retry, 3).await;
    // 7 s from the hint, then the policy's second step (200 ms), then delivered.
    assert_gaps(&gaps, &[7000, 200]);
    let delivered = store
        .list_entries(&EntryFilter {
            state: Some(EntryState::Delivered),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_error_dead_letters_at_once() {
    let retry = RetryPolicy::default().initial(Duration::from_millis(100)).jitter(0.0);
    let (gaps, store) = run(vec![DeliveryError::permanent("422")], retry, 1).await;
    assert!(gaps.is_empty());
    let dead = store
        .list_entries(&EntryFilter {
            state: Some(EntryState::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 1));
}
