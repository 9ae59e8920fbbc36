//! The relay: a background task that delivers outbox entries to destinations.
//!
//! A supervisor shares the (destination, partition) leases with other relay instances
//! and runs one [`partition`] worker per lease it holds. Everything the relay decides
//! lives in this module, once, for every backend.

mod config;
mod gate;
pub mod metrics;
mod partition;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::RelayConfig;
pub use gate::{BreakerConfig, DestinationPolicy};

use crate::backend::{Lease, OutboxStore};
use crate::destination::{Destination, Destinations};
use crate::error::Result;
use gate::Gate;
use partition::{Exit, PartitionWorker};

/// Builds and starts a relay.
pub struct Relay {
    store: Arc<dyn OutboxStore>,
    destinations: Destinations,
    policies: HashMap<String, DestinationPolicy>,
    config: RelayConfig,
}

impl Relay {
    /// A relay over `store` delivering to `destinations`, with default options.
    pub fn new(store: Arc<dyn OutboxStore>, destinations: Destinations) -> Self {
        Self {
            store,
            destinations,
            policies: HashMap::new(),
            config: RelayConfig::default(),
        }
    }

    /// Sets how one destination is treated (in-flight limit, circuit breaker, retry).
    pub fn policy(mut self, destination: impl Into<String>, policy: DestinationPolicy) -> Self {
        self.policies.insert(destination.into(), policy);
        self
    }

    /// Sets the options.
    pub fn config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    /// Starts the relay on the current tokio runtime.
    pub fn start(self) -> RelayHandle {
        let cancel = CancellationToken::new();
        let gates = self
            .destinations
            .names()
            .into_iter()
            .map(|name| {
                let policy = self.policies.get(&name).cloned().unwrap_or_default();
                let gate = Arc::new(Gate::new(&name, &policy, self.config.retry));
                (name, gate)
            })
            .collect();
        let gates: HashMap<String, Arc<Gate>> = gates;
        let supervisor = Supervisor {
            store: self.store,
            destinations: self.destinations,
            gates: gates.clone(),
            config: Arc::new(self.config),
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(supervisor.run());
        RelayHandle { cancel, task, gates }
    }
}

/// A running relay.
pub struct RelayHandle {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    gates: HashMap<String, Arc<Gate>>,
}

impl RelayHandle {
    /// Circuit state per destination: `"closed"`, `"open"` or `"half-open"`.
    pub fn circuit_states(&self) -> Vec<(String, &'static str)> {
        self.circuits().states()
    }

    /// A cheap, cloneable view of the circuit states that outlives borrows of the
    /// handle (for an admin API running beside the relay).
    pub fn circuits(&self) -> Circuits {
        Circuits {
            gates: Arc::new(self.gates.clone()),
        }
    }

    /// Stops gracefully: no new deliveries start, in-flight ones finish (or are abandoned
    /// after the grace period and stay pending), results are recorded, leases released.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(err) = self.task.await {
            warn!(error = %err, "relay task ended abnormally");
        }
    }

    /// Stops at once without recording in-flight results, as a crash would (for tests
    /// of at-least-once delivery). Leases are not released; they expire.
    pub fn abort(self) {
        self.task.abort();
    }

    /// A token that stops the relay when cancelled.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// The circuit state of each destination of a running relay (see [`RelayHandle::circuits`]).
#[derive(Clone)]
pub struct Circuits {
    gates: Arc<HashMap<String, Arc<Gate>>>,
}

impl std::fmt::Debug for Circuits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.states()).finish()
    }
}

impl Circuits {
    /// Circuit state per destination, sorted by name: `"closed"`, `"open"` or `"half-open"`.
    pub fn states(&self) -> Vec<(String, &'static str)> {
        let mut states: Vec<_> = self.gates.iter().map(|(n, g)| (n.clone(), g.circuit_state())).collect();
        states.sort();
        states
    }

    /// The circuit state of one destination (`None` when the relay does not deliver to it).
    pub fn state(&self, destination: &str) -> Option<&'static str> {
        self.gates.get(destination).map(|g| g.circuit_state())
    }
}

struct Supervisor {
    store: Arc<dyn OutboxStore>,
    destinations: Destinations,
    gates: HashMap<String, Arc<Gate>>,
    config: Arc<RelayConfig>,
    cancel: CancellationToken,
}

type WorkerKey = (String, u32);

struct Running {
    cancel: CancellationToken,
    lease: Lease,
}

impl Supervisor {
    async fn run(self) {
        let mut workers: JoinSet<(WorkerKey, Exit)> = JoinSet::new();
        let mut running: HashMap<WorkerKey, Running> = HashMap::new();
        let tick = (self.config.lease_ttl / 3).max(Duration::from_millis(50));
        info!(owner = %self.config.owner, destinations = ?self.destinations.names(), "relay started");
        loop {
            if let Err(err) = self.balance(&mut workers, &mut running).await {
                warn!(error = %err, "lease balancing failed; retrying");
            }
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                Some(done) = workers.join_next() => {
                    if let Ok((key, exit)) = done {
                        if exit == Exit::LeaseLost {
                            warn!(destination = %key.0, partition = key.1, "lease lost");
                        }
                        // A partition handed back to another relay is released at once.
                        if let Some(r) = running.remove(&key)
                            && exit == Exit::Shutdown
                            && let Err(err) = self.store.release_lease(&r.lease).await
                        {
                            warn!(error = %err, "could not release lease; it will expire");
                        }
                    }
                }
                _ = tokio::time::sleep(tick) => {}
            }
        }
        for r in running.values() {
            r.cancel.cancel();
        }
        while let Some(done) = workers.join_next().await {
            if let Ok((key, Exit::Shutdown)) = done
                && let Some(r) = running.remove(&key)
                && let Err(err) = self.store.release_lease(&r.lease).await
            {
                warn!(error = %err, "could not release lease; it will expire");
            }
        }
        for name in self.destinations.names() {
            if let Err(err) = self.store.heartbeat(&name, &self.config.owner, Duration::ZERO).await {
                warn!(error = %err, "could not sign off; the heartbeat will expire");
            }
        }
        info!(owner = %self.config.owner, "relay stopped");
    }

    /// Takes free or expired partitions up to a fair share, gives up extras when other
    /// relays are alive.
    async fn balance(
        &self,
        workers: &mut JoinSet<(WorkerKey, Exit)>,
        running: &mut HashMap<WorkerKey, Running>,
    ) -> Result<()> {
        let partitions = self.store.partitions();
        let seen: HashMap<&str, u64> = self
            .gates
            .iter()
            .map(|(name, gate)| (name.as_str(), gate.disables_seen()))
            .collect();
        let disabled: Vec<String> = self
            .store
            .disabled_destinations()
            .await?
            .into_iter()
            .map(|d| d.destination)
            .collect();
        for (name, gate) in &self.gates {
            gate.sync_disabled(
                disabled.contains(name),
                seen.get(name.as_str()).copied().unwrap_or_default(),
            );
        }
        for name in self.destinations.names() {
            let Some(destination) = self.destinations.get(&name).cloned() else {
                continue;
            };
            // Relays that hold no lease yet count too (they announce themselves).
            self.store
                .heartbeat(&name, &self.config.owner, self.config.lease_ttl)
                .await?;
            let relays = self.store.live_relays(&name).await?;
            let leases = self.store.list_leases(&name).await?;
            let mut owners: Vec<&str> = leases.iter().filter(|l| l.live).map(|l| l.owner.as_str()).collect();
            owners.extend(relays.iter().map(String::as_str));
            owners.push(&self.config.owner);
            owners.sort_unstable();
            owners.dedup();
            let share = partitions.div_ceil(owners.len() as u32);
            let mine: Vec<u32> = running.keys().filter(|(d, _)| *d == name).map(|(_, p)| *p).collect();
            let mut held = mine.len() as u32;

            // Too many: hand one back per tick (the worker finishes its batch first).
            if held > share
                && let Some(p) = mine.iter().max()
                && let Some(r) = running.get(&(name.clone(), *p))
            {
                r.cancel.cancel();
            }

            let taken: HashMap<u32, &str> = leases
                .iter()
                .filter(|l| l.live)
                .map(|l| (l.partition, l.owner.as_str()))
                .collect();
            for partition in 0..partitions {
                if held >= share {
                    break;
                }
                let key = (name.clone(), partition);
                if running.contains_key(&key) || taken.get(&partition).is_some_and(|o| *o != self.config.owner) {
                    continue;
                }
                let previous = leases
                    .iter()
                    .find(|l| l.partition == partition)
                    .map(|l| l.owner.clone());
                if let Some(lease) = self
                    .store
                    .try_acquire_lease(&name, partition, &self.config.owner, self.config.lease_ttl)
                    .await?
                {
                    if previous.is_some_and(|o| o != self.config.owner) {
                        ::metrics::counter!(metrics::LEASE_TAKEOVERS, "destination" => name.clone()).increment(1);
                    }
                    held += 1;
                    let gate = self.gates[&name].clone();
                    self.spawn_worker(workers, running, lease, destination.clone(), gate);
                }
            }
            ::metrics::gauge!(metrics::OWNED_PARTITIONS, "destination" => name.clone()).set(f64::from(held));
        }
        Ok(())
    }

    fn spawn_worker(
        &self,
        workers: &mut JoinSet<(WorkerKey, Exit)>,
        running: &mut HashMap<WorkerKey, Running>,
        lease: Lease,
        destination: Arc<dyn Destination>,
        gate: Arc<Gate>,
    ) {
        let key = (lease.destination.clone(), lease.partition);
        let cancel = self.cancel.child_token();
        let worker = PartitionWorker {
            store: self.store.clone(),
            destination,
            gate,
            config: self.config.clone(),
            metrics: metrics::WorkerMetrics::new(&lease.destination),
            lease: lease.clone(),
            cancel: cancel.clone(),
        };
        running.insert(key.clone(), Running { cancel, lease });
        workers.spawn(async move { (key, worker.run().await) });
    }
}
