//! Retry schedule: exponential backoff with jitter, a cap and a maximum number of attempts.

use std::time::Duration;

/// When to try a failed delivery again, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Random spread as a fraction of the delay: 0.2 draws from ±20 %.
    pub jitter: f64,
    /// Attempts before the entry goes to the dead-letter queue.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// Starts from the defaults.
    pub fn builder() -> Self {
        Self::default()
    }
    /// Sets the first delay.
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }
    /// Sets the cap.
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }
    /// Sets the growth factor.
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m;
        self
    }
    /// Sets the jitter fraction (0 to 1).
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = j;
        self
    }
    /// Sets the attempts before dead-lettering.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Whether an entry that has now failed `attempts` times is out of attempts.
    pub fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }

    /// The delay after the `attempts`-th failure (1-based), without jitter.
    pub fn base_delay(&self, attempts: u32) -> Duration {
        let exp = self.multiplier.max(1.0).powi(attempts.saturating_sub(1).min(64) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// The delay after the `attempts`-th failure with jitter drawn from `unit` (in `[0, 1)`),
    /// never above the cap. A destination's retry-after, when given, wins.
    pub fn delay(&self, attempts: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after;
        }
        let base = self.base_delay(attempts).as_secs_f64();
        let spread = self.jitter.clamp(0.0, 1.0) * (unit.clamp(0.0, 1.0) * 2.0 - 1.0);
        Duration::from_secs_f64((base * (1.0 + spread)).clamp(0.0, self.max.as_secs_f64()))
    }

    /// [`delay`](Self::delay) with a random jitter draw.
    pub fn next_delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(attempts, rand::random::<f64>(), retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_with_cap() {
        let p = RetryPolicy::default()
            .initial(Duration::from_millis(100))
            .max(Duration::from_secs(1))
            .multiplier(2.0)
            .jitter(0.0);
        let d: Vec<_> = (1..=6).map(|a| p.delay(a, 0.5, None).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn retry_after_wins_and_jitter_bounded() {
        let p = RetryPolicy::default().initial(Duration::from_secs(1)).jitter(0.5);
        assert_eq!(p.delay(3, 0.9, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(p.delay(1, 0.0, None), Duration::from_millis(500));
        assert!(p.delay(1, 0.999_999, None) < Duration::from_millis(1500));
        assert!(p.exhausted(10) && !p.exhausted(9));
    }

    proptest::proptest! {
        #[test]
        fn delay_never_exceeds_cap(attempts in 1u32..100, unit in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            proptest::prop_assert!(p.delay(attempts, unit, None) <= p.max);
        }
    }
}
