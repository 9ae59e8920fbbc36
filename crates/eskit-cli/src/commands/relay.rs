//! `eskit relay`: the relay daemon.
//!
//! Starts the relay over the configured store and destinations, waits for SIGINT or
//! SIGTERM, then shuts down gracefully (in-flight deliveries finish within
//! `relay.shutdown_grace`; whatever is abandoned stays pending). A second signal
//! during shutdown exits at once (nothing is lost: unrecorded entries stay pending).
//!
//! Side services of the daemon (the admin API, `/metrics`, health) attach in
//! [`Services`]: they start after the relay and stop before it.

use eskit::Relay;
use tracing::{info, warn};

use crate::admin::{AdminError, AdminOptions, AdminService};
use crate::cli::RelayArgs;
use crate::config::{Config, ConfigError};
use crate::destinations;
use crate::error::{CliError, CliResult};
use crate::store::{OpenStore, open_store};

/// Runs `eskit relay` until a signal.
pub async fn run(config: &Config, _args: RelayArgs) -> CliResult {
    // First of all: from here on SIGINT/SIGTERM mean a graceful stop, never the
    // default "terminate at once".
    let mut signals = Signals::install()?;
    let destinations = destinations::build(config)?;
    if destinations.is_empty() {
        return Err(
            ConfigError::Other("no [[destinations]] configured: the relay has nothing to deliver to".into()).into(),
        );
    }
    let store = open_store(config).await?;
    let relay_config = config.relay_config();
    info!(
        database = %crate::config::redact_url(&config.database),
        destinations = ?destinations.names(),
        partitions = config.relay.partitions,
        owner = %relay_config.owner,
        "starting relay"
    );
    let (names, owner) = (destinations.names(), relay_config.owner.clone());
    let mut relay = Relay::new(store.outbox(), destinations).config(relay_config);
    for d in &config.destinations {
        relay = relay.policy(d.name.clone(), d.policy.to_policy());
    }
    let handle = relay.start();
    let services = match Services::start(config, &store, names, owner, handle.circuits()).await {
        Ok(services) => services,
        Err(e) => {
            handle.shutdown().await;
            return Err(e);
        }
    };

    let signal = signals.next().await;
    info!(signal, "shutting down (a second signal exits at once)");
    services.stop().await;
    tokio::select! {
        _ = handle.shutdown() => {}
        second = signals.next() => {
            warn!(signal = second, "second signal: exiting without waiting; unfinished entries stay pending");
            return Err(CliError::Failed("interrupted during shutdown".into()));
        }
    }
    info!("relay stopped");
    Ok(())
}

/// Services that run beside the relay: the admin API with `/metrics` and health, the
/// metrics sampler and the retention purge (see `crate::admin`).
struct Services {
    admin: AdminService,
}

impl Services {
    async fn start(
        config: &Config,
        store: &OpenStore,
        destinations: Vec<String>,
        owner: String,
        circuits: eskit::Circuits,
    ) -> CliResult<Self> {
        let mut options = AdminOptions::new(config.admin.clone(), config.retention.clone(), store.outbox());
        options.destinations = destinations;
        options.owner = owner;
        options.circuits = Some(circuits);
        let admin = AdminService::start(options).await.map_err(|e| match e {
            AdminError::Config(e) => CliError::Config(ConfigError::Key {
                key: e.key.to_string(),
                message: e.message,
                origin: None,
            }),
            AdminError::Bind { addr, source } => CliError::io(format!("listening on admin.bind {addr}"))(source),
        })?;
        Ok(Self { admin })
    }

    async fn stop(self) {
        self.admin.stop().await;
    }
}

/// SIGINT and SIGTERM handlers, installed once at start.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> CliResult<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).map_err(CliError::io("installing the SIGTERM handler"))?,
                int: signal(SignalKind::interrupt()).map_err(CliError::io("installing the SIGINT handler"))?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next SIGINT or SIGTERM; returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
