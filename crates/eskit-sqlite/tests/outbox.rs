//! The outbox side of the SQLite backend: leases and fencing, pending reads, bulk
//! results, the dead-letter queue, status and retention.

mod common;

use std::time::Duration;

use common::{ev, open, reopen};
use eskit::{
    DeadSelector, EntryFilter, EntryOutcome, EntryResult, EntryState, Error, EventStore, ExpectedVersion, Lease,
    OutboxEntry, OutboxStore, PendingQuery, RouteFilter, StoreOptions, partition_of,
};
use eskit_sqlite::SqliteStore;
use serde_json::json;
use time::OffsetDateTime;

const TTL: Duration = Duration::from_secs(30);

/// One partition, so every stream lands in the lease we take.
fn options() -> StoreOptions {
    StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .partitions(1)
}

async fn lease(store: &SqliteStore, owner: &str) -> Lease {
    store
        .try_acquire_lease("hook", 0, owner, TTL)
        .await
        .unwrap()
        .expect("lease is free")
}

fn seqs(entries: &[OutboxEntry]) -> Vec<i64> {
    entries.iter().map(|e| e.seq).collect()
}

fn delivered(entry: &OutboxEntry) -> EntryResult {
    EntryResult {
        id: entry.id,
        attempts: entry.attempts + 1,
        outcome: EntryOutcome::Delivered {
            at: OffsetDateTime::now_utc(),
        },
    }
}

async fn append(store: &SqliteStore, stream: &str, n: usize) {
    let events = (0..n).map(|i| ev("T", json!({"i": i}))).collect();
    store.append(stream, ExpectedVersion::Any, events).await.unwrap();
}

async fn all_entries(store: &SqliteStore) -> Vec<OutboxEntry> {
    store
        .list_entries(&EntryFilter {
            limit: Some(10_000),
            ..EntryFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn leases_are_exclusive_renewable_and_taken_over_with_a_new_epoch() {
    let (store, _dir) = open(options()).await;
    let a = lease(&store, "relay-a").await;
    assert_eq!(a.epoch, 1);
    assert_eq!(store.try_acquire_lease("hook", 0, "relay-b", TTL).await.unwrap(), None);
    // Ours again: renewed, same epoch.
    assert_eq!(lease(&store, "relay-a").await.epoch, 1);
    assert!(store.renew_lease(&a, TTL).await.unwrap());
    // Other partitions and destinations are independent.
    assert!(
        store
            .try_acquire_lease("hook", 1, "relay-b", TTL)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .try_acquire_lease("other", 0, "relay-b", TTL)
            .await
            .unwrap()
            .is_some()
    );

    let infos = store.list_leases("hook").await.unwrap();
    assert_eq!(infos.len(), 2);
    assert_eq!(
        (infos[0].partition, infos[0].owner.as_str(), infos[0].live),
        (0, "relay-a", true)
    );

    // Let it lapse (renew with a zero ttl), then another owner takes it over.
    assert!(store.renew_lease(&a, Duration::ZERO).await.unwrap());
    assert!(!store.list_leases("hook").await.unwrap()[0].live);
    let b = lease(&store, "relay-b").await;
    assert_eq!(b.epoch, 2);
    assert!(!store.renew_lease(&a, TTL).await.unwrap(), "the old owner lost it");
    assert_eq!(store.try_acquire_lease("hook", 0, "relay-a", TTL).await.unwrap(), None);

    // Released: free at once, and the next owner's epoch is higher still.
    store.release_lease(&b).await.unwrap();
    // Releasing with a stale lease does nothing.
    store.release_lease(&a).await.unwrap();
    let a2 = lease(&store, "relay-a").await;
    assert_eq!(a2.epoch, 3);
}

#[tokio::test]
async fn record_results_is_fenced_by_the_lease() {
    let (store, dir) = open(options()).await;
    append(&store, "s", 3).await;
    let a = lease(&store, "relay-a").await;
    let entries = store.fetch_pending(&a, &PendingQuery::FromOldest, 10).await.unwrap();
    assert_eq!(entries.len(), 3);

    // Expired: record_results refuses even though nobody took over yet.
    assert!(store.renew_lease(&a, Duration::ZERO).await.unwrap());
    let err = store.record_results(&a, &[delivered(&entries[0])]).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { partition: 0, .. }), "{err}");

    // Taken over by another process: the old epoch is fenced off.
    let other = reopen(&dir, options()).await;
    let b = lease(&other, "relay-b").await;
    assert_eq!(b.epoch, 2);
    let err = store.record_results(&a, &[delivered(&entries[0])]).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    // A forged lease with the new epoch but the wrong owner is refused too.
    let forged = Lease {
        owner: "relay-a".into(),
        ..b.clone()
    };
    assert!(matches!(
        store.record_results(&forged, &[delivered(&entries[0])]).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(all_entries(&store).await.iter().all(|e| e.state == EntryState::Pending));

    // The holder writes.
    other.record_results(&b, &[delivered(&entries[0])]).await.unwrap();
    let after = all_entries(&store).await;
    assert_eq!(after[0].state, EntryState::Delivered);
    assert_eq!(after[0].attempts, 1);
    assert!(after[0].delivered_at.is_some());
    // An empty batch is fine.
    other.record_results(&b, &[]).await.unwrap();
}

#[tokio::test]
async fn record_results_writes_every_outcome_in_one_batch() {
    let (store, _dir) = open(options()).await;
    append(&store, "a", 1).await;
    append(&store, "b", 1).await;
    append(&store, "c", 1).await;
    let l = lease(&store, "relay").await;
    let e = store.fetch_pending(&l, &PendingQuery::FromOldest, 10).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let retry_at = now + time::Duration::minutes(5);
    let results = vec![
        delivered(&e[0]),
        EntryResult {
            id: e[1].id,
            attempts: 1,
            outcome: EntryOutcome::Retry {
                next_attempt_at: retry_at,
                error: "HTTP 503".into(),
            },
        },
        EntryResult {
            id: e[2].id,
            attempts: 1,
            outcome: EntryOutcome::Dead {
                at: now,
                error: "HTTP 400".into(),
            },
        },
    ];
    store.record_results(&l, &results).await.unwrap();
    let all = all_entries(&store).await;
    assert_eq!(all[0].state, EntryState::Delivered);
    assert_eq!(all[0].last_error, None);
    assert_eq!(all[1].state, EntryState::Pending);
    assert_eq!(all[1].attempts, 1);
    assert_eq!(all[1].last_error.as_deref(), Some("HTTP 503"));
    assert!((all[1].next_attempt_at - retry_at).abs() < time::Duration::milliseconds(1));
    assert_eq!(all[2].state, EntryState::Dead);
    assert_eq!(all[2].last_error.as_deref(), Some("HTTP 400"));
    assert!(all[2].dead_at.is_some());

    // Pending entries not yet due are still returned (the engine sees parked heads).
    let pending = store.fetch_pending(&l, &PendingQuery::FromOldest, 10).await.unwrap();
    assert_eq!(seqs(&pending), vec![all[1].seq]);

    // Results for entries that are no longer pending are ignored.
    store.record_results(&l, &[delivered(&all[2])]).await.unwrap();
    assert_eq!(all_entries(&store).await[2].state, EntryState::Dead);

    let status = store.status().await.unwrap();
    assert_eq!(status.len(), 1);
    let s = &status[0];
    assert_eq!(
        (s.destination.as_str(), s.pending, s.retrying, s.delivered, s.dead),
        ("hook", 1, 1, 1, 1)
    );
    assert!(s.oldest_pending_age_secs.is_some_and(|a| a >= 0.0));
}

#[tokio::test]
async fn after_seq_skips_streams_with_an_older_pending_entry() {
    let (store, _dir) = open(options()).await;
    // seq 1: a, 2: b, 3: a, 4: c, 5: b
    for s in ["a", "b", "a", "c", "b"] {
        append(&store, s, 1).await;
    }
    let l = lease(&store, "relay").await;
    let all = store.fetch_pending(&l, &PendingQuery::FromOldest, 100).await.unwrap();
    assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        seqs(&store.fetch_pending(&l, &PendingQuery::FromOldest, 2).await.unwrap()),
        vec![1, 2]
    );

    // a and b still have pending entries at or below 2: only c's entry qualifies.
    let fast = store.fetch_pending(&l, &PendingQuery::AfterSeq(2), 100).await.unwrap();
    assert_eq!(seqs(&fast), vec![4]);

    // Once a's head is delivered, a's later entry shows up after 2; b's does not.
    store.record_results(&l, &[delivered(&all[0])]).await.unwrap();
    let fast = store.fetch_pending(&l, &PendingQuery::AfterSeq(2), 100).await.unwrap();
    assert_eq!(seqs(&fast), vec![3, 4]);
    // A retry (still pending) keeps blocking its stream.
    store
        .record_results(
            &l,
            &[EntryResult {
                id: all[1].id,
                attempts: 1,
                outcome: EntryOutcome::Retry {
                    next_attempt_at: OffsetDateTime::now_utc(),
                    error: "x".into(),
                },
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        seqs(&store.fetch_pending(&l, &PendingQuery::AfterSeq(2), 100).await.unwrap()),
        vec![3, 4]
    );
    // Dead counts as done: b continues.
    store
        .record_results(
            &l,
            &[EntryResult {
                id: all[1].id,
                attempts: 2,
                outcome: EntryOutcome::Dead {
                    at: OffsetDateTime::now_utc(),
                    error: "x".into(),
                },
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        seqs(&store.fetch_pending(&l, &PendingQuery::AfterSeq(2), 100).await.unwrap()),
        vec![3, 4, 5]
    );
    assert_eq!(
        seqs(&store.fetch_pending(&l, &PendingQuery::AfterSeq(4), 100).await.unwrap()),
        vec![5]
    );
    assert!(
        store
            .fetch_pending(&l, &PendingQuery::AfterSeq(5), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // One stream, from its oldest pending entry.
    append(&store, "a", 2).await;
    let a = store
        .fetch_pending(&l, &PendingQuery::Stream("a".into()), 100)
        .await
        .unwrap();
    assert_eq!(seqs(&a), vec![3, 6, 7]);
    assert_eq!(
        seqs(
            &store
                .fetch_pending(&l, &PendingQuery::Stream("a".into()), 2)
                .await
                .unwrap()
        ),
        vec![3, 6]
    );
}

#[tokio::test]
async fn pending_reads_are_limited_to_the_leases_partition_and_destination() {
    let options = StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .with_outbox("queue", RouteFilter::all())
        .partitions(4);
    let (store, _dir) = open(options).await;
    for i in 0..40 {
        append(&store, &format!("s{i}"), 1).await;
    }
    let mut total = 0;
    for p in 0..4 {
        let l = store.try_acquire_lease("hook", p, "relay", TTL).await.unwrap().unwrap();
        for query in [
            PendingQuery::FromOldest,
            PendingQuery::AfterSeq(0),
            PendingQuery::Stream("s1".into()),
        ] {
            let rows = store.fetch_pending(&l, &query, 1000).await.unwrap();
            assert!(
                rows.iter()
                    .all(|e| e.destination == "hook" && e.partition == p && partition_of(&e.stream_id, 4) == p)
            );
            assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
            if query == PendingQuery::FromOldest {
                total += rows.len();
            }
        }
    }
    assert_eq!(total, 40);
}

#[tokio::test]
async fn dead_letters_can_be_listed_replayed_and_discarded() {
    let options = StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .with_outbox("queue", RouteFilter::all())
        .partitions(1);
    let (store, _dir) = open(options).await;
    for s in ["a", "b", "c"] {
        append(&store, s, 1).await;
    }
    let kill = |entries: Vec<OutboxEntry>| -> Vec<EntryResult> {
        entries
            .iter()
            .map(|e| EntryResult {
                id: e.id,
                attempts: 10,
                outcome: EntryOutcome::Dead {
                    at: OffsetDateTime::now_utc(),
                    error: "gave up".into(),
                },
            })
            .collect()
    };
    for dest in ["hook", "queue"] {
        let l = store.try_acquire_lease(dest, 0, "relay", TTL).await.unwrap().unwrap();
        let e = store.fetch_pending(&l, &PendingQuery::FromOldest, 100).await.unwrap();
        store.record_results(&l, &kill(e)).await.unwrap();
    }
    let dead_filter = |dest: &str| EntryFilter {
        destination: Some(dest.into()),
        state: Some(EntryState::Dead),
        ..EntryFilter::default()
    };
    let dead = store.list_entries(&dead_filter("hook")).await.unwrap();
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .all(|e| e.attempts == 10 && e.last_error.as_deref() == Some("gave up"))
    );

    // Paging and stream filters.
    let page = store
        .list_entries(&EntryFilter {
            after_seq: Some(dead[0].seq),
            limit: Some(1),
            ..dead_filter("hook")
        })
        .await
        .unwrap();
    assert_eq!(seqs(&page), vec![dead[1].seq]);
    let of_b = store
        .list_entries(&EntryFilter {
            stream_id: Some("b".into()),
            ..EntryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(of_b.len(), 2);

    // Replay one.
    let replayed = store
        .replay_dead(&DeadSelector {
            id: Some(dead[0].id),
            destination: None,
        })
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    let entry = &all_entries(&store)
        .await
        .into_iter()
        .find(|e| e.id == dead[0].id)
        .unwrap();
    assert_eq!(
        (entry.state, entry.attempts, entry.dead_at),
        (EntryState::Pending, 0, None)
    );
    assert!(entry.next_attempt_at <= OffsetDateTime::now_utc());
    // The last error is kept for history.
    assert_eq!(entry.last_error.as_deref(), Some("gave up"));

    // Replay all of a destination; the other destination is untouched.
    let replayed = store
        .replay_dead(&DeadSelector {
            id: None,
            destination: Some("hook".into()),
        })
        .await
        .unwrap();
    assert_eq!(replayed, 2);
    assert!(store.list_entries(&dead_filter("hook")).await.unwrap().is_empty());
    let pending = store
        .list_entries(&EntryFilter {
            state: Some(EntryState::Pending),
            ..dead_filter("hook")
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.list_entries(&dead_filter("queue")).await.unwrap().len(), 3);

    // Discard.
    let queue_dead = store.list_entries(&dead_filter("queue")).await.unwrap();
    let discarded = store
        .discard_dead(&DeadSelector {
            id: Some(queue_dead[0].id),
            destination: Some("queue".into()),
        })
        .await
        .unwrap();
    assert_eq!(discarded, 1);
    let discarded = store
        .discard_dead(&DeadSelector {
            id: None,
            destination: Some("queue".into()),
        })
        .await
        .unwrap();
    assert_eq!(discarded, 2);
    // Pending entries are never discarded by a dead-letter selector.
    assert_eq!(
        store
            .discard_dead(&DeadSelector {
                id: Some(dead[0].id),
                destination: None
            })
            .await
            .unwrap(),
        0
    );
    assert_eq!(all_entries(&store).await.len(), 3);
    assert!(matches!(
        store.replay_dead(&DeadSelector::default()).await,
        Err(Error::Config(_))
    ));
    assert!(matches!(
        store.discard_dead(&DeadSelector::default()).await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn purge_removes_only_delivered_entries_older_than_the_cutoff() {
    let (store, _dir) = open(options()).await;
    append(&store, "a", 4).await;
    let l = lease(&store, "relay").await;
    let e = store.fetch_pending(&l, &PendingQuery::FromOldest, 10).await.unwrap();
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(10);
    let results = vec![
        EntryResult {
            id: e[0].id,
            attempts: 1,
            outcome: EntryOutcome::Delivered { at: long_ago },
        },
        EntryResult {
            id: e[1].id,
            attempts: 1,
            outcome: EntryOutcome::Delivered {
                at: OffsetDateTime::now_utc(),
            },
        },
        EntryResult {
            id: e[2].id,
            attempts: 1,
            outcome: EntryOutcome::Dead {
                at: long_ago,
                error: "x".into(),
            },
        },
    ];
    store.record_results(&l, &results).await.unwrap();
    let purged = store
        .purge_delivered(OffsetDateTime::now_utc() - time::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let left: Vec<_> = all_entries(&store).await.iter().map(|e| e.id).collect();
    assert_eq!(left, vec![e[1].id, e[2].id, e[3].id]);
}

#[tokio::test]
async fn status_destinations_and_disabled_destinations() {
    let options = StoreOptions::default()
        .with_outbox("hook", RouteFilter::all().event_types(["A"]))
        .destination("emails");
    let (store, _dir) = open(options).await;
    store
        .append("s", ExpectedVersion::Any, vec![ev("A", json!(1)), ev("B", json!(2))])
        .await
        .unwrap();
    assert_eq!(store.destinations().await.unwrap(), vec!["hook"]);
    let status = store.status().await.unwrap();
    let names: Vec<_> = status.iter().map(|s| s.destination.as_str()).collect();
    assert_eq!(names, vec!["emails", "hook"]);
    assert_eq!(status[0].pending, 0);
    assert_eq!(status[0].oldest_pending_age_secs, None);
    assert_eq!((status[1].pending, status[1].retrying), (1, 0));

    assert!(store.disabled_destinations().await.unwrap().is_empty());
    store.disable_destination("hook", "HTTP 410 Gone").await.unwrap();
    store.disable_destination("hook", "HTTP 410 Gone again").await.unwrap();
    let disabled = store.disabled_destinations().await.unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].destination, "hook");
    assert_eq!(disabled[0].reason, "HTTP 410 Gone again");
    assert!(store.enable_destination("hook").await.unwrap());
    assert!(!store.enable_destination("hook").await.unwrap());
    assert!(store.disabled_destinations().await.unwrap().is_empty());
}

#[tokio::test]
async fn relays_announce_themselves_per_destination() {
    let (store, _dir) = open(options()).await;
    assert!(store.live_relays("hook").await.unwrap().is_empty());
    store.heartbeat("hook", "relay-b", TTL).await.unwrap();
    store.heartbeat("hook", "relay-a", TTL).await.unwrap();
    store.heartbeat("other", "relay-c", TTL).await.unwrap();
    assert_eq!(store.live_relays("hook").await.unwrap(), vec!["relay-a", "relay-b"]);
    // Renewed, not duplicated.
    store.heartbeat("hook", "relay-a", TTL).await.unwrap();
    assert_eq!(store.live_relays("hook").await.unwrap().len(), 2);
    // A zero ttl signs off.
    store.heartbeat("hook", "relay-b", Duration::ZERO).await.unwrap();
    assert_eq!(store.live_relays("hook").await.unwrap(), vec!["relay-a"]);
    assert_eq!(store.live_relays("other").await.unwrap(), vec!["relay-c"]);
}
