//! Waiting for a condition with a deadline, instead of sleeping as synchronisation.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`wait_until`] re-checks its condition.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `check` until it returns `true` or `within` has passed; returns whether it
/// became true. The condition is checked once more at the deadline, so a slow machine
/// only makes the wait longer, never wrong.
///
/// ```
/// # async fn demo() {
/// use std::time::Duration;
/// let done = eskit_testkit::wait_until(Duration::from_secs(5), || async { true }).await;
/// assert!(done);
/// # }
/// ```
pub async fn wait_until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Like [`wait_until`], but the condition yields a value: returns the first `Some`.
pub async fn wait_for_value<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}
