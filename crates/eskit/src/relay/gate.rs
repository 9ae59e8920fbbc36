//! Per-destination admission: a concurrency limit shared by all partitions of a
//! destination, a circuit breaker, and the disabled switch (410 Gone or an operator).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::relay::metrics as m;
use crate::retry::RetryPolicy;

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive retryable failures that open the circuit (default 20: high enough
    /// that scattered failures across many streams do not trip it, low enough that a
    /// dead endpoint is not hammered).
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe request is let through (default 5 s).
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 20,
            open_for: Duration::from_secs(5),
        }
    }
}

/// How the relay treats one destination. Unset fields fall back to the relay's config.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    /// Most deliveries in flight at once across all partitions (default: unlimited
    /// beyond the relay's per-partition concurrency).
    pub max_in_flight: Option<usize>,
    /// Circuit breaker (default: on, with [`BreakerConfig::default`]).
    pub breaker: Option<BreakerConfig>,
    /// Retry schedule for this destination.
    pub retry: Option<RetryPolicy>,
}

impl DestinationPolicy {
    /// Sets the in-flight limit.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }
    /// Sets the circuit breaker.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = Some(breaker);
        self
    }
    /// Sets the retry schedule.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Admission for one delivery.
pub(crate) struct Pass {
    _permit: Option<OwnedSemaphorePermit>,
    probe: bool,
}

/// Admission control for one destination, shared by its partition workers.
pub(crate) struct Gate {
    name: String,
    limit: Option<Arc<Semaphore>>,
    breaker: BreakerConfig,
    circuit: Mutex<Circuit>,
    disabled: AtomicBool,
    /// Bumped by every [`Gate::disable_locally`], so a store read that started before a
    /// worker saw a 410 cannot re-enable the gate with its stale answer.
    local_disables: AtomicU64,
    pub retry: RetryPolicy,
}

impl Gate {
    pub fn new(name: &str, policy: &DestinationPolicy, default_retry: RetryPolicy) -> Self {
        Self {
            name: name.to_string(),
            limit: policy.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            breaker: policy.breaker.unwrap_or_default(),
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
            disabled: AtomicBool::new(false),
            local_disables: AtomicU64::new(0),
            retry: policy.retry.unwrap_or(default_retry),
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    pub fn set_disabled(&self, disabled: bool) {
        self.disabled.store(disabled, Ordering::Relaxed);
    }

    /// A worker saw the destination gone: disabled at once, before the store knows.
    pub fn disable_locally(&self) {
        self.local_disables.fetch_add(1, Ordering::SeqCst);
        self.set_disabled(true);
    }

    /// A token to take before reading the disabled destinations from the store.
    pub fn disables_seen(&self) -> u64 {
        self.local_disables.load(Ordering::SeqCst)
    }

    /// Applies the store's answer read after `seen` was taken: "disabled" always wins;
    /// "enabled" only when no worker disabled the gate since (else it is stale).
    pub fn sync_disabled(&self, disabled: bool, seen: u64) {
        if disabled || self.disables_seen() == seen {
            self.set_disabled(disabled);
        }
    }

    /// Waits for a slot; `Err(until)` when the circuit is open (or a probe is already
    /// out) or the destination is disabled: the caller parks the stream until then.
    pub async fn admit(&self) -> Result<Pass, OffsetDateTime> {
        if self.is_disabled() {
            return Err(crate::clock::now() + self.breaker.open_for);
        }
        let probe = {
            let mut c = self.circuit.lock().unwrap_or_else(|e| e.into_inner());
            match *c {
                Circuit::Closed { .. } => false,
                Circuit::Open { until } if until > Instant::now() => {
                    return Err(crate::clock::now() + (until - Instant::now()));
                }
                Circuit::Open { .. } => {
                    *c = Circuit::HalfOpen;
                    self.gauge(&c);
                    true
                }
                Circuit::HalfOpen => {
                    return Err(crate::clock::now() + (self.breaker.open_for / 10).max(Duration::from_millis(10)));
                }
            }
        };
        let permit = match &self.limit {
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        };
        Ok(Pass { _permit: permit, probe })
    }

    /// Records an attempt's result: `Some(true)` success, `Some(false)` a retryable
    /// failure (counts toward opening the circuit), `None` neither (a permanent
    /// rejection of one entry says nothing about the destination's health).
    pub fn report(&self, pass: Pass, healthy: Option<bool>) {
        let mut c = self.circuit.lock().unwrap_or_else(|e| e.into_inner());
        let next = match (healthy, *c) {
            (Some(true), _) => Circuit::Closed { failures: 0 },
            (Some(false), Circuit::HalfOpen) if pass.probe => self.open(),
            (Some(false), Circuit::Closed { failures }) if failures + 1 >= self.breaker.failure_threshold => {
                self.open()
            }
            (Some(false), Circuit::Closed { failures }) => Circuit::Closed { failures: failures + 1 },
            (None, Circuit::HalfOpen) if pass.probe => Circuit::Closed { failures: 0 },
            (_, state) => state,
        };
        if next != *c {
            *c = next;
            self.gauge(&c);
        }
    }

    fn open(&self) -> Circuit {
        tracing::warn!(destination = %self.name, open_for = ?self.breaker.open_for, "circuit opened");
        Circuit::Open {
            until: Instant::now() + self.breaker.open_for,
        }
    }

    fn gauge(&self, c: &Circuit) {
        let v = match c {
            Circuit::Closed { .. } => 0.0,
            Circuit::Open { .. } => 1.0,
            Circuit::HalfOpen => 2.0,
        };
        metrics::gauge!(m::CIRCUIT_STATE, "destination" => self.name.clone()).set(v);
    }

    /// "closed", "open" or "half-open".
    pub fn circuit_state(&self) -> &'static str {
        match *self.circuit.lock().unwrap_or_else(|e| e.into_inner()) {
            Circuit::Closed { .. } => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen => "half-open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(threshold: u32, open_ms: u64) -> Gate {
        let policy = DestinationPolicy::default().breaker(BreakerConfig {
            failure_threshold: threshold,
            open_for: Duration::from_millis(open_ms),
        });
        Gate::new("d", &policy, RetryPolicy::default())
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_probes_one_at_a_time() {
        let g = gate(3, 50);
        for _ in 0..3 {
            let p = g.admit().await.expect("closed admits");
            g.report(p, Some(false));
        }
        assert_eq!(g.circuit_state(), "open");
        assert!(g.admit().await.is_err(), "open circuit refuses");
        tokio::time::advance(Duration::from_millis(60)).await;
        let probe = g.admit().await.expect("one probe after open_for");
        assert!(g.admit().await.is_err(), "only one probe at a time");
        g.report(probe, Some(true));
        assert_eq!(g.circuit_state(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_and_disabled_refuses() {
        let g = gate(1, 10);
        let p = g.admit().await.unwrap();
        g.report(p, Some(false));
        tokio::time::advance(Duration::from_millis(15)).await;
        let probe = g.admit().await.unwrap();
        g.report(probe, Some(false));
        assert_eq!(g.circuit_state(), "open");
        let g = gate(5, 10);
        g.set_disabled(true);
        assert!(g.admit().await.is_err());
    }

    #[test]
    fn a_stale_store_read_does_not_undo_a_local_disable() {
        let g = gate(5, 10);
        let seen = g.disables_seen();
        // A worker sees 410 while the supervisor's read (taken before) is in flight.
        g.disable_locally();
        g.sync_disabled(false, seen);
        assert!(g.is_disabled(), "the stale 'enabled' answer is ignored");
        // The next read, taken after the disable, is applied (an operator re-enabled it).
        let seen = g.disables_seen();
        g.sync_disabled(false, seen);
        assert!(!g.is_disabled());
        g.sync_disabled(true, seen);
        assert!(g.is_disabled(), "'disabled' from the store always applies");
    }
}
