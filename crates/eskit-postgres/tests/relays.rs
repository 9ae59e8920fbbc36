//! Several relays on one PostgreSQL schema: partitions shared through leases, a crashed
//! relay's partitions taken over, stale results fenced by the lease epoch.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestSchema, all_entries, hook_options, relay_config};
use eskit::{
    BreakerConfig, DestinationPolicy, Destinations, EntryOutcome, EntryResult, EntryState, Error, EventData,
    EventStore, ExpectedVersion, OutboxStore, PendingQuery, Relay, RelayConfig,
};
use eskit_postgres::PgStore;
use eskit_testkit::{Checker, RecordingSink};
use serde_json::json;
use time::OffsetDateTime;

const PARTITIONS: u32 = 16;
const STREAMS: usize = 500;
const ROUNDS: u64 = 4;
const EVENTS_PER_ROUND: u64 = 10;
const WRITERS: usize = 4;
const TOTAL: usize = STREAMS * (ROUNDS * EVENTS_PER_ROUND) as usize;
const BATCH: u32 = 100;

fn config(owner: &str) -> RelayConfig {
    relay_config(owner)
        .batch_size(BATCH)
        .concurrency(32)
        .lease_ttl(Duration::from_secs(4))
}

/// A relay over its own store (its own pool, as another process), delivering `hook` to
/// the shared sink. The circuit breaker is off: random failures are the point here.
fn start(store: &PgStore, sink: &RecordingSink, owner: &str) -> eskit::RelayHandle {
    let mut destinations = Destinations::new();
    destinations.insert("hook", sink.clone());
    let store: Arc<dyn OutboxStore> = Arc::new(store.clone());
    let no_breaker = DestinationPolicy::default().breaker(BreakerConfig {
        failure_threshold: u32::MAX,
        open_for: Duration::from_millis(1),
    });
    Relay::new(store, destinations)
        .policy("hook", no_breaker)
        .config(config(owner))
        .start()
}

/// Appends ROUNDS batches of EVENTS_PER_ROUND events to each of this writer's streams,
/// round by round (so streams interleave), with exact expected versions.
async fn write(store: PgStore, writer: usize) {
    for round in 0..ROUNDS {
        for s in (writer..STREAMS).step_by(WRITERS) {
            let events: Vec<EventData> = (0..EVENTS_PER_ROUND)
                .map(|i| EventData::json("Step", &json!({ "s": s, "n": round * EVENTS_PER_ROUND + i })).unwrap())
                .collect();
            store
                .append(
                    &format!("stream-{s}"),
                    ExpectedVersion::Exact(round * EVENTS_PER_ROUND),
                    events,
                )
                .await
                .expect("append");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_relays_one_aborted_deliver_20000_entries_over_500_streams() {
    let started = std::time::Instant::now();
    let schema = TestSchema::new();
    let writer_store = schema.open(hook_options(PARTITIONS)).await;
    let sink = RecordingSink::new()
        .with_random_failures(0.1, 20_000)
        .with_delay(Duration::from_millis(1));

    let mut relay_stores = Vec::new();
    for _ in 0..3 {
        relay_stores.push(schema.open(hook_options(PARTITIONS)).await);
    }
    let mut relays: Vec<Option<eskit::RelayHandle>> = relay_stores
        .iter()
        .enumerate()
        .map(|(i, store)| Some(start(store, &sink, &format!("relay-{i}"))))
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(writer_store.clone(), w)))
        .collect();

    // Kill relay-1 mid-run, as a crash would: in-flight results are not recorded and
    // its leases are not released; the others take its partitions over when they end.
    // First the three share the partitions and a quarter of the work is done.
    let shared = common::wait_until(Duration::from_secs(60), || async {
        let leases = writer_store.list_leases("hook").await.unwrap();
        (0..3).all(|i| {
            let owner = format!("relay-{i}");
            leases.iter().filter(|l| l.live && l.owner == owner).count() >= 4
        })
    })
    .await;
    assert!(shared, "the three relays share the partitions");
    assert!(
        sink.wait_for(Duration::from_secs(60), |r| r.len() >= TOTAL / 4).await,
        "the relays deliver"
    );
    let held_by_aborted = writer_store
        .list_leases("hook")
        .await
        .unwrap()
        .iter()
        .filter(|l| l.live && l.owner == "relay-1")
        .count();
    assert!(held_by_aborted > 0);
    relays[1].take().unwrap().abort();
    let attempts_at_abort = sink.attempts();

    for w in writers {
        w.await.expect("writer");
    }
    let written = started.elapsed();
    let settled = common::wait_until(Duration::from_secs(90), || async {
        let status = writer_store.status().await.unwrap();
        status.iter().all(|s| s.pending == 0)
    })
    .await;
    for relay in relays.iter_mut().filter_map(Option::take) {
        relay.shutdown().await;
    }
    assert!(settled, "every entry is delivered");

    let entries = all_entries(&writer_store, "hook").await;
    let report = Checker::new().entries(&entries).observed(sink.observed()).check();
    println!(
        "three relays, one aborted after {attempts_at_abort} attempts (it held {held_by_aborted} partitions); \
         written in {written:.1?}, all delivered after {:.1?}:\n{report}",
        started.elapsed()
    );
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.committed, report.streams, report.delivered, report.dead),
        (TOTAL as u64, STREAMS as u64, TOTAL as u64, 0),
        "{report}"
    );
    assert!(
        entries.iter().all(|e| e.state == EntryState::Delivered),
        "the store marked everything delivered"
    );
    // At-least-once: only the aborted relay's unrecorded in-flight batches (one per
    // partition it held) may be delivered twice.
    let bound = held_by_aborted as u64 * u64::from(BATCH);
    assert!(
        report.duplicates <= bound,
        "{} duplicates, more than the aborted relay's in-flight batches ({bound})",
        report.duplicates
    );
    let leases = writer_store.list_leases("hook").await.unwrap();
    assert_eq!(leases.len(), PARTITIONS as usize);
    assert!(
        leases.iter().all(|l| l.owner != "relay-1" && l.epoch >= 1),
        "relay-1's partitions were taken over: {leases:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_taken_over_fences_the_old_owners_results() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1)).await;
    let other = schema.open(hook_options(1)).await;
    store
        .append("s", ExpectedVersion::NoStream, vec![EventData::json("A", &1).unwrap()])
        .await
        .unwrap();

    let old = store
        .try_acquire_lease("hook", 0, "relay-a", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("free lease");
    assert!(
        other
            .try_acquire_lease("hook", 0, "relay-b", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "a live lease is exclusive"
    );
    let batch = store.fetch_pending(&old, &PendingQuery::FromOldest, 10).await.unwrap();
    assert_eq!(batch.len(), 1);

    // relay-a stalls past its lease (by the database clock); relay-b takes over.
    let expired = common::wait_until(Duration::from_secs(10), || async {
        store.list_leases("hook").await.unwrap().iter().all(|l| !l.live)
    })
    .await;
    assert!(expired);
    let new = other
        .try_acquire_lease("hook", 0, "relay-b", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("expired lease is taken over");
    assert!(new.epoch > old.epoch, "epoch {} -> {}", old.epoch, new.epoch);

    // relay-a wakes up and tries to write its stale result: refused, nothing changed.
    let stale = [EntryResult {
        id: batch[0].id,
        attempts: 1,
        outcome: EntryOutcome::Dead {
            at: OffsetDateTime::now_utc(),
            error: "stale".into(),
        },
    }];
    let err = store.record_results(&old, &stale).await.unwrap_err();
    assert!(
        matches!(err, Error::LeaseLost { ref destination, partition: 0 } if destination == "hook"),
        "{err}"
    );
    assert!(!store.renew_lease(&old, Duration::from_secs(30)).await.unwrap());
    let entry = &all_entries(&store, "hook").await[0];
    assert_eq!(
        (entry.state, entry.attempts, entry.last_error.as_deref()),
        (EntryState::Pending, 0, None)
    );
    // An old epoch of the same owner is fenced as well.
    let same_owner_stale = eskit::Lease {
        owner: "relay-b".into(),
        epoch: new.epoch - 1,
        ..new.clone()
    };
    assert!(matches!(
        other.record_results(&same_owner_stale, &stale).await,
        Err(Error::LeaseLost { .. })
    ));

    // The new owner records.
    let done = [EntryResult {
        id: batch[0].id,
        attempts: 1,
        outcome: EntryOutcome::Delivered {
            at: OffsetDateTime::now_utc(),
        },
    }];
    other.record_results(&new, &done).await.unwrap();
    let entry = &all_entries(&store, "hook").await[0];
    assert_eq!((entry.state, entry.attempts), (EntryState::Delivered, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_results_waits_for_a_takeover_in_progress_and_then_fails() {
    // The lease row is locked FOR SHARE by record_results: a takeover that commits
    // first wins, and the old owner's write then sees the new epoch and writes nothing.
    let schema = TestSchema::new();
    let store = schema.open(hook_options(1)).await;
    store
        .append("s", ExpectedVersion::NoStream, vec![EventData::json("A", &1).unwrap()])
        .await
        .unwrap();
    let old = store
        .try_acquire_lease("hook", 0, "relay-a", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let entry = &all_entries(&store, "hook").await[0];

    // An operator-style takeover in a transaction that has not committed yet.
    let mut takeover = store.pool().begin().await.unwrap();
    let table = format!("\"{}\".outbox_leases", schema.name);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET owner = 'relay-b', epoch = epoch + 1 WHERE destination = 'hook'"
    )))
    .execute(&mut *takeover)
    .await
    .unwrap();

    let recorder = {
        let store = store.clone();
        let old = old.clone();
        let id = entry.id;
        tokio::spawn(async move {
            store
                .record_results(
                    &old,
                    &[EntryResult {
                        id,
                        attempts: 1,
                        outcome: EntryOutcome::Delivered {
                            at: OffsetDateTime::now_utc(),
                        },
                    }],
                )
                .await
        })
    };
    let mut observer = schema.connect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let blocked = loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype IN ('transactionid', 'tuple') AND NOT granted",
        )
        .fetch_one(&mut observer)
        .await
        .unwrap();
        if waiting > 0 || tokio::time::Instant::now() >= deadline {
            break waiting > 0;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(blocked, "record_results waits for the lease row");
    takeover.commit().await.unwrap();
    let outcome = recorder.await.unwrap();
    assert!(matches!(outcome, Err(Error::LeaseLost { .. })), "{outcome:?}");
    let entry = &all_entries(&store, "hook").await[0];
    assert_eq!(entry.state, EntryState::Pending);
}
