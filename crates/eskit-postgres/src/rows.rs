//! Decoding rows into eskit's types, and converting values at the SQL boundary.

use eskit::{EntryState, Error, Lease, OutboxEntry, RecordedEvent, Result};
use serde_json::value::RawValue;
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;

/// Wraps a driver error with what eskit was doing.
pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| Error::database(context, err)
}

/// A version or position as a `bigint` (saturating; versions never get near it).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored `bigint` version back to `u64` (negative values cannot be stored by eskit).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A row of `event_columns!()`.
pub(crate) fn recorded_event(row: &PgRow) -> Result<RecordedEvent> {
    let decode = db("decoding an event");
    (|| -> std::result::Result<RecordedEvent, sqlx::Error> {
        Ok(RecordedEvent {
            position: row.try_get(0)?,
            stream_id: row.try_get(1)?,
            stream_version: to_u64(row.try_get(2)?),
            event_id: row.try_get(3)?,
            event_type: row.try_get(4)?,
            payload: row.try_get(5)?,
            metadata: row.try_get(6)?,
            recorded_at: row.try_get(7)?,
        })
    })()
    .map_err(decode)
}

/// A row of `outbox_columns!()`.
pub(crate) fn outbox_entry(row: &PgRow) -> Result<OutboxEntry> {
    let get = |e: sqlx::Error| Error::database("decoding an outbox entry", e);
    let partition: i32 = row.try_get(13).map_err(get)?;
    let state: String = row.try_get(14).map_err(get)?;
    Ok(OutboxEntry {
        state: EntryState::parse(&state)
            .ok_or_else(|| Error::database("decoding an outbox entry", format!("unknown entry state {state:?}")))?,
        delivered_at: row.try_get(15).map_err(get)?,
        dead_at: row.try_get(16).map_err(get)?,
        ..entry_of(
            row,
            row.try_get(12).map_err(get)?,
            u32::try_from(partition).unwrap_or(0),
        )?
    })
}

/// A row of `pending_columns!()`: a pending entry of `lease`.
pub(crate) fn pending_entry(row: &PgRow, lease: &Lease) -> Result<OutboxEntry> {
    entry_of(row, lease.destination.clone(), lease.partition)
}

/// The first columns of both lists (`pending_columns!()`), as a pending entry.
fn entry_of(row: &PgRow, destination: String, partition: u32) -> Result<OutboxEntry> {
    let raw = |text: String, what: &'static str| RawValue::from_string(text).map_err(|e| Error::database(what, e));
    let get = |e: sqlx::Error| Error::database("decoding an outbox entry", e);
    let attempts: i32 = row.try_get(8).map_err(get)?;
    let metadata: Option<String> = row.try_get(5).map_err(get)?;
    let stream_version: Option<i64> = row.try_get(7).map_err(get)?;
    Ok(OutboxEntry {
        seq: row.try_get(0).map_err(get)?,
        id: row.try_get::<Uuid, _>(1).map_err(get)?,
        destination,
        stream_id: row.try_get(2).map_err(get)?,
        partition,
        event_type: row.try_get(3).map_err(get)?,
        payload: raw(row.try_get(4).map_err(get)?, "decoding an outbox payload")?,
        metadata: metadata.map(|m| raw(m, "decoding outbox metadata")).transpose()?,
        event_id: row.try_get(6).map_err(get)?,
        stream_version: stream_version.map(to_u64),
        state: EntryState::Pending,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: row.try_get(9).map_err(get)?,
        created_at: row.try_get::<OffsetDateTime, _>(10).map_err(get)?,
        next_attempt_at: row.try_get(11).map_err(get)?,
        delivered_at: None,
        dead_at: None,
    })
}
