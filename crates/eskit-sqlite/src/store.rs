//! The store: opening, the event store API and the application-transaction helpers.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use eskit::{
    AppendResult, Error, EventData, EventStore, ExpectedVersion, NewOutboxEntry, OutboxMessage, ReadDirection,
    RecordedEvent, Result, StoreOptions, TransactionalStore, partition_of,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use uuid::Uuid;

use crate::append::{append_on, insert_entries};
use crate::rows::{limit_i64, now_micros, recorded_event, to_i64};
use crate::sql;
use crate::transaction::SqliteTransaction;

/// Default time a writer waits for the write lock.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default connection count for a database file.
const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// Builds a [`SqliteStore`]: the database location plus [`StoreOptions`].
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    url: String,
    options: StoreOptions,
    busy_timeout: Duration,
    max_connections: u32,
}

impl SqliteStoreBuilder {
    fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            options: StoreOptions::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    eskit::store_options_setters!();

    /// How long a writer waits for the write lock, in this process's queue and then in
    /// SQLite's busy handler (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Largest number of pooled connections for a database file (default 8). An
    /// in-memory database always uses exactly one.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Opens (creating the file if missing) and migrates the database.
    ///
    /// The location is a `sqlite:` URL (`sqlite://eskit.db`, `sqlite:data/eskit.db?mode=rwc`,
    /// `sqlite::memory:`) or a plain file path.
    pub async fn open(self) -> Result<SqliteStore> {
        let in_memory = self.url.contains(":memory:") || self.url.contains("mode=memory");
        let connect = if self.url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(&self.url).map_err(|e| Error::database("parsing the SQLite URL", e))?
        } else {
            SqliteConnectOptions::new().filename(&self.url)
        };
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(self.busy_timeout);
        // File databases get a connection of their own for the store's writes: it is the
        // only connection that writes (besides the application's own transactions), so
        // its page cache stays valid from one write to the next instead of being re-read
        // after every other connection's commit. (An in-memory database has one
        // connection, shared.)
        let writer = if in_memory {
            None
        } else {
            Some(
                sqlx::ConnectOptions::connect(&connect)
                    .await
                    .map_err(|e| Error::database("opening the SQLite database", e))?,
            )
        };
        let pool = if in_memory {
            // One connection keeps the database alive and is the only one that sees it.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(self.max_connections)
        }
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(connect)
        .await
        .map_err(|e| Error::database("opening the SQLite database", e))?;
        SqliteStore::with_pool(pool, writer, self.options, self.busy_timeout).await
    }
}

/// This store's turn to write: holds the dedicated write connection, if any (else a
/// pool connection taken for the turn).
pub(crate) struct WriteTurn {
    // Field order: a borrowed pool connection goes back before the turn is released.
    borrowed: Option<PoolConnection<Sqlite>>,
    dedicated: OwnedMutexGuard<Option<SqliteConnection>>,
}

impl WriteTurn {
    /// The connection this turn writes on: the store's write connection, or one taken
    /// from `pool` (in-memory databases, stores on a pool of the application's).
    pub(crate) async fn conn(&mut self, pool: &SqlitePool) -> Result<&mut SqliteConnection> {
        if self.dedicated.is_none() && self.borrowed.is_none() {
            let conn = pool
                .acquire()
                .await
                .map_err(|e| Error::database("taking a connection to write", e))?;
            self.borrowed = Some(conn);
        }
        Ok(match self.dedicated.as_mut() {
            Some(conn) => conn,
            None => self.borrowed.as_deref_mut().expect("taken above"),
        })
    }
}

/// The SQLite event store and outbox (the embedded default backend).
///
/// Cheap to clone (an `Arc` inside); clones share the pool, the write queue and the
/// relay wakeup. Implements [`EventStore`], [`TransactionalStore`] (with
/// [`SqliteTransaction`]) and [`eskit::OutboxStore`].
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: SqlitePool,
    pub(crate) options: StoreOptions,
    pub(crate) wakeup: Arc<Notify>,
    /// One wakeup per partition, so a commit wakes only the workers it concerns.
    pub(crate) partition_wakeups: Vec<Arc<Notify>>,
    /// In-process queue for the write lock: writers of this store wait here in FIFO
    /// order instead of polling in SQLite's busy handler. It holds the dedicated write
    /// connection, if there is one (else writes take a pool connection).
    writer: Arc<Mutex<Option<SqliteConnection>>>,
    busy_timeout: Duration,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Starts building a store on `url` (a `sqlite:` URL or a file path).
    pub fn builder(url: impl Into<String>) -> SqliteStoreBuilder {
        SqliteStoreBuilder::new(url)
    }

    /// A store on an existing pool (runs the migrations). The pool's connections should
    /// use WAL and a busy timeout, as [`SqliteStoreBuilder::open`] sets up.
    pub async fn from_pool(pool: SqlitePool, options: StoreOptions) -> Result<Self> {
        Self::with_pool(pool, None, options, DEFAULT_BUSY_TIMEOUT).await
    }

    async fn with_pool(
        pool: SqlitePool,
        writer: Option<SqliteConnection>,
        options: StoreOptions,
        busy_timeout: Duration,
    ) -> Result<Self> {
        migrate(&pool).await?;
        let partition_wakeups = (0..options.partitions.max(1))
            .map(|_| Arc::new(Notify::new()))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                options,
                wakeup: Arc::new(Notify::new()),
                partition_wakeups,
                writer: Arc::new(Mutex::new(writer)),
                busy_timeout,
            }),
        })
    }

    /// The connection pool (for the application's own queries and transactions).
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The store's options.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Wakes the relay: call after committing your own transaction that wrote outbox
    /// entries through [`append_in`](Self::append_in) or
    /// [`write_outbox_in`](Self::write_outbox_in). Optional; the relay also polls.
    pub fn notify_relay(&self) {
        self.inner.wakeup.notify_waiters();
        for wakeup in &self.inner.partition_wakeups {
            wakeup.notify_waiters();
        }
    }

    /// Wakes the relay workers of these partitions (and anyone on the store-wide wakeup).
    pub(crate) fn notify_partitions(&self, partitions: impl IntoIterator<Item = u32>) {
        self.inner.wakeup.notify_waiters();
        for p in partitions {
            if let Some(wakeup) = self.inner.partition_wakeups.get(p as usize) {
                wakeup.notify_waiters();
            }
        }
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`). Dropping it without
    /// [`commit`](SqliteTransaction::commit) rolls back.
    pub async fn begin(&self) -> Result<SqliteTransaction> {
        let guard = self.write_lock().await?;
        let tx = self
            .inner
            .pool
            .begin_with(sql::BEGIN_IMMEDIATE)
            .await
            .map_err(|e| Error::database("beginning a transaction", e))?;
        Ok(SqliteTransaction::new(tx, self.clone(), guard))
    }

    /// Appends events inside the application's own transaction or connection.
    ///
    /// In a transaction, the append runs in a savepoint (on error nothing of it stays,
    /// the rest of the transaction is untouched) and commits with the transaction; start
    /// such transactions with `BEGIN IMMEDIATE` (`pool.begin_with("BEGIN IMMEDIATE")`) so
    /// they never fail to upgrade to a writer. Call [`notify_relay`](Self::notify_relay)
    /// after your commit. On a connection outside a transaction, the append runs in its
    /// own `BEGIN IMMEDIATE` transaction and wakes the relay itself.
    pub async fn append_in(
        &self,
        conn: &mut SqliteConnection,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let options = &self.inner.options;
        options.limits.check_append(stream_id, &events)?;
        let autocommit = !conn.is_in_transaction();
        let mut tx = if autocommit {
            conn.begin_with(sql::BEGIN_IMMEDIATE).await
        } else {
            conn.begin().await
        }
        .map_err(|e| Error::database("beginning a savepoint", e))?;
        let result = append_on(&mut tx, options, stream_id, expected, &events).await?;
        tx.commit()
            .await
            .map_err(|e| Error::database("committing the append", e))?;
        if autocommit && result.outbox_entries > 0 && !result.idempotent_repeat {
            self.notify_partitions([partition_of(stream_id, options.partitions)]);
        }
        Ok(result)
    }

    /// Writes an explicit outbox message inside the application's own transaction or
    /// connection (one statement); returns the entry id. Call
    /// [`notify_relay`](Self::notify_relay) after your commit.
    pub async fn write_outbox_in(&self, conn: &mut SqliteConnection, message: OutboxMessage) -> Result<Uuid> {
        let autocommit = !conn.is_in_transaction();
        let partition = partition_of(&message.stream_id, self.inner.options.partitions);
        let id = write_message_on(conn, &self.inner.options, message).await?;
        if autocommit {
            self.notify_partitions([partition]);
        }
        Ok(id)
    }

    /// Waits for this store's turn to write (FIFO), at most the busy timeout.
    pub(crate) async fn write_lock(&self) -> Result<WriteTurn> {
        let dedicated = tokio::time::timeout(self.inner.busy_timeout, self.inner.writer.clone().lock_owned())
            .await
            .map_err(|_| {
                Error::database(
                    "waiting for the write lock",
                    format!(
                        "another write transaction of this store stayed open longer than {:?}",
                        self.inner.busy_timeout
                    ),
                )
            })?;
        Ok(WriteTurn {
            borrowed: None,
            dedicated,
        })
    }
}

/// Validates and inserts an explicit outbox message on `conn`.
pub(crate) async fn write_message_on(
    conn: &mut SqliteConnection,
    options: &StoreOptions,
    message: OutboxMessage,
) -> Result<Uuid> {
    options.limits.check_message(&message)?;
    options.check_destination(&message.destination)?;
    let entry = NewOutboxEntry::for_message(message, options.partitions);
    let id = entry.id;
    insert_entries(conn, std::slice::from_ref(&entry), now_micros()).await?;
    Ok(id)
}

/// The embedded migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", sql::MIGRATION_0001_INIT),
    (2, "relays", sql::MIGRATION_0002_RELAYS),
];

/// Applies the embedded migrations that are missing, in one `BEGIN IMMEDIATE`
/// transaction (so concurrent openers of one file serialize), and refuses to run on a
/// database whose applied migrations differ from the embedded ones.
async fn migrate(pool: &SqlitePool) -> Result<()> {
    let failed = |e| Error::database("migrating the database", e);
    let mut tx = pool
        .begin_with(sql::BEGIN_IMMEDIATE)
        .await
        .map_err(|e| Error::database("locking the database for migrations", e))?;
    sqlx::raw_sql(sql::CREATE_MIGRATIONS_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let applied: Vec<(i64, String)> = sqlx::query_as(sql::SELECT_APPLIED_MIGRATIONS)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
    for (version, description, script) in MIGRATIONS {
        let checksum = checksum(script);
        match applied.iter().find(|(v, _)| v == version) {
            Some((_, stored)) if *stored == checksum => continue,
            Some(_) => {
                return Err(Error::Config(format!(
                    "migration {version} ({description}) applied to this database differs from the embedded one"
                )));
            }
            None => {}
        }
        sqlx::raw_sql(*script).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query(sql::INSERT_APPLIED_MIGRATION)
            .bind(version)
            .bind(*description)
            .bind(checksum)
            .bind(now_micros())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
    }
    if let Some((newest, _)) = applied.iter().max_by_key(|(v, _)| *v)
        && MIGRATIONS.iter().all(|(v, _, _)| v < newest)
    {
        return Err(Error::Config(format!(
            "the database has schema version {newest}, newer than this eskit-sqlite knows"
        )));
    }
    tx.commit()
        .await
        .map_err(|e| Error::database("committing migrations", e))
}

/// A stable checksum of a migration script (FNV-1a, 64 bits, hex): detects edits of an
/// applied migration.
fn checksum(script: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in script.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, stream_id: &str, expected: ExpectedVersion, events: Vec<EventData>) -> Result<AppendResult> {
        let options = &self.inner.options;
        options.limits.check_append(stream_id, &events)?;
        let mut turn = self.write_lock().await?;
        let mut tx = turn
            .conn(&self.inner.pool)
            .await?
            .begin_with(sql::BEGIN_IMMEDIATE)
            .await
            .map_err(|e| Error::database("beginning an append", e))?;
        let result = append_on(&mut tx, options, stream_id, expected, &events).await?;
        tx.commit()
            .await
            .map_err(|e| Error::database("committing an append", e))?;
        if result.outbox_entries > 0 && !result.idempotent_repeat {
            self.notify_relay();
        }
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        limit: usize,
        direction: ReadDirection,
    ) -> Result<Vec<RecordedEvent>> {
        let statement = match direction {
            ReadDirection::Forward => sql::READ_STREAM_FORWARD,
            ReadDirection::Backward => sql::READ_STREAM_BACKWARD,
        };
        let rows = sqlx::query(statement)
            .bind(stream_id)
            .bind(to_i64(from_version))
            .bind(limit_i64(limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("reading a stream", e))?;
        rows.iter().map(recorded_event).collect()
    }

    async fn read_all(&self, from_position: i64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let rows = sqlx::query(sql::READ_ALL)
            .bind(from_position)
            .bind(limit_i64(limit))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("reading all events", e))?;
        rows.iter().map(recorded_event).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>> {
        let version: Option<i64> = sqlx::query_scalar(sql::SELECT_STREAM_VERSION)
            .bind(stream_id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| Error::database("reading the stream version", e))?;
        Ok(version.map(|v| u64::try_from(v).unwrap_or(0)))
    }
}

#[async_trait::async_trait]
impl TransactionalStore for SqliteStore {
    type Transaction = SqliteTransaction;

    async fn begin(&self) -> Result<SqliteTransaction> {
        SqliteStore::begin(self).await
    }
}
