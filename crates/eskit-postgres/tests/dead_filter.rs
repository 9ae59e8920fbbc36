//! The dead-letter filters in SQL (`list_dead`, `replay_dead_matching`,
//! `discard_dead_matching`) agree with `DeadFilter::matches`, the core's reference.

mod common;

use std::time::Duration;

use common::TestSchema;
use eskit::{
    DeadFilter, EntryFilter, EntryOutcome, EntryResult, EntryState, EventData, EventStore, ExpectedVersion,
    OutboxEntry, OutboxStore, PendingQuery, RouteFilter, StoreOptions,
};
use eskit_postgres::PgStore;
use time::OffsetDateTime;

const ERRORS: [&str; 4] = [
    "HTTP 503: Service Unavailable",
    "timeout after 5s",
    "HTTP 400: bad payload",
    "TIMEOUT (connect)",
];

/// 8 dead entries per destination, dead one minute apart, with rotating errors.
async fn dead_store(schema: &TestSchema) -> (PgStore, OffsetDateTime) {
    let options = StoreOptions::default()
        .partitions(1)
        .with_outbox("hook", RouteFilter::all())
        .with_outbox("other", RouteFilter::all());
    let store = schema.open(options).await;
    for i in 0..8 {
        let event = EventData::json("E", &serde_json::json!({ "i": i })).unwrap();
        store
            .append(&format!("s{i}"), ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::hours(1);
    for destination in ["hook", "other"] {
        let lease = store
            .try_acquire_lease(destination, 0, "test", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("lease");
        let pending = store
            .fetch_pending(&lease, &PendingQuery::FromOldest, 100)
            .await
            .unwrap();
        assert_eq!(pending.len(), 8);
        let results: Vec<EntryResult> = pending
            .iter()
            .enumerate()
            .map(|(i, e)| EntryResult {
                id: e.id,
                attempts: 3,
                outcome: EntryOutcome::Dead {
                    at: base + time::Duration::minutes(i as i64),
                    error: ERRORS[i % ERRORS.len()].to_string(),
                },
            })
            .collect();
        store.record_results(&lease, &results).await.unwrap();
        store.release_lease(&lease).await.unwrap();
    }
    (store, base)
}

async fn all_dead(store: &PgStore) -> Vec<OutboxEntry> {
    store
        .list_entries(&EntryFilter {
            state: Some(EntryState::Dead),
            limit: Some(1000),
            ..EntryFilter::default()
        })
        .await
        .unwrap()
}

fn ids(entries: &[OutboxEntry]) -> Vec<uuid::Uuid> {
    entries.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn list_dead_agrees_with_the_reference_filter() {
    let schema = TestSchema::new();
    let (store, base) = dead_store(&schema).await;
    let all = all_dead(&store).await;
    assert_eq!(all.len(), 16);
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
        let expected: Vec<_> = all.iter().filter(|e| filter.matches(e)).map(|e| e.id).collect();
        let after: Vec<_> = all
            .iter()
            .filter(|e| filter.after_seq.is_none_or(|a| e.seq > a))
            .filter(|e| filter.matches(e))
            .map(|e| e.id)
            .collect();
        let found = store.list_dead(filter).await.unwrap();
        let want = if filter.after_seq.is_some() { after } else { expected };
        assert_eq!(ids(&found), want, "{filter:?}");
    }
    // Paging by limit and after_seq walks every match once.
    let filter = DeadFilter {
        error_contains: Some("timeout".into()),
        limit: Some(3),
        ..DeadFilter::default()
    };
    let mut seen = Vec::new();
    let mut page = filter.clone();
    loop {
        let found = store.list_dead(&page).await.unwrap();
        seen.extend(ids(&found));
        match found.last() {
            Some(last) if found.len() == 3 => page.after_seq = Some(last.seq),
            _ => break,
        }
    }
    let expected: Vec<_> = all.iter().filter(|e| filter.matches(e)).map(|e| e.id).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn replay_and_discard_touch_only_the_matches() {
    let schema = TestSchema::new();
    let (store, base) = dead_store(&schema).await;
    let all = all_dead(&store).await;

    let timeouts = DeadFilter {
        destination: Some("hook".into()),
        error_contains: Some("TimeOut".into()),
        ..DeadFilter::default()
    };
    let expected: Vec<_> = all.iter().filter(|e| timeouts.matches(e)).map(|e| e.id).collect();
    assert_eq!(expected.len(), 4);
    assert_eq!(store.replay_dead_matching(&timeouts).await.unwrap(), 4);
    let entries = store
        .list_entries(&EntryFilter {
            limit: Some(1000),
            ..EntryFilter::default()
        })
        .await
        .unwrap();
    for e in &entries {
        if expected.contains(&e.id) {
            assert_eq!(
                (e.state, e.attempts, e.dead_at),
                (EntryState::Pending, 0, None),
                "{e:?}"
            );
        } else {
            assert_eq!(e.state, EntryState::Dead, "{e:?}");
        }
    }
    assert_eq!(store.replay_dead_matching(&timeouts).await.unwrap(), 0);

    let early = DeadFilter {
        dead_to: Some(base + time::Duration::minutes(4)),
        ..DeadFilter::default()
    };
    let before = all_dead(&store).await;
    let expected: Vec<_> = before.iter().filter(|e| early.matches(e)).map(|e| e.id).collect();
    assert_eq!(
        store.discard_dead_matching(&early).await.unwrap(),
        expected.len() as u64
    );
    let after = all_dead(&store).await;
    assert!(after.iter().all(|e| !expected.contains(&e.id)));
    assert_eq!(after.len(), before.len() - expected.len());
}
