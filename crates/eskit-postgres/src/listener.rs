//! The LISTEN task: turns the outbox's NOTIFYs into relay wakeups.
//!
//! A hint only: the relay also polls, so a lost notification costs latency, never an
//! entry. The task keeps one connection of its own (application name
//! `eskit-listener`), reconnects with backoff whenever it is lost, and wakes the relay
//! after every (re)connect, since commits may have happened while it was not listening.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// First delay before reconnecting.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Application name of the LISTEN connection (visible in `pg_stat_activity`).
pub(crate) const APPLICATION_NAME: &str = "eskit-listener";

/// Runs until `stop` is cancelled.
pub(crate) async fn run(connect: PgConnectOptions, channel: String, wakeup: Arc<Notify>, stop: CancellationToken) {
    let connect = connect.application_name(APPLICATION_NAME);
    let mut backoff = BACKOFF_START;
    loop {
        let listener = tokio::select! {
            _ = stop.cancelled() => return,
            listener = listen(&connect, &channel) => listener,
        };
        match listener {
            Ok(mut listener) => {
                debug!(%channel, "listening for outbox notifications");
                backoff = BACKOFF_START;
                // Anything committed while we were not listening.
                wakeup.notify_waiters();
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = listener.try_recv() => next,
                    };
                    match next {
                        Ok(Some(_)) => wakeup.notify_waiters(),
                        Ok(None) => {
                            warn!(%channel, "outbox listener connection lost; reconnecting");
                            break;
                        }
                        Err(err) => {
                            warn!(%channel, error = %err, "outbox listener failed; reconnecting");
                            break;
                        }
                    }
                }
                // Whatever the relay missed meanwhile, it picks up now or by polling.
                wakeup.notify_waiters();
            }
            Err(err) => {
                warn!(%channel, error = %err, ?backoff, "could not listen for outbox notifications; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A fresh listener on its own one-connection pool, subscribed to `channel`.
async fn listen(connect: &PgConnectOptions, channel: &str) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(connect.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnecting is ours to do (with backoff), not the listener's.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}
