//! An in-memory reference backend, for tests only: it runs the conformance suite
//! without a database (so the suite and the core relay are checked on their own), and
//! lets destination tests run a real [`eskit::Relay`] without SQL.
//!
//! Semantics follow the SQLite backend: one writer at a time (a transaction holds the
//! writer lock from `begin` to commit or rollback, so do not wait on the relay while
//! holding one), readers see committed state only, and nothing survives the process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use eskit::{
    AppendResult, BulkBatch, DeadFilter, DestinationStatus, DisabledDestination, EntryFilter, EntryOutcome,
    EntryResult, EntryState, Error, EventData, EventStore, ExpectedVersion, Lease, LeaseInfo, NewOutboxEntry,
    OutboxEntry, OutboxMessage, OutboxStore, PendingQuery, ReadDirection, RecordedEvent, Result, StoreOptions,
    StoreTransaction, TransactionalStore,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedMutexGuard};
use uuid::Uuid;

#[derive(Debug, Clone)]
struct LeaseRow {
    owner: String,
    epoch: i64,
    expires: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
struct State {
    events: Vec<RecordedEvent>,
    by_event_id: HashMap<Uuid, usize>,
    streams: HashMap<String, u64>,
    outbox: BTreeMap<i64, OutboxEntry>,
    by_entry_id: HashMap<Uuid, i64>,
    next_seq: i64,
    leases: HashMap<(String, u32), LeaseRow>,
    disabled: BTreeMap<String, DisabledDestination>,
    relays: BTreeMap<(String, String), OffsetDateTime>,
    app_rows: HashSet<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Rows returned by `fetch_pending`, for tests of the relay's read volume.
    rows_fetched: std::sync::atomic::AtomicU64,
    writer: Arc<tokio::sync::Mutex<()>>,
    wakeup: Arc<Notify>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An in-memory store. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    options: Arc<StoreOptions>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(options: StoreOptions) -> Self {
        Self {
            shared: Arc::new(Shared::default()),
            options: Arc::new(options),
        }
    }

    /// Rows the relay has read so far (`fetch_pending` results, summed): a drain without
    /// failures should read each entry once.
    pub fn rows_fetched(&self) -> u64 {
        self.shared.rows_fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Another handle on the same data, with its own options (as another process with
    /// its own connection pool would have).
    pub fn reopen(&self, options: StoreOptions) -> Self {
        Self {
            shared: self.shared.clone(),
            options: Arc::new(options),
        }
    }

    /// Whether the application table holds `key` (see [`MemoryTransaction::app_write`]).
    pub fn app_row_exists(&self, key: &str) -> bool {
        self.shared.state().app_rows.contains(key)
    }

    /// Wakes the relays when a replay moved entries; returns the batch.
    fn woken(&self, batch: BulkBatch) -> BulkBatch {
        if batch.count > 0 {
            self.shared.wakeup.notify_waiters();
        }
        batch
    }

    async fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let _writer = self.shared.writer.lock().await;
        let mut state = self.shared.state();
        f(&mut state)
    }
}

/// A transaction on a [`MemoryStore`]: it holds the writer lock and works on a copy.
pub struct MemoryTransaction {
    shared: Arc<Shared>,
    options: Arc<StoreOptions>,
    work: State,
    wrote_entries: bool,
    _writer: OwnedMutexGuard<()>,
}

impl std::fmt::Debug for MemoryTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransaction").finish_non_exhaustive()
    }
}

impl MemoryTransaction {
    /// The application's own write: adds `key` to the application table.
    pub fn app_write(&mut self, key: &str) {
        self.work.app_rows.insert(key.to_string());
    }
}

fn now() -> OffsetDateTime {
    // The relay's clock, so leases and retries follow tokio's paused time in tests.
    eskit::clock::now()
}

fn append_in(
    state: &mut State,
    options: &StoreOptions,
    stream_id: &str,
    expected: ExpectedVersion,
    events: Vec<EventData>,
) -> Result<AppendResult> {
    options.limits.check_append(stream_id, &events)?;
    let mut repeated = Vec::new();
    for e in &events {
        if let Some(&i) = state.by_event_id.get(&e.id) {
            let stored = &state.events[i];
            // Content is compared as JSON (whitespace and key order do not matter), as
            // the database backends do.
            let parsed = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
            // Absent metadata equals JSON `null`.
            let null = serde_json::Value::Null;
            let same_metadata = e.metadata.as_ref().map_or(Some(null.clone()), |m| parsed(m.get()))
                == Some(stored.metadata.clone().unwrap_or(null));
            let same = stored.stream_id == stream_id
                && stored.event_type == e.event_type
                && parsed(e.payload.get()).as_ref() == Some(&stored.payload)
                && same_metadata;
            if !same {
                return Err(Error::IdempotencyConflict { event_id: e.id });
            }
            repeated.push(i);
        }
    }
    if !repeated.is_empty() {
        if repeated.len() != events.len() {
            return Err(Error::IdempotencyConflict { event_id: events[0].id });
        }
        let first = &state.events[repeated[0]];
        let last = &state.events[repeated[repeated.len() - 1]];
        return Ok(AppendResult {
            first_version: first.stream_version,
            last_version: last.stream_version,
            first_position: first.position,
            last_position: last.position,
            // What the routes give these events, as when they were first appended.
            outbox_entries: options
                .routes
                .entries_for(stream_id, first.stream_version, &events, options.partitions)
                .len(),
            idempotent_repeat: true,
        });
    }
    let actual = state.streams.get(stream_id).copied();
    if !expected.accepts(actual) {
        return Err(Error::WrongExpectedVersion {
            stream: stream_id.to_string(),
            expected,
            actual,
        });
    }
    // Decode everything before writing anything (JSON that parses as raw text may still
    // not decode, e.g. a lone surrogate escape).
    let decode = |field: &'static str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text).map_err(|err| {
            Error::Validation(eskit::ValidationError::InvalidJson {
                field,
                reason: err.to_string(),
            })
        })
    };
    let mut decoded = Vec::with_capacity(events.len());
    for e in &events {
        let payload = decode("payload", e.payload.get())?;
        let metadata = e.metadata.as_ref().map(|m| decode("metadata", m.get())).transpose()?;
        decoded.push((payload, metadata));
    }
    let first_version = actual.unwrap_or(0) + 1;
    let entries = options
        .routes
        .entries_for(stream_id, first_version, &events, options.partitions);
    if let Some(taken) = entries.iter().find(|e| state.by_entry_id.contains_key(&e.id)) {
        return Err(Error::IdempotencyConflict { event_id: taken.id });
    }
    let recorded_at = now();
    let first_position = state.events.len() as i64 + 1;
    for (i, (e, (payload, metadata))) in events.iter().zip(decoded).enumerate() {
        let recorded = RecordedEvent {
            position: first_position + i as i64,
            stream_id: stream_id.to_string(),
            stream_version: first_version + i as u64,
            event_id: e.id,
            event_type: e.event_type.clone(),
            payload,
            metadata,
            recorded_at,
        };
        state.by_event_id.insert(e.id, state.events.len());
        state.events.push(recorded);
    }
    let last_version = first_version + events.len() as u64 - 1;
    state.streams.insert(stream_id.to_string(), last_version);
    let outbox_entries = entries.len();
    for entry in entries {
        insert_entry(state, entry, recorded_at)?;
    }
    Ok(AppendResult {
        first_version,
        last_version,
        first_position,
        last_position: first_position + events.len() as i64 - 1,
        outbox_entries,
        idempotent_repeat: false,
    })
}

fn insert_entry(state: &mut State, entry: NewOutboxEntry, created_at: OffsetDateTime) -> Result<()> {
    if state.by_entry_id.contains_key(&entry.id) {
        return Err(Error::IdempotencyConflict { event_id: entry.id });
    }
    state.next_seq += 1;
    let seq = state.next_seq;
    state.by_entry_id.insert(entry.id, seq);
    state.outbox.insert(
        seq,
        OutboxEntry {
            seq,
            id: entry.id,
            destination: entry.destination,
            stream_id: entry.stream_id,
            partition: entry.partition,
            event_type: entry.event_type,
            payload: entry.payload,
            metadata: entry.metadata,
            event_id: entry.event_id,
            stream_version: entry.stream_version,
            state: EntryState::Pending,
            attempts: 0,
            last_error: None,
            created_at,
            next_attempt_at: created_at,
            delivered_at: None,
            dead_at: None,
        },
    );
    Ok(())
}

#[async_trait::async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, stream_id: &str, expected: ExpectedVersion, events: Vec<EventData>) -> Result<AppendResult> {
        let mut tx = self.begin().await?;
        let result = tx.append(stream_id, expected, events).await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        limit: usize,
        direction: ReadDirection,
    ) -> Result<Vec<RecordedEvent>> {
        let state = self.shared.state();
        let in_stream = state.events.iter().filter(|e| e.stream_id == stream_id);
        Ok(match direction {
            ReadDirection::Forward => in_stream
                .filter(|e| e.stream_version >= from_version)
                .take(limit)
                .cloned()
                .collect(),
            ReadDirection::Backward => {
                let mut all: Vec<_> = in_stream
                    .filter(|e| e.stream_version <= from_version)
                    .cloned()
                    .collect();
                all.reverse();
                all.truncate(limit);
                all
            }
        })
    }

    async fn read_all(&self, from_position: i64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let state = self.shared.state();
        Ok(state
            .events
            .iter()
            .filter(|e| e.position >= from_position)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>> {
        Ok(self.shared.state().streams.get(stream_id).copied())
    }
}

#[async_trait::async_trait]
impl StoreTransaction for MemoryTransaction {
    async fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let result = append_in(&mut self.work, &self.options, stream_id, expected, events)?;
        self.wrote_entries |= result.outbox_entries > 0;
        Ok(result)
    }

    async fn write_outbox(&mut self, message: OutboxMessage) -> Result<Uuid> {
        self.options.limits.check_message(&message)?;
        self.options.check_destination(&message.destination)?;
        let id = message.id;
        insert_entry(
            &mut self.work,
            NewOutboxEntry::for_message(message, self.options.partitions),
            now(),
        )?;
        self.wrote_entries = true;
        Ok(id)
    }

    async fn commit(self) -> Result<()> {
        *self.shared.state() = self.work;
        if self.wrote_entries {
            self.shared.wakeup.notify_waiters();
        }
        Ok(())
    }

    async fn rollback(self) -> Result<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl TransactionalStore for MemoryStore {
    type Transaction = MemoryTransaction;

    async fn begin(&self) -> Result<MemoryTransaction> {
        let writer = self.shared.writer.clone().lock_owned().await;
        let work = self.shared.state().clone();
        Ok(MemoryTransaction {
            shared: self.shared.clone(),
            options: self.options.clone(),
            work,
            wrote_entries: false,
            _writer: writer,
        })
    }
}

fn ttl_end(ttl: Duration) -> OffsetDateTime {
    now() + ttl
}

/// The lease's row when it is still held by this owner with this epoch.
fn held<'s>(state: &'s State, lease: &Lease) -> Option<&'s LeaseRow> {
    state
        .leases
        .get(&(lease.destination.clone(), lease.partition))
        .filter(|row| row.owner == lease.owner && row.epoch == lease.epoch)
}

fn holds(state: &State, lease: &Lease) -> bool {
    held(state, lease).is_some()
}

/// Whether `lease` is held and not expired: what result writes are fenced by (as the
/// SQL backends do), so an expired lease writes nothing even before a takeover.
fn holds_live(state: &State, lease: &Lease) -> bool {
    held(state, lease).is_some_and(|row| row.expires > now())
}

impl State {
    /// Seqs of the dead entries `keep` selects, oldest first, at most `limit`.
    fn dead_seqs(&self, limit: u32, keep: impl Fn(&OutboxEntry) -> bool) -> Vec<i64> {
        self.outbox
            .values()
            .filter(|e| e.state == EntryState::Dead && keep(e))
            .take(limit as usize)
            .map(|e| e.seq)
            .collect()
    }

    /// Moves the entries at `seqs` back to pending (attempts reset, due now).
    fn replay(&mut self, seqs: &[i64]) -> BulkBatch {
        let at = now();
        for seq in seqs {
            let Some(e) = self.outbox.get_mut(seq) else { continue };
            e.state = EntryState::Pending;
            e.attempts = 0;
            e.next_attempt_at = at;
            e.dead_at = None;
        }
        bulk_batch(seqs)
    }

    /// Deletes the entries at `seqs`.
    fn discard(&mut self, seqs: &[i64]) -> BulkBatch {
        for seq in seqs {
            if let Some(e) = self.outbox.remove(seq) {
                self.by_entry_id.remove(&e.id);
            }
        }
        bulk_batch(seqs)
    }
}

fn bulk_batch(seqs: &[i64]) -> BulkBatch {
    BulkBatch {
        count: seqs.len() as u64,
        last_seq: seqs.iter().copied().max(),
    }
}

fn entry_selected(entry: &OutboxEntry, id: Uuid, destination: Option<&str>) -> bool {
    entry.id == id && destination.is_none_or(|d| entry.destination == d)
}

/// Whether a dead entry is one a batch of `destination` under `filter` touches.
/// The selection of a batch of `destination` under `filter` (its destination replaced),
/// built once per batch.
fn batch_selection(destination: &str, filter: &DeadFilter) -> impl Fn(&OutboxEntry) -> bool {
    let filter = DeadFilter {
        destination: Some(destination.to_string()),
        ..filter.clone()
    };
    move |entry| filter.after_seq.is_none_or(|after| entry.seq > after) && filter.matches(entry)
}

#[async_trait::async_trait]
impl OutboxStore for MemoryStore {
    fn partitions(&self) -> u32 {
        self.options.partitions
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.shared.wakeup.clone()
    }

    async fn try_acquire_lease(
        &self,
        destination: &str,
        partition: u32,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        self.write(|state| {
            let key = (destination.to_string(), partition);
            let epoch = match state.leases.get(&key) {
                None => 1,
                Some(row) if row.expires <= now() => row.epoch + 1,
                Some(row) if row.owner == owner => row.epoch,
                Some(_) => return Ok(None),
            };
            state.leases.insert(
                key,
                LeaseRow {
                    owner: owner.to_string(),
                    epoch,
                    expires: ttl_end(ttl),
                },
            );
            Ok(Some(Lease {
                destination: destination.to_string(),
                partition,
                owner: owner.to_string(),
                epoch,
            }))
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        self.write(|state| {
            if !holds(state, lease) {
                return Ok(false);
            }
            if let Some(row) = state.leases.get_mut(&(lease.destination.clone(), lease.partition)) {
                row.expires = ttl_end(ttl);
            }
            Ok(true)
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.write(|state| {
            if holds(state, lease)
                && let Some(row) = state.leases.get_mut(&(lease.destination.clone(), lease.partition))
            {
                row.expires = OffsetDateTime::UNIX_EPOCH;
            }
            Ok(())
        })
        .await
    }

    async fn list_leases(&self, destination: &str) -> Result<Vec<LeaseInfo>> {
        let state = self.shared.state();
        let mut out: Vec<LeaseInfo> = state
            .leases
            .iter()
            .filter(|((d, _), _)| d == destination)
            .map(|((d, p), row)| LeaseInfo {
                destination: d.clone(),
                partition: *p,
                owner: row.owner.clone(),
                epoch: row.epoch,
                live: row.expires > now(),
            })
            .collect();
        out.sort_by_key(|l| l.partition);
        Ok(out)
    }

    async fn fetch_pending(&self, lease: &Lease, query: &PendingQuery, limit: u32) -> Result<Vec<OutboxEntry>> {
        let state = self.shared.state();
        let mine = state.outbox.values().filter(|e| {
            e.state == EntryState::Pending && e.destination == lease.destination && e.partition == lease.partition
        });
        let out: Vec<OutboxEntry> = match query {
            PendingQuery::FromOldest => mine.take(limit as usize).cloned().collect(),
            PendingQuery::Stream(stream) => mine
                .filter(|e| &e.stream_id == stream)
                .take(limit as usize)
                .cloned()
                .collect(),
            PendingQuery::AfterSeq(cursor) => {
                let blocked: HashSet<&str> = mine
                    .clone()
                    .filter(|e| e.seq <= *cursor)
                    .map(|e| e.stream_id.as_str())
                    .collect();
                mine.filter(|e| e.seq > *cursor && !blocked.contains(e.stream_id.as_str()))
                    .take(limit as usize)
                    .cloned()
                    .collect()
            }
        };
        self.shared
            .rows_fetched
            .fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }

    async fn record_results(&self, lease: &Lease, results: &[EntryResult]) -> Result<()> {
        self.write(|state| {
            if !holds_live(state, lease) {
                return Err(Error::LeaseLost {
                    destination: lease.destination.clone(),
                    partition: lease.partition,
                });
            }
            for result in results {
                let Some(seq) = state.by_entry_id.get(&result.id).copied() else {
                    continue;
                };
                let Some(entry) = state.outbox.get_mut(&seq) else {
                    continue;
                };
                if entry.state != EntryState::Pending {
                    continue;
                }
                entry.attempts = result.attempts;
                match &result.outcome {
                    EntryOutcome::Delivered { at } => {
                        entry.state = EntryState::Delivered;
                        entry.delivered_at = Some(*at);
                    }
                    EntryOutcome::Retry { next_attempt_at, error } => {
                        entry.next_attempt_at = *next_attempt_at;
                        entry.last_error = Some(error.clone());
                    }
                    EntryOutcome::Dead { at, error } => {
                        entry.state = EntryState::Dead;
                        entry.dead_at = Some(*at);
                        entry.last_error = Some(error.clone());
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn destinations(&self) -> Result<Vec<String>> {
        let state = self.shared.state();
        let names: std::collections::BTreeSet<String> = state.outbox.values().map(|e| e.destination.clone()).collect();
        Ok(names.into_iter().collect())
    }

    async fn status(&self) -> Result<Vec<DestinationStatus>> {
        let state = self.shared.state();
        let mut by_dest: BTreeMap<String, (DestinationStatus, Option<OffsetDateTime>)> = BTreeMap::new();
        for e in state.outbox.values() {
            let (s, oldest) = by_dest.entry(e.destination.clone()).or_insert_with(|| {
                (
                    DestinationStatus {
                        destination: e.destination.clone(),
                        ..DestinationStatus::default()
                    },
                    None,
                )
            });
            match e.state {
                EntryState::Pending => {
                    s.pending += 1;
                    if e.attempts > 0 {
                        s.retrying += 1;
                    }
                    *oldest = Some(oldest.map_or(e.created_at, |o| o.min(e.created_at)));
                }
                EntryState::Delivered => s.delivered += 1,
                EntryState::Dead => s.dead += 1,
            }
        }
        let now = now();
        let statuses = by_dest
            .into_values()
            .map(|(mut s, oldest)| {
                s.oldest_pending_age_secs = oldest.map(|o| (now - o).as_seconds_f64().max(0.0));
                s
            })
            .collect();
        // Known destinations without entries are listed too, with zero counts.
        Ok(DestinationStatus::with_known(statuses, &self.options.destinations))
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<OutboxEntry>> {
        let state = self.shared.state();
        Ok(state
            .outbox
            .values()
            .filter(|e| filter.destination.as_deref().is_none_or(|d| e.destination == d))
            .filter(|e| filter.state.is_none_or(|s| e.state == s))
            .filter(|e| filter.stream_id.as_deref().is_none_or(|s| e.stream_id == s))
            .filter(|e| filter.after_seq.is_none_or(|a| e.seq > a))
            .take(filter.limit.unwrap_or(100) as usize)
            .cloned()
            .collect())
    }

    async fn replay_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64> {
        let batch = self
            .write(|state| {
                let seqs = state.dead_seqs(1, |e| entry_selected(e, id, destination));
                state.replay(&seqs)
            })
            .await;
        Ok(self.woken(batch).count)
    }

    async fn discard_dead_entry(&self, id: Uuid, destination: Option<&str>) -> Result<u64> {
        let batch = self
            .write(|state| {
                let seqs = state.dead_seqs(1, |e| entry_selected(e, id, destination));
                state.discard(&seqs)
            })
            .await;
        Ok(batch.count)
    }

    async fn replay_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch> {
        let batch = self
            .write(|state| {
                let seqs = state.dead_seqs(limit, batch_selection(destination, filter));
                state.replay(&seqs)
            })
            .await;
        Ok(self.woken(batch))
    }

    async fn discard_dead_batch(&self, destination: &str, filter: &DeadFilter, limit: u32) -> Result<BulkBatch> {
        Ok(self
            .write(|state| {
                let seqs = state.dead_seqs(limit, batch_selection(destination, filter));
                state.discard(&seqs)
            })
            .await)
    }

    async fn purge_delivered_batch(&self, before: OffsetDateTime, limit: u32) -> Result<u64> {
        Ok(self
            .write(|state| {
                let mut gone: Vec<(OffsetDateTime, i64, Uuid)> = state
                    .outbox
                    .values()
                    .filter(|e| e.state == EntryState::Delivered)
                    .filter_map(|e| e.delivered_at.filter(|at| *at < before).map(|at| (at, e.seq, e.id)))
                    .collect();
                gone.sort_unstable();
                gone.truncate(limit as usize);
                for (_, seq, id) in &gone {
                    state.outbox.remove(seq);
                    state.by_entry_id.remove(id);
                }
                gone.len() as u64
            })
            .await)
    }

    async fn disable_destination(&self, destination: &str, reason: &str) -> Result<()> {
        self.write(|state| {
            state.disabled.insert(
                destination.to_string(),
                DisabledDestination {
                    destination: destination.to_string(),
                    reason: reason.to_string(),
                    since: now(),
                },
            );
        })
        .await;
        Ok(())
    }

    async fn enable_destination(&self, destination: &str) -> Result<bool> {
        let enabled = self.write(|state| state.disabled.remove(destination).is_some()).await;
        if enabled {
            self.shared.wakeup.notify_waiters();
        }
        Ok(enabled)
    }

    async fn disabled_destinations(&self) -> Result<Vec<DisabledDestination>> {
        Ok(self.shared.state().disabled.values().cloned().collect())
    }

    async fn heartbeat(&self, destination: &str, owner: &str, ttl: Duration) -> Result<()> {
        self.write(|state| {
            let key = (destination.to_string(), owner.to_string());
            if ttl.is_zero() {
                state.relays.remove(&key);
            } else {
                state.relays.insert(key, ttl_end(ttl));
            }
        })
        .await;
        Ok(())
    }

    async fn live_relays(&self, destination: &str) -> Result<Vec<String>> {
        let now = now();
        Ok(self
            .shared
            .state()
            .relays
            .iter()
            .filter(|((d, _), expires)| d == destination && **expires > now)
            .map(|((_, owner), _)| owner.clone())
            .collect())
    }
}

/// The conformance [`Harness`](crate::Harness) for [`MemoryStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryHarness;

#[async_trait::async_trait]
impl crate::Harness for MemoryHarness {
    type Store = MemoryStore;

    async fn open(&self, options: StoreOptions) -> Arc<MemoryStore> {
        Arc::new(MemoryStore::new(options))
    }

    async fn reopen(&self, store: &MemoryStore, options: StoreOptions) -> Arc<MemoryStore> {
        Arc::new(store.reopen(options))
    }

    async fn app_write(&self, tx: &mut MemoryTransaction, key: &str) {
        tx.app_write(key);
    }

    async fn app_row_exists(&self, store: &MemoryStore, key: &str) -> bool {
        store.app_row_exists(key)
    }
}
