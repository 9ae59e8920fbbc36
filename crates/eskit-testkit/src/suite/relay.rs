//! The relay on a real backend: order under failures, retries, dead letters, replay,
//! restarts, several relays, lease takeover, graceful shutdown.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eskit::{
    DeadSelector, DeliveryError, Destination, EntryState, EventData, EventStore, ExpectedVersion, OutboxEntry,
    OutboxMessage, OutboxStore, RetryPolicy, RouteFilter, StoreOptions, StoreTransaction, TransactionalStore,
};
use time::OffsetDateTime;
use tokio::task::JoinSet;

use super::support::{
    SETTLE, SHORT, entries_in, entries_of, entry, entry_id, ev, fast_retry, relay_config, report, settle, start_relay,
    wait_state,
};
use crate::Harness;
use crate::sinks::{Fault, RecordingSink};
use crate::wait::{wait_for_value, wait_until};

fn hook(partitions: u32) -> StoreOptions {
    StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .partitions(partitions)
}

/// Appends `per_stream` events to each of `streams` streams (`{prefix}{i}`), from
/// `writers` concurrent tasks, each stream's events in order with `Exact` versions.
pub(super) async fn append_streams<S: EventStore>(
    stores: &[Arc<S>],
    prefix: &str,
    streams: usize,
    per_stream: usize,
    writers: usize,
) {
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(&stores[w % stores.len()]);
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            for round in 0..per_stream {
                for s in (w..streams).step_by(writers) {
                    store
                        .append(
                            &format!("{prefix}{s}"),
                            ExpectedVersion::Exact(round as u64),
                            vec![ev("Step", round as u64)],
                        )
                        .await
                        .expect("append");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer task");
    }
}

/// 200 events over 20 streams, appended by 4 concurrent writers while the relay runs,
/// 30 % of attempts failing at random: every entry is delivered, each stream's first
/// deliveries in commit order, nothing phantom, nothing dead.
pub async fn relay_delivers_in_order_under_random_failures<H: Harness>(h: &H) {
    let store = h.open(hook(4)).await;
    let sink = RecordingSink::new().with_random_failures(0.3, 7);
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    append_streams(std::slice::from_ref(&store), "order-", 20, 10, 4).await;
    settle(&*store, "hook", "random failures").await;
    relay.shutdown().await;

    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.committed, report.delivered, report.dead),
        (200, 200, 0),
        "{report}"
    );
    assert!(report.retried_attempts > 0, "some attempts failed: {report}");
    for e in entries_of(&*store, "hook").await {
        assert_eq!(e.state, EntryState::Delivered);
        assert!(e.attempts >= 1 && e.delivered_at.is_some(), "{e:?}");
    }
}

/// After each failed attempt the stored `next_attempt_at` follows the retry policy
/// (exponential, jittered within bounds), the relay does not try again before it,
/// attempts count up, and after `max_attempts` the entry is dead.
pub async fn retries_follow_the_policy<H: Harness>(h: &H) {
    let store = h.open(hook(1)).await;
    let policy = RetryPolicy::default()
        .initial(Duration::from_millis(30))
        .multiplier(3.0)
        .max(Duration::from_secs(5))
        .jitter(0.2)
        .max_attempts(5);
    let event = ev("A", 1);
    let id = entry_id(&event, "hook");
    let sink = RecordingSink::new().with_entry_fault(id, Fault::AlwaysRetryable);
    sink.hold();
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a").retry(policy));
    store
        .append("s", ExpectedVersion::Any, vec![event])
        .await
        .expect("append");

    let eps = time::Duration::milliseconds(5);
    let mut delays = Vec::new();
    let mut previous_due: Option<OffsetDateTime> = None;
    for attempt in 1..=5u32 {
        assert!(sink.wait_for_waiting(1, SETTLE).await, "attempt {attempt} arrives");
        sink.release(1);
        let stored = wait_for_value(SETTLE, || async {
            entry(&*store, id).await.filter(|e| e.attempts == attempt)
        })
        .await
        .unwrap_or_else(|| panic!("attempt {attempt} is recorded"));
        let observed_at = OffsetDateTime::now_utc();
        let record = sink
            .records_for(id)
            .pop()
            .expect("the attempt was recorded by the sink");
        assert_eq!((record.attempt, record.success), (attempt, false));
        if let Some(due) = previous_due {
            assert!(
                record.started_at >= due - eps,
                "attempt {attempt} started at {} before it was due at {due}",
                record.started_at
            );
        }
        assert!(
            stored.last_error.as_deref().is_some_and(|e| e.contains("failed")),
            "{stored:?}"
        );
        if attempt == 5 {
            assert_eq!(stored.state, EntryState::Dead, "dead after max attempts");
            break;
        }
        assert_eq!(stored.state, EntryState::Pending);
        let base = policy.base_delay(attempt);
        let lo = record.finished_at + base.mul_f64(1.0 - policy.jitter) - eps;
        let hi = observed_at + base.mul_f64(1.0 + policy.jitter) + eps;
        assert!(
            lo <= stored.next_attempt_at && stored.next_attempt_at <= hi,
            "attempt {attempt}: next_attempt_at {} outside [{lo}, {hi}] for base delay {base:?}",
            stored.next_attempt_at
        );
        delays.push(stored.next_attempt_at - record.finished_at);
        previous_due = Some(stored.next_attempt_at);
    }
    assert!(delays.windows(2).all(|w| w[0] < w[1]), "backoff grows: {delays:?}");
    relay.shutdown().await;
    assert_eq!(sink.records_for(id).len(), 5, "exactly max_attempts attempts");
    let dead = entry(&*store, id).await.expect("entry");
    assert_eq!((dead.state, dead.attempts), (EntryState::Dead, 5));
    assert!(dead.dead_at.is_some());
}

/// A destination's retry-after wins over the backoff schedule; the entry delivered
/// on its second attempt records both attempts.
pub async fn retry_after_wins_over_backoff<H: Harness>(h: &H) {
    let store = h.open(hook(1)).await;
    let event = ev("A", 1);
    let id = entry_id(&event, "hook");
    let after = Duration::from_millis(700);
    let sink = RecordingSink::new().with_entry_fault(
        id,
        Fault::FailTimes {
            times: 1,
            retry_after: Some(after),
        },
    );
    sink.hold();
    let policy = fast_retry(10).jitter(0.0);
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a").retry(policy));
    store
        .append("s", ExpectedVersion::Any, vec![event])
        .await
        .expect("append");
    assert!(sink.wait_for_waiting(1, SETTLE).await, "first attempt arrives");
    sink.release(1);
    let stored = wait_for_value(SETTLE, || async {
        entry(&*store, id).await.filter(|e| e.attempts == 1)
    })
    .await
    .expect("the failed attempt is recorded");
    let observed_at = OffsetDateTime::now_utc();
    let failed = sink.records_for(id).pop().expect("record");
    let eps = time::Duration::milliseconds(5);
    assert!(
        failed.finished_at + after - eps <= stored.next_attempt_at
            && stored.next_attempt_at <= observed_at + after + eps,
        "next_attempt_at {} honours retry-after {after:?} (failed at {})",
        stored.next_attempt_at,
        failed.finished_at
    );
    sink.open();
    let delivered = wait_state(&*store, id, EntryState::Delivered, "after retry-after").await;
    assert_eq!(
        delivered.attempts, 2,
        "a delivered entry counts its failed attempt too: {delivered:?}"
    );
    assert!(delivered.delivered_at.is_some(), "{delivered:?}");
    let second = sink.records_for(id).pop().expect("record");
    assert!(second.success);
    assert!(
        second.started_at >= stored.next_attempt_at - eps,
        "the retry waited for retry-after: started {} due {}",
        second.started_at,
        stored.next_attempt_at
    );
    relay.shutdown().await;
}

/// An entry that keeps failing is dead-lettered after `max_attempts` with its attempts
/// and last error; its stream continues with the next entry, other streams unaffected.
pub async fn dead_letter_after_max_attempts<H: Harness>(h: &H) {
    let store = h.open(hook(2)).await;
    let (e1, e2, e3, t1) = (ev("A", 1), ev("A", 2), ev("A", 3), ev("B", 1));
    let doomed = entry_id(&e1, "hook");
    let sink = RecordingSink::new().with_entry_fault(doomed, Fault::AlwaysRetryable);
    let relay = start_relay(
        &store,
        "hook",
        sink.clone(),
        relay_config("relay-a").retry(fast_retry(4)),
    );
    store
        .append("s", ExpectedVersion::NoStream, vec![e1, e2.clone(), e3])
        .await
        .expect("append");
    store
        .append("t", ExpectedVersion::NoStream, vec![t1])
        .await
        .expect("append");
    settle(&*store, "hook", "max attempts").await;
    relay.shutdown().await;

    let dead = entries_in(&*store, "hook", EntryState::Dead).await;
    assert_eq!(
        dead.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![doomed],
        "the DLQ holds the failing entry"
    );
    assert_eq!(dead[0].attempts, 4);
    assert!(
        dead[0].last_error.as_deref().is_some_and(|e| e.contains("failed")),
        "{:?}",
        dead[0]
    );
    assert!(dead[0].dead_at.is_some());
    let attempts = sink.records_for(doomed);
    assert_eq!(attempts.len(), 4, "exactly max_attempts attempts");
    assert!(attempts.iter().all(|r| !r.success));
    assert_eq!(entries_in(&*store, "hook", EntryState::Delivered).await.len(), 3);
    let next = sink
        .records_for(entry_id(&e2, "hook"))
        .into_iter()
        .find(|r| r.success)
        .expect("e2 delivered");
    assert!(
        next.started_at >= attempts[3].finished_at,
        "the stream's next entry waited for the dead one"
    );
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.delivered, report.dead), (3, 1));
}

/// A permanent error dead-letters at once (one attempt); the stream continues.
pub async fn dead_letter_at_once_on_permanent_error<H: Harness>(h: &H) {
    let store = h.open(hook(2)).await;
    let (e1, e2, e3) = (ev("A", 1), ev("A", 2), ev("A", 3));
    let rejected = entry_id(&e2, "hook");
    let sink = RecordingSink::new().with_entry_fault(rejected, Fault::Permanent);
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    store
        .append("s", ExpectedVersion::NoStream, vec![e1, e2, e3.clone()])
        .await
        .expect("append");
    settle(&*store, "hook", "permanent error").await;
    relay.shutdown().await;

    let dead = entry(&*store, rejected).await.expect("entry");
    assert_eq!((dead.state, dead.attempts), (EntryState::Dead, 1), "{dead:?}");
    assert!(
        dead.last_error.as_deref().is_some_and(|e| e.contains("permanently")),
        "{dead:?}"
    );
    assert_eq!(sink.records_for(rejected).len(), 1, "no retry after a permanent error");
    let third = entry(&*store, entry_id(&e3, "hook")).await.expect("entry");
    assert_eq!(
        third.state,
        EntryState::Delivered,
        "the stream continues after a dead entry"
    );
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.delivered, report.dead), (2, 1));
}

/// A stream whose head keeps failing holds back its own later entries only: every
/// other stream of the same partition is delivered meanwhile.
pub async fn failing_stream_does_not_block_others<H: Harness>(h: &H) {
    let store = h.open(hook(1)).await;
    let sink = RecordingSink::new().with_stream_fault("stuck", Fault::AlwaysRetryable);
    let relay = start_relay(
        &store,
        "hook",
        sink.clone(),
        relay_config("relay-a").retry(fast_retry(1_000_000)),
    );
    let (s1, s2) = (ev("A", 1), ev("A", 2));
    store
        .append("stuck", ExpectedVersion::NoStream, vec![s1.clone(), s2.clone()])
        .await
        .expect("append");
    append_streams(std::slice::from_ref(&store), "ok-", 10, 5, 2).await;
    let delivered = wait_until(SETTLE, || async {
        entries_in(&*store, "hook", EntryState::Delivered).await.len() == 50
    })
    .await;
    assert!(delivered, "the other streams are delivered while one stream fails");
    let head = entry(&*store, entry_id(&s1, "hook")).await.expect("head");
    assert_eq!(head.state, EntryState::Pending);
    assert!(head.attempts >= 1, "the failing head is being retried");
    relay.shutdown().await;
    let behind = entry_id(&s2, "hook");
    assert!(
        sink.records_for(behind).is_empty(),
        "the entry behind a failing head is never attempted"
    );
    assert_eq!(entry(&*store, behind).await.expect("entry").attempts, 0);
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(
        report.phantoms.is_empty() && report.order_violations.is_empty(),
        "{report}"
    );
    assert_eq!(report.lost.len(), 2, "only the stuck stream is undelivered: {report}");
}

/// Dead entries replayed (one by id, then the rest of the destination) are delivered
/// by the running relay; discarded ones are gone for good.
pub async fn replayed_entries_are_delivered<H: Harness>(h: &H) {
    let store = h.open(hook(2)).await;
    let poison: Vec<EventData> = (1..=3).map(|n| ev("A", n)).collect();
    let ids: Vec<_> = poison.iter().map(|e| entry_id(e, "hook")).collect();
    let sink = RecordingSink::new()
        .with_stream_fault("poison", Fault::Permanent)
        .with_stream_fault("trash", Fault::Permanent);
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    store
        .append("poison", ExpectedVersion::NoStream, poison.clone())
        .await
        .expect("append");
    let trash = ev("T", 1);
    store
        .append("trash", ExpectedVersion::NoStream, vec![trash.clone()])
        .await
        .expect("append");
    store
        .append("fine", ExpectedVersion::NoStream, vec![ev("A", 1), ev("A", 2)])
        .await
        .expect("append");
    settle(&*store, "hook", "before replay").await;
    let dlq = entries_in(&*store, "hook", EntryState::Dead).await;
    assert_eq!(dlq.len(), 4, "every poison and trash entry is dead: {dlq:?}");
    assert!(dlq.iter().all(|e| e.attempts == 1 && e.last_error.is_some()));

    sink.clear_faults();
    let trash_id = entry_id(&trash, "hook");
    assert_eq!(
        store
            .discard_dead(&DeadSelector {
                id: Some(trash_id),
                destination: None
            })
            .await
            .expect("discard"),
        1
    );
    assert_eq!(
        store
            .replay_dead(&DeadSelector {
                id: Some(ids[1]),
                destination: None
            })
            .await
            .expect("replay one"),
        1
    );
    let replayed = wait_state(&*store, ids[1], EntryState::Delivered, "replayed entry").await;
    assert_eq!(replayed.attempts, 1, "attempts restart from zero on replay");
    for other in [ids[0], ids[2]] {
        assert_eq!(entry(&*store, other).await.expect("entry").state, EntryState::Dead);
    }
    assert_eq!(
        store
            .replay_dead(&DeadSelector {
                id: None,
                destination: Some("hook".into())
            })
            .await
            .expect("replay destination"),
        2
    );
    settle(&*store, "hook", "after replay").await;
    relay.shutdown().await;
    for id in &ids {
        assert_eq!(entry(&*store, *id).await.expect("entry").state, EntryState::Delivered);
    }
    assert!(entry(&*store, trash_id).await.is_none(), "discarded entries are gone");
    let delivered: HashSet<_> = sink.delivered_ids().into_iter().collect();
    assert!(!delivered.contains(&trash_id), "a discarded entry is never delivered");
    assert!(ids.iter().all(|id| delivered.contains(id)));
    assert!(entries_in(&*store, "hook", EntryState::Dead).await.is_empty());
}

/// A relay aborted mid-run (deliveries in flight, nothing recorded for them) and
/// restarted under the same owner delivers everything, in order; duplicates allowed.
pub async fn restart_without_loss<H: Harness>(h: &H) {
    let store = h.open(hook(4)).await;
    for s in 0..30 {
        for round in 0..5u64 {
            store
                .append(
                    &format!("order-{s}"),
                    ExpectedVersion::Exact(round * 2),
                    vec![ev("Step", round * 2), ev("Step", round * 2 + 1)],
                )
                .await
                .expect("append");
        }
    }
    let sink = RecordingSink::new().with_random_failures(0.2, 11);
    let first = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    assert!(
        sink.wait_for(SETTLE, |r| r.iter().filter(|r| r.success).count() >= 60)
            .await,
        "the first relay delivers"
    );
    sink.hold();
    assert!(sink.wait_for_waiting(1, SETTLE).await, "a delivery is in flight");
    first.abort();
    assert!(
        wait_until(SHORT, || async { sink.in_flight() == 0 }).await,
        "the aborted relay's deliveries are gone"
    );
    sink.open();
    assert!(
        !entries_in(&*store, "hook", EntryState::Pending).await.is_empty(),
        "the crash left work behind"
    );

    let second = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    settle(&*store, "hook", "after restart").await;
    second.shutdown().await;
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.committed, report.delivered, report.dead),
        (300, 300, 0),
        "{report}"
    );
}

/// After a relay is aborted, another relay (another owner) takes its leases once they
/// expire, with higher epochs, and delivers the rest in order.
pub async fn lease_takeover_after_abort<H: Harness>(h: &H) {
    let store = h.open(hook(4)).await;
    let sink = RecordingSink::new().with_random_failures(0.1, 3);
    let first = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    let all_mine = wait_until(SHORT, || async {
        let leases = store.list_leases("hook").await.expect("list_leases");
        leases.len() == 4 && leases.iter().all(|l| l.owner == "relay-a" && l.live)
    })
    .await;
    assert!(all_mine, "a lone relay takes every partition");
    let before = store.list_leases("hook").await.expect("list_leases");
    append_streams(std::slice::from_ref(&store), "order-", 20, 5, 2).await;
    assert!(
        sink.wait_for(SETTLE, |r| r.iter().filter(|r| r.success).count() >= 20)
            .await,
        "the first relay delivers"
    );
    sink.hold();
    assert!(sink.wait_for_waiting(1, SETTLE).await, "a delivery is in flight");
    first.abort();
    assert!(wait_until(SHORT, || async { sink.in_flight() == 0 }).await);
    sink.open();

    let second = start_relay(&store, "hook", sink.clone(), relay_config("relay-b"));
    settle(&*store, "hook", "after takeover").await;
    // Partitions with nothing left to deliver may be taken a balancing tick later.
    let all_taken = wait_until(SETTLE, || async {
        let leases = store.list_leases("hook").await.expect("list_leases");
        leases.len() == 4 && leases.iter().all(|l| l.owner == "relay-b" && l.live)
    })
    .await;
    let after = store.list_leases("hook").await.expect("list_leases");
    assert!(all_taken, "relay-b takes every partition: {after:?}");
    second.shutdown().await;
    for old in &before {
        let new = after.iter().find(|l| l.partition == old.partition).expect("lease row");
        assert_eq!(new.owner, "relay-b", "partition {} taken over", old.partition);
        assert!(
            new.epoch > old.epoch,
            "partition {}: epoch {} -> {}",
            old.partition,
            old.epoch,
            new.epoch
        );
    }
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.committed, report.delivered), (100, 100), "{report}");
}

/// Counts deliveries through one relay, passing them on to a shared sink.
struct Counted {
    inner: RecordingSink,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Destination for Counted {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.deliver(entry).await
    }
}

/// Two relays, each with its own connection pool (as two processes), share the
/// partitions of one database: both deliver, nothing is lost, no stream is reordered.
/// When one crashes, the running other takes over its partitions once their leases
/// expire and delivers the rest.
pub async fn two_relays_share_the_work<H: Harness>(h: &H) {
    let options = hook(8);
    let store_a = h.open(options.clone()).await;
    let store_b = h.reopen(&store_a, options).await;
    let sink = RecordingSink::new().with_random_failures(0.2, 5);
    let (calls_a, calls_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let relay_a = start_relay(
        &store_a,
        "hook",
        Counted {
            inner: sink.clone(),
            calls: calls_a.clone(),
        },
        relay_config("relay-a"),
    );
    let relay_b = start_relay(
        &store_b,
        "hook",
        Counted {
            inner: sink.clone(),
            calls: calls_b.clone(),
        },
        relay_config("relay-b"),
    );
    let shared = wait_until(SETTLE, || async {
        let leases = store_a.list_leases("hook").await.expect("list_leases");
        let live = |o: &str| leases.iter().filter(|l| l.live && l.owner == o).count();
        live("relay-a") >= 1 && live("relay-b") >= 1 && live("relay-a") + live("relay-b") == 8
    })
    .await;
    assert!(shared, "the two relays share the partitions");

    let stores = [store_a.clone(), store_b.clone()];
    append_streams(&stores, "order-", 40, 15, 4).await;
    settle(&*store_a, "hook", "two relays").await;

    // One relay crashes: the other, still running, takes its partitions over once
    // their leases expire and delivers what is appended afterwards.
    relay_a.abort();
    append_streams(&stores, "late-", 20, 5, 2).await;
    let taken_over = wait_until(SETTLE, || async {
        let leases = store_b.list_leases("hook").await.expect("list_leases");
        leases.len() == 8 && leases.iter().all(|l| l.live && l.owner == "relay-b")
    })
    .await;
    assert!(
        taken_over,
        "relay-b holds every partition: {:?}",
        store_b.list_leases("hook").await
    );
    settle(&*store_b, "hook", "after one relay crashed").await;
    relay_b.shutdown().await;

    let report = report(&*store_a, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.committed, report.delivered, report.dead),
        (700, 700, 0),
        "{report}"
    );
    assert!(
        calls_a.load(Ordering::SeqCst) > 0 && calls_b.load(Ordering::SeqCst) > 0,
        "both relays delivered (a: {}, b: {})",
        calls_a.load(Ordering::SeqCst),
        calls_b.load(Ordering::SeqCst)
    );
}

/// A graceful shutdown finishes in-flight deliveries and records them: what the sink
/// accepted is exactly what the store marks delivered, leases are released, and the
/// next relay delivers the rest without a single duplicate.
pub async fn graceful_shutdown_loses_nothing<H: Harness>(h: &H) {
    let store = h.open(hook(2)).await;
    for s in 0..20 {
        for round in 0..4u64 {
            let events: Vec<_> = (0..5).map(|i| ev("Step", round * 5 + i)).collect();
            store
                .append(&format!("order-{s}"), ExpectedVersion::Exact(round * 5), events)
                .await
                .expect("append");
        }
    }
    let sink = RecordingSink::new().with_delay(Duration::from_millis(20));
    let first = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    assert!(
        sink.wait_for(SETTLE, |r| r.len() >= 20).await,
        "the first relay delivers"
    );
    first.shutdown().await;
    let recorded: HashSet<_> = entries_in(&*store, "hook", EntryState::Delivered)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    let accepted: HashSet<_> = sink.delivered_ids().into_iter().collect();
    assert_eq!(sink.in_flight(), 0, "nothing is still in flight after shutdown");
    assert_eq!(
        recorded, accepted,
        "every accepted delivery is recorded, and nothing else"
    );
    let leases = store.list_leases("hook").await.expect("list_leases");
    assert!(
        leases.iter().all(|l| !(l.live && l.owner == "relay-a")),
        "leases are released on shutdown: {leases:?}"
    );

    let second = start_relay(&store, "hook", sink.clone(), relay_config("relay-b"));
    settle(&*store, "hook", "after graceful shutdown").await;
    second.shutdown().await;
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.committed, report.delivered, report.duplicates),
        (400, 400, 0),
        "{report}"
    );
}

/// Explicit outbox messages and events of one stream, written in the same
/// transactions, are delivered in commit order with their payloads.
pub async fn messages_and_events_share_stream_order<H: Harness>(h: &H) {
    let store = h.open(hook(2)).await;
    let sink = RecordingSink::new().with_random_failures(0.2, 9);
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    for i in 0..10u64 {
        let mut tx = store.begin().await.expect("begin");
        tx.append("order-1", ExpectedVersion::Exact(i), vec![ev("OrderStep", i)])
            .await
            .expect("append");
        let message = OutboxMessage::json("hook", "order-1", "OrderNotice", &serde_json::json!({ "notice": i }))
            .expect("message");
        tx.write_outbox(message).await.expect("write_outbox");
        tx.commit().await.expect("commit");
    }
    settle(&*store, "hook", "messages and events").await;
    relay.shutdown().await;
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.delivered, 20);
    let mut seen = HashSet::new();
    let firsts: Vec<_> = sink
        .records()
        .into_iter()
        .filter(|r| r.success && seen.insert(r.id))
        .map(|r| (r.event_type, r.payload))
        .collect();
    let expected: Vec<_> = (0..10u64)
        .flat_map(|i| {
            [
                ("OrderStep".to_string(), serde_json::json!({ "n": i })),
                ("OrderNotice".to_string(), serde_json::json!({ "notice": i })),
            ]
        })
        .collect();
    assert_eq!(firsts, expected, "commit order, payloads intact");
}

/// Entries of rolled-back (or dropped) transactions are never delivered; committed
/// ones all are.
pub async fn rolled_back_entries_are_never_delivered<H: Harness>(h: &H) {
    let store = h.open(hook(2)).await;
    let sink = RecordingSink::new();
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    let mut rolled_back = Vec::new();
    for i in 0..30u64 {
        let event = ev("Maybe", i);
        let mut tx = store.begin().await.expect("begin");
        tx.append(&format!("s-{}", i % 3), ExpectedVersion::Any, vec![event.clone()])
            .await
            .expect("append");
        let message = OutboxMessage::json("hook", format!("m-{}", i % 3), "Note", &serde_json::json!({ "i": i }))
            .expect("message");
        let message_id = tx.write_outbox(message).await.expect("write_outbox");
        match i % 3 {
            0 => tx.commit().await.expect("commit"),
            1 => {
                tx.rollback().await.expect("rollback");
                rolled_back.extend([entry_id(&event, "hook"), message_id]);
            }
            _ => {
                drop(tx);
                rolled_back.extend([entry_id(&event, "hook"), message_id]);
            }
        }
    }
    settle(&*store, "hook", "after rollbacks").await;
    relay.shutdown().await;
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.committed, 20);
    let seen: HashSet<_> = sink.records().into_iter().map(|r| r.id).collect();
    assert!(
        rolled_back.iter().all(|id| !seen.contains(id)),
        "no rolled-back entry was delivered"
    );
}

/// A "gone" failure (HTTP 410) dead-letters the entry and disables the destination:
/// nothing more is delivered to it, entries wait pending, until an operator enables it
/// again; then everything left is delivered, in order.
pub async fn gone_disables_the_destination<H: Harness>(h: &H) {
    let store = h.open(hook(2)).await;
    let (g1, g2) = (ev("A", 1), ev("A", 2));
    let gone = entry_id(&g1, "hook");
    let sink = RecordingSink::new().with_entry_fault(gone, Fault::Gone);
    let relay = start_relay(&store, "hook", sink.clone(), relay_config("relay-a"));
    store
        .append("gone-1", ExpectedVersion::NoStream, vec![g1, g2.clone()])
        .await
        .expect("append");
    let disabled = wait_until(SETTLE, || async {
        let disabled = store.disabled_destinations().await.expect("disabled_destinations");
        disabled.iter().any(|d| d.destination == "hook")
    })
    .await;
    assert!(disabled, "a gone destination is disabled");
    let dead = wait_state(&*store, gone, EntryState::Dead, "gone entry").await;
    assert_eq!(dead.attempts, 1);

    append_streams(std::slice::from_ref(&store), "later-", 4, 2, 2).await;
    let enabled_at = OffsetDateTime::now_utc();
    assert!(
        store.enable_destination("hook").await.expect("enable"),
        "it was disabled"
    );
    settle(&*store, "hook", "after enabling").await;
    relay.shutdown().await;

    let waiting: HashSet<_> = entries_of(&*store, "hook")
        .await
        .into_iter()
        .filter(|e| e.id != gone)
        .map(|e| e.id)
        .collect();
    assert_eq!(waiting.len(), 9);
    assert!(waiting.contains(&entry_id(&g2, "hook")));
    for r in sink.records().iter().filter(|r| waiting.contains(&r.id)) {
        assert!(
            r.started_at >= enabled_at,
            "entry {} of {} was attempted at {} while the destination was disabled (enabled at {enabled_at})",
            r.id,
            r.stream_id,
            r.started_at
        );
    }
    let report = report(&*store, "hook", sink.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.delivered, report.dead), (9, 1), "{report}");
}
