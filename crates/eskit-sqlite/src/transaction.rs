//! [`SqliteTransaction`]: events, outbox messages and the application's own SQL in one
//! `BEGIN IMMEDIATE` transaction.

use std::collections::BTreeSet;

use eskit::{AppendResult, Error, EventData, ExpectedVersion, OutboxMessage, Result, StoreTransaction, partition_of};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use crate::append::append_on;
use crate::store::{SqliteStore, WriteTurn, write_message_on};

/// A write transaction on a [`SqliteStore`] (`BEGIN IMMEDIATE`).
///
/// Append to one or more streams, write explicit outbox messages, run your own SQL on
/// [`conn`](Self::conn), then [`commit`](Self::commit) (which wakes the relay) or
/// [`rollback`](Self::rollback). Dropping it without committing rolls back. While it is
/// open, other writers of the same store wait (SQLite has one writer at a time): keep it
/// short, and do not call the store's own `append` from inside it.
pub struct SqliteTransaction {
    // Field order matters: the transaction is dropped (rolled back) before the write
    // lock is released.
    tx: Transaction<'static, Sqlite>,
    store: SqliteStore,
    /// Partitions this transaction wrote outbox entries in (their relay workers are
    /// woken on commit).
    touched: BTreeSet<u32>,
    _write: WriteTurn,
}

impl std::fmt::Debug for SqliteTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTransaction")
            .field("touched_partitions", &self.touched)
            .finish_non_exhaustive()
    }
}

impl SqliteTransaction {
    pub(crate) fn new(tx: Transaction<'static, Sqlite>, store: SqliteStore, write: WriteTurn) -> Self {
        Self {
            tx,
            store,
            touched: BTreeSet::new(),
            _write: write,
        }
    }

    /// The transaction's connection, for the application's own SQL:
    /// `sqlx::query("...").execute(tx.conn()).await?`.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Appends events (and their routed outbox entries). On error nothing of this append
    /// is written; the transaction stays usable.
    pub async fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let options = &self.store.inner.options;
        options.limits.check_append(stream_id, &events)?;
        // A savepoint, so that a failure half-way leaves the transaction as it was.
        let mut savepoint = sqlx::Connection::begin(&mut *self.tx)
            .await
            .map_err(|e| Error::database("beginning a savepoint", e))?;
        let result = append_on(&mut savepoint, options, stream_id, expected, &events).await?;
        savepoint
            .commit()
            .await
            .map_err(|e| Error::database("releasing a savepoint", e))?;
        if result.outbox_entries > 0 && !result.idempotent_repeat {
            self.touched.insert(partition_of(stream_id, options.partitions));
        }
        Ok(result)
    }

    /// Writes an explicit outbox message; returns its entry id.
    pub async fn write_outbox(&mut self, message: OutboxMessage) -> Result<Uuid> {
        let partition = partition_of(&message.stream_id, self.store.inner.options.partitions);
        let id = write_message_on(&mut self.tx, &self.store.inner.options, message).await?;
        self.touched.insert(partition);
        Ok(id)
    }

    /// Commits, then wakes the relay if outbox entries were written.
    pub async fn commit(self) -> Result<()> {
        let Self {
            tx,
            store,
            touched,
            _write,
        } = self;
        tx.commit()
            .await
            .map_err(|e| Error::database("committing a transaction", e))?;
        drop(_write);
        if !touched.is_empty() {
            store.notify_partitions(touched);
        }
        Ok(())
    }

    /// Rolls everything back.
    pub async fn rollback(self) -> Result<()> {
        self.tx
            .rollback()
            .await
            .map_err(|e| Error::database("rolling back a transaction", e))
    }
}

#[async_trait::async_trait]
impl StoreTransaction for SqliteTransaction {
    async fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        SqliteTransaction::append(self, stream_id, expected, events).await
    }

    async fn write_outbox(&mut self, message: OutboxMessage) -> Result<Uuid> {
        SqliteTransaction::write_outbox(self, message).await
    }

    async fn commit(self) -> Result<()> {
        SqliteTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<()> {
        SqliteTransaction::rollback(self).await
    }
}
