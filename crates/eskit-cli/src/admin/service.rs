//! Starting and stopping the operations side of `eskit relay`: the admin HTTP server
//! (with `/metrics`), the metrics sampler and the retention purge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eskit::{Circuits, OutboxStore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{AdminSection, Auth, RetentionSection, SectionError};
use super::state::AdminState;
use super::{metrics, retention, router};

/// How long [`AdminService::stop`] waits for open HTTP connections.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the operations side could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A bad `[admin]` or `[retention]` value.
    #[error(transparent)]
    Config(#[from] SectionError),
    /// The admin address could not be bound.
    #[error("cannot listen on admin.bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What [`AdminService::start`] needs.
pub struct AdminOptions {
    /// `[admin]`.
    pub admin: AdminSection,
    /// `[retention]`.
    pub retention: RetentionSection,
    /// The outbox.
    pub store: Arc<dyn OutboxStore>,
    /// The relay's destinations.
    pub destinations: Vec<String>,
    /// The relay's lease owner id.
    pub owner: String,
    /// The relay's circuit states.
    pub circuits: Option<Circuits>,
    /// The value of `ESKIT_ADMIN_TOKEN`, if set (wins over `admin.token`).
    pub token_env: Option<String>,
}

impl AdminOptions {
    /// Options with the token taken from the `ESKIT_ADMIN_TOKEN` environment variable.
    pub fn new(admin: AdminSection, retention: RetentionSection, store: Arc<dyn OutboxStore>) -> Self {
        Self {
            admin,
            retention,
            store,
            destinations: Vec::new(),
            owner: String::new(),
            circuits: None,
            token_env: std::env::var(super::config::TOKEN_ENV).ok(),
        }
    }
}

/// The running operations side.
#[derive(Debug)]
pub struct AdminService {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    #[allow(dead_code, reason = "read through local_addr()")]
    local_addr: Option<SocketAddr>,
}

impl AdminService {
    /// Validates the configuration, binds `admin.bind` (unless `admin.enabled = false`)
    /// and starts the server, the metrics sampler and the retention purge.
    pub async fn start(options: AdminOptions) -> Result<Self, AdminError> {
        let AdminOptions {
            admin,
            retention,
            store,
            destinations,
            owner,
            circuits,
            token_env,
        } = options;
        let auth = admin.auth(token_env)?;
        let cancel = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(retention::run(
            store.clone(),
            retention,
            cancel.child_token(),
        ))];
        let mut local_addr = None;
        let listener = match admin.enabled {
            false => {
                info!("admin API disabled (admin.enabled = false)");
                None
            }
            true => match tokio::net::TcpListener::bind(admin.bind_addr()).await {
                Ok(listener) => Some(listener),
                Err(source) if admin.bind.is_none() => {
                    warn!(
                        addr = %admin.bind_addr(),
                        error = %source,
                        "admin API not started: its default address is not free; set admin.bind (port 0 picks a free one)"
                    );
                    None
                }
                Err(source) => {
                    cancel.cancel();
                    return Err(AdminError::Bind {
                        addr: admin.bind_addr(),
                        source,
                    });
                }
            },
        };
        if let Some(listener) = listener {
            let addr = listener.local_addr().unwrap_or(admin.bind_addr());
            local_addr = Some(addr);
            match &auth {
                Auth::Token(_) => info!(%addr, "admin API listening (bearer token required for /api)"),
                Auth::Disabled => {
                    warn!(%addr, "admin API listening WITHOUT authentication (admin.auth = \"none-on-loopback\")")
                }
                Auth::Unconfigured => warn!(
                    %addr,
                    "admin API listening, but no token is configured: /api answers 401 until admin.token or ESKIT_ADMIN_TOKEN is set"
                ),
            }
            let mut state = AdminState::new(store, auth).destinations(destinations).owner(owner);
            if let Some(c) = circuits {
                state = state.circuits(c);
            }
            if let Some(handle) = metrics::install() {
                state = state.metrics(handle);
            }
            let state = Arc::new(state);
            tasks.push(tokio::spawn(metrics::run_sampler(
                state.clone(),
                admin.sample_interval,
                cancel.child_token(),
            )));
            let shutdown = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let server = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned());
                if let Err(err) = server.await {
                    warn!(error = %err, "admin API server stopped");
                }
            }));
        }
        Ok(Self {
            cancel,
            tasks,
            local_addr,
        })
    }

    /// The address the admin server listens on (`None` when disabled).
    #[allow(dead_code, reason = "the daemon logs the address; tests connect to it")]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops the server (open connections get a few seconds), the sampler and the purge.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
