//! The seeded part of a chaos run: when each relay is killed and restarted, when the
//! database restarts, which faults the sink injects. The same seed and configuration
//! give the same plan, so a failing run can be replayed.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::receiver::FaultPlan;

/// Shortest pause between two kills.
const MIN_KILL_GAP: Duration = Duration::from_millis(300);
/// Longest pause between two kills.
const MAX_KILL_GAP: Duration = Duration::from_millis(1500);
/// Longest wait before a killed relay is started again.
const MAX_RESTART_DELAY: Duration = Duration::from_millis(300);
/// The chaos phase lasts at least this long, kills or not.
const MIN_WINDOW: Duration = Duration::from_secs(2);

/// Share of sink requests answered `503`.
pub const SERVER_ERROR_RATE: f64 = 0.05;
/// Share of sink requests answered `429` with `Retry-After`.
pub const TOO_MANY_REQUESTS_RATE: f64 = 0.01;
/// Share of sink requests left hanging (past the webhook timeout).
pub const HANG_RATE: f64 = 0.01;
/// How long a hanging sink request hangs (it ends early when the sink is healed).
pub const HANG: Duration = Duration::from_secs(30);

/// One scheduled SIGKILL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedKill {
    /// Time since the start of the chaos phase.
    #[serde(serialize_with = "millis")]
    pub at: Duration,
    /// Which relay process (slot) is killed.
    pub relay: usize,
    /// How long after the kill it is started again.
    #[serde(serialize_with = "millis")]
    pub restart_after: Duration,
}

/// Everything a seed decides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Kills in time order.
    pub kills: Vec<PlannedKill>,
    /// When the database restarts (only when asked for).
    #[serde(serialize_with = "opt_millis")]
    pub db_restart_at: Option<Duration>,
    /// How long the chaos phase lasts; the writers spread their appends over it.
    #[serde(serialize_with = "millis")]
    pub window: Duration,
    /// Seed of each writer's generator (stream choice, batch sizes, event ids).
    pub writer_seeds: Vec<u64>,
    /// Seed of the sink's fault generator.
    pub fault_seed: u64,
}

impl Plan {
    /// The plan for `seed` with `kills` kills spread over `relays` relay processes,
    /// `writers` writers, and a database restart when `db_restart` is set.
    pub fn new(seed: u64, kills: usize, relays: usize, writers: usize, db_restart: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let relays = relays.max(1);
        let mut at = Duration::ZERO;
        let mut planned = Vec::with_capacity(kills);
        for _ in 0..kills {
            at += rng.random_range(MIN_KILL_GAP..=MAX_KILL_GAP);
            planned.push(PlannedKill {
                at,
                relay: rng.random_range(0..relays),
                restart_after: rng.random_range(Duration::ZERO..=MAX_RESTART_DELAY),
            });
        }
        let window = (at + MAX_KILL_GAP).max(MIN_WINDOW);
        // Draw unconditionally, so that --restart-postgres does not change the rest.
        let restart_share: f64 = rng.random_range(0.3..0.7);
        let writer_seeds = (0..writers.max(1)).map(|_| rng.random()).collect();
        let fault_seed = rng.random();
        Self {
            seed,
            kills: planned,
            db_restart_at: db_restart.then(|| window.mul_f64(restart_share)),
            window,
            writer_seeds,
            fault_seed,
        }
    }

    /// The faults the sink injects during the chaos phase.
    pub fn faults(&self) -> FaultPlan {
        FaultPlan::new(self.fault_seed)
            .server_errors(SERVER_ERROR_RATE)
            .too_many_requests(TOO_MANY_REQUESTS_RATE, Some(Duration::from_secs(1)))
            .timeouts(HANG_RATE, HANG)
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan() {
        let a = Plan::new(42, 10, 3, 4, true);
        assert_eq!(a, Plan::new(42, 10, 3, 4, true));
        assert_ne!(a, Plan::new(43, 10, 3, 4, true));
        assert_eq!(a.kills.len(), 10);
        assert!(a.kills.windows(2).all(|w| w[0].at < w[1].at));
        assert!(a.kills.iter().all(|k| k.relay < 3));
        let restart = a.db_restart_at.unwrap();
        assert!(restart < a.window && a.kills.last().unwrap().at < a.window);
        // The restart flag does not change the kills or the faults.
        let b = Plan::new(42, 10, 3, 4, false);
        assert_eq!((b.kills.clone(), b.fault_seed), (a.kills.clone(), a.fault_seed));
        assert_eq!(a.faults(), b.faults());
    }
}
