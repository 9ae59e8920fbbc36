//! The interfaces a database backend implements. Backends hold SQL and nothing else of
//! substance: every decision (what to deliver next, order, retry, dead-letter, leases)
//! is made by the core relay engine, through these calls.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{AppendResult, EventData, ExpectedVersion, ReadDirection, RecordedEvent};
use crate::outbox::{EntryState, OutboxEntry, OutboxMessage};

/// Appending and reading events outside an explicit transaction.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream_id` in one transaction, with the outbox entries the
    /// store's routes produce.
    async fn append(&self, stream_id: &str, expected: ExpectedVersion, events: Vec<EventData>) -> Result<AppendResult>;

    /// Reads up to `limit` events of a stream starting at `from_version` (inclusive;
    /// for a backward read, `u64::MAX` means from the end).
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        limit: usize,
        direction: ReadDirection,
    ) -> Result<Vec<RecordedEvent>>;

    /// Reads up to `limit` events of all streams with position ≥ `from_position`.
    async fn read_all(&self, from_position: i64, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// The current version of a stream (`None` when it does not exist).
    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>>;
}

/// A transaction that can append events and write outbox messages, and that the
/// application can use for its own SQL. Dropping it without `commit` rolls back.
#[async_trait::async_trait]
pub trait StoreTransaction: Send {
    /// Appends events (and their routed outbox entries) inside this transaction.
    async fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult>;
    /// Writes an explicit outbox message inside this transaction; returns its entry id.
    async fn write_outbox(&mut self, message: OutboxMessage) -> Result<Uuid>;
    /// Commits everything, then wakes the relay.
    async fn commit(self) -> Result<()>;
    /// Rolls everything back.
    async fn rollback(self) -> Result<()>;
}

/// Starting a [`StoreTransaction`].
#[async_trait::async_trait]
pub trait TransactionalStore: EventStore {
    /// The transaction type.
    type Transaction: StoreTransaction;
    /// Begins a transaction (a write transaction: SQLite `BEGIN IMMEDIATE`).
    async fn begin(&self) -> Result<Self::Transaction>;
}

/// A lease on one (destination, partition): the holder alone delivers its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Destination.
    pub destination: String,
    /// Partition.
    pub partition: u32,
    /// Owner id (one per relay instance).
    pub owner: String,
    /// Fencing token: increases at each change of owner.
    pub epoch: i64,
}

/// A lease row as stored, for balancing and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Destination.
    pub destination: String,
    /// Partition.
    pub partition: u32,
    /// Current owner.
    pub owner: String,
    /// Fencing token.
    pub epoch: i64,
    /// Whether the lease is still valid by the database clock.
    pub live: bool,
}

/// Which pending entries of a leased partition to read. Results are in `seq` order and
/// include entries whose next attempt is in the future (so the engine sees parked heads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingQuery {
    /// From the oldest pending entry (the re-scan that finds late commits).
    FromOldest,
    /// The fast path: pending entries with `seq` greater than this, of streams that have
    /// no pending entry with `seq` at or below it. (Such a stream is either parked by the
    /// engine, or has an entry that committed late; the engine reaches it through
    /// [`PendingQuery::Stream`] or the next [`PendingQuery::FromOldest`] re-scan, so its
    /// later entries must not overtake it.)
    AfterSeq(i64),
    /// Pending entries of one stream, from its oldest.
    Stream(String),
}

/// What happened to one delivered-or-attempted entry, written in bulk.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryResult {
    /// Entry id.
    pub id: Uuid,
    /// Attempts after this one.
    pub attempts: u32,
    /// The outcome.
    pub outcome: EntryOutcome,
}

impl EntryResult {
    /// When every result of a batch is a delivery with the same time and the same
    /// attempt count (the relay's common case: it stamps a batch's deliveries with the
    /// time it records them), that time and count. Backends write such a batch with a
    /// simpler statement (ids and two values instead of per-entry rows).
    pub fn uniform_delivery(results: &[EntryResult]) -> Option<(OffsetDateTime, u32)> {
        let first = results.first()?;
        let EntryOutcome::Delivered { at } = first.outcome else {
            return None;
        };
        results
            .iter()
            .all(|r| r.attempts == first.attempts && r.outcome == EntryOutcome::Delivered { at })
            .then_some((at, first.attempts))
    }
}

/// Outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryOutcome {
    /// Delivered at this time.
    Delivered {
        /// When.
        at: OffsetDateTime,
    },
    /// Failed; try again at `next_attempt_at`.
    Retry {
        /// When to try again.
        next_attempt_at: OffsetDateTime,
        /// The error.
        error: String,
    },
    /// Failed for good: moved to the dead-letter queue.
    Dead {
        /// When.
        at: OffsetDateTime,
        /// The error.
        error: String,
    },
}

/// Counts for one destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestinationStatus {
    /// Destination.
    pub destination: String,
    /// Pending entries (including those waiting for a retry).
    pub pending: u64,
    /// Pending entries that have failed at least once.
    pub retrying: u64,
    /// Delivered entries still kept.
    pub delivered: u64,
    /// Dead-lettered entries.
    pub dead: u64,
    /// Age in seconds of the oldest pending entry.
    pub oldest_pending_age_secs: Option<f64>,
}

impl DestinationStatus {
    /// Adds zero-count rows for known destinations that have no entries yet, and sorts
    /// by destination: what every backend's [`OutboxStore::status`] returns.
    pub fn with_known(mut statuses: Vec<Self>, known: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<Self> {
        for name in known {
            let name = name.as_ref();
            if !statuses.iter().any(|s| s.destination == name) {
                statuses.push(Self {
                    destination: name.to_string(),
                    ..Self::default()
                });
            }
        }
        statuses.sort_by(|a, b| a.destination.cmp(&b.destination));
        statuses
    }
}

/// Which entries an operator command lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this state.
    pub state: Option<EntryState>,
    /// Only this stream.
    pub stream_id: Option<String>,
    /// Only entries with `seq` greater than this (paging).
    pub after_seq: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// Which dead entries a replay or discard touches. At least one of the fields is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadSelector {
    /// One entry.
    pub id: Option<Uuid>,
    /// Every dead entry of a destination.
    pub destination: Option<String>,
}

/// Which dead entries an operator lists, replays or discards by filter: every field set
/// must match. The default [`OutboxStore::list_dead`] pages through
/// [`OutboxStore::list_entries`] and filters in memory (a backend may override it with
/// one query); replay and discard run batch by batch through
/// [`OutboxStore::replay_dead_batch`] / [`OutboxStore::discard_dead_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only this destination.
    pub destination: Option<String>,
    /// Only entries dead-lettered at or after this time.
    pub dead_from: Option<OffsetDateTime>,
    /// Only entries dead-lettered before this time.
    pub dead_to: Option<OffsetDateTime>,
    /// Only entries whose last error contains this text (case-insensitive).
    pub error_contains: Option<String>,
    /// Only entries with `seq` greater than this (paging).
    pub after_seq: Option<i64>,
    /// At most this many (default 100; ignored by replay and discard, which touch every
    /// match).
    pub limit: Option<u32>,
}

impl DeadFilter {
    /// Whether a (dead) entry matches the destination, time range and error text.
    pub fn matches(&self, entry: &OutboxEntry) -> bool {
        if entry.state != EntryState::Dead {
            return false;
        }
        if self.destination.as_ref().is_some_and(|d| *d != entry.destination) {
            return false;
        }
        let dead_at = entry.dead_at.unwrap_or(entry.created_at);
        if self.dead_from.is_some_and(|from| dead_at < from) || self.dead_to.is_some_and(|to| dead_at >= to) {
            return false;
        }
        match &self.error_contains {
            None => true,
            Some(needle) => entry
                .last_error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(&needle.to_lowercase())),
        }
    }
}

impl DeadSelector {
    /// The filter of a destination-wide selector; a selector with neither an id nor a
    /// destination is refused (it would touch every dead entry by accident).
    fn filter(&self) -> Result<DeadFilter> {
        match &self.destination {
            Some(destination) => Ok(DeadFilter {
                destination: Some(destination.clone()),
                ..DeadFilter::default()
            }),
            None => Err(Error::Config(
                "a dead-letter selector needs an entry id or a destination".into(),
            )),
        }
    }
}

/// Page size the default [`DeadFilter`] methods read with.
const DEAD_SCAN_PAGE: u32 = 500;

/// How many entries one statement of a bulk operator write touches at most: the purge
/// of delivered entries and the replay or discard of dead ones run batch after batch,
/// each its own transaction. On SQLite a batch of 1 000 holds the write lock for
/// milliseconds (18 ms at most while purging 1M delivered rows here, 50 ms while
/// replaying 1M dead ones), where one statement over a million rows held it for
/// seconds (1.7 s to purge them, 7.3 s to replay them) and stalled every append.
pub const BULK_BATCH: u32 = 1_000;

/// What one batch of a bulk operator write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkBatch {
    /// Entries touched.
    pub count: u64,
    /// The highest `seq` touched (where the next batch starts), if the batch is seq-ordered.
    pub last_seq: Option<i64>,
}

/// Runs `batch` until one touches fewer than [`BULK_BATCH`] entries, starting each after
/// the highest seq the previous one touched (the first after `after_seq`); returns the
/// total.
async fn in_batches<F, Fut>(mut after_seq: Option<i64>, mut batch: F) -> Result<u64>
where
    F: FnMut(Option<i64>) -> Fut,
    Fut: Future<Output = Result<BulkBatch>>,
{
    let mut total = 0;
    loop {
        let done = batch(after_seq).await?;
        total += done.count;
        if done.count < u64::from(BULK_BATCH) {
            return Ok(total);
        }
        after_seq = done.last_seq.or(after_seq);
    }
}

/// What the relay and operators need from a backend.
#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Number of partitions entries are spread over (fixed when the store is opened).
    fn partitions(&self) -> u32;

    /// Notified after every commit that wrote outbox entries (in-process, or through
    /// the database's notifications). A hint only: the relay also polls.
    fn wakeup(&self) -> Arc<Notify>;

    /// The wakeup of one partition: notified after commits that wrote entries in it.
    /// Defaults to [`wakeup`](Self::wakeup) (every commit wakes every partition worker);
    /// backends that know which partitions a commit touched override it so an append
    /// wakes one worker per destination instead of all of them.
    fn partition_wakeup(&self, partition: u32) -> Arc<Notify> {
        let _ = partition;
        self.wakeup()
    }

    /// Takes the lease on (destination, partition) if it is free, expired, or already
    /// ours and live (then it is renewed, same epoch). A change of owner, and any
    /// acquisition of an expired lease (even by its last owner), increments the epoch, so
    /// nothing written under the lapsed lease passes the fence.
    async fn try_acquire_lease(
        &self,
        destination: &str,
        partition: u32,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>>;

    /// Extends a lease we hold; `false` when it was lost.
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool>;

    /// Gives a lease up (so another relay can take it at once).
    async fn release_lease(&self, lease: &Lease) -> Result<()>;

    /// Every lease row of a destination.
    async fn list_leases(&self, destination: &str) -> Result<Vec<LeaseInfo>>;

    /// Reads up to `limit` pending entries of the lease's partition, in `seq` order.
    async fn fetch_pending(&self, lease: &Lease, query: &PendingQuery, limit: u32) -> Result<Vec<OutboxEntry>>;

    /// Writes delivery results in one statement, fenced by the lease: when the lease is
    /// no longer held with this epoch, or has expired (even before anyone took it over),
    /// nothing is written and `Error::LeaseLost` returned. Results for entries that are
    /// no longer pending are ignored.
    async fn record_results(&self, lease: &Lease, results: &[EntryResult]) -> Result<()>;

    /// Destinations with any entries.
    async fn destinations(&self) -> Result<Vec<String>>;

    /// Counts per destination.
    async fn status(&self) -> Result<Vec<DestinationStatus>>;

    /// Lists entries, oldest first.
    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<OutboxEntry>>;

    /// Moves one dead entry back to pending (attempts reset, due now) if it is dead and,
    /// when `destination` is given, of that destination; returns 0 or 1.
    async fn replay_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64>;

    /// Deletes one dead entry, under the same conditions; returns 0 or 1.
    async fn discard_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64>;

    /// Moves at most `limit` dead entries of `destination` matching `filter` (its
    /// destination and limit ignored, its `after_seq` applied), oldest first, back to
    /// pending in one statement, and wakes the relays when any moved.
    async fn replay_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch>;

    /// Deletes at most `limit` dead entries of `destination` matching `filter`, as
    /// [`replay_dead_batch`](Self::replay_dead_batch) selects them, in one statement.
    async fn discard_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch>;

    /// Deletes at most `limit` delivered entries delivered before `before`, oldest
    /// delivery first, in one statement (its own transaction); returns how many.
    async fn purge_delivered_batch(&self, before: OffsetDateTime, limit: u32) -> Result<u64>;

    /// Moves dead entries back to pending (attempts reset, due now): one entry, or every
    /// dead entry of a destination in batches of [`BULK_BATCH`]; returns how many.
    async fn replay_dead(&self, selector: &DeadSelector) -> Result<u64> {
        match selector.id {
            Some(id) => self.replay_dead_entry(id, selector.destination.as_deref()).await,
            None => self.replay_dead_matching(&selector.filter()?).await,
        }
    }

    /// Deletes dead entries: one, or every dead entry of a destination in batches of
    /// [`BULK_BATCH`]; returns how many.
    async fn discard_dead(&self, selector: &DeadSelector) -> Result<u64> {
        match selector.id {
            Some(id) => self.discard_dead_entry(id, selector.destination.as_deref()).await,
            None => self.discard_dead_matching(&selector.filter()?).await,
        }
    }

    /// Deletes every delivered entry delivered before `before`, in batches of
    /// [`BULK_BATCH`] entries, each its own transaction, so a large purge never holds
    /// SQLite's write lock (or PostgreSQL row locks and the xmin horizon) for long;
    /// returns how many. Pending and dead entries are never touched.
    async fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64> {
        in_batches(None, |_| async move {
            let count = self.purge_delivered_batch(before, BULK_BATCH).await?;
            Ok(BulkBatch { count, last_seq: None })
        })
        .await
    }

    /// Disables a destination (the relay stops delivering to it; its entries stay
    /// pending) with a reason, e.g. after a `410 Gone`. Upsert into a small
    /// `destination_state` table (destination primary key, disabled_reason, disabled_at).
    async fn disable_destination(&self, destination: &str, reason: &str) -> Result<()>;

    /// Re-enables a destination; `false` when it was not disabled.
    async fn enable_destination(&self, destination: &str) -> Result<bool>;

    /// Disabled destinations with their reasons.
    async fn disabled_destinations(&self) -> Result<Vec<DisabledDestination>>;

    /// Records that relay `owner` delivers to `destination` and is alive for `ttl` (a
    /// zero `ttl` says it left). Relays call it every balancing tick, so that a relay
    /// holding no lease yet still counts when the others compute their fair share of
    /// partitions. The default does nothing (then a relay is only seen through its leases,
    /// and a newcomer may wait until a lease expires).
    async fn heartbeat(&self, destination: &str, owner: &str, ttl: Duration) -> Result<()> {
        let _ = (destination, owner, ttl);
        Ok(())
    }

    /// Owners of the relays alive for `destination` (see [`OutboxStore::heartbeat`]).
    async fn live_relays(&self, destination: &str) -> Result<Vec<String>> {
        let _ = destination;
        Ok(Vec::new())
    }

    /// Lists dead entries matching `filter`, oldest first, at most `filter.limit`
    /// (default 100). Page on with `after_seq` = the last entry's `seq`.
    async fn list_dead(&self, filter: &DeadFilter) -> Result<Vec<OutboxEntry>> {
        let limit = filter.limit.unwrap_or(100) as usize;
        let mut found = Vec::new();
        let mut after = filter.after_seq;
        while found.len() < limit {
            let page = self
                .list_entries(&EntryFilter {
                    destination: filter.destination.clone(),
                    state: Some(EntryState::Dead),
                    stream_id: None,
                    after_seq: after,
                    limit: Some(DEAD_SCAN_PAGE),
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            let full = page.len() as u32 >= DEAD_SCAN_PAGE;
            found.extend(page.into_iter().filter(|e| filter.matches(e)));
            if !full {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Moves every dead entry matching `filter` back to pending (attempts reset, due now),
    /// destination by destination in batches of [`BULK_BATCH`]; returns how many. An empty
    /// filter matches every dead entry.
    async fn replay_dead_matching(&self, filter: &DeadFilter) -> Result<u64> {
        dead_in_batches(self, filter, DeadWrite::Replay).await
    }

    /// Deletes every dead entry matching `filter`, destination by destination in batches
    /// of [`BULK_BATCH`]; returns how many. An empty filter matches every dead entry.
    async fn discard_dead_matching(&self, filter: &DeadFilter) -> Result<u64> {
        dead_in_batches(self, filter, DeadWrite::Discard).await
    }
}

/// What a bulk dead-letter write does.
#[derive(Debug, Clone, Copy)]
enum DeadWrite {
    Replay,
    Discard,
}

/// Runs a bulk dead-letter write over the destinations `filter` covers (its own, or
/// every destination with entries), batch after batch; returns how many it touched.
async fn dead_in_batches<S: OutboxStore + ?Sized>(store: &S, filter: &DeadFilter, write: DeadWrite) -> Result<u64> {
    let destinations = match &filter.destination {
        Some(destination) => vec![destination.clone()],
        None => store.destinations().await?,
    };
    let mut total = 0;
    for destination in &destinations {
        total += in_batches(filter.after_seq, |after_seq| {
            let page = DeadFilter {
                after_seq,
                ..filter.clone()
            };
            async move {
                match write {
                    DeadWrite::Replay => store.replay_dead_batch(destination, &page, BULK_BATCH).await,
                    DeadWrite::Discard => store.discard_dead_batch(destination, &page, BULK_BATCH).await,
                }
            }
        })
        .await?;
    }
    Ok(total)
}

/// A destination an operator or a `410 Gone` turned off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisabledDestination {
    /// Destination.
    pub destination: String,
    /// Why.
    pub reason: String,
    /// Since when.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn uniform_delivery_needs_one_time_and_one_attempt_count() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let ok = |attempts, at| EntryResult {
            id: Uuid::now_v7(),
            attempts,
            outcome: EntryOutcome::Delivered { at },
        };
        assert_eq!(EntryResult::uniform_delivery(&[ok(1, at), ok(1, at)]), Some((at, 1)));
        assert_eq!(EntryResult::uniform_delivery(&[ok(1, at), ok(2, at)]), None);
        let later = at + time::Duration::SECOND;
        assert_eq!(EntryResult::uniform_delivery(&[ok(1, at), ok(1, later)]), None);
        let retry = EntryResult {
            outcome: EntryOutcome::Retry {
                next_attempt_at: at,
                error: "503".into(),
            },
            ..ok(1, at)
        };
        assert_eq!(EntryResult::uniform_delivery(&[ok(1, at), retry]), None);
        assert_eq!(EntryResult::uniform_delivery(&[]), None);
    }

    fn dead(destination: &str, error: &str, dead_at: OffsetDateTime) -> OutboxEntry {
        OutboxEntry {
            seq: 1,
            id: Uuid::now_v7(),
            destination: destination.into(),
            stream_id: "s".into(),
            partition: 0,
            event_type: "t".into(),
            payload: RawValue::from_string("{}".into()).unwrap(),
            metadata: None,
            event_id: None,
            stream_version: None,
            state: EntryState::Dead,
            attempts: 3,
            last_error: Some(error.into()),
            created_at: dead_at,
            next_attempt_at: dead_at,
            delivered_at: None,
            dead_at: Some(dead_at),
        }
    }

    #[test]
    fn dead_filter_matches_destination_time_range_and_error_text() {
        let t = OffsetDateTime::now_utc();
        let e = dead("hooks", "HTTP 503 Service Unavailable", t);
        assert!(DeadFilter::default().matches(&e));
        let by = |f: DeadFilter| f.matches(&e);
        assert!(by(DeadFilter {
            destination: Some("hooks".into()),
            ..Default::default()
        }));
        assert!(!by(DeadFilter {
            destination: Some("other".into()),
            ..Default::default()
        }));
        assert!(by(DeadFilter {
            error_contains: Some("service unavail".into()),
            ..Default::default()
        }));
        assert!(!by(DeadFilter {
            error_contains: Some("timeout".into()),
            ..Default::default()
        }));
        assert!(by(DeadFilter {
            dead_from: Some(t),
            dead_to: Some(t + Duration::from_secs(1)),
            ..Default::default()
        }));
        assert!(
            !by(DeadFilter {
                dead_to: Some(t),
                ..Default::default()
            }),
            "dead_to is exclusive"
        );
        assert!(!by(DeadFilter {
            dead_from: Some(t + Duration::from_secs(1)),
            ..Default::default()
        }));
        let mut pending = e.clone();
        pending.state = EntryState::Pending;
        assert!(!DeadFilter::default().matches(&pending));
    }
}
