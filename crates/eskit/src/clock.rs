//! The relay's clock: wall time that advances with tokio's clock.
//!
//! In production this is the system's UTC time. Under tokio's paused time (tests with
//! `start_paused`), it stands still and advances with the runtime, so retry schedules,
//! leases and backoff can be tested exactly and without waiting.

use std::sync::OnceLock;

use time::OffsetDateTime;
use tokio::time::Instant;

static ORIGIN: OnceLock<(OffsetDateTime, Instant)> = OnceLock::new();

/// Now, as wall-clock UTC time following tokio's (possibly paused) clock.
pub fn now() -> OffsetDateTime {
    let (wall, at) = *ORIGIN.get_or_init(|| (OffsetDateTime::now_utc(), Instant::now()));
    let now = Instant::now();
    if now >= at {
        wall + (now - at)
    } else {
        wall - (at - now)
    }
}
