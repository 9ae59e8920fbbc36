//! The store: opening (schema, migrations, settings), the event store API and the
//! application-transaction helpers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eskit::{
    AppendResult, Error, EventData, EventStore, ExpectedVersion, OutboxMessage, ReadDirection, RecordedEvent, Result,
    StoreOptions, TransactionalStore,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool, SqlSafeStr};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::append::{Appended, append_on, idempotent_repeat, write_message_on};
use crate::ident::SchemaName;
use crate::rows::{db, recorded_event, to_i64, to_u64};
use crate::sql::{self, Sql};
use crate::transaction::PgTransaction;

/// The schema a store uses unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "eskit";
/// Default connection count of the pool a builder opens.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Default time to wait for a pooled connection.
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

enum Source {
    Url(String),
    Pool(PgPool),
}

/// Builds a [`PgStore`]: the database, the schema and [`StoreOptions`].
pub struct PgStoreBuilder {
    source: Source,
    schema: String,
    options: StoreOptions,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("PgStoreBuilder")
            .field("schema", &self.schema)
            .field("options", &self.options)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl PgStoreBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            schema: DEFAULT_SCHEMA.to_string(),
            options: StoreOptions::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }

    /// The schema holding the store's tables (default `eskit`), created if missing. It
    /// must match `^[A-Za-z_][A-Za-z0-9_]{0,62}$` (case is kept: it is always quoted);
    /// anything else fails [`open`](Self::open) with
    /// [`ValidationError::InvalidIdentifier`](eskit::ValidationError::InvalidIdentifier).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    eskit::store_options_setters!();

    /// Largest number of pooled connections when the builder opens the pool (default
    /// 10). The LISTEN connection of the relay wakeups comes on top.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long to wait for a pooled connection (default 30 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Validates the schema name, connects, creates the schema, runs the embedded
    /// migrations (tracked in `<schema>.eskit_migrations`) and checks the partition count.
    pub async fn open(self) -> Result<PgStore> {
        let schema = SchemaName::new(&self.schema)?;
        if i32::try_from(self.options.partitions).is_err() {
            return Err(Error::Config(format!(
                "{} partitions is too many",
                self.options.partitions
            )));
        }
        let pool = match self.source {
            Source::Pool(pool) => pool,
            Source::Url(url) => {
                let connect: PgConnectOptions = url
                    .parse()
                    .map_err(|e| Error::database("parsing the PostgreSQL URL", e))?;
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.acquire_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(db("connecting to PostgreSQL"))?
            }
        };
        migrate(&pool, &schema).await?;
        let sql = Sql::new(&schema.quoted());
        check_partitions(&pool, &sql, &schema, self.options.partitions).await?;
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                channel: schema.channel(),
                schema,
                sql,
                options: self.options,
                wakeup: Arc::new(Notify::new()),
                listening: AtomicBool::new(false),
                stop: CancellationToken::new(),
            }),
        })
    }
}

/// The PostgreSQL event store and outbox.
///
/// Cheap to clone (an `Arc` inside); clones share the pool and the relay wakeup.
/// Implements [`EventStore`], [`TransactionalStore`] (with [`PgTransaction`]) and
/// [`eskit::OutboxStore`]. Appends and explicit outbox messages also work inside the
/// application's own transaction: [`append_in`](Self::append_in),
/// [`write_outbox_in`](Self::write_outbox_in).
#[derive(Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) schema: SchemaName,
    /// LISTEN/NOTIFY channel of this schema's outbox.
    pub(crate) channel: String,
    pub(crate) sql: Sql,
    pub(crate) options: StoreOptions,
    pub(crate) wakeup: Arc<Notify>,
    /// Whether the LISTEN task was started.
    pub(crate) listening: AtomicBool,
    /// Stops the LISTEN task when the last clone of the store goes away.
    pub(crate) stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema.as_str())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Starts building a store on a `postgres://` URL.
    pub fn builder(url: impl Into<String>) -> PgStoreBuilder {
        PgStoreBuilder::new(Source::Url(url.into()))
    }

    /// Starts building a store on an existing pool (the application's).
    pub fn builder_from_pool(pool: PgPool) -> PgStoreBuilder {
        PgStoreBuilder::new(Source::Pool(pool))
    }

    /// The connection pool (for the application's own queries and transactions).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The store's options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &SchemaName {
        &self.inner.schema
    }

    /// The LISTEN/NOTIFY channel the outbox notifies on commit (one notification per
    /// committing transaction that wrote outbox entries).
    pub fn notify_channel(&self) -> &str {
        &self.inner.channel
    }

    /// Wakes this process's relay at once. Optional: commits through the store do it
    /// themselves, and every commit that wrote outbox entries (also in the application's
    /// own transaction) sends a NOTIFY that wakes relays everywhere.
    pub fn notify_relay(&self) {
        self.inner.wakeup.notify_waiters();
    }

    /// Begins a transaction. Dropping it without [`commit`](PgTransaction::commit) rolls
    /// back.
    pub async fn begin(&self) -> Result<PgTransaction> {
        let tx = self.inner.pool.begin().await.map_err(db("beginning a transaction"))?;
        Ok(PgTransaction::new(tx, self.clone()))
    }

    /// Appends events inside the application's own transaction or connection (pass
    /// `&mut *tx` for a `sqlx::Transaction<Postgres>`).
    ///
    /// In a transaction, the append runs in a savepoint (on error nothing of it stays and
    /// the rest of the transaction is untouched) and commits with the transaction; the
    /// relay hears of it through NOTIFY when that commits. On a connection outside a
    /// transaction, the append runs in its own transaction.
    ///
    /// The stream stays locked until the transaction ends: other writers of the stream
    /// wait. In `REPEATABLE READ`/`SERIALIZABLE` transactions a concurrent append to the
    /// same stream makes this fail with a serialization error (retry the transaction).
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let inner = &self.inner;
        inner.options.limits.check_append(stream_id, &events)?;
        let autocommit = !conn.is_in_transaction();
        let mut tx = conn.begin().await.map_err(db("beginning an append"))?;
        let result = match append_on(&mut tx, inner, stream_id, expected, &events).await {
            Ok(Appended::Written(result)) => {
                tx.commit().await.map_err(db("committing an append"))?;
                result
            }
            Ok(Appended::Stored) => {
                // Undo what the insert wrote, then tell a repeat from a conflict.
                tx.rollback().await.map_err(db("rolling back an append"))?;
                return idempotent_repeat(conn, inner, stream_id, &events).await;
            }
            Err(err) => {
                // Roll the savepoint (or transaction) back now, so the caller's
                // transaction is usable at once.
                let _ = tx.rollback().await;
                return Err(err);
            }
        };
        if autocommit && result.outbox_entries > 0 && !result.idempotent_repeat {
            self.notify_relay();
        }
        Ok(result)
    }

    /// Writes an explicit outbox message inside the application's own transaction or
    /// connection; returns the entry id. The message's stream is locked like an append's
    /// (until the transaction ends), so messages of one stream keep commit order.
    pub async fn write_outbox_in(&self, conn: &mut PgConnection, message: OutboxMessage) -> Result<Uuid> {
        let inner = &self.inner;
        inner.options.limits.check_message(&message)?;
        inner.options.check_destination(&message.destination)?;
        let autocommit = !conn.is_in_transaction();
        let mut tx = conn.begin().await.map_err(db("beginning an outbox write"))?;
        let id = match write_message_on(&mut tx, inner, message).await {
            Ok(id) => id,
            Err(err) => {
                let _ = tx.rollback().await;
                return Err(err);
            }
        };
        tx.commit().await.map_err(db("committing an outbox write"))?;
        if autocommit {
            self.notify_relay();
        }
        Ok(id)
    }
}

/// Creates the schema and applies the embedded migrations, on a connection of its own
/// (sqlx's migration lock is a session lock: closing the connection always frees it).
async fn migrate(pool: &PgPool, schema: &SchemaName) -> Result<()> {
    let quoted = schema.quoted();
    let migrations = sql::migrations(&quoted, &schema.channel())
        .into_iter()
        .map(|(version, description, text)| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                AssertSqlSafe(text).into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(format!("{quoted}.{}", sql::MIGRATIONS_TABLE));
    migrator.create_schema(quoted);
    let options: PgConnectOptions = (*pool.connect_options()).clone();
    let mut conn = options.connect().await.map_err(db("connecting for migrations"))?;
    // `run_direct` on the concrete connection, not `run` (generic over `Acquire`), so
    // that the `open()` future is provably `Send` (sqlx's own way around
    // "implementation of `Acquire` is not general enough").
    let outcome = migrator
        .run_direct(None, &mut conn, false)
        .await
        .map_err(|e| Error::database("migrating the database", e));
    let _ = conn.close().await;
    outcome
}

/// Records the partition count on first open; a different count later is an error
/// (a stream's entries must always land in the same partition).
async fn check_partitions(pool: &PgPool, sql: &Sql, schema: &SchemaName, partitions: u32) -> Result<()> {
    // A concurrent first open may insert the row while this statement runs: its
    // `ON CONFLICT DO NOTHING` then waits for that commit but its snapshot predates it, so
    // it sees no row. A second statement takes a new snapshot and sees it.
    let mut recorded = None;
    for _ in 0..3 {
        recorded = sqlx::query_scalar::<_, String>(sql.partitions_setting.sql())
            .bind(partitions.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db("reading the partition count"))?;
        if recorded.is_some() {
            break;
        }
    }
    let recorded =
        recorded.ok_or_else(|| Error::database("reading the partition count", "no partition count recorded"))?;
    if recorded == partitions.to_string() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "schema {schema} was created with {recorded} partitions; this store is configured with {partitions} \
             (the partition count is fixed for a database)"
        )))
    }
}

/// A `limit` as a `bigint`.
pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl EventStore for PgStore {
    async fn append(&self, stream_id: &str, expected: ExpectedVersion, events: Vec<EventData>) -> Result<AppendResult> {
        let mut conn = self.inner.pool.acquire().await.map_err(db("acquiring a connection"))?;
        self.append_in(&mut conn, stream_id, expected, events).await
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        limit: usize,
        direction: ReadDirection,
    ) -> Result<Vec<RecordedEvent>> {
        let statement = match direction {
            ReadDirection::Forward => &self.inner.sql.read_stream_forward,
            ReadDirection::Backward => &self.inner.sql.read_stream_backward,
        };
        let rows = sqlx::query(statement.sql())
            .bind(stream_id)
            .bind(to_i64(from_version))
            .bind(limit_i64(limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("reading a stream"))?;
        rows.iter().map(recorded_event).collect()
    }

    async fn read_all(&self, from_position: i64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let rows = sqlx::query(self.inner.sql.read_all.sql())
            .bind(from_position)
            .bind(limit_i64(limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("reading all events"))?;
        rows.iter().map(recorded_event).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>> {
        let version: Option<i64> = sqlx::query_scalar(self.inner.sql.select_stream_version.sql())
            .bind(stream_id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db("reading the stream version"))?;
        Ok(version.map(to_u64))
    }
}

#[async_trait::async_trait]
impl TransactionalStore for PgStore {
    type Transaction = PgTransaction;

    async fn begin(&self) -> Result<PgTransaction> {
        PgStore::begin(self).await
    }
}

impl Inner {
    /// Starts the LISTEN task once (needs a tokio runtime; without one, the relay
    /// still polls).
    pub(crate) fn ensure_listening(&self) {
        if self.listening.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let connect: PgConnectOptions = (*self.pool.connect_options()).clone();
        runtime.spawn(crate::listener::run(
            connect,
            self.channel.clone(),
            self.wakeup.clone(),
            self.stop.clone(),
        ));
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn is_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn futures_are_send(store: PgStore, conn: &mut PgConnection) {
        is_send(PgStore::builder("postgres://x").open());
        is_send(store.append_in(conn, "s", ExpectedVersion::Any, Vec::new()));
        is_send(store.begin());
    }
}
