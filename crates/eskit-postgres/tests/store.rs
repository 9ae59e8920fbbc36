//! PostgreSQL-specific store behaviour: the schema option, migrations, the application's
//! own transaction, savepoints, the partition-count guard.

mod common;

use common::{TestSchema, hook_options};
use eskit::{
    EntryFilter, Error, EventData, EventStore, ExpectedVersion, OutboxMessage, OutboxStore, ReadDirection,
    ValidationError,
};
use eskit_postgres::PgStore;
use serde_json::json;

fn ev(n: u64) -> EventData {
    EventData::json("Happened", &json!({ "n": n })).unwrap()
}

#[tokio::test]
async fn invalid_schema_names_are_rejected_before_connecting() {
    for bad in ["x\"; DROP TABLE y; --", "a b", "1x", "", "a.b", &"s".repeat(64)] {
        let err = PgStore::builder(common::url()).schema(bad).open().await.unwrap_err();
        assert!(
            matches!(&err, Error::Validation(ValidationError::InvalidIdentifier(name)) if name == bad),
            "{bad:?}: {err}"
        );
    }
    // Not even a server is needed to refuse it.
    let err = PgStore::builder("postgres://nobody@127.0.0.1:1/none")
        .schema("x\"; DROP TABLE y; --")
        .open()
        .await
        .unwrap_err();
    assert!(err.is_validation(), "{err}");
}

#[tokio::test]
async fn opening_twice_migrates_once_and_mixed_case_schema_works() {
    let schema = TestSchema {
        name: format!("T_Mixed_{}", uuid::Uuid::new_v4().simple()),
    };
    let a = schema.open(hook_options(4)).await;
    let b = schema.open(hook_options(4)).await;
    a.append("s", ExpectedVersion::NoStream, vec![ev(1)]).await.unwrap();
    assert_eq!(b.stream_version("s").await.unwrap(), Some(1));
    let mut conn = schema.connect().await;
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".eskit_migrations",
        schema.name
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(applied, 2);
}

#[tokio::test]
async fn concurrent_opens_of_a_new_schema_all_succeed() {
    let schema = TestSchema::new();
    let opens = (0..4).map(|_| schema.open(hook_options(4)));
    let stores = futures::future::join_all(opens).await;
    assert_eq!(stores.len(), 4);
}

#[tokio::test]
async fn a_different_partition_count_is_refused() {
    let schema = TestSchema::new();
    let _store = schema.open(hook_options(8)).await;
    let err = schema.builder().options(hook_options(4)).open().await.unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("8 partitions")),
        "{err}"
    );
}

#[tokio::test]
async fn append_in_the_applications_own_transaction() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(4).destination("emails")).await;
    let table = format!("\"{}\".orders", schema.name);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id text PRIMARY KEY)"
    )))
    .execute(store.pool())
    .await
    .unwrap();

    // Committed: events, entries and the app's row together.
    let mut own = store.pool().begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {table} VALUES ('o1')")))
        .execute(&mut *own)
        .await
        .unwrap();
    let r = store
        .append_in(&mut own, "order-1", ExpectedVersion::NoStream, vec![ev(1), ev(2)])
        .await
        .unwrap();
    assert_eq!((r.first_version, r.last_version, r.outbox_entries), (1, 2, 2));
    let msg = OutboxMessage::json("emails", "order-1", "SendEmail", &json!({"to": "a"})).unwrap();
    store.write_outbox_in(&mut own, msg).await.unwrap();
    // A failing append inside it writes nothing and leaves the transaction usable.
    let err = store
        .append_in(&mut own, "order-1", ExpectedVersion::Exact(7), vec![ev(3)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::WrongExpectedVersion { actual: Some(2), .. }),
        "{err}"
    );
    let err = store
        .append_in(
            &mut own,
            "order-1",
            ExpectedVersion::Any,
            vec![EventData::from_json_str("Bad", r#"{"a":"x\u0000"}"#).unwrap()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Validation(ValidationError::NulInJson { .. })),
        "{err}"
    );
    own.commit().await.unwrap();
    assert_eq!(store.stream_version("order-1").await.unwrap(), Some(2));
    let entries = store.list_entries(&EntryFilter::default()).await.unwrap();
    assert_eq!(entries.len(), 3);

    // Rolled back: nothing.
    let mut own = store.pool().begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {table} VALUES ('o2')")))
        .execute(&mut *own)
        .await
        .unwrap();
    store
        .append_in(&mut own, "order-2", ExpectedVersion::NoStream, vec![ev(1)])
        .await
        .unwrap();
    own.rollback().await.unwrap();
    assert_eq!(store.stream_version("order-2").await.unwrap(), None);
    assert_eq!(store.list_entries(&EntryFilter::default()).await.unwrap().len(), 3);
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn store_transaction_with_app_sql_and_idempotent_repeat() {
    let schema = TestSchema::new();
    let store = schema.open(hook_options(4)).await;
    let events = vec![ev(1), ev(2), ev(3)];
    let mut tx = store.begin().await.unwrap();
    let first = tx.append("s", ExpectedVersion::NoStream, events.clone()).await.unwrap();
    sqlx::query("SELECT 1").execute(tx.conn()).await.unwrap();
    tx.commit().await.unwrap();

    // Same ids, same content (whitespace and key order do not matter): a no-op.
    let reformatted: Vec<EventData> = events
        .iter()
        .map(|e| {
            let text = format!(" {} ", e.payload.get());
            EventData::from_json_str(e.event_type.clone(), &text)
                .unwrap()
                .with_id(e.id)
        })
        .collect();
    let again = store.append("s", ExpectedVersion::NoStream, reformatted).await.unwrap();
    assert!(again.idempotent_repeat);
    assert_eq!(
        (
            again.first_version,
            again.last_version,
            again.first_position,
            again.last_position
        ),
        (
            first.first_version,
            first.last_version,
            first.first_position,
            first.last_position
        )
    );
    // Different content, another stream, partial overlap: conflicts.
    let changed = vec![ev(9).with_id(events[0].id)];
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, changed).await,
        Err(Error::IdempotencyConflict { .. })
    ));
    assert!(matches!(
        store
            .append("other", ExpectedVersion::Any, vec![events[0].clone()])
            .await,
        Err(Error::IdempotencyConflict { .. })
    ));
    assert!(matches!(
        store
            .append("s", ExpectedVersion::Any, vec![events[2].clone(), ev(4)])
            .await,
        Err(Error::IdempotencyConflict { .. })
    ));
    let read = store.read_stream("s", 1, 10, ReadDirection::Forward).await.unwrap();
    assert_eq!(read.len(), 3);
    let back = store
        .read_stream("s", u64::MAX, 2, ReadDirection::Backward)
        .await
        .unwrap();
    assert_eq!(back.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 3);
}
