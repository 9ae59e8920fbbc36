//! In-process destinations with scripted and random faults, for tests that need no HTTP.
//!
//! A [`RecordingSink`] implements [`eskit::Destination`], records every attempt, and
//! fails on command: per entry, per stream or per event type ([`Fault`]), at random
//! with a seeded rate, after an optional delay, and can hold deliveries at a gate
//! until the test releases them. Clones share their state, so a test keeps one clone
//! and gives another to the relay.
//!
//! ```
//! use eskit_testkit::sinks::{Fault, RecordingSink};
//!
//! let sink = RecordingSink::new()
//!     .with_stream_fault("poison", Fault::Permanent)
//!     .with_random_failures(0.2, 42);
//! let mut destinations = eskit::Destinations::new();
//! destinations.insert("hook", sink.clone());
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use eskit::{DeliveryError, Destination, OutboxEntry};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::checker::Observed;

/// A scripted failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The first `times` attempts of each matching entry fail with a retryable error
    /// (carrying `retry_after` when set); later attempts succeed.
    FailTimes {
        /// How many attempts fail.
        times: u32,
        /// The retry-after hint to return.
        retry_after: Option<Duration>,
    },
    /// Every attempt fails with a retryable error.
    AlwaysRetryable,
    /// Every attempt fails with a permanent error (the entry is dead-lettered at once).
    Permanent,
    /// Every attempt fails with "gone" (like HTTP 410): the entry is dead-lettered and
    /// the relay disables the whole destination.
    Gone,
}

impl Fault {
    /// The first `times` attempts fail (retryable), then success.
    pub fn fail_times(times: u32) -> Self {
        Fault::FailTimes {
            times,
            retry_after: None,
        }
    }
}

/// One attempt the sink saw, recorded when it finished.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Entry id.
    pub id: Uuid,
    /// Stream id.
    pub stream_id: String,
    /// Event or message type.
    pub event_type: String,
    /// The entry's `seq`.
    pub seq: i64,
    /// The entry's partition.
    pub partition: u32,
    /// The source event's stream version, when the entry came from a route.
    pub stream_version: Option<u64>,
    /// The payload as JSON.
    pub payload: serde_json::Value,
    /// The attempt number the relay was making (`entry.attempts + 1`).
    pub attempt: u32,
    /// How many times this sink had been called for this id, including this call.
    pub call: u32,
    /// Whether the sink accepted the entry.
    pub success: bool,
    /// The error returned, if any.
    pub error: Option<String>,
    /// When the call began (before any gate or delay).
    pub started_at: OffsetDateTime,
    /// When the call returned.
    pub finished_at: OffsetDateTime,
}

#[derive(Debug, Default)]
struct Script {
    by_entry: HashMap<Uuid, Fault>,
    by_stream: HashMap<String, Fault>,
    by_type: HashMap<String, Fault>,
    random_rate: f64,
    rng: Option<StdRng>,
    delay: Option<Duration>,
}

#[derive(Debug, Default)]
struct Inner {
    script: Mutex<Script>,
    records: Mutex<Vec<SinkRecord>>,
    calls: Mutex<HashMap<Uuid, u32>>,
    gate: Mutex<Option<Arc<Semaphore>>>,
    waiting: AtomicUsize,
    in_flight: AtomicUsize,
    changed: Notify,
}

/// A recording, fault-injecting destination. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct RecordingSink {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RecordingSink {
    /// A sink that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scripts a fault for one entry id.
    pub fn with_entry_fault(self, id: Uuid, fault: Fault) -> Self {
        self.set_entry_fault(id, fault);
        self
    }

    /// Scripts a fault for every entry of a stream.
    pub fn with_stream_fault(self, stream_id: impl Into<String>, fault: Fault) -> Self {
        self.set_stream_fault(stream_id, fault);
        self
    }

    /// Scripts a fault for every entry of an event type.
    pub fn with_type_fault(self, event_type: impl Into<String>, fault: Fault) -> Self {
        lock(&self.inner.script).by_type.insert(event_type.into(), fault);
        self
    }

    /// Fails a share `rate` (0 to 1) of the attempts not otherwise scripted with a
    /// retryable error, drawn from a generator seeded with `seed`.
    pub fn with_random_failures(self, rate: f64, seed: u64) -> Self {
        {
            let mut s = lock(&self.inner.script);
            s.random_rate = rate.clamp(0.0, 1.0);
            s.rng = Some(StdRng::seed_from_u64(seed));
        }
        self
    }

    /// Waits this long inside every attempt (a slow destination).
    pub fn with_delay(self, delay: Duration) -> Self {
        lock(&self.inner.script).delay = Some(delay);
        self
    }

    /// Scripts a fault for one entry id (on a running sink).
    pub fn set_entry_fault(&self, id: Uuid, fault: Fault) {
        lock(&self.inner.script).by_entry.insert(id, fault);
    }

    /// Scripts a fault for every entry of a stream (on a running sink).
    pub fn set_stream_fault(&self, stream_id: impl Into<String>, fault: Fault) {
        lock(&self.inner.script).by_stream.insert(stream_id.into(), fault);
    }

    /// Removes every scripted and random fault (the delay stays).
    pub fn clear_faults(&self) {
        let mut s = lock(&self.inner.script);
        s.by_entry.clear();
        s.by_stream.clear();
        s.by_type.clear();
        s.random_rate = 0.0;
    }

    /// From now on every attempt waits at a gate until [`release`](Self::release) lets
    /// it through (or [`open`](Self::open) opens the gate).
    pub fn hold(&self) {
        let mut gate = lock(&self.inner.gate);
        if gate.is_none() {
            *gate = Some(Arc::new(Semaphore::new(0)));
        }
    }

    /// Lets `n` held attempts through the gate (no effect unless [`hold`](Self::hold)).
    pub fn release(&self, n: usize) {
        if let Some(gate) = lock(&self.inner.gate).as_ref() {
            gate.add_permits(n);
        }
    }

    /// Opens the gate for good: every waiting and later attempt goes through.
    pub fn open(&self) {
        if let Some(gate) = lock(&self.inner.gate).take() {
            gate.close();
        }
    }

    /// Attempts currently waiting at the gate.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Attempts currently inside the sink (waiting, delayed or deciding).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// A snapshot of every finished attempt, in the order they finished.
    pub fn records(&self) -> Vec<SinkRecord> {
        lock(&self.inner.records).clone()
    }

    /// The finished attempts for one entry id.
    pub fn records_for(&self, id: Uuid) -> Vec<SinkRecord> {
        lock(&self.inner.records)
            .iter()
            .filter(|r| r.id == id)
            .cloned()
            .collect()
    }

    /// Number of finished attempts.
    pub fn attempts(&self) -> usize {
        lock(&self.inner.records).len()
    }

    /// Ids accepted at least once, in the order of their first acceptance.
    pub fn delivered_ids(&self) -> Vec<Uuid> {
        let mut seen = std::collections::HashSet::new();
        lock(&self.inner.records)
            .iter()
            .filter(|r| r.success && seen.insert(r.id))
            .map(|r| r.id)
            .collect()
    }

    /// Number of distinct ids accepted at least once.
    pub fn delivered_count(&self) -> usize {
        self.delivered_ids().len()
    }

    /// Every finished attempt as the [`checker`](crate::checker) takes it.
    pub fn observed(&self) -> Vec<Observed> {
        lock(&self.inner.records)
            .iter()
            .map(|r| Observed::new(r.id, r.stream_id.clone(), r.success))
            .collect()
    }

    /// Waits until `predicate` holds for the records (re-checked after every attempt
    /// and gate change), or `within` passes. Returns whether it held.
    pub async fn wait_for(&self, within: Duration, mut predicate: impl FnMut(&[SinkRecord]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if predicate(&lock(&self.inner.records)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return predicate(&lock(&self.inner.records));
            }
        }
    }

    /// Waits until at least `n` attempts wait at the gate, or `within` passes.
    pub async fn wait_for_waiting(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.waiting() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.waiting() >= n;
            }
        }
    }

    fn decide(&self, entry: &OutboxEntry, call: u32) -> Result<(), DeliveryError> {
        let mut s = lock(&self.inner.script);
        let fault = s
            .by_entry
            .get(&entry.id)
            .or_else(|| s.by_stream.get(&entry.stream_id))
            .or_else(|| s.by_type.get(&entry.event_type))
            .copied();
        match fault {
            Some(Fault::Permanent) => Err(DeliveryError::permanent(format!(
                "sink: entry {} rejected permanently",
                entry.id
            ))),
            Some(Fault::Gone) => Err(DeliveryError::gone(format!("sink: gone (entry {})", entry.id))),
            Some(Fault::AlwaysRetryable) => Err(DeliveryError::retryable(format!(
                "sink: entry {} failed (call {call})",
                entry.id
            ))),
            Some(Fault::FailTimes { times, retry_after }) if call <= times => Err(DeliveryError::retryable(format!(
                "sink: entry {} failed (call {call} of {times} scripted failures)",
                entry.id
            ))
            .with_retry_after(retry_after)),
            Some(Fault::FailTimes { .. }) => Ok(()),
            None => {
                let rate = s.random_rate;
                let fail = rate > 0.0 && s.rng.as_mut().is_some_and(|rng| rng.random_bool(rate));
                if fail {
                    Err(DeliveryError::retryable(format!(
                        "sink: random failure of entry {} (call {call})",
                        entry.id
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Decrements a counter and wakes waiters when dropped (also when the relay aborts the
/// delivery future).
struct CountGuard<'a> {
    counter: &'a AtomicUsize,
    changed: &'a Notify,
}

impl<'a> CountGuard<'a> {
    fn new(counter: &'a AtomicUsize, changed: &'a Notify) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        changed.notify_waiters();
        Self { counter, changed }
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Destination for RecordingSink {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let started_at = OffsetDateTime::now_utc();
        let _in_flight = CountGuard::new(&self.inner.in_flight, &self.inner.changed);
        let gate = lock(&self.inner.gate).clone();
        if let Some(gate) = gate {
            let _waiting = CountGuard::new(&self.inner.waiting, &self.inner.changed);
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
        let delay = lock(&self.inner.script).delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let call = {
            let mut calls = lock(&self.inner.calls);
            let n = calls.entry(entry.id).or_default();
            *n += 1;
            *n
        };
        let result = self.decide(entry, call);
        let record = SinkRecord {
            id: entry.id,
            stream_id: entry.stream_id.clone(),
            event_type: entry.event_type.clone(),
            seq: entry.seq,
            partition: entry.partition,
            stream_version: entry.stream_version,
            payload: serde_json::from_str(entry.payload.get()).unwrap_or(serde_json::Value::Null),
            attempt: entry.attempts + 1,
            call,
            success: result.is_ok(),
            error: result.as_ref().err().map(|e| e.message.clone()),
            started_at,
            finished_at: OffsetDateTime::now_utc(),
        };
        lock(&self.inner.records).push(record);
        self.inner.changed.notify_waiters();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eskit::EntryState;

    fn entry(stream: &str) -> OutboxEntry {
        let now = OffsetDateTime::now_utc();
        OutboxEntry {
            seq: 1,
            id: Uuid::now_v7(),
            destination: "d".into(),
            stream_id: stream.into(),
            partition: 0,
            event_type: "T".into(),
            payload: eskit::RawValue::from_string("{\"a\":1}".into()).unwrap(),
            metadata: None,
            event_id: None,
            stream_version: None,
            state: EntryState::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            next_attempt_at: now,
            delivered_at: None,
            dead_at: None,
        }
    }

    #[tokio::test]
    async fn scripted_faults() {
        let e = entry("s");
        let sink = RecordingSink::new()
            .with_entry_fault(e.id, Fault::fail_times(2))
            .with_stream_fault("bad", Fault::Permanent);
        assert!(!sink.deliver(&e).await.unwrap_err().is_permanent());
        assert!(sink.deliver(&e).await.is_err());
        assert!(sink.deliver(&e).await.is_ok());
        assert!(sink.deliver(&entry("bad")).await.unwrap_err().is_permanent());
        assert_eq!(sink.delivered_ids(), vec![e.id]);
        assert_eq!(
            sink.records_for(e.id).iter().map(|r| r.call).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        sink.clear_faults();
        assert!(sink.deliver(&entry("bad")).await.is_ok());
    }

    #[tokio::test]
    async fn random_failures_are_reproducible() {
        let run = |seed| async move {
            let sink = RecordingSink::new().with_random_failures(0.5, seed);
            let mut out = Vec::new();
            for _ in 0..64 {
                out.push(sink.deliver(&entry("s")).await.is_ok());
            }
            out
        };
        let a = run(7).await;
        assert_eq!(a, run(7).await);
        assert!(a.iter().any(|ok| *ok) && a.iter().any(|ok| !*ok));
    }

    #[tokio::test]
    async fn gate_holds_until_released() {
        let sink = RecordingSink::new();
        sink.hold();
        let s2 = sink.clone();
        let task = tokio::spawn(async move { s2.deliver(&entry("s")).await });
        assert!(sink.wait_for_waiting(1, Duration::from_secs(5)).await);
        assert_eq!(sink.attempts(), 0);
        sink.release(1);
        assert!(sink.wait_for(Duration::from_secs(5), |r| r.len() == 1).await);
        assert!(task.await.unwrap().is_ok());
        sink.open();
        assert!(sink.deliver(&entry("s")).await.is_ok());
    }
}
