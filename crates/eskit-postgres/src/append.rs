//! Appends and explicit outbox messages on a connection that is inside a transaction
//! (or a savepoint) the caller owns. Callers validate first.
//!
//! Every writer of a stream first takes the stream's advisory lock (held until the
//! transaction ends), and appends also lock the stream's row. Outbox `seq` values are
//! drawn after the lock, so within one stream `seq` order is commit order: the next
//! writer of the stream can only draw its `seq` once the previous one has committed.

use eskit::{AppendResult, Error, EventData, ExpectedVersion, NewOutboxEntry, OutboxMessage, Result};
use serde_json::value::RawValue;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::rows::{db, to_i64, to_u64};
use crate::store::Inner;

/// A query with its arguments.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Unique violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Takes the advisory lock that serializes the writers of `stream_id`.
async fn lock_stream(conn: &mut PgConnection, inner: &Inner, stream_id: &str) -> Result<()> {
    sqlx::query(crate::sql::LOCK_STREAM)
        .bind(inner.schema.stream_lock_key(stream_id))
        .execute(&mut *conn)
        .await
        .map_err(db("locking the stream"))?;
    Ok(())
}

/// What [`append_on`] did.
pub(crate) enum Appended {
    /// The events and their entries are written.
    Written(AppendResult),
    /// Some of the event ids are already stored: the caller rolls back what this wrote
    /// (its savepoint or transaction) and decides with [`idempotent_repeat`].
    Stored,
}

/// Appends validated `events` to `stream_id` with their routed outbox entries.
///
/// Outcomes, as the core defines them: an append whose event ids are stored is an
/// idempotent repeat (or a conflict) whatever its expected version; otherwise the
/// expected version decides. The common case costs no lookup by event id: the insert
/// skips stored ids (`ON CONFLICT (event_id) DO NOTHING`, which also waits for a
/// concurrent writer of the same id) and reports how many rows it wrote; fewer than
/// asked means some ids are stored ([`Appended::Stored`]). Only an append whose expected
/// version fails looks the ids up, to tell a repeat from a conflict.
pub(crate) async fn append_on(
    conn: &mut PgConnection,
    inner: &Inner,
    stream_id: &str,
    expected: ExpectedVersion,
    events: &[EventData],
) -> Result<Appended> {
    let sql = &inner.sql;
    lock_stream(conn, inner, stream_id).await?;
    let current: Option<i64> = sqlx::query_scalar(sql.select_stream_version_for_update.sql())
        .bind(stream_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("locking the stream row"))?;

    let actual = current.map(to_u64);
    if !expected.accepts(actual) {
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let stored: Vec<Uuid> = sqlx::query_scalar(sql.select_stored_event_ids.sql())
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("looking up event ids"))?;
        if !stored.is_empty() {
            return Ok(Appended::Stored);
        }
        return Err(Error::WrongExpectedVersion {
            stream: stream_id.to_string(),
            expected,
            actual,
        });
    }
    let base = actual.unwrap_or(0);
    let entries = inner
        .options
        .routes
        .entries_for(stream_id, base + 1, events, inner.options.partitions);
    let event_columns = EventColumns::new(events);
    // One statement writes the events and their entries (the statement trigger queues
    // the NOTIFY); without entries, the events alone (no NOTIFY for nothing).
    let entry_columns = EntryColumns::new(&entries);
    let query = if entries.is_empty() {
        event_columns.bind(sqlx::query(sql.insert_events.sql()), stream_id, base)
    } else {
        let query = entry_columns.bind(sqlx::query(sql.insert_events_with_entries.sql()));
        event_columns.bind(query, stream_id, base)
    };
    let row = query
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_event_insert_error(e, events))?;
    let written: i64 = row.try_get(0).map_err(db("inserting events"))?;
    if written != events.len() as i64 {
        return Ok(Appended::Stored);
    }
    let first_position: i64 = row.try_get(1).map_err(db("inserting events"))?;
    let last_position: i64 = row.try_get(2).map_err(db("inserting events"))?;

    Ok(Appended::Written(AppendResult {
        first_version: base + 1,
        last_version: base + events.len() as u64,
        first_position,
        last_position,
        outbox_entries: entries.len(),
        idempotent_repeat: false,
    }))
}

/// Decides an append whose event ids are (some of them) already stored: a repeat when
/// every id is stored in this stream with the same content (compared as `jsonb`), a
/// conflict otherwise.
pub(crate) async fn idempotent_repeat(
    conn: &mut PgConnection,
    inner: &Inner,
    stream_id: &str,
    events: &[EventData],
) -> Result<AppendResult> {
    let columns = EventColumns::new(events);
    let rows = columns
        .bind_arrays(sqlx::query(inner.sql.compare_stored_events.sql()))
        .fetch_all(&mut *conn)
        .await
        .map_err(db("comparing stored events"))?;
    let mut stored = Vec::with_capacity(rows.len());
    for row in &rows {
        let event_id: Uuid = row.try_get(0).map_err(decode_err)?;
        let stored_stream: String = row.try_get(1).map_err(decode_err)?;
        let version: i64 = row.try_get(2).map_err(decode_err)?;
        let position: i64 = row.try_get(3).map_err(decode_err)?;
        let same: bool = row.try_get(4).map_err(decode_err)?;
        stored.push((event_id, stored_stream, version, position, same));
    }
    for event in events {
        let Some((_, stored_stream, _, _, same)) = stored.iter().find(|s| s.0 == event.id) else {
            // Partial overlap: some ids are new, some are not.
            let known = stored.first().map_or(event.id, |s| s.0);
            return Err(Error::IdempotencyConflict { event_id: known });
        };
        if stored_stream != stream_id || !same {
            return Err(Error::IdempotencyConflict { event_id: event.id });
        }
    }
    let versions = stored.iter().map(|s| to_u64(s.2));
    let positions = stored.iter().map(|s| s.3);
    Ok(AppendResult {
        first_version: versions.clone().min().unwrap_or_default(),
        last_version: versions.max().unwrap_or_default(),
        first_position: positions.clone().min().unwrap_or_default(),
        last_position: positions.max().unwrap_or_default(),
        outbox_entries: inner
            .options
            .routes
            .entries_for(stream_id, 1, events, inner.options.partitions)
            .len(),
        idempotent_repeat: true,
    })
}

fn decode_err(err: sqlx::Error) -> Error {
    Error::database("decoding stored events", err)
}

/// A unique violation on `event_id` (not expected: the insert skips stored ids) means
/// another writer stored one of these ids.
fn map_event_insert_error(err: sqlx::Error, events: &[EventData]) -> Error {
    if let sqlx::Error::Database(db_err) = &err
        && db_err.code().as_deref() == Some(UNIQUE_VIOLATION)
        && db_err.constraint().is_some_and(|c| c.contains("event_id"))
    {
        let event_id = events
            .iter()
            .map(|e| e.id)
            .find(|id| db_err.message().contains(&id.to_string()))
            .unwrap_or(events[0].id);
        return Error::IdempotencyConflict { event_id };
    }
    Error::database("inserting events", err)
}

/// Locks the message's stream and inserts a validated explicit message.
pub(crate) async fn write_message_on(conn: &mut PgConnection, inner: &Inner, message: OutboxMessage) -> Result<Uuid> {
    lock_stream(conn, inner, &message.stream_id).await?;
    let entry = NewOutboxEntry::for_message(message, inner.options.partitions);
    let id = entry.id;
    insert_entries(conn, inner, std::slice::from_ref(&entry)).await?;
    Ok(id)
}

/// The event columns as arrays for `unnest`.
struct EventColumns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    payloads: Vec<&'a str>,
    metadata: Vec<Option<&'a str>>,
}

impl<'a> EventColumns<'a> {
    fn new(events: &'a [EventData]) -> Self {
        Self {
            ids: events.iter().map(|e| e.id).collect(),
            types: events.iter().map(|e| e.event_type.as_str()).collect(),
            payloads: events.iter().map(|e| e.payload.get()).collect(),
            metadata: events
                .iter()
                .map(|e| e.metadata.as_deref().map(RawValue::get))
                .collect(),
        }
    }

    /// Binds the insert's event parameters: stream id, current version and the arrays.
    fn bind<'q>(&'q self, query: PgQuery<'q>, stream_id: &'q str, base: u64) -> PgQuery<'q> {
        self.bind_arrays(query.bind(stream_id).bind(to_i64(base)))
    }

    /// Binds the four arrays: ids, types, payloads, metadata.
    fn bind_arrays<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.payloads)
            .bind(&self.metadata)
    }
}

/// The entry columns as arrays for `unnest`, in the order of `insert_outbox_rows!`.
struct EntryColumns<'a> {
    ids: Vec<Uuid>,
    destinations: Vec<&'a str>,
    streams: Vec<&'a str>,
    partitions: Vec<i32>,
    types: Vec<&'a str>,
    payloads: Vec<&'a str>,
    metadata: Vec<Option<&'a str>>,
    event_ids: Vec<Option<Uuid>>,
    versions: Vec<Option<i64>>,
}

impl<'a> EntryColumns<'a> {
    fn new(entries: &'a [NewOutboxEntry]) -> Self {
        Self {
            ids: entries.iter().map(|e| e.id).collect(),
            destinations: entries.iter().map(|e| e.destination.as_str()).collect(),
            streams: entries.iter().map(|e| e.stream_id.as_str()).collect(),
            partitions: entries
                .iter()
                .map(|e| i32::try_from(e.partition).unwrap_or(i32::MAX))
                .collect(),
            types: entries.iter().map(|e| e.event_type.as_str()).collect(),
            payloads: entries.iter().map(|e| e.payload.get()).collect(),
            metadata: entries
                .iter()
                .map(|e| e.metadata.as_deref().map(RawValue::get))
                .collect(),
            event_ids: entries.iter().map(|e| e.event_id).collect(),
            versions: entries.iter().map(|e| e.stream_version.map(to_i64)).collect(),
        }
    }

    /// Binds the nine arrays as `$1`–`$9`.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.destinations)
            .bind(&self.streams)
            .bind(&self.partitions)
            .bind(&self.types)
            .bind(&self.payloads)
            .bind(&self.metadata)
            .bind(&self.event_ids)
            .bind(&self.versions)
    }
}

/// Inserts outbox entries in one statement, in slice order (so `seq` follows it). The
/// statement trigger queues the transaction's NOTIFY.
pub(crate) async fn insert_entries(conn: &mut PgConnection, inner: &Inner, entries: &[NewOutboxEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let columns = EntryColumns::new(entries);
    columns
        .bind(sqlx::query(inner.sql.insert_outbox_entries.sql()))
        .execute(&mut *conn)
        .await
        .map_err(db("inserting outbox entries"))?;
    Ok(())
}
