//! What the admin endpoints share.

use std::sync::Arc;

use eskit::{Circuits, OutboxStore};
use metrics_exporter_prometheus::PrometheusHandle;

use super::config::Auth;

/// Everything the admin router needs. Build it with [`AdminState::new`] and the setters.
pub struct AdminState {
    /// The outbox.
    pub store: Arc<dyn OutboxStore>,
    /// Destinations the relay delivers to (shown even before they have entries, and
    /// checked by `/readyz`).
    pub destinations: Vec<String>,
    /// This relay's lease owner id (for `/readyz` and the status's lease counts).
    pub owner: String,
    /// Circuit states of the running relay, if there is one in this process.
    pub circuits: Option<Circuits>,
    /// How `/api/*` is protected.
    pub auth: Auth,
    /// The Prometheus exporter's handle (`/metrics` answers 503 without it).
    pub metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("destinations", &self.destinations)
            .field("owner", &self.owner)
            .field("circuits", &self.circuits)
            .field("auth", &self.auth)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// State over `store`, protected by `auth`, with no relay attached.
    pub fn new(store: Arc<dyn OutboxStore>, auth: Auth) -> Self {
        Self {
            store,
            destinations: Vec::new(),
            owner: String::new(),
            circuits: None,
            auth,
            metrics: None,
        }
    }

    /// The relay's destinations.
    pub fn destinations(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.destinations = names.into_iter().collect();
        self.destinations.sort();
        self.destinations.dedup();
        self
    }

    /// The relay's lease owner id.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The running relay's circuit states.
    pub fn circuits(mut self, circuits: Circuits) -> Self {
        self.circuits = Some(circuits);
        self
    }

    /// The Prometheus exporter.
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }
}
