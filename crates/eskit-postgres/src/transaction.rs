//! [`PgTransaction`]: events, outbox messages and the application's own SQL in one
//! PostgreSQL transaction.

use eskit::{AppendResult, EventData, ExpectedVersion, OutboxMessage, Result, StoreTransaction};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::rows::db;
use crate::store::PgStore;

/// A transaction on a [`PgStore`].
///
/// Append to one or more streams, write explicit outbox messages, run your own SQL on
/// [`conn`](Self::conn), then [`commit`](Self::commit) (which wakes the relay) or
/// [`rollback`](Self::rollback). Dropping it without committing rolls back. Each stream
/// written is locked until the transaction ends.
pub struct PgTransaction {
    tx: Transaction<'static, Postgres>,
    store: PgStore,
    wrote_outbox: bool,
}

impl std::fmt::Debug for PgTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTransaction")
            .field("wrote_outbox", &self.wrote_outbox)
            .finish_non_exhaustive()
    }
}

impl PgTransaction {
    pub(crate) fn new(tx: Transaction<'static, Postgres>, store: PgStore) -> Self {
        Self {
            tx,
            store,
            wrote_outbox: false,
        }
    }

    /// The transaction's connection, for the application's own SQL:
    /// `sqlx::query("...").execute(tx.conn()).await?`.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Appends events (and their routed outbox entries). On error nothing of this append
    /// is written (it runs in a savepoint); the transaction stays usable.
    pub async fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let result = self.store.append_in(&mut self.tx, stream_id, expected, events).await?;
        self.wrote_outbox |= result.outbox_entries > 0 && !result.idempotent_repeat;
        Ok(result)
    }

    /// Writes an explicit outbox message; returns its entry id.
    pub async fn write_outbox(&mut self, message: OutboxMessage) -> Result<Uuid> {
        let id = self.store.write_outbox_in(&mut self.tx, message).await?;
        self.wrote_outbox = true;
        Ok(id)
    }

    /// Commits, then wakes this process's relay if outbox entries were written (relays
    /// elsewhere hear the commit's NOTIFY).
    pub async fn commit(self) -> Result<()> {
        let Self {
            tx,
            store,
            wrote_outbox,
        } = self;
        tx.commit().await.map_err(db("committing a transaction"))?;
        if wrote_outbox {
            store.notify_relay();
        }
        Ok(())
    }

    /// Rolls everything back.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await.map_err(db("rolling back a transaction"))
    }
}

#[async_trait::async_trait]
impl StoreTransaction for PgTransaction {
    async fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        PgTransaction::append(self, stream_id, expected, events).await
    }

    async fn write_outbox(&mut self, message: OutboxMessage) -> Result<Uuid> {
        PgTransaction::write_outbox(self, message).await
    }

    async fn commit(self) -> Result<()> {
        PgTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<()> {
        PgTransaction::rollback(self).await
    }
}
