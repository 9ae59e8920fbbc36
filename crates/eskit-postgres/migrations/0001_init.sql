-- eskit PostgreSQL schema, version 1.
-- `{schema}` is replaced by the store's (validated, quoted) schema name and `{channel}`
-- by its notification channel before this runs. Timestamps are timestamptz, ids uuid,
-- JSON documents jsonb.

-- Store-wide settings fixed at creation (the partition count).
CREATE TABLE IF NOT EXISTS {schema}.store_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Current version of each stream (its number of events). Appends lock this row
-- (and a per-stream advisory lock), so appends to one stream serialize.
CREATE TABLE IF NOT EXISTS {schema}.streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL
);

-- Every event, append-only. `position` is the global insert order.
CREATE TABLE IF NOT EXISTS {schema}.events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT statement_timestamp(),
    UNIQUE (stream_id, stream_version)
);

-- The transactional outbox. `seq` is drawn under the stream's lock, so within one
-- stream it follows commit order; across streams it does not (see docs/postgres.md).
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              uuid        NOT NULL UNIQUE,
    destination     text        NOT NULL,
    stream_id       text        NOT NULL,
    "partition"     integer     NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb,
    event_id        uuid,
    stream_version  bigint,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    dead_at         timestamptz
);

-- The relay's partition scan (FromOldest / AfterSeq).
CREATE INDEX IF NOT EXISTS outbox_pending_by_partition
    ON {schema}.outbox (destination, "partition", seq) WHERE state = 'pending';
-- Per-stream reads and the AfterSeq "no older pending entry in this stream" check.
CREATE INDEX IF NOT EXISTS outbox_pending_by_stream
    ON {schema}.outbox (destination, stream_id, seq) WHERE state = 'pending';
-- The dead-letter queue.
CREATE INDEX IF NOT EXISTS outbox_dead_by_destination
    ON {schema}.outbox (destination, seq) WHERE state = 'dead';
-- Retention purge of delivered entries.
CREATE INDEX IF NOT EXISTS outbox_delivered_by_time
    ON {schema}.outbox (delivered_at) WHERE state = 'delivered';

-- One lease per (destination, partition): its owner alone delivers its entries.
-- `epoch` is the fencing token; it grows at every change of owner.
CREATE TABLE IF NOT EXISTS {schema}.outbox_leases (
    destination text        NOT NULL,
    "partition" integer     NOT NULL,
    owner       text        NOT NULL,
    epoch       bigint      NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (destination, "partition")
);

-- Destinations turned off by an operator or by a `410 Gone`.
CREATE TABLE IF NOT EXISTS {schema}.destination_state (
    destination     text PRIMARY KEY,
    disabled_reason text        NOT NULL,
    disabled_at     timestamptz NOT NULL
);

-- Wakeups: one NOTIFY per statement that inserts outbox entries. PostgreSQL folds
-- identical notifications (same channel, same payload) of one transaction into one, so
-- listeners hear at most one per committing transaction, however many rows it wrote,
-- and nothing from a transaction that rolled back.
CREATE OR REPLACE FUNCTION {schema}.eskit_notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON {schema}.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.eskit_notify_outbox();
