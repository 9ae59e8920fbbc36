//! The relay's clock: wall time that advances with tokio's clock.
//!
//! In production this is the system's UTC time, read each time (so it follows NTP
//! corrections of a long-running process). Under tokio's paused time (tests with
//! `start_paused`), it stands still and advances with the runtime, so retry schedules,
//! leases and backoff can be tested exactly and without waiting.

use time::OffsetDateTime;

/// Now, as wall-clock UTC time following tokio's (possibly paused) clock.
pub fn now() -> OffsetDateTime {
    let wall = OffsetDateTime::now_utc();
    let real = std::time::Instant::now();
    // Tokio's clock is the real monotonic clock unless paused or advanced (tests): the
    // difference is what tokio's time has moved on its own.
    let tokio = tokio::time::Instant::now().into_std();
    if tokio >= real {
        wall + (tokio - real)
    } else {
        wall - (real - tokio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock() {
        let before = OffsetDateTime::now_utc();
        let now = now();
        let after = OffsetDateTime::now_utc();
        assert!(before <= now && now <= after, "{before} <= {now} <= {after}");
    }

    #[tokio::test(start_paused = true)]
    async fn advances_with_paused_time() {
        let start = now();
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        let moved = now() - start;
        assert!(
            (moved - time::Duration::hours(1)).abs() < time::Duration::milliseconds(50),
            "{moved}"
        );
    }
}
