//! Conversions between rows and eskit types (timestamps, ids, JSON text).

use eskit::{EntryState, Error, Lease, OutboxEntry, RawValue, RecordedEvent, Result};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;

/// A timestamp as stored: unix microseconds.
pub(crate) fn to_micros(at: OffsetDateTime) -> i64 {
    let micros = at.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// A stored timestamp back to a time.
pub(crate) fn from_micros(micros: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|e| Error::database("decoding a timestamp", e))
}

/// Now, as stored.
pub(crate) fn now_micros() -> i64 {
    to_micros(OffsetDateTime::now_utc())
}

/// A `u64` count or version as SQLite's `INTEGER`, saturating.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `usize` limit as SQLite's `INTEGER`, saturating.
pub(crate) fn limit_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn get<'r, T>(row: &'r SqliteRow, index: usize, what: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(index).map_err(|e| Error::database(what, e))
}

fn uuid(text: &str, what: &'static str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| Error::database(what, e))
}

fn u64_of(n: i64, what: &'static str) -> Result<u64> {
    u64::try_from(n).map_err(|e| Error::database(what, e))
}

fn json_value(text: &str, what: &'static str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::database(what, e))
}

fn raw_json(text: String, what: &'static str) -> Result<Box<RawValue>> {
    RawValue::from_string(text).map_err(|e| Error::database(what, e))
}

/// Decodes a row selected with `event_columns!()`.
pub(crate) fn recorded_event(row: &SqliteRow) -> Result<RecordedEvent> {
    const WHAT: &str = "decoding an event";
    let event_id: String = get(row, 3, WHAT)?;
    let payload: String = get(row, 5, WHAT)?;
    let metadata: Option<String> = get(row, 6, WHAT)?;
    Ok(RecordedEvent {
        position: get(row, 0, WHAT)?,
        stream_id: get(row, 1, WHAT)?,
        stream_version: u64_of(get(row, 2, WHAT)?, WHAT)?,
        event_id: uuid(&event_id, WHAT)?,
        event_type: get(row, 4, WHAT)?,
        payload: json_value(&payload, WHAT)?,
        metadata: metadata.as_deref().map(|m| json_value(m, WHAT)).transpose()?,
        recorded_at: from_micros(get(row, 7, WHAT)?)?,
    })
}

/// Decodes a row selected with `outbox_columns!()`.
pub(crate) fn outbox_entry(row: &SqliteRow) -> Result<OutboxEntry> {
    const WHAT: &str = "decoding an outbox entry";
    let partition: i64 = get(row, 13, WHAT)?;
    let partition = u32::try_from(partition).map_err(|e| Error::database(WHAT, e))?;
    let state: String = get(row, 14, WHAT)?;
    let delivered_at: Option<i64> = get(row, 15, WHAT)?;
    let dead_at: Option<i64> = get(row, 16, WHAT)?;
    Ok(OutboxEntry {
        state: EntryState::parse(&state)
            .ok_or_else(|| Error::database(WHAT, format!("unknown entry state {state:?}")))?,
        delivered_at: delivered_at.map(from_micros).transpose()?,
        dead_at: dead_at.map(from_micros).transpose()?,
        ..entry_of(row, get(row, 12, WHAT)?, partition)?
    })
}

/// Decodes a row selected with `pending_columns!()`: a pending entry of `lease`.
pub(crate) fn pending_entry(row: &SqliteRow, lease: &Lease) -> Result<OutboxEntry> {
    entry_of(row, lease.destination.clone(), lease.partition)
}

/// The first columns of both lists (`pending_columns!()`), as a pending entry.
fn entry_of(row: &SqliteRow, destination: String, partition: u32) -> Result<OutboxEntry> {
    const WHAT: &str = "decoding an outbox entry";
    let id: String = get(row, 1, WHAT)?;
    let metadata: Option<String> = get(row, 5, WHAT)?;
    let event_id: Option<String> = get(row, 6, WHAT)?;
    let stream_version: Option<i64> = get(row, 7, WHAT)?;
    let attempts: i64 = get(row, 8, WHAT)?;
    Ok(OutboxEntry {
        seq: get(row, 0, WHAT)?,
        id: uuid(&id, WHAT)?,
        destination,
        stream_id: get(row, 2, WHAT)?,
        partition,
        event_type: get(row, 3, WHAT)?,
        payload: raw_json(get(row, 4, WHAT)?, WHAT)?,
        metadata: metadata.map(|m| raw_json(m, WHAT)).transpose()?,
        event_id: event_id.as_deref().map(|e| uuid(e, WHAT)).transpose()?,
        stream_version: stream_version.map(|v| u64_of(v, WHAT)).transpose()?,
        state: EntryState::Pending,
        attempts: u32::try_from(attempts).map_err(|e| Error::database(WHAT, e))?,
        last_error: get(row, 9, WHAT)?,
        created_at: from_micros(get(row, 10, WHAT)?)?,
        next_attempt_at: from_micros(get(row, 11, WHAT)?)?,
        delivered_at: None,
        dead_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip() {
        let now = OffsetDateTime::now_utc();
        let back = from_micros(to_micros(now)).unwrap();
        assert!((now - back).abs() < time::Duration::microseconds(1));
        assert_eq!(from_micros(0).unwrap(), OffsetDateTime::UNIX_EPOCH);
    }
}
