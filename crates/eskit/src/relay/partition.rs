//! The partition worker: the one place that decides what to deliver next, in which
//! order, and what a failure means. One worker runs per leased (destination, partition).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, info_span, warn};

use crate::backend::{EntryOutcome, EntryResult, Lease, OutboxStore, PendingQuery};
use crate::destination::{Destination, FailureKind};
use crate::error::{Error, Result};
use crate::outbox::OutboxEntry;
use crate::relay::config::RelayConfig;
use crate::relay::gate::Gate;
use crate::relay::metrics as m;

/// Streams whose head is failing or not yet due, with the time to look at them again.
type Parked = HashMap<String, OffsetDateTime>;

pub(crate) struct PartitionWorker {
    pub store: Arc<dyn OutboxStore>,
    pub destination: Arc<dyn Destination>,
    pub gate: Arc<Gate>,
    pub config: Arc<RelayConfig>,
    pub lease: Lease,
    pub cancel: CancellationToken,
    pub metrics: m::WorkerMetrics,
}

/// Why a worker stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Shutdown,
    LeaseLost,
}

struct State {
    /// Highest `seq` seen by a partition scan (the fast path reads after it).
    cursor: Option<i64>,
    /// Where an unfinished re-scan goes on: the last `seq` of its previous full page.
    rescan_after: Option<i64>,
    parked: Parked,
    last_rescan: Instant,
    lease_renewed: Instant,
}

impl PartitionWorker {
    pub async fn run(self) -> Exit {
        let span = info_span!("partition", destination = %self.lease.destination, partition = self.lease.partition);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(self) -> Exit {
        let wakeup = self.store.partition_wakeup(self.lease.partition);
        let mut state = State {
            cursor: None,
            rescan_after: None,
            parked: Parked::new(),
            last_rescan: Instant::now(),
            lease_renewed: Instant::now(),
        };
        let mut failures = 0u32;
        // This worker's share of the destination's parked-streams gauge.
        let mut parked_gauge = m::GaugeGuard::new(m::PARKED_STREAMS, &self.lease.destination);
        loop {
            parked_gauge.set(state.parked.len() as f64);
            if self.cancel.is_cancelled() {
                return Exit::Shutdown;
            }
            // Register interest before reading, so a commit between the read and the
            // wait still wakes us.
            let notified = wakeup.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            match self.step(&mut state).await {
                Ok(Step::More) => {
                    failures = 0;
                    continue;
                }
                Ok(Step::Idle) => failures = 0,
                Err(Error::LeaseLost { .. }) => return Exit::LeaseLost,
                Err(err) => {
                    failures += 1;
                    let backoff = self.gate.retry.base_delay(failures).min(Duration::from_secs(30));
                    warn!(error = %err, ?backoff, "relay step failed; backing off");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Exit::Shutdown,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            }

            let wait = self.idle_wait(&state);
            tokio::select! {
                _ = self.cancel.cancelled() => return Exit::Shutdown,
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long to sleep when there is nothing to do: the poll interval, or less when a
    /// parked stream becomes due sooner.
    fn idle_wait(&self, state: &State) -> Duration {
        let now = crate::clock::now();
        let soonest = state.parked.values().min().map(|due| {
            let d = *due - now;
            if d.is_negative() {
                Duration::ZERO
            } else {
                d.unsigned_abs()
            }
        });
        soonest.map_or(self.config.poll_interval, |d| d.min(self.config.poll_interval))
    }

    async fn renew_if_due(&self, state: &mut State) -> Result<()> {
        if state.lease_renewed.elapsed() < self.config.lease_ttl / 3 {
            return Ok(());
        }
        if !self.store.renew_lease(&self.lease, self.config.lease_ttl).await? {
            return Err(self.lease_lost());
        }
        state.lease_renewed = Instant::now();
        Ok(())
    }

    fn lease_lost(&self) -> Error {
        Error::LeaseLost {
            destination: self.lease.destination.clone(),
            partition: self.lease.partition,
        }
    }

    /// Whether our lease is still certainly valid (with a safety margin).
    fn lease_fresh(&self, state: &State) -> bool {
        state.lease_renewed.elapsed() < self.config.lease_ttl.mul_f64(0.8)
    }

    /// Reads one batch, delivers what may go now, records the results.
    async fn step(&self, state: &mut State) -> Result<Step> {
        self.renew_if_due(state).await?;
        if self.gate.is_disabled() {
            return Ok(Step::Idle);
        }
        let limit = self.config.batch_size;
        let now = crate::clock::now();

        let mut fetched: Vec<OutboxEntry> = Vec::new();
        let mut full = false;

        // Parked streams that are due again are read from their head.
        let due: Vec<String> = state
            .parked
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| s.clone())
            .take(self.config.concurrency)
            .collect();
        for stream in due {
            state.parked.remove(&stream);
            let rows = self
                .store
                .fetch_pending(&self.lease, &PendingQuery::Stream(stream), limit)
                .await?;
            full |= rows.len() as u32 >= limit;
            fetched.extend(rows);
        }

        // The partition scan: a periodic re-scan from the oldest pending entry picks up
        // late commits; otherwise the fast path reads only what is new.
        let rescan = state.cursor.is_none() || state.last_rescan.elapsed() >= self.config.rescan_interval;
        let query = match (rescan, state.cursor) {
            (false, Some(c)) => PendingQuery::AfterSeq(c),
            _ => PendingQuery::FromOldest,
        };
        if rescan {
            state.last_rescan = Instant::now();
        }
        // What the fast path has already seen: a re-scan needs to go on past its first
        // page only while it is behind this.
        let horizon = state.cursor;
        let claim = debug_span!("claim", rescan, limit);
        let rows = self
            .store
            .fetch_pending(&self.lease, &query, limit)
            .instrument(claim)
            .await?;
        full |= rows.len() as u32 >= limit;
        if let Some(max) = rows.iter().map(|e| e.seq).max() {
            state.cursor = Some(state.cursor.map_or(max, |c| c.max(max)));
        }
        // The last seq of a full page that ends before the horizon: where a re-scan goes
        // on. A page that reaches the horizon has caught up with the fast path, which
        // reads on from the cursor anyway (going on would read the same rows twice).
        let page_end = |rows: &[OutboxEntry]| {
            (rows.len() as u32 >= limit)
                .then(|| rows.iter().map(|e| e.seq).max())
                .flatten()
                .filter(|end| horizon.is_some_and(|h| *end < h))
        };
        if rescan {
            state.rescan_after = page_end(&rows);
        } else if let Some(after) = state.rescan_after {
            // A re-scan whose page was full goes on from where it stopped, one page per
            // step: otherwise a backlog at the head (a parked stream with more pending
            // entries than a batch) would hide a late commit further on for as long as it
            // lasts. Its streams have entries at or below `after`, so `AfterSeq` skips them.
            let more = self
                .store
                .fetch_pending(&self.lease, &PendingQuery::AfterSeq(after), limit)
                .instrument(debug_span!("claim", rescan_after = after, limit))
                .await?;
            full |= more.len() as u32 >= limit;
            state.rescan_after = page_end(&more);
            if let Some(max) = more.iter().map(|e| e.seq).max() {
                state.cursor = Some(state.cursor.map_or(max, |c| c.max(max)));
            }
            fetched.extend(more);
        }
        fetched.extend(rows);

        let chains = plan_chains(fetched, &mut state.parked, now);
        if chains.is_empty() {
            return Ok(if full { Step::More } else { Step::Idle });
        }
        if !self.lease_fresh(state) {
            // Our lease may have lapsed while reading: deliver nothing we cannot record.
            self.renew_if_due(state).await?;
        }

        let mut results = self.deliver_chains(chains, state).await;
        if !results.is_empty() {
            // A batch's deliveries are recorded as of now (within the batch's duration of
            // each acknowledgement): one time for the batch lets the backend write it
            // with one simple statement.
            let recorded_at = crate::clock::now();
            for result in &mut results {
                if let EntryOutcome::Delivered { at } = &mut result.outcome {
                    *at = recorded_at;
                }
            }
            let started = Instant::now();
            self.store
                .record_results(&self.lease, &results)
                .instrument(debug_span!("record", results = results.len()))
                .await?;
            self.metrics.batch_duration.record(started.elapsed().as_secs_f64());
        }
        Ok(Step::More)
    }

    /// Delivers chains concurrently (each chain in order), returns the results to record
    /// and parks streams whose head failed.
    async fn deliver_chains(&self, chains: Vec<Vec<OutboxEntry>>, state: &mut State) -> Vec<EntryResult> {
        let mut results = Vec::new();
        let mut pending = chains.into_iter();
        let mut running = FuturesUnordered::new();
        let grace_deadline = std::cell::Cell::new(None::<tokio::time::Instant>);

        loop {
            while running.len() < self.config.concurrency && !self.cancel.is_cancelled() {
                match pending.next() {
                    Some(chain) => running.push(self.deliver_chain(chain)),
                    None => break,
                }
            }
            if running.is_empty() {
                break;
            }
            if self.cancel.is_cancelled() && grace_deadline.get().is_none() {
                grace_deadline.set(Some(tokio::time::Instant::now() + self.config.shutdown_grace));
            }
            let next = match grace_deadline.get() {
                Some(deadline) => match tokio::time::timeout_at(deadline, running.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        warn!(
                            abandoned = running.len(),
                            "shutdown grace over; in-flight entries stay pending"
                        );
                        break;
                    }
                },
                None => tokio::select! {
                    next = running.next() => next,
                    _ = self.cancel.cancelled() => continue,
                },
            };
            let Some(outcome) = next else { break };
            if let Some(park) = outcome.park {
                state.parked.insert(outcome.stream, park);
            }
            results.extend(outcome.results);
        }
        results
    }

    /// Delivers one stream's entries in order; stops at the first failure.
    async fn deliver_chain(&self, chain: Vec<OutboxEntry>) -> ChainOutcome {
        let stream = chain[0].stream_id.clone();
        let mut results = Vec::with_capacity(chain.len());
        let mut park = None;
        let len = chain.len();
        for (i, entry) in chain.into_iter().enumerate() {
            let pass = match self.gate.admit().await {
                Ok(pass) => pass,
                Err(until) => {
                    // Circuit open or destination disabled: the entry stays pending as it is.
                    park = Some(until);
                    break;
                }
            };
            let attempt = entry.attempts + 1;
            let span = info_span!("deliver", entry_id = %entry.id, stream = %entry.stream_id, attempt);
            let mut in_flight = m::GaugeGuard::of(self.metrics.in_flight.clone());
            in_flight.set(1.0);
            let outcome = self.destination.deliver(&entry).instrument(span).await;
            drop(in_flight);
            let now = crate::clock::now();
            let healthy = match &outcome {
                Ok(()) => Some(true),
                Err(e) if e.kind == FailureKind::Retryable => Some(false),
                Err(_) => None,
            };
            self.gate.report(pass, healthy);
            match outcome {
                Ok(()) => {
                    let latency = (now - entry.created_at).as_seconds_f64().max(0.0);
                    self.metrics.delivered.increment(1);
                    self.metrics.latency.record(latency);
                    results.push(EntryResult {
                        id: entry.id,
                        attempts: attempt,
                        outcome: EntryOutcome::Delivered { at: now },
                    });
                }
                Err(err) => {
                    self.metrics.failed.increment(1);
                    let error = err.message.clone();
                    if err.kind == FailureKind::Gone {
                        self.disable_destination(&error).await;
                    }
                    let dead = err.is_permanent() || self.gate.retry.exhausted(attempt);
                    if dead {
                        self.metrics.dead.increment(1);
                        warn!(entry_id = %entry.id, stream = %entry.stream_id, attempt, error = %error, "entry dead-lettered");
                        results.push(EntryResult {
                            id: entry.id,
                            attempts: attempt,
                            outcome: EntryOutcome::Dead { at: now, error },
                        });
                        // The stream continues with its next entry.
                        if i + 1 < len {
                            park = Some(now);
                        }
                    } else {
                        let delay = self.gate.retry.next_delay(attempt, err.retry_after);
                        let next_attempt_at = now + delay;
                        debug!(entry_id = %entry.id, attempt, ?delay, error = %error, "delivery failed; will retry");
                        results.push(EntryResult {
                            id: entry.id,
                            attempts: attempt,
                            outcome: EntryOutcome::Retry { next_attempt_at, error },
                        });
                        park = Some(next_attempt_at);
                    }
                    break;
                }
            }
        }
        ChainOutcome { stream, results, park }
    }
}

impl PartitionWorker {
    /// A `410 Gone`: stop delivering to this destination until an operator re-enables it.
    async fn disable_destination(&self, error: &str) {
        self.gate.disable_locally();
        warn!(destination = %self.lease.destination, error, "destination gone; disabled until re-enabled");
        if let Err(err) = self.store.disable_destination(&self.lease.destination, error).await {
            warn!(error = %err, "could not record the disabled destination");
        }
    }
}

enum Step {
    /// There may be more to do right away.
    More,
    /// Nothing to do: wait for a wakeup or the poll interval.
    Idle,
}

struct ChainOutcome {
    stream: String,
    results: Vec<EntryResult>,
    park: Option<OffsetDateTime>,
}

/// Groups fetched entries into per-stream chains that may be delivered now, in `seq`
/// order. A stream that is parked is skipped; a stream whose head is not yet due is
/// parked until then; a chain stops before the first entry that is not yet due.
fn plan_chains(mut fetched: Vec<OutboxEntry>, parked: &mut Parked, now: OffsetDateTime) -> Vec<Vec<OutboxEntry>> {
    fetched.sort_by_key(|e| e.seq);
    let mut seen = HashSet::with_capacity(fetched.len());
    let mut by_stream: BTreeMap<i64, Vec<OutboxEntry>> = BTreeMap::new();
    let mut first_seq: HashMap<String, i64> = HashMap::new();
    for entry in fetched {
        if !seen.insert(entry.id) {
            continue;
        }
        let key = *first_seq.entry(entry.stream_id.clone()).or_insert(entry.seq);
        by_stream.entry(key).or_default().push(entry);
    }
    let mut chains = Vec::with_capacity(by_stream.len());
    for (_, entries) in by_stream {
        let stream = entries[0].stream_id.clone();
        if parked.contains_key(&stream) {
            continue;
        }
        let head_due = entries[0].next_attempt_at;
        if head_due > now {
            parked.insert(stream, head_due);
            continue;
        }
        let chain: Vec<_> = entries.into_iter().take_while(|e| e.next_attempt_at <= now).collect();
        chains.push(chain);
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::EntryState;
    use serde_json::value::RawValue;

    fn entry(seq: i64, stream: &str, due_in_secs: i64) -> OutboxEntry {
        let now = crate::clock::now();
        OutboxEntry {
            seq,
            id: uuid::Uuid::now_v7(),
            destination: "d".into(),
            stream_id: stream.into(),
            partition: 0,
            event_type: "t".into(),
            payload: RawValue::from_string("{}".into()).unwrap(),
            metadata: None,
            event_id: None,
            stream_version: None,
            state: EntryState::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            next_attempt_at: now + time::Duration::seconds(due_in_secs),
            delivered_at: None,
            dead_at: None,
        }
    }

    #[test]
    fn chains_keep_stream_order_and_skip_parked() {
        let now = crate::clock::now() + time::Duration::milliseconds(10);
        let mut parked = Parked::new();
        parked.insert("c".into(), now + time::Duration::seconds(5));
        let rows = vec![
            entry(5, "a", 0),
            entry(1, "a", 0),
            entry(2, "b", 60),
            entry(3, "b", 0),
            entry(4, "c", 0),
        ];
        let chains = plan_chains(rows, &mut parked, now);
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 5]);
        assert!(parked.contains_key("b"), "a stream whose head is not due is parked");
    }
}
