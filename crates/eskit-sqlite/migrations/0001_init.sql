-- eskit SQLite schema, version 1.
-- Timestamps are INTEGER unix microseconds (UTC). Ids (event ids, entry ids) are
-- hyphenated UUID text. JSON documents are stored as the caller's text.

-- Current version of each stream (its number of events). Appends run inside
-- BEGIN IMMEDIATE, so reading and updating this row is serialized per database.
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY NOT NULL,
    version   INTEGER NOT NULL
);

-- Every event, append-only. `position` is the global order (commit order on SQLite).
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT,
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, stream_version)
);

-- The transactional outbox. `seq` follows commit order (one writer at a time).
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    destination     TEXT    NOT NULL,
    stream_id       TEXT    NOT NULL,
    "partition"     INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT,
    event_id        TEXT,
    stream_version  INTEGER,
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    dead_at         INTEGER
);

-- The relay's partition scan (FromOldest / AfterSeq).
CREATE INDEX IF NOT EXISTS outbox_pending_by_partition
    ON outbox (destination, "partition", seq) WHERE state = 'pending';
-- Per-stream reads and the AfterSeq "no older pending entry in this stream" check.
CREATE INDEX IF NOT EXISTS outbox_pending_by_stream
    ON outbox (destination, stream_id, seq) WHERE state = 'pending';
-- The dead-letter queue.
CREATE INDEX IF NOT EXISTS outbox_dead_by_destination
    ON outbox (destination, seq) WHERE state = 'dead';
-- Retention purge of delivered entries.
CREATE INDEX IF NOT EXISTS outbox_delivered_by_time
    ON outbox (delivered_at) WHERE state = 'delivered';

-- One lease per (destination, partition): its owner alone delivers its entries.
-- `epoch` is the fencing token; it grows at every change of owner.
CREATE TABLE IF NOT EXISTS outbox_leases (
    destination TEXT    NOT NULL,
    "partition" INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (destination, "partition")
);

-- Destinations turned off by an operator or by a `410 Gone`.
CREATE TABLE IF NOT EXISTS destination_state (
    destination     TEXT PRIMARY KEY NOT NULL,
    disabled_reason TEXT NOT NULL,
    disabled_at     INTEGER NOT NULL
);
