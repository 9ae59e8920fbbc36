//! The dead-letter queue: listing by filter (against `DeadFilter::matches`, the core's
//! reference), replay and discard of one entry, of a destination or of a filter's
//! matches, and bulk replays and discards in batches.

use eskit::{
    BULK_BATCH, DeadFilter, DeadSelector, EntryFilter, EntryState, Error, EventStore, ExpectedVersion, OutboxEntry,
    OutboxStore, PendingQuery, RouteFilter, StoreOptions,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::support::{LEASE_TTL as TTL, dead, entries_in, entries_of, entry, ev, ids};
use crate::Harness;

/// The first destination's (pending, dead) counts.
async fn pending_and_dead<S: OutboxStore + ?Sized>(store: &S) -> (u64, u64) {
    let status = store.status().await.expect("status");
    (status[0].pending, status[0].dead)
}

const ERRORS: [&str; 4] = [
    "HTTP 503: Service Unavailable",
    "timeout after 5s",
    "HTTP 400: bad payload",
    "TIMEOUT (connect)",
];

/// 8 dead entries in each of two destinations (`hook`, `other`), dead one minute apart
/// from `base` (returned), with rotating errors; the store and every dead entry.
async fn dead_store<H: Harness>(h: &H) -> (std::sync::Arc<H::Store>, OffsetDateTime, Vec<OutboxEntry>) {
    let store = h
        .open(
            StoreOptions::default()
                .partitions(1)
                .with_outbox("hook", RouteFilter::all())
                .with_outbox("other", RouteFilter::all()),
        )
        .await;
    for i in 0..8 {
        store
            .append(&format!("s{i}"), ExpectedVersion::Any, vec![ev("E", i)])
            .await
            .expect("append");
    }
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).expect("whole second") - time::Duration::hours(1);
    for destination in ["hook", "other"] {
        let lease = store
            .try_acquire_lease(destination, 0, "test", TTL)
            .await
            .expect("acquire")
            .expect("granted");
        let pending = store
            .fetch_pending(&lease, &PendingQuery::FromOldest, 100)
            .await
            .expect("fetch_pending");
        assert_eq!(pending.len(), 8);
        let results: Vec<_> = pending
            .iter()
            .enumerate()
            .map(|(i, e)| {
                dead(
                    e.id,
                    3,
                    base + time::Duration::minutes(i as i64),
                    ERRORS[i % ERRORS.len()],
                )
            })
            .collect();
        store.record_results(&lease, &results).await.expect("record_results");
        store.release_lease(&lease).await.expect("release");
    }
    let all = all_dead(&*store).await;
    assert_eq!(all.len(), 16);
    (store, base, all)
}

async fn all_dead<S: OutboxStore + ?Sized>(store: &S) -> Vec<OutboxEntry> {
    store
        .list_entries(&EntryFilter {
            state: Some(EntryState::Dead),
            limit: Some(1000),
            ..EntryFilter::default()
        })
        .await
        .expect("list_entries")
}

/// `list_dead` returns exactly what `DeadFilter::matches` selects (destination, error
/// text case-insensitive, dead-at window, after a seq), oldest first; paging by limit
/// and `after_seq` walks every match once.
pub async fn list_dead_agrees_with_the_reference_filter<H: Harness>(h: &H) {
    let (store, base, all) = dead_store(h).await;
    let minute = |m: i64| Some(base + time::Duration::minutes(m));
    let filters = [
        DeadFilter::default(),
        DeadFilter {
            destination: Some("hook".into()),
            ..DeadFilter::default()
        },
        DeadFilter {
            error_contains: Some("timeout".into()),
            ..DeadFilter::default()
        },
        DeadFilter {
            error_contains: Some("SERVICE unavail".into()),
            destination: Some("other".into()),
            ..DeadFilter::default()
        },
        DeadFilter {
            dead_from: minute(2),
            dead_to: minute(5),
            ..DeadFilter::default()
        },
        DeadFilter {
            dead_from: minute(7),
            ..DeadFilter::default()
        },
        DeadFilter {
            dead_to: minute(0),
            ..DeadFilter::default()
        },
        DeadFilter {
            error_contains: Some("nothing like this".into()),
            ..DeadFilter::default()
        },
        DeadFilter {
            after_seq: Some(all[5].seq),
            error_contains: Some("HTTP".into()),
            ..DeadFilter::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<Uuid> = all
            .iter()
            .filter(|e| filter.after_seq.is_none_or(|a| e.seq > a))
            .filter(|e| filter.matches(e))
            .map(|e| e.id)
            .collect();
        let found = store.list_dead(filter).await.expect("list_dead");
        assert_eq!(ids(&found), expected, "{filter:?}");
    }
    let filter = DeadFilter {
        error_contains: Some("timeout".into()),
        limit: Some(3),
        ..DeadFilter::default()
    };
    let mut seen = Vec::new();
    let mut page = filter.clone();
    loop {
        let found = store.list_dead(&page).await.expect("list_dead page");
        seen.extend(ids(&found));
        match found.last() {
            Some(last) if found.len() == 3 => page.after_seq = Some(last.seq),
            _ => break,
        }
    }
    let expected: Vec<Uuid> = all.iter().filter(|e| filter.matches(e)).map(|e| e.id).collect();
    assert_eq!(seen, expected);
}

/// `replay_dead_matching` moves exactly the matches back to pending (attempts reset,
/// `dead_at` cleared) and a second run finds none; `discard_dead_matching` deletes
/// exactly its matches; an empty filter discards every remaining dead entry and leaves
/// the replayed (pending) ones.
pub async fn replay_and_discard_touch_only_the_matches<H: Harness>(h: &H) {
    let (store, base, all) = dead_store(h).await;

    let timeouts = DeadFilter {
        destination: Some("hook".into()),
        error_contains: Some("TimeOut".into()),
        ..DeadFilter::default()
    };
    let replayed: Vec<Uuid> = all.iter().filter(|e| timeouts.matches(e)).map(|e| e.id).collect();
    assert_eq!(replayed.len(), 4);
    assert_eq!(store.replay_dead_matching(&timeouts).await.expect("replay"), 4);
    for e in entries_of(&*store, "hook")
        .await
        .iter()
        .chain(&entries_of(&*store, "other").await)
    {
        if replayed.contains(&e.id) {
            assert_eq!(
                (e.state, e.attempts, e.dead_at),
                (EntryState::Pending, 0, None),
                "{e:?}"
            );
        } else {
            assert_eq!(e.state, EntryState::Dead, "{e:?}");
        }
    }
    assert_eq!(store.replay_dead_matching(&timeouts).await.expect("replay again"), 0);

    let early = DeadFilter {
        dead_to: Some(base + time::Duration::minutes(4)),
        ..DeadFilter::default()
    };
    let before = all_dead(&*store).await;
    let discarded: Vec<Uuid> = before.iter().filter(|e| early.matches(e)).map(|e| e.id).collect();
    assert_eq!(
        store.discard_dead_matching(&early).await.expect("discard"),
        discarded.len() as u64
    );
    let after = all_dead(&*store).await;
    assert!(after.iter().all(|e| !discarded.contains(&e.id)));
    assert_eq!(after.len(), before.len() - discarded.len());

    assert_eq!(
        store
            .discard_dead_matching(&DeadFilter::default())
            .await
            .expect("discard all"),
        after.len() as u64
    );
    assert!(all_dead(&*store).await.is_empty());
    assert_eq!(
        entries_in(&*store, "hook", EntryState::Pending).await.len(),
        4,
        "replayed entries stay"
    );
}

/// The dead-letter queue: list by destination (paged by `after_seq` and `limit`) and
/// entries by stream; replay one entry or a whole destination (attempts reset,
/// `dead_at` cleared, due now, the last error kept), discard one or a destination; an
/// entry selected by id with another destination is not touched; only dead entries are
/// touched.
pub async fn dead_letter_queue_operations<H: Harness>(h: &H) {
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .with_outbox("audit", RouteFilter::all())
                .partitions(1),
        )
        .await;
    let events: Vec<_> = (1..=3).map(|n| ev("A", n)).collect();
    for (i, e) in events.iter().enumerate() {
        store
            .append(&format!("s{i}"), ExpectedVersion::Any, vec![e.clone()])
            .await
            .expect("append");
    }
    let hook = |i: usize| super::support::entry_id(&events[i], "hook");
    let audit = |i: usize| super::support::entry_id(&events[i], "audit");
    let now = OffsetDateTime::now_utc();
    for (dest, results) in [
        (
            "hook",
            vec![
                dead(hook(0), 5, now, "500 x5"),
                dead(hook(1), 5, now, "500 x5"),
                dead(hook(2), 1, now, "410"),
            ],
        ),
        (
            "audit",
            vec![dead(audit(0), 1, now, "400"), dead(audit(1), 1, now, "400")],
        ),
    ] {
        let lease = store
            .try_acquire_lease(dest, 0, "relay-a", TTL)
            .await
            .expect("acquire")
            .expect("granted");
        store.record_results(&lease, &results).await.expect("record_results");
    }
    let listed = entries_in(&*store, "hook", EntryState::Dead).await;
    assert_eq!(ids(&listed), vec![hook(0), hook(1), hook(2)]);
    assert_eq!(
        (listed[0].attempts, listed[0].last_error.as_deref()),
        (5, Some("500 x5"))
    );
    assert_eq!(entries_in(&*store, "audit", EntryState::Dead).await.len(), 2);
    let page = store
        .list_entries(&EntryFilter {
            destination: Some("hook".into()),
            state: Some(EntryState::Dead),
            after_seq: Some(listed[0].seq),
            limit: Some(1),
            ..EntryFilter::default()
        })
        .await
        .expect("list_entries page");
    assert_eq!(
        ids(&page),
        vec![hook(1)],
        "a page starts after `after_seq`, `limit` long"
    );
    let of_s1 = store
        .list_entries(&EntryFilter {
            stream_id: Some("s1".into()),
            ..EntryFilter::default()
        })
        .await
        .expect("list_entries of a stream");
    let (mut found, mut expected) = (ids(&of_s1), vec![hook(1), audit(1)]);
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "a stream's entries in every destination");

    let elsewhere = DeadSelector {
        id: Some(hook(1)),
        destination: Some("audit".into()),
    };
    assert_eq!(
        store
            .replay_dead(&elsewhere)
            .await
            .expect("replay with another destination"),
        0,
        "an id with another destination replays nothing"
    );
    assert_eq!(entry(&*store, hook(1)).await.expect("entry").state, EntryState::Dead);
    let one = DeadSelector {
        id: Some(hook(1)),
        destination: None,
    };
    assert_eq!(store.replay_dead(&one).await.expect("replay one"), 1);
    let replayed = entry(&*store, hook(1)).await.expect("entry");
    assert_eq!(
        (replayed.state, replayed.attempts, replayed.dead_at),
        (EntryState::Pending, 0, None),
        "replay resets attempts and clears dead_at"
    );
    assert_eq!(
        replayed.last_error.as_deref(),
        Some("500 x5"),
        "the last error is kept for history"
    );
    assert!(
        replayed.next_attempt_at <= OffsetDateTime::now_utc() + time::Duration::seconds(2),
        "a replayed entry is due now"
    );
    assert_eq!(
        store.replay_dead(&one).await.expect("replay again"),
        0,
        "only dead entries replay"
    );
    let whole = DeadSelector {
        id: None,
        destination: Some("hook".into()),
    };
    assert_eq!(store.replay_dead(&whole).await.expect("replay destination"), 2);
    assert!(entries_in(&*store, "hook", EntryState::Dead).await.is_empty());
    assert_eq!(entries_in(&*store, "hook", EntryState::Pending).await.len(), 3);
    assert_eq!(
        entries_in(&*store, "audit", EntryState::Dead).await.len(),
        2,
        "another destination's DLQ is untouched"
    );
    let lease = store
        .try_acquire_lease("hook", 0, "relay-a", TTL)
        .await
        .expect("acquire")
        .expect("granted");
    let pending = store
        .fetch_pending(&lease, &PendingQuery::FromOldest, 100)
        .await
        .expect("fetch_pending");
    assert_eq!(
        ids(&pending),
        vec![hook(0), hook(1), hook(2)],
        "replayed entries are pending again"
    );
    let errors: Vec<_> = pending.iter().map(|e| e.last_error.as_deref()).collect();
    assert_eq!(
        errors,
        vec![Some("500 x5"), Some("500 x5"), Some("410")],
        "a destination's replay keeps the last errors too"
    );

    let discard_one = |id: Uuid, destination: Option<&str>| {
        let selector = DeadSelector {
            id: Some(id),
            destination: destination.map(str::to_string),
        };
        let store = &store;
        async move { store.discard_dead(&selector).await }
    };
    assert_eq!(
        discard_one(hook(0), None).await.expect("discard a pending entry"),
        0,
        "discard touches only dead entries"
    );
    assert_eq!(
        discard_one(audit(0), Some("hook"))
            .await
            .expect("discard with another destination"),
        0,
        "an id with another destination discards nothing"
    );
    assert_eq!(entry(&*store, audit(0)).await.expect("entry").state, EntryState::Dead);
    assert_eq!(discard_one(audit(0), Some("audit")).await.expect("discard one"), 1);
    assert!(entry(&*store, audit(0)).await.is_none(), "a discarded entry is gone");
    assert_eq!(
        store
            .discard_dead(&DeadSelector {
                id: None,
                destination: Some("audit".into())
            })
            .await
            .expect("discard destination"),
        1
    );
    let audit_left = entries_of(&*store, "audit").await;
    assert_eq!(ids(&audit_left), vec![audit(2)], "the pending audit entry stays");
    assert_eq!(audit_left[0].state, EntryState::Pending);
}

/// Replay and discard of many dead entries run batch after batch of at most
/// `BULK_BATCH`: a bounded batch takes the oldest matches and reports the highest seq it
/// touched; an error-text filter over more than two batches of dead entries, every other
/// one matching, replays exactly the matches; a destination-wide discard removes all the
/// rest; a selector with neither an id nor a destination is refused (replay and discard)
/// and changes nothing.
pub async fn dead_letter_bulk_operations_run_in_batches<H: Harness>(h: &H) {
    let count = 2 * BULK_BATCH as usize + 6;
    let (store, events, lease) = super::support::hook_stream_leased(h, count as u64).await;
    let id = |i: usize| super::support::entry_id(&events[i], "hook");
    let now = OffsetDateTime::now_utc();
    let results: Vec<_> = (0..count)
        .map(|i| {
            dead(
                id(i),
                1,
                now,
                if i % 2 == 0 { "read timeout" } else { "400 bad request" },
            )
        })
        .collect();
    store.record_results(&lease, &results).await.expect("record_results");
    let timeouts = DeadFilter {
        error_contains: Some("TIMEOUT".into()),
        ..DeadFilter::default()
    };
    let first = store
        .replay_dead_batch("hook", &timeouts, 2)
        .await
        .expect("replay a batch");
    let all = entries_of(&*store, "hook").await;
    let pending: Vec<Uuid> = all
        .iter()
        .filter(|e| e.state == EntryState::Pending)
        .map(|e| e.id)
        .collect();
    assert_eq!(pending, vec![id(0), id(2)], "a batch takes the oldest matches");
    assert_eq!(first.count, 2);
    assert_eq!(
        first.last_seq,
        Some(all[2].seq),
        "and reports the highest seq it touched"
    );

    let replayed = store.replay_dead_matching(&timeouts).await.expect("replay the rest");
    assert_eq!(replayed, count as u64 / 2 - 2);
    assert_eq!(pending_and_dead(&*store).await, (count as u64 / 2, count as u64 / 2));
    assert!(
        entries_in(&*store, "hook", EntryState::Dead)
            .await
            .iter()
            .all(|e| e.last_error.as_deref() == Some("400 bad request")),
        "only the matches moved"
    );

    let refused = store.discard_dead(&DeadSelector::default()).await;
    assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    let refused = store.replay_dead(&DeadSelector::default()).await;
    assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    assert_eq!(
        pending_and_dead(&*store).await,
        (count as u64 / 2, count as u64 / 2),
        "a refused selector changes nothing"
    );

    let whole = DeadSelector {
        id: None,
        destination: Some("hook".into()),
    };
    assert_eq!(store.discard_dead(&whole).await.expect("discard"), count as u64 / 2);
    assert_eq!(pending_and_dead(&*store).await, (count as u64 / 2, 0));
}
