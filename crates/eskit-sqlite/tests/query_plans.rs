//! The hot statements use the indexes they were written for, on the bundled SQLite
//! (a planner change would turn a lookup into a scan without failing anything else).

mod common;

use common::open;
use eskit::StoreOptions;
use eskit_sqlite::sql;
use sqlx::{AssertSqlSafe, Row};

async fn plan(store: &eskit_sqlite::SqliteStore, statement: &str, binds: usize) -> String {
    let text = format!("EXPLAIN QUERY PLAN {statement}");
    let mut query = sqlx::query(AssertSqlSafe(text));
    for _ in 0..binds {
        query = query.bind("x");
    }
    let rows = query.fetch_all(store.pool()).await.unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>(3))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn hot_statements_use_their_indexes() {
    let (store, _dir) = open(StoreOptions::default()).await;
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "FETCH_PENDING_FROM_OLDEST",
            sql::FETCH_PENDING_FROM_OLDEST,
            3,
            &["outbox_pending_by_partition"],
        ),
        (
            "FETCH_PENDING_AFTER_SEQ",
            sql::FETCH_PENDING_AFTER_SEQ,
            4,
            &[
                "outbox_pending_by_partition (destination=? AND partition=? AND seq>?)",
                "outbox_pending_by_stream",
            ],
        ),
        (
            "FETCH_PENDING_OF_STREAM",
            sql::FETCH_PENDING_OF_STREAM,
            4,
            &["outbox_pending_by_stream"],
        ),
        (
            "RECORD_RESULTS",
            sql::RECORD_RESULTS,
            6,
            &["sqlite_autoindex_outbox_1 (id=?)"],
        ),
        (
            "LIST_DEAD_ENTRIES",
            sql::LIST_DEAD_ENTRIES,
            5,
            &["outbox_dead_by_destination"],
        ),
        (
            "LIST_PENDING_ENTRIES",
            sql::LIST_PENDING_ENTRIES,
            5,
            &["outbox_pending_by_partition"],
        ),
        (
            "REPLAY_DEAD_ONE",
            sql::REPLAY_DEAD_ONE,
            3,
            &["sqlite_autoindex_outbox_1 (id=?)"],
        ),
        (
            "REPLAY_DEAD_BATCH",
            sql::REPLAY_DEAD_BATCH,
            7,
            &["outbox_dead_by_destination (destination=? AND seq>?)"],
        ),
        (
            "DISCARD_DEAD_BATCH",
            sql::DISCARD_DEAD_BATCH,
            6,
            &["outbox_dead_by_destination (destination=? AND seq>?)"],
        ),
        (
            "PURGE_DELIVERED",
            sql::PURGE_DELIVERED,
            2,
            &["outbox_delivered_by_time (delivered_at<?)"],
        ),
        ("SELECT_EVENTS_BY_ID", sql::SELECT_EVENTS_BY_ID, 1, &["(event_id=?)"]),
        (
            "SELECT_VERSION_AND_STORED",
            sql::SELECT_VERSION_AND_STORED,
            2,
            &[
                "streams USING INDEX sqlite_autoindex_streams_1 (stream_id=?)",
                "(event_id=?)",
            ],
        ),
        (
            "READ_STREAM_FORWARD",
            sql::READ_STREAM_FORWARD,
            3,
            &["(stream_id=? AND stream_version>?)"],
        ),
    ];
    for (name, statement, binds, expected) in cases {
        let plan = plan(&store, statement, *binds).await;
        for e in *expected {
            assert!(plan.contains(e), "{name}: expected {e:?} in plan:\n{plan}");
        }
        if *name == "RECORD_RESULTS" {
            assert!(!plan.contains("SCAN outbox"), "{name} scans the outbox:\n{plan}");
        }
        if name.ends_with("_BATCH") || *name == "PURGE_DELIVERED" {
            // A bulk write runs batch after batch: each must read its range in order, not
            // sort everything that matches.
            assert!(!plan.contains("TEMP B-TREE"), "{name} sorts:\n{plan}");
        }
    }
}
