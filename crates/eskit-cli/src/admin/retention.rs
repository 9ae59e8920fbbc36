//! The background purge of delivered entries (`[retention]`). Dead entries are never
//! purged automatically; pending ones never at all.

use std::sync::Arc;
use std::time::Duration;

use eskit::{BULK_BATCH, OutboxStore};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::RetentionSection;

/// Counter: delivered entries deleted by the retention purge.
pub const PURGED: &str = "eskit_purged_total";

/// Runs the purge every `retention.interval()` (first right away) until `cancel`.
pub async fn run(store: Arc<dyn OutboxStore>, retention: RetentionSection, cancel: CancellationToken) {
    let interval = retention.interval();
    let keep = retention.delivered;
    info!(keep = %humantime::format_duration(keep), every = %humantime::format_duration(interval), "retention purge started");
    loop {
        match purge_once(store.as_ref(), keep, &cancel).await {
            Ok(0) => debug!("retention purge: nothing to delete"),
            Ok(n) => info!(purged = n, "retention purge: delivered entries deleted"),
            Err(err) => warn!(error = %err, "retention purge failed; will retry"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Deletes delivered entries delivered more than `keep` ago, [`BULK_BATCH`] at a time
/// (each batch its own transaction, counted as it commits), stopping early on `cancel`;
/// returns how many.
async fn purge_once(store: &dyn OutboxStore, keep: Duration, cancel: &CancellationToken) -> eskit::Result<u64> {
    let keep = time::Duration::try_from(keep).unwrap_or(time::Duration::MAX);
    let before = OffsetDateTime::now_utc()
        .checked_sub(keep)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut total = 0;
    while !cancel.is_cancelled() {
        let deleted = store.purge_delivered_batch(before, BULK_BATCH).await?;
        ::metrics::counter!(PURGED).increment(deleted);
        total += deleted;
        if deleted < u64::from(BULK_BATCH) {
            break;
        }
    }
    Ok(total)
}
