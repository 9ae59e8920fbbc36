//! Relay options.

use std::time::Duration;

use crate::retry::RetryPolicy;

/// How the relay runs. Build with [`RelayConfig::default`] and the setters.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Entries read per batch and partition (default 200).
    pub batch_size: u32,
    /// Streams delivered at once per partition (default 32).
    pub concurrency: usize,
    /// Poll interval when no wakeup arrives (default 500 ms).
    pub poll_interval: Duration,
    /// Lease duration; renewed at a third of it (default 10 s).
    pub lease_ttl: Duration,
    /// How often a partition is re-scanned from its oldest pending entry, which picks up
    /// entries that committed after later ones were seen (default 1 s).
    pub rescan_interval: Duration,
    /// How long shutdown waits for in-flight deliveries before abandoning them
    /// (abandoned entries stay pending; default 10 s).
    pub shutdown_grace: Duration,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Owner id written into leases (default: host, pid and a random suffix).
    pub owner: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            concurrency: 32,
            poll_interval: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(10),
            rescan_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            owner: default_owner(),
        }
    }
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "relay".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

impl RelayConfig {
    /// Sets the batch size.
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Sets the per-partition concurrency across streams.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    /// Sets the poll interval.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }
    /// Sets the lease duration.
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = d;
        self
    }
    /// Sets the re-scan interval.
    pub fn rescan_interval(mut self, d: Duration) -> Self {
        self.rescan_interval = d;
        self
    }
    /// Sets the shutdown grace period.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }
    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// Sets the owner id.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }
}
