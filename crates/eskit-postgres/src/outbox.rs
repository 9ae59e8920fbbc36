//! [`OutboxStore`] for PostgreSQL: leases (database clock), pending reads, fenced bulk
//! result writes, the dead-letter queue and retention. Each operation is one statement.

use std::sync::Arc;
use std::time::Duration;

use eskit::{
    BulkBatch, DeadFilter, DestinationStatus, DisabledDestination, EntryFilter, EntryOutcome, EntryResult, Error,
    Lease, LeaseInfo, OutboxEntry, OutboxStore, PendingQuery, Result,
};
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgRow};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::rows::{db, outbox_entry, pending_entry};
use crate::store::PgStore;

/// Entries an operator listing returns when no limit is given.
const DEFAULT_LIST_LIMIT: u32 = 100;

type Query = sqlx::query::Query<'static, sqlx::Postgres, PgArguments>;

/// `query` with the bindings of the `dead_matching!` filter.
fn dead_matching(query: Query, destination: Option<&str>, filter: &DeadFilter) -> Query {
    query
        .bind(destination.map(str::to_owned))
        .bind(filter.dead_from)
        .bind(filter.dead_to)
        .bind(filter.error_contains.clone().filter(|e| !e.is_empty()))
        .bind(filter.after_seq.unwrap_or(i64::MIN))
}

/// A bulk write's (count, highest seq) row.
fn bulk_batch(row: &PgRow) -> std::result::Result<BulkBatch, sqlx::Error> {
    Ok(BulkBatch {
        count: count(row.try_get(0)?),
        last_seq: row.try_get(1)?,
    })
}

/// A partition number as the `integer` column.
fn partition_i32(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}

/// A count from SQL.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The result columns for `unnest`.
#[derive(Default)]
struct ResultColumns {
    ids: Vec<Uuid>,
    attempts: Vec<i32>,
    states: Vec<&'static str>,
    at: Vec<Option<OffsetDateTime>>,
    next_attempt_at: Vec<Option<OffsetDateTime>>,
    errors: Vec<Option<String>>,
}

impl ResultColumns {
    fn new(results: &[EntryResult]) -> Self {
        let mut c = Self::default();
        for result in results {
            let (state, at, next, error) = match &result.outcome {
                EntryOutcome::Delivered { at } => ("delivered", Some(*at), None, None),
                EntryOutcome::Retry { next_attempt_at, error } => {
                    ("pending", None, Some(*next_attempt_at), Some(error.clone()))
                }
                EntryOutcome::Dead { at, error } => ("dead", Some(*at), None, Some(error.clone())),
            };
            c.ids.push(result.id);
            c.attempts.push(i32::try_from(result.attempts).unwrap_or(i32::MAX));
            c.states.push(state);
            c.at.push(at);
            c.next_attempt_at.push(next);
            c.errors.push(error);
        }
        c
    }
}

impl PgStore {
    async fn fetch_entries(&self, query: Query, context: &'static str) -> Result<Vec<OutboxEntry>> {
        let rows: Vec<PgRow> = query.fetch_all(&self.inner.pool).await.map_err(db(context))?;
        rows.iter().map(outbox_entry).collect()
    }
}

#[async_trait::async_trait]
impl OutboxStore for PgStore {
    fn partitions(&self) -> u32 {
        self.inner.options.partitions
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.inner.ensure_listening();
        self.inner.wakeup.clone()
    }

    async fn try_acquire_lease(
        &self,
        destination: &str,
        partition: u32,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let epoch: Option<i64> = sqlx::query_scalar(self.inner.sql.acquire_lease.sql())
            .bind(destination)
            .bind(partition_i32(partition))
            .bind(owner)
            .bind(ttl.as_secs_f64())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db("acquiring a lease"))?;
        Ok(epoch.map(|epoch| Lease {
            destination: destination.to_string(),
            partition,
            owner: owner.to_string(),
            epoch,
        }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let done = sqlx::query(self.inner.sql.renew_lease.sql())
            .bind(&lease.destination)
            .bind(partition_i32(lease.partition))
            .bind(&lease.owner)
            .bind(lease.epoch)
            .bind(ttl.as_secs_f64())
            .execute(&self.inner.pool)
            .await
            .map_err(db("renewing a lease"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        sqlx::query(self.inner.sql.release_lease.sql())
            .bind(&lease.destination)
            .bind(partition_i32(lease.partition))
            .bind(&lease.owner)
            .bind(lease.epoch)
            .execute(&self.inner.pool)
            .await
            .map_err(db("releasing a lease"))?;
        Ok(())
    }

    async fn list_leases(&self, destination: &str) -> Result<Vec<LeaseInfo>> {
        let rows = sqlx::query(self.inner.sql.list_leases.sql())
            .bind(destination)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("listing leases"))?;
        rows.iter()
            .map(|row| {
                let decode = db("decoding a lease");
                (|| {
                    let partition: i32 = row.try_get(1)?;
                    Ok(LeaseInfo {
                        destination: row.try_get(0)?,
                        partition: u32::try_from(partition).unwrap_or(0),
                        owner: row.try_get(2)?,
                        epoch: row.try_get(3)?,
                        live: row.try_get(4)?,
                    })
                })()
                .map_err(decode)
            })
            .collect()
    }

    async fn fetch_pending(&self, lease: &Lease, query: &PendingQuery, limit: u32) -> Result<Vec<OutboxEntry>> {
        let sql = &self.inner.sql;
        let partition = partition_i32(lease.partition);
        let limit = i64::from(limit);
        let query = match query {
            PendingQuery::FromOldest => sqlx::query(sql.fetch_pending_from_oldest.sql())
                .bind(lease.destination.clone())
                .bind(partition)
                .bind(limit),
            PendingQuery::AfterSeq(seq) => sqlx::query(sql.fetch_pending_after_seq.sql())
                .bind(lease.destination.clone())
                .bind(partition)
                .bind(*seq)
                .bind(limit),
            PendingQuery::Stream(stream_id) => sqlx::query(sql.fetch_pending_of_stream.sql())
                .bind(lease.destination.clone())
                .bind(partition)
                .bind(stream_id.clone())
                .bind(limit),
        };
        let rows: Vec<PgRow> = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("reading pending entries"))?;
        rows.iter().map(|row| pending_entry(row, lease)).collect()
    }

    async fn record_results(&self, lease: &Lease, results: &[EntryResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let sql = &self.inner.sql;
        let query = match EntryResult::uniform_delivery(results) {
            Some((at, attempts)) => sqlx::query(sql.record_delivered.sql())
                .bind(&lease.destination)
                .bind(partition_i32(lease.partition))
                .bind(&lease.owner)
                .bind(lease.epoch)
                .bind(results.iter().map(|r| r.id).collect::<Vec<_>>())
                .bind(at)
                .bind(i32::try_from(attempts).unwrap_or(i32::MAX)),
            None => {
                let c = ResultColumns::new(results);
                sqlx::query(sql.record_results.sql())
                    .bind(&lease.destination)
                    .bind(partition_i32(lease.partition))
                    .bind(&lease.owner)
                    .bind(lease.epoch)
                    .bind(c.ids)
                    .bind(c.attempts)
                    .bind(c.states)
                    .bind(c.at)
                    .bind(c.next_attempt_at)
                    .bind(c.errors)
            }
        };
        let row = query
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db("recording delivery results"))?;
        let held: bool = row.try_get(0).map_err(db("recording delivery results"))?;
        if held {
            Ok(())
        } else {
            Err(Error::LeaseLost {
                destination: lease.destination.clone(),
                partition: lease.partition,
            })
        }
    }

    async fn destinations(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(self.inner.sql.select_destinations.sql())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("listing destinations"))
    }

    async fn status(&self) -> Result<Vec<DestinationStatus>> {
        let rows = sqlx::query(self.inner.sql.select_status.sql())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("reading outbox status"))?;
        let out = rows
            .iter()
            .map(|row| {
                (|| {
                    Ok(DestinationStatus {
                        destination: row.try_get(0)?,
                        pending: count(row.try_get(1)?),
                        retrying: count(row.try_get(2)?),
                        delivered: count(row.try_get(3)?),
                        dead: count(row.try_get(4)?),
                        oldest_pending_age_secs: row.try_get::<Option<f64>, _>(5)?.map(|age| age.max(0.0)),
                    })
                })()
                .map_err(db("decoding outbox status"))
            })
            .collect::<Result<Vec<_>>>()?;
        // Known destinations without entries are listed too, with zero counts.
        Ok(DestinationStatus::with_known(out, &self.inner.options.destinations))
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<OutboxEntry>> {
        let query = sqlx::query(self.inner.sql.list_entries.sql())
            .bind(filter.destination.clone())
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.stream_id.clone())
            .bind(filter.after_seq.unwrap_or(i64::MIN))
            .bind(i64::from(filter.limit.unwrap_or(DEFAULT_LIST_LIMIT)));
        self.fetch_entries(query, "listing outbox entries").await
    }

    async fn replay_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64> {
        let row = sqlx::query(self.inner.sql.replay_dead_one.sql())
            .bind(id)
            .bind(destination)
            .bind(self.inner.channel.as_str())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db("replaying a dead entry"))?;
        let replayed = count(row.try_get(0).map_err(db("replaying a dead entry"))?);
        if replayed > 0 {
            self.notify_relay();
        }
        Ok(replayed)
    }

    async fn discard_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64> {
        let done = sqlx::query(self.inner.sql.discard_dead_one.sql())
            .bind(id)
            .bind(destination)
            .execute(&self.inner.pool)
            .await
            .map_err(db("discarding a dead entry"))?;
        Ok(done.rows_affected())
    }

    async fn list_dead(&self, filter: &DeadFilter) -> Result<Vec<OutboxEntry>> {
        let query = dead_matching(
            sqlx::query(self.inner.sql.list_dead_matching.sql()),
            filter.destination.as_deref(),
            filter,
        )
        .bind(i64::from(filter.limit.unwrap_or(DEFAULT_LIST_LIMIT)));
        self.fetch_entries(query, "listing dead entries").await
    }

    async fn replay_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch> {
        let row = dead_matching(
            sqlx::query(self.inner.sql.replay_dead_batch.sql()),
            Some(destination),
            filter,
        )
        .bind(self.inner.channel.as_str())
        .bind(i64::from(limit))
        .fetch_one(&self.inner.pool)
        .await
        .map_err(db("replaying dead entries"))?;
        let batch = bulk_batch(&row).map_err(db("replaying dead entries"))?;
        if batch.count > 0 {
            self.notify_relay();
        }
        Ok(batch)
    }

    async fn discard_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch> {
        let row = dead_matching(
            sqlx::query(self.inner.sql.discard_dead_batch.sql()),
            Some(destination),
            filter,
        )
        .bind(i64::from(limit))
        .fetch_one(&self.inner.pool)
        .await
        .map_err(db("discarding dead entries"))?;
        bulk_batch(&row).map_err(db("discarding dead entries"))
    }

    async fn purge_delivered_batch(&self, before: OffsetDateTime, limit: u32) -> Result<u64> {
        let done = sqlx::query(self.inner.sql.purge_delivered.sql())
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.inner.pool)
            .await
            .map_err(db("purging delivered entries"))?;
        Ok(done.rows_affected())
    }

    async fn disable_destination(&self, destination: &str, reason: &str) -> Result<()> {
        sqlx::query(self.inner.sql.disable_destination.sql())
            .bind(destination)
            .bind(reason)
            .execute(&self.inner.pool)
            .await
            .map_err(db("disabling a destination"))?;
        Ok(())
    }

    async fn enable_destination(&self, destination: &str) -> Result<bool> {
        let done = sqlx::query(self.inner.sql.enable_destination.sql())
            .bind(destination)
            .execute(&self.inner.pool)
            .await
            .map_err(db("enabling a destination"))?;
        if done.rows_affected() > 0 {
            self.notify_relay();
        }
        Ok(done.rows_affected() > 0)
    }

    async fn heartbeat(&self, destination: &str, owner: &str, ttl: Duration) -> Result<()> {
        sqlx::query(self.inner.sql.heartbeat.sql())
            .bind(destination)
            .bind(owner)
            .bind(ttl.as_secs_f64())
            .execute(&self.inner.pool)
            .await
            .map_err(db("announcing a relay"))?;
        Ok(())
    }

    async fn live_relays(&self, destination: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(self.inner.sql.select_live_relays.sql())
            .bind(destination)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("listing live relays"))
    }

    async fn disabled_destinations(&self) -> Result<Vec<DisabledDestination>> {
        let rows = sqlx::query(self.inner.sql.select_disabled_destinations.sql())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db("listing disabled destinations"))?;
        rows.iter()
            .map(|row| {
                (|| {
                    Ok(DisabledDestination {
                        destination: row.try_get(0)?,
                        reason: row.try_get(1)?,
                        since: row.try_get(2)?,
                    })
                })()
                .map_err(db("decoding a disabled destination"))
            })
            .collect()
    }
}
