//! The physical bounds `eskit bench` compares with: the same rows written and consumed
//! with plain SQL on plain tables in the same database, and the backend-specific setup
//! of the scenarios (delivered rows in bulk, a transaction held open).

use std::sync::Arc;

use eskit::partition_of;
use sqlx::{AssertSqlSafe, Connection, PgPool, SqlitePool};
use uuid::Uuid;

use crate::error::{CliError, CliResult};
use crate::store::OpenStore;

/// One event (and its outbox row) as the raw baselines write it.
#[derive(Debug, Clone)]
pub struct RawRow {
    /// Event id (also the entry id).
    pub id: Uuid,
    /// Stream.
    pub stream: String,
    /// Partition of the stream.
    pub partition: u32,
    /// JSON payload.
    pub payload: String,
}

impl RawRow {
    /// A row for `stream`.
    pub fn new(stream: String, payload: String, partitions: u32) -> Self {
        Self {
            id: Uuid::now_v7(),
            partition: partition_of(&stream, partitions),
            stream,
            payload,
        }
    }
}

/// A pending row of the raw queue.
#[derive(Debug, Clone)]
pub struct QueuedRow {
    /// Sequence.
    pub seq: i64,
    /// Id.
    pub id: String,
    /// Stream.
    pub stream: String,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Created at.
    pub created_at: time::OffsetDateTime,
}

impl QueuedRow {
    /// A row of a loop's fetch, on either backend: seq, id, stream, event type, payload
    /// (text), attempts and created at (unix microseconds), all read as `i64` / `String`.
    fn of<'r, R>(r: &'r R) -> Self
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let micros: i64 = r.get(6);
        Self {
            seq: r.get(0),
            id: r.get(1),
            stream: r.get(2),
            event_type: r.get(3),
            payload: r.get(4),
            attempts: r.get(5),
            created_at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        }
    }
}

/// Which table a plain select-and-mark loop works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `bench_raw_queue`: an outbox entry's fields (id, destination, stream, event type,
    /// payload, state, attempts, last error, created/delivered at), a primary key and the
    /// one partial index a select-and-mark loop needs (the physical bound).
    Plain,
    /// eskit's own `outbox` table, entries of destination `raw` (written by
    /// [`super::bench_schema`]): same rows and indexes, no relay engine.
    Eskit,
}

/// The database of a bench run, for plain SQL.
#[derive(Clone)]
pub enum RawDb {
    /// SQLite, with an in-process writer queue like the store's.
    Sqlite(SqlitePool, Arc<tokio::sync::Mutex<()>>),
    /// PostgreSQL, with the quoted schema.
    Postgres(PgPool, String),
}

fn db(context: &'static str) -> impl Fn(sqlx::Error) -> CliError {
    move |e| CliError::store(context)(eskit::Error::database(context, e))
}

impl RawDb {
    /// The raw side of an open store.
    pub fn of(store: &OpenStore) -> Self {
        match store {
            OpenStore::Sqlite(s) => RawDb::Sqlite(s.pool().clone(), Arc::new(tokio::sync::Mutex::new(()))),
            OpenStore::Postgres(s) => RawDb::Postgres(s.pool().clone(), s.schema().quoted()),
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, RawDb::Postgres(..))
    }

    /// (Re)creates the plain tables: events and outbox rows with a primary key only, and
    /// a queue with the one partial index a select-and-mark loop needs.
    pub async fn setup(&self) -> CliResult {
        match self {
            RawDb::Sqlite(pool, _) => {
                sqlx::raw_sql(
                    "DROP TABLE IF EXISTS bench_raw_events; DROP TABLE IF EXISTS bench_raw_outbox; \
                     DROP TABLE IF EXISTS bench_raw_queue; DROP TABLE IF EXISTS bench_idle;
                     CREATE TABLE bench_raw_events (position INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, \
                       event_id TEXT NOT NULL, event_type TEXT NOT NULL, payload TEXT NOT NULL, recorded_at INTEGER NOT NULL);
                     CREATE TABLE bench_raw_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, \
                       destination TEXT NOT NULL, stream_id TEXT NOT NULL, \"partition\" INTEGER NOT NULL, \
                       event_type TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', \
                       created_at INTEGER NOT NULL);
                     CREATE TABLE bench_raw_queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, \
                       destination TEXT NOT NULL, stream_id TEXT NOT NULL, \"partition\" INTEGER NOT NULL, \
                       event_type TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', \
                       attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at INTEGER NOT NULL, \
                       delivered_at INTEGER);
                     CREATE INDEX bench_raw_queue_pending ON bench_raw_queue (\"partition\", seq) WHERE state = 'pending';
                     CREATE TABLE bench_idle (x INTEGER);",
                )
                .execute(pool)
                .await
                .map_err(db("creating the raw tables"))?;
            }
            RawDb::Postgres(pool, s) => {
                let sql = format!(
                    "DROP TABLE IF EXISTS {s}.bench_raw_events, {s}.bench_raw_outbox, {s}.bench_raw_queue, {s}.bench_idle;
                     CREATE TABLE {s}.bench_raw_events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                       stream_id text NOT NULL, event_id uuid NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, \
                       recorded_at timestamptz NOT NULL DEFAULT statement_timestamp());
                     CREATE TABLE {s}.bench_raw_outbox (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id uuid NOT NULL, \
                       destination text NOT NULL, stream_id text NOT NULL, \"partition\" integer NOT NULL, \
                       event_type text NOT NULL, payload jsonb NOT NULL, state text NOT NULL DEFAULT 'pending', \
                       created_at timestamptz NOT NULL DEFAULT statement_timestamp());
                     CREATE TABLE {s}.bench_raw_queue (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id uuid NOT NULL, \
                       destination text NOT NULL, stream_id text NOT NULL, \"partition\" integer NOT NULL, \
                       event_type text NOT NULL, payload jsonb NOT NULL, state text NOT NULL DEFAULT 'pending', \
                       attempts integer NOT NULL DEFAULT 0, last_error text, \
                       created_at timestamptz NOT NULL DEFAULT statement_timestamp(), delivered_at timestamptz);
                     CREATE INDEX ON {s}.bench_raw_queue (\"partition\", seq) WHERE state = 'pending';
                     CREATE TABLE {s}.bench_idle (x integer);"
                );
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .map_err(db("creating the raw tables"))?;
            }
        }
        Ok(())
    }

    /// Inserts events and their outbox rows in one transaction (multi-row statements).
    pub async fn insert(&self, rows: &[RawRow]) -> CliResult {
        match self {
            RawDb::Sqlite(pool, writer) => {
                let _turn = writer.lock().await;
                let mut conn = pool.acquire().await.map_err(db("raw insert"))?;
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db("raw insert"))?;
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000;
                let mut events = String::from(
                    "INSERT INTO bench_raw_events (stream_id, event_id, event_type, payload, recorded_at) VALUES ",
                );
                let mut outbox = String::from(
                    "INSERT INTO bench_raw_outbox (id, destination, stream_id, \"partition\", event_type, payload, created_at) VALUES ",
                );
                for i in 0..rows.len() {
                    let sep = if i == 0 { "" } else { "," };
                    events.push_str(&format!("{sep}(?, ?, 'BenchEvent', ?, {now})"));
                    outbox.push_str(&format!("{sep}(?, 'raw', ?, ?, 'BenchEvent', ?, {now})"));
                }
                let mut q = sqlx::query(AssertSqlSafe(events));
                for r in rows {
                    q = q.bind(&r.stream).bind(r.id.to_string()).bind(&r.payload);
                }
                q.execute(&mut *tx).await.map_err(db("raw insert"))?;
                let mut q = sqlx::query(AssertSqlSafe(outbox));
                for r in rows {
                    q = q
                        .bind(r.id.to_string())
                        .bind(&r.stream)
                        .bind(i64::from(r.partition))
                        .bind(&r.payload);
                }
                q.execute(&mut *tx).await.map_err(db("raw insert"))?;
                tx.commit().await.map_err(db("raw insert"))?;
            }
            RawDb::Postgres(pool, s) => {
                let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
                let streams: Vec<&str> = rows.iter().map(|r| r.stream.as_str()).collect();
                let partitions: Vec<i32> = rows.iter().map(|r| r.partition as i32).collect();
                let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
                let mut tx = pool.begin().await.map_err(db("raw insert"))?;
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {s}.bench_raw_events (stream_id, event_id, event_type, payload) \
                     SELECT s, i, 'BenchEvent', p::jsonb FROM unnest($1::text[], $2::uuid[], $3::text[]) AS u(s, i, p)"
                )))
                .bind(&streams)
                .bind(&ids)
                .bind(&payloads)
                .execute(&mut *tx)
                .await
                .map_err(db("raw insert"))?;
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {s}.bench_raw_outbox (id, destination, stream_id, \"partition\", event_type, payload) \
                     SELECT i, 'raw', s, p, 'BenchEvent', d::jsonb \
                     FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[]) AS u(i, s, p, d)"
                )))
                .bind(&ids)
                .bind(&streams)
                .bind(&partitions)
                .bind(&payloads)
                .execute(&mut *tx)
                .await
                .map_err(db("raw insert"))?;
                tx.commit().await.map_err(db("raw insert"))?;
            }
        }
        Ok(())
    }

    /// Fills the raw queue with `n` pending rows spread over `streams` streams (untimed).
    pub async fn fill_queue(&self, n: u64, streams: u64, partitions: u32, payload: &str) -> CliResult {
        const CHUNK: u64 = 2000;
        let mut done = 0;
        while done < n {
            let size = CHUNK.min(n - done);
            let rows: Vec<RawRow> = (done..done + size)
                .map(|i| RawRow::new(format!("q-{}", i % streams.max(1)), payload.to_string(), partitions))
                .collect();
            match self {
                RawDb::Sqlite(pool, _) => {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000;
                    let mut sql = String::from(
                        "INSERT INTO bench_raw_queue (id, destination, stream_id, \"partition\", event_type, payload, \
                         created_at) VALUES ",
                    );
                    for i in 0..rows.len() {
                        let sep = if i == 0 { "" } else { "," };
                        sql.push_str(&format!("{sep}(?, 'raw', ?, ?, 'BenchEvent', ?, {now})"));
                    }
                    let mut q = sqlx::query(AssertSqlSafe(sql));
                    for r in &rows {
                        q = q
                            .bind(r.id.to_string())
                            .bind(&r.stream)
                            .bind(i64::from(r.partition))
                            .bind(&r.payload);
                    }
                    q.execute(pool).await.map_err(db("filling the raw queue"))?;
                }
                RawDb::Postgres(pool, s) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO {s}.bench_raw_queue (id, destination, stream_id, \"partition\", event_type, payload) \
                         SELECT i, 'raw', s, p, 'BenchEvent', d::jsonb \
                         FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[]) AS u(i, s, p, d)"
                    )))
                    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.partition as i32).collect::<Vec<_>>())
                    .bind(rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
                    .execute(pool)
                    .await
                    .map_err(db("filling the raw queue"))?;
                }
            }
            done += size;
        }
        Ok(())
    }

    /// The oldest `limit` pending rows of a partition of `table`.
    pub async fn fetch(&self, table: Table, partition: u32, limit: u32) -> CliResult<Vec<QueuedRow>> {
        let rows: Vec<QueuedRow> = match self {
            RawDb::Sqlite(pool, _) => {
                let sql = match table {
                    Table::Plain => {
                        "SELECT seq, id, stream_id, event_type, payload, attempts, created_at FROM bench_raw_queue \
                         WHERE \"partition\" = ? AND state = 'pending' ORDER BY seq LIMIT ?"
                    }
                    Table::Eskit => {
                        "SELECT seq, id, stream_id, event_type, payload, attempts, created_at FROM outbox \
                         WHERE destination = 'raw' AND \"partition\" = ? AND state = 'pending' ORDER BY seq LIMIT ?"
                    }
                };
                sqlx::query(sql)
                    .bind(i64::from(partition))
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(db("raw fetch"))?
                    .iter()
                    .map(QueuedRow::of)
                    .collect()
            }
            RawDb::Postgres(pool, s) => {
                let sql = match table {
                    Table::Plain => format!(
                        "SELECT seq, id::text, stream_id, event_type, payload::text, attempts::int8, \
                           (extract(epoch FROM created_at) * 1000000)::int8 \
                         FROM {s}.bench_raw_queue \
                         WHERE \"partition\" = $1 AND state = 'pending' ORDER BY seq LIMIT $2"
                    ),
                    Table::Eskit => format!(
                        "SELECT seq, id::text, stream_id, event_type, payload::text, attempts::int8, \
                           (extract(epoch FROM created_at) * 1000000)::int8 \
                         FROM {s}.outbox \
                         WHERE destination = 'raw' AND \"partition\" = $1 AND state = 'pending' ORDER BY seq LIMIT $2"
                    ),
                };
                sqlx::query(AssertSqlSafe(sql))
                    .bind(partition as i32)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(db("raw fetch"))?
                    .iter()
                    .map(QueuedRow::of)
                    .collect()
            }
        };
        Ok(rows)
    }

    /// Marks rows of `table` delivered, in one statement.
    pub async fn mark(&self, table: Table, seqs: &[i64]) -> CliResult {
        match self {
            RawDb::Sqlite(pool, writer) => {
                let _turn = writer.lock().await;
                let list = serde_json::to_string(seqs).unwrap_or_else(|_| "[]".into());
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000;
                let sql = match table {
                    Table::Plain => {
                        "UPDATE bench_raw_queue SET state = 'delivered', attempts = attempts + 1, delivered_at = ? \
                         WHERE seq IN (SELECT value FROM json_each(?))"
                    }
                    Table::Eskit => {
                        "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ? \
                         WHERE seq IN (SELECT value FROM json_each(?))"
                    }
                };
                sqlx::query(sql)
                    .bind(now)
                    .bind(list)
                    .execute(pool)
                    .await
                    .map_err(db("raw mark"))?;
            }
            RawDb::Postgres(pool, s) => {
                let table = match table {
                    Table::Plain => "bench_raw_queue",
                    Table::Eskit => "outbox",
                };
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {s}.{table} SET state = 'delivered', attempts = attempts + 1, delivered_at = now() \
                     WHERE seq = ANY($1)"
                )))
                .bind(seqs)
                .execute(pool)
                .await
                .map_err(db("raw mark"))?;
            }
        }
        Ok(())
    }

    /// Inserts `n` already-delivered entries of `destination` into eskit's own outbox
    /// table, in bulk (setup for the "many delivered rows" scenario).
    pub async fn insert_delivered(&self, destination: &str, n: u64, partitions: u32, payload: &str) -> CliResult {
        const CHUNK: u64 = 100_000;
        let mut done = 0;
        while done < n {
            let size = CHUNK.min(n - done);
            match self {
                RawDb::Sqlite(pool, _) => {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000;
                    sqlx::query(
                        "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
                         INSERT INTO outbox (id, destination, stream_id, \"partition\", event_type, payload, state, attempts, \
                           created_at, next_attempt_at, delivered_at) \
                         SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) \
                           || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))), \
                           ?, 'old-' || (i % 1000), i % ?, 'BenchEvent', ?, 'delivered', 1, ?, ?, ? FROM n",
                    )
                    .bind(done as i64)
                    .bind((done + size - 1) as i64)
                    .bind(destination)
                    .bind(i64::from(partitions))
                    .bind(payload)
                    .bind(now)
                    .bind(now)
                    .bind(now)
                    .execute(pool)
                    .await
                    .map_err(db("inserting delivered rows"))?;
                }
                RawDb::Postgres(pool, s) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO {s}.outbox (id, destination, stream_id, \"partition\", event_type, payload, state, attempts, \
                           created_at, next_attempt_at, delivered_at) \
                         SELECT gen_random_uuid(), $1, 'old-' || (i % 1000), i % $2, 'BenchEvent', $3::jsonb, 'delivered', 1, \
                           now(), now(), now() FROM generate_series($4::bigint, $5::bigint) AS g(i)"
                    )))
                    .bind(destination)
                    .bind(partitions as i32)
                    .bind(payload)
                    .bind(done as i64)
                    .bind((done + size - 1) as i64)
                    .execute(pool)
                    .await
                    .map_err(db("inserting delivered rows"))?;
                }
            }
            done += size;
        }
        Ok(())
    }

    /// Brings the outbox table to a steady state between phases (PostgreSQL: `VACUUM
    /// ANALYZE`, as autovacuum eventually would; SQLite: `ANALYZE`), so that one phase's
    /// dead rows do not slow the next one down.
    pub async fn settle(&self) -> CliResult {
        match self {
            RawDb::Sqlite(pool, _) => {
                sqlx::query("ANALYZE outbox")
                    .execute(pool)
                    .await
                    .map_err(db("analyzing the outbox"))?;
            }
            RawDb::Postgres(pool, s) => {
                sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {s}.outbox")))
                    .execute(pool)
                    .await
                    .map_err(db("vacuuming the outbox"))?;
            }
        }
        Ok(())
    }

    /// Another session holding a transaction open: on PostgreSQL `BEGIN; INSERT …`
    /// (it has an xid and pins the xmin horizon), on SQLite `BEGIN; SELECT …` (a read
    /// snapshot that pins the WAL; a SQLite write transaction would block every writer).
    pub async fn hold_transaction(&self) -> CliResult<HeldTransaction> {
        match self {
            RawDb::Sqlite(pool, _) => {
                let mut conn = pool.acquire().await.map_err(db("opening the idle session"))?.detach();
                sqlx::raw_sql("BEGIN; SELECT count(*) FROM outbox;")
                    .execute(&mut conn)
                    .await
                    .map_err(db("opening the idle transaction"))?;
                Ok(HeldTransaction::Sqlite(conn))
            }
            RawDb::Postgres(pool, s) => {
                let mut conn = pool.acquire().await.map_err(db("opening the idle session"))?.detach();
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "BEGIN; INSERT INTO {s}.bench_idle (x) VALUES (1);"
                )))
                .execute(&mut conn)
                .await
                .map_err(db("opening the idle transaction"))?;
                Ok(HeldTransaction::Postgres(conn))
            }
        }
    }
}

/// A session idle in a transaction; [`HeldTransaction::release`] rolls it back.
pub enum HeldTransaction {
    /// SQLite.
    Sqlite(sqlx::SqliteConnection),
    /// PostgreSQL.
    Postgres(sqlx::PgConnection),
}

impl HeldTransaction {
    /// Rolls back and closes.
    pub async fn release(self) {
        match self {
            HeldTransaction::Sqlite(mut c) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
                let _ = c.close().await;
            }
            HeldTransaction::Postgres(mut c) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
                let _ = c.close().await;
            }
        }
    }
}
