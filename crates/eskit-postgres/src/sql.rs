//! Every SQL statement the backend runs, as templates, and [`Sql`]: the statements of one
//! store with its schema filled in, built once when the store opens.
//!
//! Conventions: `{schema}` stands for the validated, quoted schema name; timestamps are
//! `timestamptz` and come from the database clock (`statement_timestamp()`,
//! `clock_timestamp()`) wherever the relay compares them; bulk writes bind one array per
//! column and `unnest` them, so a batch is one statement whatever its size.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// Version 1 of the schema (a template: `{schema}` and `{channel}` are filled in).
pub(crate) const MIGRATION_0001_INIT: &str = include_str!("../migrations/0001_init.sql");

/// Version 2 of the schema: relay presence (a template: `{schema}` is filled in).
pub(crate) const MIGRATION_0002_RELAYS: &str = include_str!("../migrations/0002_relays.sql");

/// Name of the migrations bookkeeping table, inside the store's schema (not sqlx's
/// default `_sqlx_migrations`).
pub(crate) const MIGRATIONS_TABLE: &str = "eskit_migrations";

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

/// Records the partition count on first open, then returns the recorded one.
/// Binds: partitions (text).
const PARTITIONS_SETTING: &str = "WITH ins AS ( \
        INSERT INTO {schema}.store_settings (key, value) VALUES ('partitions', $1) \
        ON CONFLICT (key) DO NOTHING RETURNING value) \
     SELECT value FROM ins UNION ALL \
     SELECT value FROM {schema}.store_settings WHERE key = 'partitions' LIMIT 1";

// ---------------------------------------------------------------------------------
// Event store
// ---------------------------------------------------------------------------------

/// Serializes writers of one stream (appends and explicit outbox messages) until the
/// transaction ends. Binds: lock key.
///
/// It must stay a statement of its own: the version read that follows needs a snapshot
/// taken after the lock is granted. Folded into one statement with that read, the read
/// would use the snapshot taken before waiting, and miss a stream created by the writer
/// it waited for (checked by hand: it returned no version after the other committed one).
pub(crate) const LOCK_STREAM: &str = "SELECT pg_advisory_xact_lock($1)";

/// The current version of a stream, locking its row. Binds: stream id.
const SELECT_STREAM_VERSION_FOR_UPDATE: &str = "SELECT version FROM {schema}.streams WHERE stream_id = $1 FOR UPDATE";

/// The current version of a stream. Binds: stream id.
const SELECT_STREAM_VERSION: &str = "SELECT version FROM {schema}.streams WHERE stream_id = $1";

/// Which of a set of event ids are stored (the cheap first idempotency check).
/// Binds: uuid[].
const SELECT_STORED_EVENT_IDS: &str = "SELECT event_id FROM {schema}.events WHERE event_id = ANY($1)";

/// Stored events among the given ones, compared with them (the idempotency check; absent
/// metadata equals JSON `null`).
/// Binds: uuid[] ids, text[] types, text[] payloads, text[] metadata (nullable).
const COMPARE_STORED_EVENTS: &str = "SELECT u.event_id, e.stream_id, e.stream_version, e.position, \
        (e.event_type = u.event_type AND e.payload = u.payload::jsonb \
         AND COALESCE(e.metadata, 'null') = COALESCE(u.metadata::jsonb, 'null')) AS same \
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) \
          WITH ORDINALITY AS u(event_id, event_type, payload, metadata, ord) \
     JOIN {schema}.events AS e ON e.event_id = u.event_id \
     ORDER BY u.ord";

/// The outbox insert of [`INSERT_OUTBOX_ENTRIES`] and [`INSERT_EVENTS_WITH_ENTRIES`]
/// (without its closing `ORDER BY`): entries from arrays `$1`–`$9`, pending and due at once.
macro_rules! insert_outbox_rows {
    () => {
        "INSERT INTO {schema}.outbox \
            (id, destination, stream_id, \"partition\", event_type, payload, metadata, event_id, \
             stream_version, created_at, next_attempt_at) \
         SELECT u.id, u.destination, u.stream_id, u.part, u.event_type, u.payload::jsonb, \
                u.metadata::jsonb, u.event_id, u.stream_version, statement_timestamp(), statement_timestamp() \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::text[], \
                     $8::uuid[], $9::int8[]) \
              WITH ORDINALITY AS u(id, destination, stream_id, part, event_type, payload, metadata, \
                                   event_id, stream_version, ord)"
    };
}

/// The event insert and stream-version move of [`INSERT_EVENTS`] and
/// [`INSERT_EVENTS_WITH_ENTRIES`], as two CTEs `ins` and `st`, with the event binds
/// numbered from `$n` (stream id, current version, uuid[] ids, text[] types, text[]
/// payloads, text[] metadata). Event ids already stored are skipped: the caller rolls
/// back when fewer rows than asked were written.
macro_rules! insert_event_rows {
    ($stream:literal, $base:literal, $ids:literal, $types:literal, $payloads:literal, $metadata:literal) => {
        concat!(
            "ins AS ( \
                INSERT INTO {schema}.events \
                    (stream_id, stream_version, event_id, event_type, payload, metadata) \
                SELECT ",
            $stream,
            ", ",
            $base,
            " + u.ord, u.event_id, u.event_type, u.payload::jsonb, u.metadata::jsonb \
                FROM unnest(",
            $ids,
            "::uuid[], ",
            $types,
            "::text[], ",
            $payloads,
            "::text[], ",
            $metadata,
            "::text[]) \
                     WITH ORDINALITY AS u(event_id, event_type, payload, metadata, ord) \
                ORDER BY u.ord \
                ON CONFLICT (event_id) DO NOTHING \
                RETURNING position), \
             st AS ( \
                INSERT INTO {schema}.streams (stream_id, version) \
                VALUES (",
            $stream,
            ", ",
            $base,
            " + cardinality(",
            $ids,
            "::uuid[])) \
                ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version)"
        )
    };
}

/// Inserts a batch of events in array order with consecutive versions and moves the
/// stream's version, in one statement. Returns the rows written and the first and last
/// positions. Binds: stream id, current version, uuid[] ids, text[] types, text[]
/// payloads, text[] metadata (nullable).
const INSERT_EVENTS: &str = concat!(
    "WITH ",
    insert_event_rows!("$1", "$2", "$3", "$4", "$5", "$6"),
    " SELECT count(*), min(position), max(position) FROM ins"
);

/// [`INSERT_EVENTS`] and the events' outbox entries in one statement (one round trip
/// fewer). The entries are written only if every event was (otherwise the caller rolls
/// back), in array order. Binds: the nine entry arrays of [`INSERT_OUTBOX_ENTRIES`],
/// then the six event binds of [`INSERT_EVENTS`].
const INSERT_EVENTS_WITH_ENTRIES: &str = concat!(
    "WITH ",
    insert_event_rows!("$10", "$11", "$12", "$13", "$14", "$15"),
    ", ob AS (",
    insert_outbox_rows!(),
    " WHERE (SELECT count(*) FROM ins) = cardinality($12::uuid[]) ORDER BY u.ord) \
     SELECT count(*), min(position), max(position) FROM ins"
);

/// Columns of `events`, in the order [`crate::rows::recorded_event`] decodes them.
macro_rules! event_columns {
    () => {
        "position, stream_id, stream_version, event_id, event_type, payload, metadata, recorded_at"
    };
}

/// A stream's events upwards from a version. Binds: stream id, from version, limit.
const READ_STREAM_FORWARD: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM {schema}.events WHERE stream_id = $1 AND stream_version >= $2 \
     ORDER BY stream_version ASC LIMIT $3"
);

/// A stream's events downwards from a version. Binds: stream id, from version, limit.
const READ_STREAM_BACKWARD: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM {schema}.events WHERE stream_id = $1 AND stream_version <= $2 \
     ORDER BY stream_version DESC LIMIT $3"
);

/// All events from a position. Binds: from position, limit.
const READ_ALL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM {schema}.events WHERE position >= $1 ORDER BY position ASC LIMIT $2"
);

// ---------------------------------------------------------------------------------
// Outbox writes
// ---------------------------------------------------------------------------------

/// Inserts a batch of outbox entries in array order, pending and due at once. The
/// statement trigger issues the (de-duplicated) NOTIFY.
/// Binds: uuid[] ids, text[] destinations, text[] stream ids, int4[] partitions,
/// text[] types, text[] payloads, text[] metadata, uuid[] event ids, int8[] versions.
const INSERT_OUTBOX_ENTRIES: &str = concat!(insert_outbox_rows!(), " ORDER BY u.ord");

// ---------------------------------------------------------------------------------
// Outbox reads
// ---------------------------------------------------------------------------------

/// The columns the relay reads of a pending entry of its lease (decoded by
/// [`crate::rows::pending_entry`]): its destination, partition and state are known, and
/// a pending entry has no delivered/dead time.
macro_rules! pending_columns {
    () => {
        "o.seq, o.id, o.stream_id, o.event_type, o.payload::text, o.metadata::text, o.event_id, \
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
const FETCH_PENDING_FROM_OLDEST: &str = concat!(
    "SELECT ",
    pending_columns!(),
    " FROM {schema}.outbox AS o \
     WHERE o.destination = $1 AND o.\"partition\" = $2 AND o.state = 'pending' \
     ORDER BY o.seq LIMIT $3"
);

/// Pending entries of a partition after a seq, of streams with no pending entry at or
/// below it. The check is a per-row probe of the partial per-stream index on
/// (destination, stream_id, seq): `OFFSET 0` keeps PostgreSQL from turning it into an
/// anti-join, which with poor statistics it plans as a scan of the whole destination's
/// index range per row — ruinous when a held xmin horizon keeps delivered entries in the
/// index (measured: 100x slower). As a probe it walks one stream's entries at most.
/// Binds: destination, partition, seq, limit.
const FETCH_PENDING_AFTER_SEQ: &str = concat!(
    "SELECT ",
    pending_columns!(),
    " FROM {schema}.outbox AS o \
     WHERE o.destination = $1 AND o.\"partition\" = $2 AND o.state = 'pending' AND o.seq > $3 \
       AND NOT EXISTS (SELECT 1 FROM {schema}.outbox AS p \
                       WHERE p.destination = $1 AND p.stream_id = o.stream_id \
                         AND p.state = 'pending' AND p.seq <= $3 \
                       OFFSET 0) \
     ORDER BY o.seq LIMIT $4"
);

/// Pending entries of one stream (in the lease's partition) from its oldest.
/// Binds: destination, partition, stream id, limit.
const FETCH_PENDING_OF_STREAM: &str = concat!(
    "SELECT ",
    pending_columns!(),
    " FROM {schema}.outbox AS o \
     WHERE o.destination = $1 AND o.stream_id = $3 AND o.state = 'pending' AND o.\"partition\" = $2 \
     ORDER BY o.seq LIMIT $4"
);

/// Operator listing, oldest first; a NULL filter matches everything.
/// Binds: destination, state, stream id, after seq, limit.
const LIST_ENTRIES: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM {schema}.outbox AS o \
     WHERE ($1::text IS NULL OR o.destination = $1) AND ($2::text IS NULL OR o.state = $2) \
       AND ($3::text IS NULL OR o.stream_id = $3) AND o.seq > $4 \
     ORDER BY o.seq LIMIT $5"
);

/// Destinations that have entries.
const SELECT_DESTINATIONS: &str = "SELECT DISTINCT destination FROM {schema}.outbox ORDER BY destination";

/// Counts per destination: pending, retrying, delivered, dead, oldest pending age (s).
const SELECT_STATUS: &str = "SELECT destination, \
        count(*) FILTER (WHERE state = 'pending'), \
        count(*) FILTER (WHERE state = 'pending' AND attempts > 0), \
        count(*) FILTER (WHERE state = 'delivered'), \
        count(*) FILTER (WHERE state = 'dead'), \
        EXTRACT(EPOCH FROM clock_timestamp() - min(created_at) FILTER (WHERE state = 'pending'))::float8 \
     FROM {schema}.outbox GROUP BY destination ORDER BY destination";

// ---------------------------------------------------------------------------------
// Delivery results (fenced by the lease)
// ---------------------------------------------------------------------------------

/// Writes a batch of delivery results in one statement, fenced by the lease: the lease
/// row is locked `FOR SHARE` first (a takeover waits for this statement to commit) and
/// must be held by this owner with this epoch and not expired, else nothing is written.
/// Only pending entries of the lease's (destination, partition) are touched; each is
/// found by its id (unique index). The pending test is written `COALESCE(..)` so that
/// the planner cannot use the partial pending indexes instead, whose range walk over a
/// whole destination is ruinous when a held xmin horizon keeps delivered entries in them.
/// Returns whether the lease was held and how many rows were updated.
/// Binds: destination, partition, owner, epoch, uuid[] ids, int4[] attempts, text[] new
/// states, timestamptz[] at (delivered/dead time), timestamptz[] next attempt, text[] error.
const RECORD_RESULTS: &str = "WITH lease AS ( \
        SELECT 1 FROM {schema}.outbox_leases \
        WHERE destination = $1 AND \"partition\" = $2 AND owner = $3 AND epoch = $4 \
          AND expires_at > clock_timestamp() \
        FOR SHARE), \
     upd AS ( \
        UPDATE {schema}.outbox AS o SET \
            state = r.state, \
            attempts = r.attempts, \
            next_attempt_at = CASE WHEN r.state = 'pending' THEN r.next_attempt_at ELSE o.next_attempt_at END, \
            delivered_at = CASE WHEN r.state = 'delivered' THEN r.at ELSE o.delivered_at END, \
            dead_at = CASE WHEN r.state = 'dead' THEN r.at ELSE o.dead_at END, \
            last_error = CASE WHEN r.state = 'delivered' THEN o.last_error ELSE r.error END \
        FROM unnest($5::uuid[], $6::int4[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::text[]) \
             AS r(id, attempts, state, at, next_attempt_at, error) \
        WHERE o.id = r.id AND COALESCE(o.state = 'pending', false) \
          AND o.destination = $1 AND o.\"partition\" = $2 AND EXISTS (SELECT 1 FROM lease) \
        RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM lease), (SELECT count(*) FROM upd)";

/// [`RECORD_RESULTS`] for a batch of deliveries that share one time and attempt count
/// (the relay's common case; see `EntryResult::uniform_delivery`): the same fence and
/// lookups, one id array instead of six per-entry arrays to unpack.
/// Binds: destination, partition, owner, epoch, uuid[] ids, delivered at, attempts.
const RECORD_DELIVERED: &str = "WITH lease AS ( \
        SELECT 1 FROM {schema}.outbox_leases \
        WHERE destination = $1 AND \"partition\" = $2 AND owner = $3 AND epoch = $4 \
          AND expires_at > clock_timestamp() \
        FOR SHARE), \
     upd AS ( \
        UPDATE {schema}.outbox AS o SET state = 'delivered', attempts = $7, delivered_at = $6 \
        WHERE o.id = ANY($5::uuid[]) AND COALESCE(o.state = 'pending', false) \
          AND o.destination = $1 AND o.\"partition\" = $2 AND EXISTS (SELECT 1 FROM lease) \
        RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM lease), (SELECT count(*) FROM upd)";

// ---------------------------------------------------------------------------------
// Leases (database clock)
// ---------------------------------------------------------------------------------

/// Takes a lease if free, expired or already ours. The epoch grows whenever the lease
/// was not live in our hands (a new owner, or our own lapsed lease), so a stale worker
/// is always fenced. Returns the epoch, or no row when someone else holds it.
/// Binds: destination, partition, owner, ttl (seconds, float8).
const ACQUIRE_LEASE: &str = "INSERT INTO {schema}.outbox_leases AS l \
        (destination, \"partition\", owner, epoch, expires_at) \
     VALUES ($1, $2, $3, 1, clock_timestamp() + make_interval(secs => $4)) \
     ON CONFLICT (destination, \"partition\") DO UPDATE SET \
        epoch = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > clock_timestamp() \
                     THEN l.epoch ELSE l.epoch + 1 END, \
        owner = EXCLUDED.owner, \
        expires_at = EXCLUDED.expires_at \
     WHERE l.owner = EXCLUDED.owner OR l.expires_at <= clock_timestamp() \
     RETURNING epoch";

/// Extends a lease held with this owner and epoch (nobody else has held it since).
/// Binds: destination, partition, owner, epoch, ttl (seconds, float8).
const RENEW_LEASE: &str = "UPDATE {schema}.outbox_leases \
     SET expires_at = clock_timestamp() + make_interval(secs => $5) \
     WHERE destination = $1 AND \"partition\" = $2 AND owner = $3 AND epoch = $4";

/// Gives a lease up: it expires at once; the row (and its epoch) stays so the next
/// owner's epoch is higher. Binds: destination, partition, owner, epoch.
const RELEASE_LEASE: &str = "UPDATE {schema}.outbox_leases SET expires_at = clock_timestamp() \
     WHERE destination = $1 AND \"partition\" = $2 AND owner = $3 AND epoch = $4";

/// Lease rows of a destination. Binds: destination.
const LIST_LEASES: &str = "SELECT destination, \"partition\", owner, epoch, expires_at > clock_timestamp() \
     FROM {schema}.outbox_leases WHERE destination = $1 ORDER BY \"partition\"";

// ---------------------------------------------------------------------------------
// Dead-letter queue and retention
// ---------------------------------------------------------------------------------

/// One dead entry back to pending: attempts reset, due now, `last_error` kept for
/// history (the next failure overwrites it); wakes the relays when it moved.
/// Binds: entry id, destination (NULL: any), channel.
const REPLAY_DEAD_ONE: &str = "WITH r AS ( \
        UPDATE {schema}.outbox SET state = 'pending', attempts = 0, \
            next_attempt_at = clock_timestamp(), dead_at = NULL \
        WHERE state = 'dead' AND id = $1 AND ($2::text IS NULL OR destination = $2) \
        RETURNING 1), \
     c AS (SELECT count(*) AS n FROM r) \
     SELECT c.n, CASE WHEN c.n > 0 THEN (SELECT 1 FROM (SELECT pg_notify($3, '')) AS x) END FROM c";

/// Deletes one dead entry. Binds: entry id, destination (NULL: any).
const DISCARD_DEAD_ONE: &str = "DELETE FROM {schema}.outbox \
     WHERE state = 'dead' AND id = $1 AND ($2::text IS NULL OR destination = $2)";

/// The dead-letter filter's conditions but the destination (NULL: any). Binds: dead
/// from $2, dead to $3, error text $4 (case-insensitive), after seq $5.
macro_rules! dead_conditions {
    () => {
        "($2::timestamptz IS NULL OR COALESCE(dead_at, created_at) >= $2) \
         AND ($3::timestamptz IS NULL OR COALESCE(dead_at, created_at) < $3) \
         AND ($4::text IS NULL OR strpos(lower(last_error), lower($4)) > 0) \
         AND seq > $5"
    };
}

/// The dead-letter filter (NULL: any). Binds: destination $1, then as `dead_conditions!`.
macro_rules! dead_matching {
    () => {
        concat!(
            "state = 'dead' AND ($1::text IS NULL OR destination = $1) AND ",
            dead_conditions!()
        )
    };
}

/// Dead entries matching a filter, oldest first. Binds: as `dead_matching!`, then limit.
const LIST_DEAD_MATCHING: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM {schema}.outbox AS o WHERE ",
    dead_matching!(),
    " ORDER BY o.seq LIMIT $6"
);

/// A destination's oldest dead entries matching a filter, for a bulk write: their seqs,
/// locked, from a range of `outbox_dead_by_destination` after the cursor. Binds:
/// destination $1, then as `dead_conditions!`; the limit is the parameter given. The
/// statements built on it test `state = 'dead'` again outside, so a row another
/// statement changed while this one waited for its lock is left alone.
macro_rules! dead_batch {
    ($limit:literal) => {
        concat!(
            "state = 'dead' AND seq IN (SELECT seq FROM {schema}.outbox \
               WHERE state = 'dead' AND destination = $1 AND ",
            dead_conditions!(),
            " ORDER BY seq LIMIT ",
            $limit,
            " FOR UPDATE)"
        )
    };
}

/// A batch of a destination's dead entries matching a filter back to pending (attempts
/// reset, due now), with one notification when any moved; returns how many and the
/// highest seq. Binds: as `dead_batch!`, then the channel, limit.
const REPLAY_DEAD_BATCH: &str = concat!(
    "WITH r AS ( \
        UPDATE {schema}.outbox SET state = 'pending', attempts = 0, \
            next_attempt_at = clock_timestamp(), dead_at = NULL WHERE ",
    dead_batch!("$7"),
    " RETURNING seq), \
     c AS (SELECT count(*) AS n, max(seq) AS last FROM r) \
     SELECT c.n, c.last, CASE WHEN c.n > 0 THEN (SELECT 1 FROM (SELECT pg_notify($6, '')) AS x) END FROM c"
);

/// Deletes a batch of a destination's dead entries matching a filter; returns how many
/// and the highest seq. Binds: as `dead_batch!`, then limit.
const DISCARD_DEAD_BATCH: &str = concat!(
    "WITH r AS (DELETE FROM {schema}.outbox WHERE ",
    dead_batch!("$6"),
    " RETURNING seq) SELECT count(*), max(seq) FROM r"
);

/// Deletes up to a number of entries delivered before a time, oldest delivery first
/// (through `outbox_delivered_by_time`); rows another purge holds are skipped, so two
/// relays purging at once share the work. Binds: before, limit.
const PURGE_DELIVERED: &str = "DELETE FROM {schema}.outbox WHERE seq IN (\
        SELECT seq FROM {schema}.outbox WHERE state = 'delivered' AND delivered_at < $1 \
        ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

// ---------------------------------------------------------------------------------
// Disabled destinations
// ---------------------------------------------------------------------------------

/// Disables a destination (or updates the reason). Binds: destination, reason.
const DISABLE_DESTINATION: &str = "INSERT INTO {schema}.destination_state \
        (destination, disabled_reason, disabled_at) VALUES ($1, $2, clock_timestamp()) \
     ON CONFLICT (destination) DO UPDATE SET disabled_reason = EXCLUDED.disabled_reason, \
        disabled_at = EXCLUDED.disabled_at";

/// Re-enables a destination. Binds: destination.
const ENABLE_DESTINATION: &str = "DELETE FROM {schema}.destination_state WHERE destination = $1";

/// Disabled destinations.
const SELECT_DISABLED_DESTINATIONS: &str =
    "SELECT destination, disabled_reason, disabled_at FROM {schema}.destination_state ORDER BY destination";

// ---------------------------------------------------------------------------------
// Relay presence
// ---------------------------------------------------------------------------------

/// A relay announces itself for a destination for `ttl` seconds (zero: it left), and
/// presence rows that ended over an hour ago are forgotten, in one statement.
/// Binds: destination, owner, ttl (seconds, float8).
const HEARTBEAT: &str = "WITH forget AS ( \
        DELETE FROM {schema}.outbox_relays WHERE expires_at < clock_timestamp() - interval '1 hour') \
     INSERT INTO {schema}.outbox_relays (destination, owner, expires_at) \
     VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
     ON CONFLICT (destination, owner) DO UPDATE SET expires_at = EXCLUDED.expires_at";

/// Relays alive for a destination. Binds: destination.
const SELECT_LIVE_RELAYS: &str = "SELECT owner FROM {schema}.outbox_relays \
     WHERE destination = $1 AND expires_at > clock_timestamp() ORDER BY owner";

/// A statement with the schema filled in; cheap to clone (shared text).
#[derive(Debug, Clone)]
pub(crate) struct Stmt(Arc<str>);

impl Stmt {
    fn new(template: &str, schema: &str) -> Self {
        Self(template.replace("{schema}", schema).into())
    }

    /// The statement for `sqlx::query`. The text is one of the constants above with
    /// the validated, quoted schema name filled in: nothing else is ever spliced in.
    pub(crate) fn sql(&self) -> SqlStr {
        AssertSqlSafe(self.0.clone()).into_sql_str()
    }
}

/// Every statement of one store, with its schema filled in.
#[derive(Debug)]
pub(crate) struct Sql {
    pub partitions_setting: Stmt,
    pub select_stream_version_for_update: Stmt,
    pub select_stream_version: Stmt,
    pub select_stored_event_ids: Stmt,
    pub compare_stored_events: Stmt,
    pub insert_events: Stmt,
    pub insert_events_with_entries: Stmt,
    pub read_stream_forward: Stmt,
    pub read_stream_backward: Stmt,
    pub read_all: Stmt,
    pub insert_outbox_entries: Stmt,
    pub fetch_pending_from_oldest: Stmt,
    pub fetch_pending_after_seq: Stmt,
    pub fetch_pending_of_stream: Stmt,
    pub list_entries: Stmt,
    pub select_destinations: Stmt,
    pub select_status: Stmt,
    pub record_results: Stmt,
    pub record_delivered: Stmt,
    pub acquire_lease: Stmt,
    pub renew_lease: Stmt,
    pub release_lease: Stmt,
    pub list_leases: Stmt,
    pub replay_dead_one: Stmt,
    pub discard_dead_one: Stmt,
    pub list_dead_matching: Stmt,
    pub replay_dead_batch: Stmt,
    pub discard_dead_batch: Stmt,
    pub purge_delivered: Stmt,
    pub disable_destination: Stmt,
    pub enable_destination: Stmt,
    pub select_disabled_destinations: Stmt,
    pub heartbeat: Stmt,
    pub select_live_relays: Stmt,
}

impl Sql {
    /// The statements for a schema; `quoted_schema` must come from
    /// [`crate::ident::SchemaName::quoted`].
    pub(crate) fn new(quoted_schema: &str) -> Self {
        let s = |t: &str| Stmt::new(t, quoted_schema);
        Self {
            partitions_setting: s(PARTITIONS_SETTING),
            select_stream_version_for_update: s(SELECT_STREAM_VERSION_FOR_UPDATE),
            select_stream_version: s(SELECT_STREAM_VERSION),
            select_stored_event_ids: s(SELECT_STORED_EVENT_IDS),
            compare_stored_events: s(COMPARE_STORED_EVENTS),
            insert_events: s(INSERT_EVENTS),
            insert_events_with_entries: s(INSERT_EVENTS_WITH_ENTRIES),
            read_stream_forward: s(READ_STREAM_FORWARD),
            read_stream_backward: s(READ_STREAM_BACKWARD),
            read_all: s(READ_ALL),
            insert_outbox_entries: s(INSERT_OUTBOX_ENTRIES),
            fetch_pending_from_oldest: s(FETCH_PENDING_FROM_OLDEST),
            fetch_pending_after_seq: s(FETCH_PENDING_AFTER_SEQ),
            fetch_pending_of_stream: s(FETCH_PENDING_OF_STREAM),
            list_entries: s(LIST_ENTRIES),
            select_destinations: s(SELECT_DESTINATIONS),
            select_status: s(SELECT_STATUS),
            record_results: s(RECORD_RESULTS),
            record_delivered: s(RECORD_DELIVERED),
            acquire_lease: s(ACQUIRE_LEASE),
            renew_lease: s(RENEW_LEASE),
            release_lease: s(RELEASE_LEASE),
            list_leases: s(LIST_LEASES),
            replay_dead_one: s(REPLAY_DEAD_ONE),
            discard_dead_one: s(DISCARD_DEAD_ONE),
            list_dead_matching: s(LIST_DEAD_MATCHING),
            replay_dead_batch: s(REPLAY_DEAD_BATCH),
            discard_dead_batch: s(DISCARD_DEAD_BATCH),
            purge_delivered: s(PURGE_DELIVERED),
            disable_destination: s(DISABLE_DESTINATION),
            enable_destination: s(ENABLE_DESTINATION),
            select_disabled_destinations: s(SELECT_DISABLED_DESTINATIONS),
            heartbeat: s(HEARTBEAT),
            select_live_relays: s(SELECT_LIVE_RELAYS),
        }
    }
}

/// The migrations (version, description, text) for a schema and notification channel.
pub(crate) fn migrations(quoted_schema: &str, channel: &str) -> Vec<(i64, &'static str, String)> {
    let fill = |t: &str| t.replace("{schema}", quoted_schema).replace("{channel}", channel);
    vec![
        (1, "init", fill(MIGRATION_0001_INIT)),
        (2, "relays", fill(MIGRATION_0002_RELAYS)),
    ]
}

#[cfg(test)]
mod plan_tests {
    //! The hot statements keep the plans their comments promise, whatever the
    //! statistics: no walk over a whole destination's pending index.

    use eskit::{EventData, EventStore, ExpectedVersion, RouteFilter, StoreOptions};
    use sqlx::Row;

    use crate::PgStore;

    async fn explain(
        store: &PgStore,
        statement: &super::Stmt,
        bind: impl FnOnce(String) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> String {
        let query = bind(format!("EXPLAIN {}", statement.0));
        let rows = query.fetch_all(store.pool()).await.expect("explain");
        rows.iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn fast_path_and_result_writes_probe_by_stream_and_by_id() {
        let url =
            std::env::var("ESKIT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let store = PgStore::builder(&url)
            .schema(&schema)
            .max_connections(2)
            .options(
                StoreOptions::default()
                    .with_outbox("hook", RouteFilter::all())
                    .partitions(1),
            )
            .open()
            .await
            .expect("open");
        for i in 0..20 {
            let events = (0..10).map(|n| EventData::json("E", &n).unwrap()).collect();
            store
                .append(&format!("s-{}", i % 4), ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
        let sql = &store.inner.sql;

        let after_seq = explain(&store, &sql.fetch_pending_after_seq, |text| {
            sqlx::query(sqlx::AssertSqlSafe(text))
                .bind("hook")
                .bind(0i32)
                .bind(100i64)
                .bind(200i64)
        })
        .await;

        // Both result writes start with the lease's binds: destination, partition, owner, epoch.
        let fenced = |text: String| {
            sqlx::query(sqlx::AssertSqlSafe(text))
                .bind("hook")
                .bind(0i32)
                .bind("owner")
                .bind(1i64)
        };
        let record = explain(&store, &sql.record_results, |text| {
            fenced(text)
                .bind(vec![uuid::Uuid::nil()])
                .bind(vec![1i32])
                .bind(vec!["delivered"])
                .bind(vec![None::<time::OffsetDateTime>])
                .bind(vec![None::<time::OffsetDateTime>])
                .bind(vec![None::<String>])
        })
        .await;

        let delivered = explain(&store, &sql.record_delivered, |text| {
            fenced(text)
                .bind(vec![uuid::Uuid::nil()])
                .bind(time::OffsetDateTime::UNIX_EPOCH)
                .bind(1i32)
        })
        .await;

        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .execute(store.pool())
            .await;
        assert!(after_seq.contains("SubPlan"), "{after_seq}");
        assert!(after_seq.contains("stream_id = o.stream_id"), "{after_seq}");
        assert!(!after_seq.contains("Anti Join"), "{after_seq}");
        assert!(record.contains("outbox_id_key"), "{record}");
        assert!(!record.contains("outbox_pending_by"), "{record}");
        assert!(delivered.contains("outbox_id_key"), "{delivered}");
        assert!(!delivered.contains("outbox_pending_by"), "{delivered}");
    }
}
