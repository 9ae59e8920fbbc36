//! [`OutboxStore`] for SQLite: leases, pending reads, bulk result writes, the
//! dead-letter queue and retention.

use std::sync::Arc;
use std::time::Duration;

use eskit::{
    BulkBatch, DeadFilter, DestinationStatus, DisabledDestination, EntryFilter, EntryOutcome, EntryResult, EntryState,
    Error, Lease, LeaseInfo, OutboxEntry, OutboxStore, PendingQuery, Result,
};
use sqlx::Row;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::rows::{from_micros, now_micros, outbox_entry, pending_entry, to_micros};
use crate::sql;
use crate::store::SqliteStore;

/// Entries an operator listing returns when no limit is given.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// One element of the `RECORD_RESULTS` JSON array: `[id, attempts, state, at,
/// next_attempt_at, error]`.
type ResultRow<'a> = (Uuid, u32, &'static str, Option<i64>, Option<i64>, Option<&'a str>);

fn result_row(result: &EntryResult) -> ResultRow<'_> {
    let (state, at, next_attempt_at, error) = match &result.outcome {
        EntryOutcome::Delivered { at } => ("delivered", Some(to_micros(*at)), None, None),
        EntryOutcome::Retry { next_attempt_at, error } => {
            ("pending", None, Some(to_micros(*next_attempt_at)), Some(error.as_str()))
        }
        EntryOutcome::Dead { at, error } => ("dead", Some(to_micros(*at)), None, Some(error.as_str())),
    };
    (result.id, result.attempts, state, at, next_attempt_at, error)
}

/// How a batch of results is written: the statement, its JSON and, for
/// [`sql::RECORD_DELIVERED`], the shared delivery time and attempt count.
struct ResultWrite {
    statement: &'static str,
    json: String,
    uniform: Option<(i64, u32)>,
}

impl ResultWrite {
    /// [`sql::RECORD_DELIVERED`] when the batch's deliveries share one time and attempt
    /// count, else the general [`sql::RECORD_RESULTS`].
    fn of(results: &[EntryResult]) -> serde_json::Result<Self> {
        Ok(match EntryResult::uniform_delivery(results) {
            Some((at, attempts)) => Self {
                statement: sql::RECORD_DELIVERED,
                json: serde_json::to_string(&results.iter().map(|r| r.id).collect::<Vec<_>>())?,
                uniform: Some((to_micros(at), attempts)),
            },
            None => Self {
                statement: sql::RECORD_RESULTS,
                json: serde_json::to_string(&results.iter().map(result_row).collect::<Vec<_>>())?,
                uniform: None,
            },
        })
    }
}

fn expires_at(ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    now_micros().saturating_add(ttl)
}

/// A statement built on `dead_matching!` or `dead_batch!` with a destination and the
/// filter's other bindings (?1 to ?5).
fn dead_matching<'q>(
    statement: &'static str,
    destination: Option<&'q str>,
    filter: &'q DeadFilter,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(statement)
        .bind(destination)
        .bind(filter.dead_from.map(to_micros))
        .bind(filter.dead_to.map(to_micros))
        .bind(filter.error_contains.as_deref())
        .bind(filter.after_seq.unwrap_or(i64::MIN))
}

impl SqliteStore {
    async fn fetch_entries(
        &self,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Vec<OutboxEntry>> {
        let rows = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("reading outbox entries", e))?;
        rows.iter().map(outbox_entry).collect()
    }

    /// Runs one write statement in this store's writer queue; returns the rows it changed.
    async fn write(
        &self,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        context: &'static str,
    ) -> Result<u64> {
        let mut turn = self.write_lock().await?;
        let done = query
            .execute(turn.conn(&self.inner.pool).await?)
            .await
            .map_err(|e| Error::database(context, e))?;
        Ok(done.rows_affected())
    }

    /// Runs a bulk write that returns the seqs it touched, in its own write turn.
    async fn write_batch(
        &self,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        context: &'static str,
    ) -> Result<BulkBatch> {
        let mut turn = self.write_lock().await?;
        let seqs: Vec<i64> = query
            .fetch_all(turn.conn(&self.inner.pool).await?)
            .await
            .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
            .map_err(|e| Error::database(context, e))?;
        Ok(BulkBatch {
            count: seqs.len() as u64,
            last_seq: seqs.into_iter().max(),
        })
    }
}

#[async_trait::async_trait]
impl OutboxStore for SqliteStore {
    fn partitions(&self) -> u32 {
        self.inner.options.partitions
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.inner.wakeup.clone()
    }

    fn partition_wakeup(&self, partition: u32) -> Arc<Notify> {
        match self.inner.partition_wakeups.get(partition as usize) {
            Some(wakeup) => wakeup.clone(),
            None => self.inner.wakeup.clone(),
        }
    }

    async fn try_acquire_lease(
        &self,
        destination: &str,
        partition: u32,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let mut turn = self.write_lock().await?;
        let query = sqlx::query_scalar(sql::ACQUIRE_LEASE)
            .bind(destination)
            .bind(partition)
            .bind(owner)
            .bind(now_micros())
            .bind(expires_at(ttl));
        let epoch: Option<i64> = query
            .fetch_optional(turn.conn(&self.inner.pool).await?)
            .await
            .map_err(|e| Error::database("acquiring a lease", e))?;
        Ok(epoch.map(|epoch| Lease {
            destination: destination.to_string(),
            partition,
            owner: owner.to_string(),
            epoch,
        }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let changed = self
            .write(
                sqlx::query(sql::RENEW_LEASE)
                    .bind(&lease.destination)
                    .bind(lease.partition)
                    .bind(&lease.owner)
                    .bind(lease.epoch)
                    .bind(expires_at(ttl)),
                "renewing a lease",
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.write(
            sqlx::query(sql::RELEASE_LEASE)
                .bind(&lease.destination)
                .bind(lease.partition)
                .bind(&lease.owner)
                .bind(lease.epoch),
            "releasing a lease",
        )
        .await?;
        Ok(())
    }

    async fn list_leases(&self, destination: &str) -> Result<Vec<LeaseInfo>> {
        let rows = sqlx::query(sql::LIST_LEASES)
            .bind(destination)
            .bind(now_micros())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("listing leases", e))?;
        rows.iter()
            .map(|row| {
                let decode = |e| Error::database("decoding a lease", e);
                let partition: i64 = row.try_get(1).map_err(decode)?;
                Ok(LeaseInfo {
                    destination: row.try_get(0).map_err(decode)?,
                    partition: u32::try_from(partition).map_err(|e| Error::database("decoding a lease", e))?,
                    owner: row.try_get(2).map_err(decode)?,
                    epoch: row.try_get(3).map_err(decode)?,
                    live: row.try_get(4).map_err(decode)?,
                })
            })
            .collect()
    }

    async fn fetch_pending(&self, lease: &Lease, query: &PendingQuery, limit: u32) -> Result<Vec<OutboxEntry>> {
        let query = match query {
            PendingQuery::FromOldest => sqlx::query(sql::FETCH_PENDING_FROM_OLDEST)
                .bind(&lease.destination)
                .bind(lease.partition)
                .bind(limit),
            PendingQuery::AfterSeq(seq) => sqlx::query(sql::FETCH_PENDING_AFTER_SEQ)
                .bind(&lease.destination)
                .bind(lease.partition)
                .bind(*seq)
                .bind(limit),
            PendingQuery::Stream(stream_id) => sqlx::query(sql::FETCH_PENDING_OF_STREAM)
                .bind(&lease.destination)
                .bind(lease.partition)
                .bind(stream_id.clone())
                .bind(limit),
        };
        let rows = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("reading pending entries", e))?;
        rows.iter().map(|row| pending_entry(row, lease)).collect()
    }

    async fn record_results(&self, lease: &Lease, results: &[EntryResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let write = ResultWrite::of(results).map_err(|e| Error::database("encoding delivery results", e))?;
        // One autocommit statement, fenced in SQL; only when it wrote nothing do we look
        // at the lease, to tell a lost lease from entries no longer pending (replayed or
        // discarded meanwhile). A lease, once lost, never comes back with this epoch.
        let mut query = sqlx::query(write.statement)
            .bind(&lease.destination)
            .bind(lease.partition)
            .bind(write.json)
            .bind(&lease.owner)
            .bind(lease.epoch)
            .bind(now_micros());
        if let Some((at, attempts)) = write.uniform {
            query = query.bind(at).bind(attempts);
        }
        let changed = self.write(query, "recording delivery results").await?;
        if changed == 0 {
            let held = sqlx::query(sql::CHECK_LEASE_HELD)
                .bind(&lease.destination)
                .bind(lease.partition)
                .bind(&lease.owner)
                .bind(lease.epoch)
                .bind(now_micros())
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(|e| Error::database("checking the lease", e))?;
            if held.is_none() {
                return Err(Error::LeaseLost {
                    destination: lease.destination.clone(),
                    partition: lease.partition,
                });
            }
        }
        Ok(())
    }

    async fn destinations(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(sql::SELECT_DESTINATIONS)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("listing destinations", e))
    }

    async fn status(&self) -> Result<Vec<DestinationStatus>> {
        let rows = sqlx::query(sql::SELECT_STATUS)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("reading outbox status", e))?;
        let now = OffsetDateTime::now_utc();
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let decode = |e| Error::database("decoding outbox status", e);
            let oldest: Option<i64> = row.try_get(5).map_err(decode)?;
            let oldest_pending_age_secs = match oldest {
                Some(micros) => Some((now - from_micros(micros)?).as_seconds_f64().max(0.0)),
                None => None,
            };
            out.push(DestinationStatus {
                destination: row.try_get(0).map_err(decode)?,
                pending: count(row.try_get(1).map_err(decode)?),
                retrying: count(row.try_get(2).map_err(decode)?),
                delivered: count(row.try_get(3).map_err(decode)?),
                dead: count(row.try_get(4).map_err(decode)?),
                oldest_pending_age_secs,
            });
        }
        // Known destinations without entries are listed too, with zero counts.
        Ok(DestinationStatus::with_known(out, &self.inner.options.destinations))
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<OutboxEntry>> {
        let statement = match filter.state {
            Some(EntryState::Pending) => sql::LIST_PENDING_ENTRIES,
            Some(EntryState::Dead) => sql::LIST_DEAD_ENTRIES,
            Some(EntryState::Delivered) | None => sql::LIST_ENTRIES,
        };
        let query = sqlx::query(statement)
            .bind(filter.destination.clone())
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.stream_id.clone())
            .bind(filter.after_seq.unwrap_or(i64::MIN))
            .bind(filter.limit.unwrap_or(DEFAULT_LIST_LIMIT));
        self.fetch_entries(query).await
    }

    async fn replay_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64> {
        let query = sqlx::query(sql::REPLAY_DEAD_ONE)
            .bind(id.to_string())
            .bind(destination)
            .bind(now_micros());
        let changed = self.write(query, "replaying a dead entry").await?;
        if changed > 0 {
            self.notify_relay();
        }
        Ok(changed)
    }

    async fn discard_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64> {
        let query = sqlx::query(sql::DISCARD_DEAD_ONE)
            .bind(id.to_string())
            .bind(destination);
        self.write(query, "discarding a dead entry").await
    }

    async fn list_dead(&self, filter: &DeadFilter) -> Result<Vec<OutboxEntry>> {
        let query = dead_matching(sql::LIST_DEAD_MATCHING, filter.destination.as_deref(), filter)
            .bind(filter.limit.unwrap_or(DEFAULT_LIST_LIMIT));
        self.fetch_entries(query).await
    }

    async fn replay_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch> {
        let query = dead_matching(sql::REPLAY_DEAD_BATCH, Some(destination), filter)
            .bind(now_micros())
            .bind(limit);
        let batch = self.write_batch(query, "replaying dead entries").await?;
        if batch.count > 0 {
            self.notify_relay();
        }
        Ok(batch)
    }

    async fn discard_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch> {
        let query = dead_matching(sql::DISCARD_DEAD_BATCH, Some(destination), filter).bind(limit);
        self.write_batch(query, "discarding dead entries").await
    }

    async fn purge_delivered_batch(&self, before: OffsetDateTime, limit: u32) -> Result<u64> {
        let changed = self
            .write(
                sqlx::query(sql::PURGE_DELIVERED).bind(to_micros(before)).bind(limit),
                "purging delivered entries",
            )
            .await?;
        Ok(changed)
    }

    async fn disable_destination(&self, destination: &str, reason: &str) -> Result<()> {
        self.write(
            sqlx::query(sql::DISABLE_DESTINATION)
                .bind(destination)
                .bind(reason)
                .bind(now_micros()),
            "disabling a destination",
        )
        .await?;
        Ok(())
    }

    async fn enable_destination(&self, destination: &str) -> Result<bool> {
        let changed = self
            .write(
                sqlx::query(sql::ENABLE_DESTINATION).bind(destination),
                "enabling a destination",
            )
            .await?;
        if changed > 0 {
            self.notify_relay();
        }
        Ok(changed > 0)
    }

    async fn heartbeat(&self, destination: &str, owner: &str, ttl: Duration) -> Result<()> {
        /// Presence rows expired longer ago than this are deleted.
        const FORGET_AFTER_MICROS: i64 = 3_600 * 1_000_000;
        self.write(
            sqlx::query(sql::UPSERT_RELAY)
                .bind(destination)
                .bind(owner)
                .bind(expires_at(ttl)),
            "announcing a relay",
        )
        .await?;
        sqlx::query(sql::DELETE_STALE_RELAYS)
            .bind(now_micros().saturating_sub(FORGET_AFTER_MICROS))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| Error::database("forgetting stale relays", e))?;
        Ok(())
    }

    async fn live_relays(&self, destination: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(sql::SELECT_LIVE_RELAYS)
            .bind(destination)
            .bind(now_micros())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("listing live relays", e))
    }

    async fn disabled_destinations(&self) -> Result<Vec<DisabledDestination>> {
        let rows = sqlx::query(sql::SELECT_DISABLED_DESTINATIONS)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| Error::database("listing disabled destinations", e))?;
        rows.iter()
            .map(|row| {
                let decode = |e| Error::database("decoding a disabled destination", e);
                Ok(DisabledDestination {
                    destination: row.try_get(0).map_err(decode)?,
                    reason: row.try_get(1).map_err(decode)?,
                    since: from_micros(row.try_get(2).map_err(decode)?)?,
                })
            })
            .collect()
    }
}
