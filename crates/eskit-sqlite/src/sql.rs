//! Every SQL statement the backend runs, as `&'static str` constants (and the two
//! builders of multi-row inserts).
//!
//! Conventions: timestamps are bound as unix microseconds; ids as hyphenated UUID text;
//! bulk writes of ids and results take one JSON array parameter that `json_each`
//! unrolls, so a batch is one statement whatever its size. The inserts that carry
//! payloads (events, outbox entries) are multi-row `VALUES` lists instead
//! ([`insert_events`], [`insert_outbox_entries`]): a payload inside a JSON array would
//! be escaped into a JSON string and parsed again by SQLite, twice per event; a `VALUES`
//! row binds the caller's text as is. They are chunked at [`ROWS_PER_INSERT`] rows, far
//! below SQLite's bound-variable limit.

/// Starts every write transaction: takes SQLite's write lock up front, so a transaction
/// that reads before it writes never fails to upgrade.
pub const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// Creates the migrations bookkeeping table (`eskit_migrations`, not sqlx's default
/// `_sqlx_migrations`).
pub const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS eskit_migrations (\
     version INTEGER PRIMARY KEY NOT NULL, \
     description TEXT NOT NULL, \
     checksum TEXT NOT NULL, \
     applied_at INTEGER NOT NULL)";

/// Applied migrations: version, checksum.
pub const SELECT_APPLIED_MIGRATIONS: &str = "SELECT version, checksum FROM eskit_migrations ORDER BY version";

/// Records an applied migration. Binds: version, description, checksum, applied at.
pub const INSERT_APPLIED_MIGRATION: &str =
    "INSERT INTO eskit_migrations (version, description, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)";

/// Version 1 of the schema.
pub const MIGRATION_0001_INIT: &str = include_str!("../migrations/0001_init.sql");

/// Version 2 of the schema: relay presence.
pub const MIGRATION_0002_RELAYS: &str = include_str!("../migrations/0002_relays.sql");

// ---------------------------------------------------------------------------------
// Event store
// ---------------------------------------------------------------------------------

/// Columns of `events`, in the order [`crate::rows::recorded_event`] decodes them.
macro_rules! event_columns {
    () => {
        "position, stream_id, stream_version, event_id, event_type, payload, metadata, recorded_at"
    };
}

/// The current version of a stream. Binds: stream id.
pub const SELECT_STREAM_VERSION: &str = "SELECT version FROM streams WHERE stream_id = ?1";

/// An append's first read, in one statement: the stream's version (NULL: no stream) and
/// whether any of its event ids is already stored. Binds: stream id, JSON array of ids.
pub const SELECT_VERSION_AND_STORED: &str = "SELECT (SELECT version FROM streams WHERE stream_id = ?1), \
     EXISTS (SELECT 1 FROM events WHERE event_id IN (SELECT value FROM json_each(?2)))";

/// Creates or moves a stream's version. Binds: stream id, new version.
pub const UPSERT_STREAM_VERSION: &str = "INSERT INTO streams (stream_id, version) VALUES (?1, ?2) \
     ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version";

/// Already stored events among a set of ids (the idempotency check).
/// Binds: JSON array of event ids.
pub const SELECT_EVENTS_BY_ID: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE event_id IN (SELECT value FROM json_each(?1)) ORDER BY position"
);

/// Rows per multi-row insert (at most 11 bound values each).
pub const ROWS_PER_INSERT: usize = 250;

/// Inserts `rows` events in row order, each row binding stream id, version, event id,
/// type, payload, metadata, recorded at. Their positions are consecutive (one writer;
/// `AUTOINCREMENT` hands out the next rowids in insert order), so the caller derives
/// them from `last_insert_rowid()` instead of reading a row back per event.
/// (Anonymous `?` parameters: naming them `?NNN` makes binding quadratic, as each
/// name is looked up in a list.)
pub fn insert_events(rows: usize) -> String {
    values(
        "INSERT INTO events \
         (stream_id, stream_version, event_id, event_type, payload, metadata, recorded_at) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
}

/// A stream's events upwards from a version. Binds: stream id, from version, limit.
pub const READ_STREAM_FORWARD: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE stream_id = ?1 AND stream_version >= ?2 ORDER BY stream_version ASC LIMIT ?3"
);

/// A stream's events downwards from a version. Binds: stream id, from version, limit.
pub const READ_STREAM_BACKWARD: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE stream_id = ?1 AND stream_version <= ?2 ORDER BY stream_version DESC LIMIT ?3"
);

/// All events from a position. Binds: from position, limit.
pub const READ_ALL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE position >= ?1 ORDER BY position ASC LIMIT ?2"
);

// ---------------------------------------------------------------------------------
// Outbox writes
// ---------------------------------------------------------------------------------

/// Inserts `rows` pending outbox entries in row order (so `seq` follows it), each row
/// binding id, destination, stream id, partition, type, payload, metadata, event id,
/// stream version, created at, next attempt at.
pub fn insert_outbox_entries(rows: usize) -> String {
    values(
        "INSERT INTO outbox \
         (id, destination, stream_id, \"partition\", event_type, payload, metadata, event_id, \
          stream_version, created_at, next_attempt_at, state, attempts) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0)",
        rows,
    )
}

/// `head` followed by `rows` copies of `row`, comma-separated.
fn values(head: &str, row: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 2));
    sql.push_str(head);
    for k in 0..rows {
        if k > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

// ---------------------------------------------------------------------------------
// Outbox reads
// ---------------------------------------------------------------------------------

/// The columns the relay reads of a pending entry of its lease (decoded by
/// [`crate::rows::pending_entry`]): its destination, partition and state are known, and
/// a pending entry has no delivered/dead time.
macro_rules! pending_columns {
    () => {
        "o.seq, o.id, o.stream_id, o.event_type, o.payload, o.metadata, o.event_id, \
         o.stream_version, o.attempts, o.last_error, o.created_at, o.next_attempt_at"
    };
}

/// Every column of `outbox`: [`pending_columns`] and then the five the lease knows for
/// a pending entry, in the order [`crate::rows::outbox_entry`] decodes them.
macro_rules! outbox_columns {
    () => {
        concat!(
            pending_columns!(),
            ", o.destination, o.\"partition\", o.state, o.delivered_at, o.dead_at"
        )
    };
}

/// Pending entries of a partition from the oldest. Binds: destination, partition, limit.
pub const FETCH_PENDING_FROM_OLDEST: &str = concat!(
    "SELECT ",
    pending_columns!(),
    " FROM outbox AS o \
     WHERE o.destination = ?1 AND o.\"partition\" = ?2 AND o.state = 'pending' \
     ORDER BY o.seq LIMIT ?3"
);

/// Pending entries of a partition after a seq, of streams with no pending entry at or
/// below it. Binds: destination, partition, seq, limit.
pub const FETCH_PENDING_AFTER_SEQ: &str = concat!(
    "SELECT ",
    pending_columns!(),
    " FROM outbox AS o \
     WHERE o.destination = ?1 AND o.\"partition\" = ?2 AND o.state = 'pending' AND o.seq > ?3 \
       AND NOT EXISTS (SELECT 1 FROM outbox AS p \
                       WHERE p.destination = o.destination AND p.stream_id = o.stream_id \
                         AND p.state = 'pending' AND p.seq <= ?3) \
     ORDER BY o.seq LIMIT ?4"
);

/// Pending entries of one stream (in the lease's partition) from its oldest. (The
/// unary `+` keeps the planner on the per-stream index.)
/// Binds: destination, partition, stream id, limit.
pub const FETCH_PENDING_OF_STREAM: &str = concat!(
    "SELECT ",
    pending_columns!(),
    " FROM outbox AS o \
     WHERE o.destination = ?1 AND o.stream_id = ?3 AND o.state = 'pending' AND +o.\"partition\" = ?2 \
     ORDER BY o.seq LIMIT ?4"
);

/// Operator listing, oldest first; a NULL filter matches everything.
/// Binds: destination, state, stream id, after seq, limit.
pub const LIST_ENTRIES: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox AS o \
     WHERE (?1 IS NULL OR o.destination = ?1) AND (?2 IS NULL OR o.state = ?2) \
       AND (?3 IS NULL OR o.stream_id = ?3) AND o.seq > ?4 \
     ORDER BY o.seq LIMIT ?5"
);

/// Operator listing of pending entries only (walks the pending index, not the table).
/// Binds as [`LIST_ENTRIES`] (the state is ignored).
pub const LIST_PENDING_ENTRIES: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox AS o INDEXED BY outbox_pending_by_partition \
     WHERE o.state = 'pending' AND (?2 IS NULL OR ?2 = 'pending') \
       AND (?1 IS NULL OR o.destination = ?1) AND (?3 IS NULL OR o.stream_id = ?3) AND o.seq > ?4 \
     ORDER BY o.seq LIMIT ?5"
);

/// Operator listing of the dead-letter queue (walks the dead index, not the table).
/// Binds as [`LIST_ENTRIES`] (the state is ignored).
pub const LIST_DEAD_ENTRIES: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox AS o INDEXED BY outbox_dead_by_destination \
     WHERE o.state = 'dead' AND (?2 IS NULL OR ?2 = 'dead') \
       AND (?1 IS NULL OR o.destination = ?1) AND (?3 IS NULL OR o.stream_id = ?3) AND o.seq > ?4 \
     ORDER BY o.seq LIMIT ?5"
);

/// Destinations that have entries.
pub const SELECT_DESTINATIONS: &str = "SELECT DISTINCT destination FROM outbox ORDER BY destination";

/// Counts per destination: pending, retrying, delivered, dead, oldest pending created at.
pub const SELECT_STATUS: &str = "SELECT destination, \
        COALESCE(SUM(state = 'pending'), 0), \
        COALESCE(SUM(state = 'pending' AND attempts > 0), 0), \
        COALESCE(SUM(state = 'delivered'), 0), \
        COALESCE(SUM(state = 'dead'), 0), \
        MIN(CASE WHEN state = 'pending' THEN created_at END) \
     FROM outbox GROUP BY destination ORDER BY destination";

// ---------------------------------------------------------------------------------
// Delivery results (fenced by the lease)
// ---------------------------------------------------------------------------------

/// Whether a lease is held with this epoch and not expired.
/// Binds: destination, partition, owner, epoch, now.
pub const CHECK_LEASE_HELD: &str = "SELECT 1 FROM outbox_leases \
     WHERE destination = ?1 AND \"partition\" = ?2 AND owner = ?3 AND epoch = ?4 AND expires_at > ?5";

/// The lease test both result writes end with. Binds: destination ?1, partition ?2,
/// owner ?4, epoch ?5, now ?6.
macro_rules! lease_fence {
    () => {
        " AND EXISTS (SELECT 1 FROM outbox_leases AS l \
                      WHERE l.destination = ?1 AND l.\"partition\" = ?2 AND l.owner = ?4 \
                        AND l.epoch = ?5 AND l.expires_at > ?6)"
    };
}

/// Writes a batch of delivery results in one statement (its own transaction), fenced
/// by the lease: nothing is written unless the lease is held with this epoch and not
/// expired. Only pending entries of the lease's (destination, partition) are touched.
/// (The unary `+`s keep the planner on the id index: one lookup per result, never a
/// scan of the partition; the lease test is one lookup, evaluated once.) The results
/// are a JSON array of arrays, `[id, attempts, state, at, next_attempt_at, error]`
/// (`at`: delivered/dead time; `state`: the new state): positional elements are read
/// about twice as fast as named ones.
/// Binds: destination, partition, results, owner, epoch, now.
pub const RECORD_RESULTS: &str = concat!(
    "UPDATE outbox SET \
        state = r.state, \
        attempts = r.attempts, \
        next_attempt_at = CASE WHEN r.state = 'pending' THEN r.next_attempt_at ELSE outbox.next_attempt_at END, \
        delivered_at = CASE WHEN r.state = 'delivered' THEN r.at ELSE outbox.delivered_at END, \
        dead_at = CASE WHEN r.state = 'dead' THEN r.at ELSE outbox.dead_at END, \
        last_error = CASE WHEN r.state = 'delivered' THEN outbox.last_error ELSE r.error END \
     FROM (SELECT e.value ->> 0 AS id, e.value ->> 1 AS attempts, e.value ->> 2 AS state, \
                  e.value ->> 3 AS at, e.value ->> 4 AS next_attempt_at, e.value ->> 5 AS error \
           FROM json_each(?3) AS e) AS r \
     WHERE outbox.id = r.id AND +outbox.state = 'pending' \
       AND +outbox.destination = ?1 AND +outbox.\"partition\" = ?2",
    lease_fence!()
);

/// [`RECORD_RESULTS`] for a batch of deliveries that share one time and attempt count
/// (the relay's common case; see `EntryResult::uniform_delivery`): the same fence, the
/// ids as a JSON array of strings, no per-entry values to unpack.
/// Binds: destination, partition, ids, owner, epoch, now, delivered at, attempts.
pub const RECORD_DELIVERED: &str = concat!(
    "UPDATE outbox SET state = 'delivered', attempts = ?8, delivered_at = ?7 \
     WHERE outbox.id IN (SELECT value FROM json_each(?3)) AND +outbox.state = 'pending' \
       AND +outbox.destination = ?1 AND +outbox.\"partition\" = ?2",
    lease_fence!()
);

// ---------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------

/// Takes a lease if free, expired or already ours; a change of owner or a lapse
/// increments the epoch. Returns the epoch, or no row when someone else holds it.
/// Binds: destination, partition, owner, now, expires at.
pub const ACQUIRE_LEASE: &str = "INSERT INTO outbox_leases (destination, \"partition\", owner, epoch, expires_at) \
     VALUES (?1, ?2, ?3, 1, ?5) \
     ON CONFLICT (destination, \"partition\") DO UPDATE SET \
        epoch = CASE WHEN outbox_leases.owner = excluded.owner AND outbox_leases.expires_at > ?4 \
                     THEN outbox_leases.epoch ELSE outbox_leases.epoch + 1 END, \
        owner = excluded.owner, \
        expires_at = excluded.expires_at \
     WHERE outbox_leases.owner = excluded.owner OR outbox_leases.expires_at <= ?4 \
     RETURNING epoch";

/// Extends a lease held with this owner and epoch (nobody else has held it since).
/// Binds: destination, partition, owner, epoch, expires at.
pub const RENEW_LEASE: &str = "UPDATE outbox_leases SET expires_at = ?5 \
     WHERE destination = ?1 AND \"partition\" = ?2 AND owner = ?3 AND epoch = ?4";

/// Gives a lease up: it expires at once; the row (and its epoch) stays so the next
/// owner's epoch is higher. Binds: destination, partition, owner, epoch.
pub const RELEASE_LEASE: &str = "UPDATE outbox_leases SET expires_at = 0 \
     WHERE destination = ?1 AND \"partition\" = ?2 AND owner = ?3 AND epoch = ?4";

/// Lease rows of a destination. Binds: destination, now.
pub const LIST_LEASES: &str = "SELECT destination, \"partition\", owner, epoch, expires_at > ?2 \
     FROM outbox_leases WHERE destination = ?1 ORDER BY \"partition\"";

// ---------------------------------------------------------------------------------
// Dead-letter queue and retention
// ---------------------------------------------------------------------------------

/// One dead entry back to pending: attempts reset, due now, `last_error` kept for
/// history (the next failure overwrites it). Binds: entry id, destination (NULL: any), now.
pub const REPLAY_DEAD_ONE: &str = "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?3, dead_at = NULL \
     WHERE state = 'dead' AND id = ?1 AND (?2 IS NULL OR destination = ?2)";

/// Deletes one dead entry. Binds: entry id, destination (NULL: any).
pub const DISCARD_DEAD_ONE: &str =
    "DELETE FROM outbox WHERE state = 'dead' AND id = ?1 AND (?2 IS NULL OR destination = ?2)";

/// The dead-letter filter's conditions but the destination (NULL: any). Binds: dead
/// from ?2, dead to ?3, error text ?4 (case-insensitive, ASCII folding), after seq ?5.
macro_rules! dead_conditions {
    () => {
        "(?2 IS NULL OR COALESCE(dead_at, created_at) >= ?2) \
         AND (?3 IS NULL OR COALESCE(dead_at, created_at) < ?3) \
         AND (?4 IS NULL OR (last_error IS NOT NULL AND instr(lower(last_error), lower(?4)) > 0)) \
         AND seq > ?5"
    };
}

/// The dead-letter filter (NULL: any). Binds: destination ?1, then as `dead_conditions!`.
macro_rules! dead_matching {
    () => {
        concat!(
            "state = 'dead' AND (?1 IS NULL OR destination = ?1) AND ",
            dead_conditions!()
        )
    };
}

/// Dead entries matching a filter, oldest first. Binds: as `dead_matching!`, then limit.
pub const LIST_DEAD_MATCHING: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox AS o INDEXED BY outbox_dead_by_destination WHERE ",
    dead_matching!(),
    " ORDER BY o.seq LIMIT ?6"
);

/// The seqs of a destination's oldest dead entries matching a filter, for a bulk write:
/// a range of `outbox_dead_by_destination` from the cursor, in order, no sort.
/// Binds: destination ?1, then as `dead_conditions!`; the limit is the parameter given.
macro_rules! dead_batch {
    ($limit:literal) => {
        concat!(
            "seq IN (SELECT seq FROM outbox INDEXED BY outbox_dead_by_destination \
               WHERE state = 'dead' AND destination = ?1 AND ",
            dead_conditions!(),
            " ORDER BY seq LIMIT ",
            $limit,
            ")"
        )
    };
}

/// A batch of a destination's dead entries matching a filter back to pending (attempts
/// reset, due now, `last_error` kept); returns their seqs. Binds: as `dead_batch!`, then
/// now, limit.
pub const REPLAY_DEAD_BATCH: &str = concat!(
    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?6, dead_at = NULL WHERE ",
    dead_batch!("?7"),
    " RETURNING seq"
);

/// Deletes a batch of a destination's dead entries matching a filter; returns their seqs.
/// Binds: as `dead_batch!`, then limit.
pub const DISCARD_DEAD_BATCH: &str = concat!("DELETE FROM outbox WHERE ", dead_batch!("?6"), " RETURNING seq");

/// Deletes up to a number of entries delivered before a time, oldest delivery first
/// (through `outbox_delivered_by_time`). Binds: before, limit.
pub const PURGE_DELIVERED: &str = "DELETE FROM outbox WHERE seq IN (\
        SELECT seq FROM outbox WHERE state = 'delivered' AND delivered_at < ?1 \
        ORDER BY delivered_at LIMIT ?2)";

// ---------------------------------------------------------------------------------
// Disabled destinations
// ---------------------------------------------------------------------------------

/// Disables a destination; when it already is, updates the reason and keeps the time
/// it was first disabled. Binds: destination, reason, now.
pub const DISABLE_DESTINATION: &str = "INSERT INTO destination_state (destination, disabled_reason, disabled_at) \
     VALUES (?1, ?2, ?3) \
     ON CONFLICT (destination) DO UPDATE SET disabled_reason = excluded.disabled_reason";

/// Re-enables a destination. Binds: destination.
pub const ENABLE_DESTINATION: &str = "DELETE FROM destination_state WHERE destination = ?1";

/// Disabled destinations.
pub const SELECT_DISABLED_DESTINATIONS: &str =
    "SELECT destination, disabled_reason, disabled_at FROM destination_state ORDER BY destination";

// ---------------------------------------------------------------------------------
// Relay presence
// ---------------------------------------------------------------------------------

/// A relay announces itself for a destination until a time.
/// Binds: destination, owner, expires at.
pub const UPSERT_RELAY: &str = "INSERT INTO outbox_relays (destination, owner, expires_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (destination, owner) DO UPDATE SET expires_at = excluded.expires_at";

/// Forgets relays whose presence ended before a time. Binds: before.
pub const DELETE_STALE_RELAYS: &str = "DELETE FROM outbox_relays WHERE expires_at < ?1";

/// Relays alive for a destination. Binds: destination, now.
pub const SELECT_LIVE_RELAYS: &str =
    "SELECT owner FROM outbox_relays WHERE destination = ?1 AND expires_at > ?2 ORDER BY owner";
