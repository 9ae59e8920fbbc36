//! The outbox contract the relay relies on: leases, pending reads, bulk results,
//! status and retention, driven directly (no relay running). The dead-letter queue is
//! in `dead_letters`.

use std::time::Duration;

use eskit::{
    BULK_BATCH, EntryState, Error, EventStore, ExpectedVersion, OutboxStore, PendingQuery, RouteFilter, StoreOptions,
    StoreTransaction, TransactionalStore, partition_of,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::support::{LEASE_TTL as TTL, SHORT, dead, delivered, entries_in, entries_of, entry, ev, ids, retry};
use crate::Harness;
use crate::wait::wait_until;

/// Whether a stored time is the one written (backends keep at least milliseconds).
fn close(a: OffsetDateTime, b: OffsetDateTime) -> bool {
    (a - b).abs() < time::Duration::milliseconds(1)
}

/// A lease is exclusive while live, renewable by its owner (same epoch), releasable,
/// and taken over (also through another handle on the database, as by another
/// process) after release or expiry with a higher epoch; partitions and
/// destinations are leased independently and `list_leases` shows each row with its
/// owner, epoch and liveness (an expired lease is not live). Only the current holder
/// writes results: a stale lease (an older epoch), a forged one (the current epoch with
/// another owner) and an expired one, even before anyone took it over, are refused with
/// `LeaseLost` and write nothing; an empty batch under a held lease is accepted; a stale
/// holder's release leaves the current holder's lease alone.
pub async fn leases_are_exclusive_and_fenced<H: Harness>(h: &H) {
    let options = StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .with_outbox("expiring", RouteFilter::all())
        .partitions(2);
    let store = h.open(options.clone()).await;
    let event = ev("A", 1);
    store
        .append("s", ExpectedVersion::Any, vec![event.clone()])
        .await
        .expect("append");
    let id = super::support::entry_id(&event, "hook");
    let expiring_id = super::support::entry_id(&event, "expiring");
    // The stream's partition, and the other one.
    let p = partition_of("s", 2);
    let other = 1 - p;
    let acquire = |destination: &'static str, partition: u32, owner: &'static str, ttl: Duration| {
        let store = &store;
        async move {
            store
                .try_acquire_lease(destination, partition, owner, ttl)
                .await
                .expect("acquire")
        }
    };
    let pending_untouched = |id: Uuid, what: &'static str| {
        let store = &store;
        async move {
            let e = entry(&**store, id).await.expect("entry");
            assert_eq!((e.state, e.attempts), (EntryState::Pending, 0), "{what} wrote nothing");
        }
    };

    let a = acquire("hook", p, "relay-a", TTL)
        .await
        .expect("a free lease is granted");
    assert_eq!(
        (a.destination.as_str(), a.partition, a.owner.as_str()),
        ("hook", p, "relay-a")
    );
    assert!(
        acquire("hook", p, "relay-b", TTL).await.is_none(),
        "a live lease is not granted to another owner"
    );
    let again = acquire("hook", p, "relay-a", TTL)
        .await
        .expect("the owner re-acquires its own lease");
    assert_eq!(again.epoch, a.epoch, "re-acquiring our own lease keeps the epoch");
    assert!(store.renew_lease(&a, TTL).await.expect("renew"), "the owner renews");
    let held_other = acquire("hook", other, "relay-b", TTL)
        .await
        .expect("another partition of the same destination is leased independently");
    let mut leases = store.list_leases("hook").await.expect("list_leases");
    leases.sort_by_key(|l| l.partition);
    let rows: Vec<_> = leases
        .iter()
        .map(|l| (l.destination.as_str(), l.partition, l.owner.as_str(), l.epoch, l.live))
        .collect();
    let mut expected = vec![
        ("hook", p, "relay-a", a.epoch, true),
        ("hook", other, "relay-b", held_other.epoch, true),
    ];
    expected.sort_by_key(|r| r.1);
    assert_eq!(rows, expected, "one row per leased partition");
    assert!(
        acquire("audit", p, "relay-b", TTL).await.is_some(),
        "leases of another destination are independent"
    );

    store.release_lease(&a).await.expect("release");
    let second = h.reopen(&store, options).await;
    let b = second
        .try_acquire_lease("hook", p, "relay-b", TTL)
        .await
        .expect("acquire")
        .expect("a released lease is granted at once, also to another process");
    assert!(
        b.epoch > a.epoch,
        "a change of owner increases the epoch ({} -> {})",
        a.epoch,
        b.epoch
    );
    assert!(
        !store.renew_lease(&a, TTL).await.expect("renew"),
        "the old owner cannot renew"
    );
    match store
        .record_results(&a, &[delivered(id, 1, OffsetDateTime::now_utc())])
        .await
    {
        Err(Error::LeaseLost { destination, partition }) => assert_eq!((destination.as_str(), partition), ("hook", p)),
        other => panic!("a stale lease must not write results, got {other:?}"),
    }
    pending_untouched(id, "the stale lease's write").await;
    let forged = eskit::Lease {
        owner: "relay-a".into(),
        ..b.clone()
    };
    let refused = store
        .record_results(&forged, &[delivered(id, 1, OffsetDateTime::now_utc())])
        .await;
    assert!(
        matches!(refused, Err(Error::LeaseLost { .. })),
        "the current epoch with another owner must not write results, got {refused:?}"
    );
    pending_untouched(id, "the forged lease's write").await;
    store.release_lease(&a).await.expect("release a stale lease");
    assert!(
        acquire("hook", p, "relay-c", TTL).await.is_none(),
        "a stale holder's release does not free the current holder's lease"
    );
    assert!(
        store.renew_lease(&b, TTL).await.expect("renew"),
        "the current holder keeps its lease"
    );
    second
        .record_results(&b, &[])
        .await
        .expect("an empty batch is accepted");
    pending_untouched(id, "an empty batch").await;
    second
        .record_results(&b, &[delivered(id, 1, OffsetDateTime::now_utc())])
        .await
        .expect("the current owner writes results");
    assert_eq!(entry(&*store, id).await.expect("entry").state, EntryState::Delivered);

    // Expiry.
    let c = acquire("expiring", p, "relay-c", Duration::from_millis(300))
        .await
        .expect("granted");
    let lapsed = wait_until(SHORT, || async {
        let leases = store.list_leases("expiring").await.expect("list_leases");
        assert_eq!(leases.len(), 1, "{leases:?}");
        assert_eq!((leases[0].owner.as_str(), leases[0].epoch), ("relay-c", c.epoch));
        !leases[0].live
    })
    .await;
    assert!(lapsed, "list_leases shows an expired lease as not live");
    let refused = store
        .record_results(&c, &[delivered(expiring_id, 1, OffsetDateTime::now_utc())])
        .await;
    assert!(
        matches!(refused, Err(Error::LeaseLost { .. })),
        "an expired lease must not write results, even before a takeover; got {refused:?}"
    );
    pending_untouched(expiring_id, "the expired lease's write").await;
    let d = acquire("expiring", p, "relay-d", TTL)
        .await
        .expect("an expired lease is taken over");
    assert!(d.epoch > c.epoch, "takeover after expiry increases the epoch");
    assert!(
        !store.renew_lease(&c, TTL).await.expect("renew"),
        "an expired, taken-over lease cannot be renewed"
    );
    let leases = store.list_leases("expiring").await.expect("list_leases");
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].owner.as_str(), leases[0].live), ("relay-d", true));

    // The last owner re-acquiring its own lapsed lease gets a new epoch too, so work
    // begun under the lapsed one cannot pass the fence.
    let e = acquire("expiring", other, "relay-e", Duration::from_millis(300))
        .await
        .expect("granted");
    let lapsed = wait_until(SHORT, || async {
        let leases = store.list_leases("expiring").await.expect("list_leases");
        leases.iter().any(|l| l.partition == other && !l.live)
    })
    .await;
    assert!(lapsed, "the lease lapses");
    let again = acquire("expiring", other, "relay-e", TTL)
        .await
        .expect("the last owner takes its lapsed lease again");
    assert!(again.epoch > e.epoch, "a lapsed lease comes back with a higher epoch");
    assert!(
        !store.renew_lease(&e, TTL).await.expect("renew"),
        "the lapsed lease's epoch is fenced off"
    );
}

/// `fetch_pending`: `FromOldest` returns pending entries in seq order (also those not
/// yet due), with a limit; `Stream` returns one stream's, from its oldest pending one;
/// `AfterSeq(c)` returns newer entries of streams with nothing pending at or below `c`
/// (a retrying entry, even one not yet due, still blocks its stream; a delivered or
/// dead one no longer does). Delivered and dead entries leave the pending set; results
/// record attempts, errors and times (to the millisecond); a result for an entry no
/// longer pending is ignored. Every query is confined to the lease's destination and
/// partition.
pub async fn fetch_pending_and_record_results<H: Harness>(h: &H) {
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .partitions(1),
        )
        .await;
    let (a1, a2, b1, a3, b2) = (ev("A", 1), ev("A", 2), ev("B", 1), ev("A", 3), ev("B", 2));
    for (stream, events) in [
        ("s-a", vec![a1.clone(), a2.clone()]),
        ("s-b", vec![b1.clone()]),
        ("s-a", vec![a3.clone()]),
        ("s-b", vec![b2.clone()]),
    ] {
        store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    let id = |e: &eskit::EventData| super::support::entry_id(e, "hook");
    let (a1, a2, b1, a3, b2) = (id(&a1), id(&a2), id(&b1), id(&a3), id(&b2));
    let lease = store
        .try_acquire_lease("hook", 0, "relay-a", TTL)
        .await
        .expect("acquire")
        .expect("granted");
    let fetch = |q: PendingQuery, limit: u32| {
        let store = &store;
        let lease = &lease;
        async move { store.fetch_pending(lease, &q, limit).await.expect("fetch_pending") }
    };

    let all = fetch(PendingQuery::FromOldest, 100).await;
    assert_eq!(ids(&all), vec![a1, a2, b1, a3, b2], "FromOldest is in seq order");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let seq = |id: Uuid| all.iter().find(|e| e.id == id).map(|e| e.seq).expect("seq");
    assert_eq!(
        ids(&fetch(PendingQuery::FromOldest, 2).await),
        vec![a1, a2],
        "the limit holds"
    );
    assert_eq!(
        ids(&fetch(PendingQuery::Stream("s-a".into()), 100).await),
        vec![a1, a2, a3]
    );
    assert_eq!(ids(&fetch(PendingQuery::Stream("s-a".into()), 1).await), vec![a1]);
    assert_eq!(ids(&fetch(PendingQuery::Stream("s-b".into()), 100).await), vec![b1, b2]);
    assert!(fetch(PendingQuery::Stream("nope".into()), 100).await.is_empty());
    assert_eq!(
        ids(&fetch(PendingQuery::AfterSeq(seq(a1)), 100).await),
        vec![b1, b2],
        "AfterSeq skips streams with a pending entry at or below the cursor"
    );
    assert!(fetch(PendingQuery::AfterSeq(seq(b1)), 100).await.is_empty());

    let now = OffsetDateTime::now_utc();
    let later = now + time::Duration::hours(1);
    store
        .record_results(
            &lease,
            &[delivered(a1, 1, now), retry(b1, 1, later, "boom: 503 from receiver")],
        )
        .await
        .expect("record_results");
    let all = fetch(PendingQuery::FromOldest, 100).await;
    assert_eq!(
        ids(&all),
        vec![a2, b1, a3, b2],
        "a delivered entry leaves; a retrying one stays, due or not"
    );
    let retrying = all.iter().find(|e| e.id == b1).expect("b1");
    assert_eq!(retrying.attempts, 1);
    assert_eq!(retrying.last_error.as_deref(), Some("boom: 503 from receiver"));
    assert!(
        close(retrying.next_attempt_at, later),
        "next_attempt_at recorded: {} (written: {later})",
        retrying.next_attempt_at
    );
    assert_eq!(retrying.state, EntryState::Pending);
    assert_eq!(
        ids(&fetch(PendingQuery::Stream("s-a".into()), 100).await),
        vec![a2, a3],
        "Stream starts at the stream's oldest pending entry"
    );
    assert_eq!(
        ids(&fetch(PendingQuery::AfterSeq(seq(a1)), 100).await),
        vec![a2, b1, a3, b2]
    );
    assert_eq!(ids(&fetch(PendingQuery::AfterSeq(seq(a2)), 100).await), vec![b1, b2]);
    assert!(
        fetch(PendingQuery::AfterSeq(seq(b1)), 100).await.is_empty(),
        "a retrying entry (not yet due) at or below the cursor blocks its stream"
    );

    let done = entry(&*store, a1).await.expect("a1");
    assert_eq!((done.state, done.attempts), (EntryState::Delivered, 1));
    assert_eq!(done.last_error, None, "a delivery records no error");
    assert!(
        done.delivered_at.is_some_and(|t| close(t, now)),
        "delivered_at: {:?} (written: {now})",
        done.delivered_at
    );

    store
        .record_results(&lease, &[dead(a2, 3, now, "410 Gone")])
        .await
        .expect("record_results");
    assert_eq!(ids(&fetch(PendingQuery::FromOldest, 100).await), vec![b1, a3, b2]);
    assert_eq!(
        ids(&fetch(PendingQuery::AfterSeq(seq(b1)), 100).await),
        vec![a3],
        "a dead entry no longer blocks its stream; the retrying one still does"
    );
    let dlq = entries_in(&*store, "hook", EntryState::Dead).await;
    assert_eq!(ids(&dlq), vec![a2]);
    assert_eq!((dlq[0].attempts, dlq[0].last_error.as_deref()), (3, Some("410 Gone")));
    assert!(
        dlq[0].dead_at.is_some_and(|t| close(t, now)),
        "dead_at: {:?} (written: {now})",
        dlq[0].dead_at
    );
    assert_eq!(dlq[0].delivered_at, None);

    // Results for entries no longer pending are ignored (and are no error).
    store
        .record_results(&lease, &[delivered(a2, 4, later), retry(a1, 2, later, "late")])
        .await
        .expect("results for settled entries");
    let (still_dead, still_delivered) = (
        entry(&*store, a2).await.expect("a2"),
        entry(&*store, a1).await.expect("a1"),
    );
    assert_eq!(
        (still_dead.state, still_dead.attempts, still_dead.delivered_at),
        (EntryState::Dead, 3, None),
        "a dead entry stays dead"
    );
    assert_eq!(
        (
            still_delivered.state,
            still_delivered.attempts,
            still_delivered.last_error
        ),
        (EntryState::Delivered, 1, None),
        "a delivered entry stays delivered"
    );

    // Bulk: several results in one call.
    store
        .record_results(
            &lease,
            &[delivered(b1, 2, now), delivered(a3, 1, now), delivered(b2, 1, now)],
        )
        .await
        .expect("record_results");
    assert!(fetch(PendingQuery::FromOldest, 100).await.is_empty());
    assert_eq!(entries_in(&*store, "hook", EntryState::Delivered).await.len(), 4);

    // Reads stay within the lease's destination and partition.
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .with_outbox("audit", RouteFilter::all())
                .partitions(4),
        )
        .await;
    let streams: Vec<String> = (0..64).map(|i| format!("p-{i}")).collect();
    for s in &streams {
        store
            .append(s, ExpectedVersion::Any, vec![ev("A", 1)])
            .await
            .expect("append");
    }
    for partition in 0..4 {
        let lease = store
            .try_acquire_lease("hook", partition, "relay-a", TTL)
            .await
            .expect("acquire")
            .expect("granted");
        let mine: Vec<&String> = streams.iter().filter(|s| partition_of(s, 4) == partition).collect();
        for query in [
            PendingQuery::FromOldest,
            PendingQuery::AfterSeq(0),
            PendingQuery::Stream("p-0".into()),
        ] {
            let got = store.fetch_pending(&lease, &query, 1000).await.expect("fetch_pending");
            let expected = match &query {
                PendingQuery::Stream(s) => usize::from(mine.contains(&s)),
                _ => mine.len(),
            };
            assert_eq!(got.len(), expected, "partition {partition}, {query:?}");
            assert!(
                got.iter().all(|e| e.destination == "hook" && e.partition == partition),
                "partition {partition}, {query:?}"
            );
            assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "{query:?} in seq order");
        }
    }
}

/// `status` counts pending (and of those, retrying), delivered and dead per
/// destination, with the oldest pending age, sorted by destination, and lists a known
/// destination without entries with zero counts and no age; `destinations` names only
/// those with entries.
pub async fn status_counts<H: Harness>(h: &H) {
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .with_outbox("audit", RouteFilter::all().event_types(["Audited"]))
                .destination("mail")
                .partitions(1),
        )
        .await;
    let events: Vec<_> = (1..=5).map(|n| ev("A", n)).collect();
    store
        .append("s", ExpectedVersion::Any, events.clone())
        .await
        .expect("append");
    store
        .append("t", ExpectedVersion::Any, vec![ev("Audited", 1)])
        .await
        .expect("append");
    let id = |i: usize| super::support::entry_id(&events[i], "hook");
    let lease = store
        .try_acquire_lease("hook", 0, "relay-a", TTL)
        .await
        .expect("acquire")
        .expect("granted");
    let now = OffsetDateTime::now_utc();
    store
        .record_results(
            &lease,
            &[
                delivered(id(0), 1, now),
                dead(id(1), 1, now, "400"),
                retry(id(2), 2, now + time::Duration::minutes(5), "503"),
            ],
        )
        .await
        .expect("record_results");

    // hook: s1 delivered, s2 dead, s3 retrying, s4, s5 and t1 pending.
    let status = store.status().await.expect("status");
    let names: Vec<&str> = status.iter().map(|s| s.destination.as_str()).collect();
    assert_eq!(names, vec!["audit", "hook", "mail"], "every known destination, sorted");
    let hook = status.iter().find(|s| s.destination == "hook").expect("hook status");
    assert_eq!(
        (hook.pending, hook.retrying, hook.delivered, hook.dead),
        (4, 1, 1, 1),
        "hook: {hook:?}"
    );
    assert!(hook.oldest_pending_age_secs.is_some_and(|a| a >= 0.0), "{hook:?}");
    let audit = status.iter().find(|s| s.destination == "audit").expect("audit status");
    assert_eq!(
        (audit.pending, audit.retrying, audit.delivered, audit.dead),
        (1, 0, 0, 0)
    );
    let mail = status.iter().find(|s| s.destination == "mail").expect("mail status");
    assert_eq!(
        *mail,
        eskit::DestinationStatus {
            destination: "mail".into(),
            ..Default::default()
        },
        "a destination without entries: zero counts, no age"
    );
    let mut names = store.destinations().await.expect("destinations");
    names.sort();
    assert_eq!(names, vec!["audit", "hook"], "only destinations with entries");
}

/// `purge_delivered_batch(before, limit)` deletes at most `limit` delivered entries,
/// the oldest deliveries first (not the oldest entries); `purge_delivered(before)`
/// deletes every delivered entry delivered before `before`, and nothing else.
pub async fn purge_delivered_removes_old_deliveries<H: Harness>(h: &H) {
    let (store, events, lease) = super::support::hook_stream_leased(h, 5).await;
    let id = |i: usize| super::support::entry_id(&events[i], "hook");
    let now = OffsetDateTime::now_utc();
    let old = now - time::Duration::hours(2);
    store
        .record_results(
            &lease,
            &[
                delivered(id(0), 1, old),
                delivered(id(1), 1, old - time::Duration::hours(1)),
                delivered(id(2), 1, now),
                dead(id(3), 1, old, "400"),
            ],
        )
        .await
        .expect("record_results");
    let cutoff = now - time::Duration::hours(1);
    assert_eq!(store.purge_delivered_batch(cutoff, 1).await.expect("purge one"), 1);
    assert_eq!(
        ids(&entries_of(&*store, "hook").await),
        vec![id(0), id(2), id(3), id(4)],
        "the oldest delivery goes first"
    );
    assert_eq!(store.purge_delivered(cutoff).await.expect("purge"), 1);
    assert_eq!(ids(&entries_of(&*store, "hook").await), vec![id(2), id(3), id(4)]);
    assert_eq!(store.purge_delivered(cutoff).await.expect("purge again"), 0);
    assert_eq!(
        store
            .purge_delivered(now + time::Duration::minutes(1))
            .await
            .expect("purge all delivered"),
        1
    );
    let left = entries_of(&*store, "hook").await;
    assert_eq!(ids(&left), vec![id(3), id(4)], "dead and pending entries stay");
    assert_eq!(left[0].state, EntryState::Dead);
    assert_eq!(left[1].state, EntryState::Pending);
}

/// `purge_delivered` goes on batch after batch until every old delivery is gone: more
/// than two batches' worth of delivered entries are all deleted, the pending one stays.
pub async fn purge_delivered_runs_in_batches<H: Harness>(h: &H) {
    let count = 2 * BULK_BATCH as usize + 7;
    let (store, events, lease) = super::support::hook_stream_leased(h, count as u64 + 1).await;
    let old = OffsetDateTime::now_utc() - time::Duration::hours(2);
    let results: Vec<_> = events[..count]
        .iter()
        .map(|e| delivered(super::support::entry_id(e, "hook"), 1, old))
        .collect();
    store.record_results(&lease, &results).await.expect("record_results");
    let cutoff = old + time::Duration::minutes(1);
    assert_eq!(store.purge_delivered(cutoff).await.expect("purge"), count as u64);
    let status = store.status().await.expect("status");
    assert_eq!((status[0].delivered, status[0].pending), (0, 1), "{status:?}");
}

/// A commit that writes outbox entries notifies the store's wakeup (in-process or
/// through the database), for plain appends and for transactions.
pub async fn commit_wakes_the_relay<H: Harness>(h: &H) {
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .destination("mail"),
        )
        .await;
    let wakeup = store.wakeup();

    let notified = wakeup.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    store
        .append("s", ExpectedVersion::Any, vec![ev("A", 1)])
        .await
        .expect("append");
    assert!(
        tokio::time::timeout(SHORT, notified).await.is_ok(),
        "an append with outbox entries wakes the relay"
    );

    let notified = wakeup.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let mut tx = store.begin().await.expect("begin");
    let message = eskit::OutboxMessage::json("mail", "m", "Ping", &serde_json::json!({})).expect("message");
    tx.write_outbox(message).await.expect("write_outbox");
    tx.commit().await.expect("commit");
    assert!(
        tokio::time::timeout(SHORT, notified).await.is_ok(),
        "a committed transaction with outbox messages wakes the relay"
    );
}

/// Disabling a destination records it with its reason (an upsert); enabling removes it
/// and says whether it was disabled.
pub async fn destinations_disable_and_enable<H: Harness>(h: &H) {
    let store = h
        .open(StoreOptions::default().with_outbox("hook", RouteFilter::all()))
        .await;
    assert!(store.disabled_destinations().await.expect("disabled").is_empty());
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    store
        .disable_destination("hook", "HTTP 410 Gone from http://127.0.0.1:9")
        .await
        .expect("disable");
    let after = OffsetDateTime::now_utc() + time::Duration::seconds(5);
    let disabled = store.disabled_destinations().await.expect("disabled");
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0].destination, "hook");
    assert_eq!(disabled[0].reason, "HTTP 410 Gone from http://127.0.0.1:9");
    assert!(
        before <= disabled[0].since && disabled[0].since <= after,
        "{disabled:?}"
    );
    store
        .disable_destination("hook", "operator")
        .await
        .expect("disable again");
    let disabled = store.disabled_destinations().await.expect("disabled");
    assert_eq!(disabled.len(), 1, "disabling twice keeps one row: {disabled:?}");
    assert_eq!(disabled[0].reason, "operator", "the latest reason wins");
    assert!(
        store.enable_destination("hook").await.expect("enable"),
        "it was disabled"
    );
    assert!(
        !store.enable_destination("hook").await.expect("enable again"),
        "no longer disabled"
    );
    assert!(
        !store
            .enable_destination("never-disabled")
            .await
            .expect("enable unknown")
    );
    assert!(store.disabled_destinations().await.expect("disabled").is_empty());
}

/// Relays announce themselves per destination with a heartbeat: a live one is listed
/// until its heartbeat expires, a zero ttl signs it off at once, destinations are
/// independent.
pub async fn relay_heartbeats<H: Harness>(h: &H) {
    let store = h
        .open(StoreOptions::default().with_outbox("hook", RouteFilter::all()))
        .await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert!(store.live_relays("hook").await.expect("live_relays").is_empty());
    store.heartbeat("hook", "relay-a", TTL).await.expect("heartbeat");
    store.heartbeat("hook", "relay-b", TTL).await.expect("heartbeat");
    store.heartbeat("hook", "relay-b", TTL).await.expect("heartbeat again");
    store.heartbeat("audit", "relay-c", TTL).await.expect("heartbeat");
    assert_eq!(
        sorted(store.live_relays("hook").await.expect("live_relays")),
        vec!["relay-a", "relay-b"]
    );
    assert_eq!(store.live_relays("audit").await.expect("live_relays"), vec!["relay-c"]);
    store
        .heartbeat("hook", "relay-a", Duration::ZERO)
        .await
        .expect("sign off");
    assert_eq!(store.live_relays("hook").await.expect("live_relays"), vec!["relay-b"]);
    store
        .heartbeat("hook", "relay-d", Duration::from_millis(200))
        .await
        .expect("short heartbeat");
    let expired = wait_until(SHORT, || async {
        !store
            .live_relays("hook")
            .await
            .expect("live_relays")
            .contains(&"relay-d".to_string())
    })
    .await;
    assert!(expired, "a relay whose heartbeat expired is no longer listed");
    assert_eq!(store.live_relays("hook").await.expect("live_relays"), vec!["relay-b"]);
}
