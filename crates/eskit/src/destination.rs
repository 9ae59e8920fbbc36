//! Destinations: where the relay delivers outbox entries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::outbox::OutboxEntry;

/// How a failed delivery should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth retrying: timeouts, connection errors, 5xx, 429.
    Retryable,
    /// Will never succeed: the entry goes to the dead-letter queue at once.
    Permanent,
    /// The destination is gone for good (HTTP 410): the entry goes to the dead-letter
    /// queue and the destination is disabled until an operator re-enables it.
    Gone,
}

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Retryable or permanent.
    pub kind: FailureKind,
    /// What went wrong (stored as the entry's last error; must not contain secrets).
    pub message: String,
    /// The destination's own "retry after" hint; wins over the backoff schedule.
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    /// A retryable failure.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The destination is gone (HTTP 410).
    pub fn gone(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Gone,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a retry-after hint.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Whether the entry must not be retried (permanent or gone).
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind, FailureKind::Permanent | FailureKind::Gone)
    }
}

/// Somewhere outbox entries go: a webhook, a broker, or your own sink.
///
/// The relay calls `deliver` for one entry at a time per stream (never the next entry
/// of a stream before this one succeeded), and concurrently across streams. Return
/// `Ok(())` only once the destination has accepted the entry durably. Use
/// [`OutboxEntry::id`] as the idempotency key: after a crash, an entry can be
/// delivered twice.
#[async_trait::async_trait]
pub trait Destination: Send + Sync + 'static {
    /// Delivers one entry.
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError>;
}

#[async_trait::async_trait]
impl<F, Fut> Destination for F
where
    F: Fn(OutboxEntry) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), DeliveryError>> + Send + 'static,
{
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        (self)(entry.clone()).await
    }
}

/// Named destinations the relay delivers to.
#[derive(Clone, Default)]
pub struct Destinations {
    by_name: HashMap<String, Arc<dyn Destination>>,
}

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Destinations {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a destination under `name`.
    pub fn insert(&mut self, name: impl Into<String>, destination: impl Destination) -> &mut Self {
        self.by_name.insert(name.into(), Arc::new(destination));
        self
    }

    /// Adds a shared destination under `name`.
    pub fn insert_arc(&mut self, name: impl Into<String>, destination: Arc<dyn Destination>) -> &mut Self {
        self.by_name.insert(name.into(), destination);
        self
    }

    /// Looks one up.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Destination>> {
        self.by_name.get(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
