//! Appends and explicit outbox messages on a connection that is already inside a write
//! transaction. Callers validate first and own the transaction.

use eskit::{AppendResult, Error, EventData, ExpectedVersion, NewOutboxEntry, RecordedEvent, Result, StoreOptions};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use crate::rows::{now_micros, recorded_event, to_i64};
use crate::sql;

fn to_json(value: &impl Serialize, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::database(what, e))
}

/// Appends validated `events` to `stream_id` with their routed outbox entries.
///
/// Order of checks: idempotent repeat (or conflict), then the expected version; nothing is
/// written unless both pass. `conn` must be in a write transaction (`BEGIN IMMEDIATE`, or
/// a savepoint inside one), so the stream version read here cannot change before the
/// write.
pub(crate) async fn append_on(
    conn: &mut SqliteConnection,
    options: &StoreOptions,
    stream_id: &str,
    expected: ExpectedVersion,
    events: &[EventData],
) -> Result<AppendResult> {
    let ids = to_json(
        &events.iter().map(|e| e.id).collect::<Vec<Uuid>>(),
        "encoding event ids",
    )?;
    let (actual, any_stored): (Option<i64>, bool) = sqlx::query_as(sql::SELECT_VERSION_AND_STORED)
        .bind(stream_id)
        .bind(&ids)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| Error::database("reading the stream version", e))?;
    if any_stored {
        let stored = sqlx::query(sql::SELECT_EVENTS_BY_ID)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| Error::database("looking up event ids", e))?;
        let stored = stored.iter().map(recorded_event).collect::<Result<Vec<_>>>()?;
        return idempotent_repeat(options, stream_id, events, &stored);
    }
    let actual = actual.map(|v| u64::try_from(v).unwrap_or(0));
    if !expected.accepts(actual) {
        return Err(Error::WrongExpectedVersion {
            stream: stream_id.to_string(),
            expected,
            actual,
        });
    }
    let first_version = actual.unwrap_or(0) + 1;
    let last_version = first_version + events.len() as u64 - 1;
    let now = now_micros();

    let mut last_position = 0;
    for (c, chunk) in events.chunks(sql::ROWS_PER_INSERT).enumerate() {
        let version = first_version + (c * sql::ROWS_PER_INSERT) as u64;
        let mut insert = sqlx::query(AssertSqlSafe(sql::insert_events(chunk.len())));
        for (k, e) in chunk.iter().enumerate() {
            insert = insert
                .bind(stream_id)
                .bind(to_i64(version + k as u64))
                .bind(e.id.to_string())
                .bind(e.event_type.as_str())
                .bind(e.payload.get())
                .bind(e.metadata.as_deref().map(RawValue::get))
                .bind(now);
        }
        last_position = insert
            .execute(&mut *conn)
            .await
            .map_err(|e| Error::database("inserting events", e))?
            .last_insert_rowid();
    }
    // Consecutive rowids (see `sql::insert_events`): no row read back per event.
    let first_position = last_position - (events.len() as i64 - 1);

    sqlx::query(sql::UPSERT_STREAM_VERSION)
        .bind(stream_id)
        .bind(to_i64(last_version))
        .execute(&mut *conn)
        .await
        .map_err(|e| Error::database("updating the stream version", e))?;

    let entries = options
        .routes
        .entries_for(stream_id, first_version, events, options.partitions);
    insert_entries(conn, &entries, now).await?;

    Ok(AppendResult {
        first_version,
        last_version,
        first_position,
        last_position,
        outbox_entries: entries.len(),
        idempotent_repeat: false,
    })
}

/// Decides an append whose event ids are (some of them) already stored: a repeat when
/// every id is stored in this stream with the same content, a conflict otherwise.
fn idempotent_repeat(
    options: &StoreOptions,
    stream_id: &str,
    events: &[EventData],
    stored: &[RecordedEvent],
) -> Result<AppendResult> {
    for event in events {
        let Some(original) = stored.iter().find(|s| s.event_id == event.id) else {
            // Partial overlap: some ids are new, some are not.
            let known = stored.first().map_or(event.id, |s| s.event_id);
            return Err(Error::IdempotencyConflict { event_id: known });
        };
        if original.stream_id != stream_id || !same_content(original, event) {
            return Err(Error::IdempotencyConflict { event_id: event.id });
        }
    }
    let versions = stored.iter().map(|s| s.stream_version);
    let positions = stored.iter().map(|s| s.position);
    Ok(AppendResult {
        first_version: versions.clone().min().unwrap_or_default(),
        last_version: versions.max().unwrap_or_default(),
        first_position: positions.clone().min().unwrap_or_default(),
        last_position: positions.max().unwrap_or_default(),
        outbox_entries: options
            .routes
            .entries_for(stream_id, 1, events, options.partitions)
            .len(),
        idempotent_repeat: true,
    })
}

/// Type, payload and metadata compared as parsed JSON (whitespace and key order do not
/// matter; absent metadata equals `null`).
fn same_content(stored: &RecordedEvent, event: &EventData) -> bool {
    let parse = |raw: &RawValue| serde_json::from_str::<serde_json::Value>(raw.get()).ok();
    let metadata = event.metadata.as_deref().map_or(Some(serde_json::Value::Null), parse);
    stored.event_type == event.event_type
        && parse(&event.payload).as_ref() == Some(&stored.payload)
        && metadata.as_ref() == Some(stored.metadata.as_ref().unwrap_or(&serde_json::Value::Null))
}

/// Inserts outbox entries in slice order (so `seq` follows it), in multi-row statements
/// of up to [`sql::ROWS_PER_INSERT`] rows.
pub(crate) async fn insert_entries(conn: &mut SqliteConnection, entries: &[NewOutboxEntry], now: i64) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    for chunk in entries.chunks(sql::ROWS_PER_INSERT) {
        let mut insert = sqlx::query(AssertSqlSafe(sql::insert_outbox_entries(chunk.len())));
        for e in chunk {
            insert = insert
                .bind(e.id.to_string())
                .bind(e.destination.as_str())
                .bind(e.stream_id.as_str())
                .bind(i64::from(e.partition))
                .bind(e.event_type.as_str())
                .bind(e.payload.get())
                .bind(e.metadata.as_deref().map(RawValue::get))
                .bind(e.event_id.map(|id| id.to_string()))
                .bind(e.stream_version.map(to_i64))
                .bind(now)
                .bind(now);
        }
        insert
            .execute(&mut *conn)
            .await
            .map_err(|e| Error::database("inserting outbox entries", e))?;
    }
    Ok(())
}
