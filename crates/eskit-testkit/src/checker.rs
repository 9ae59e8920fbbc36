//! The delivery checker: compares what was committed with what a receiver saw, and
//! reports lost entries, phantoms, per-stream order violations and duplicates.
//!
//! ```
//! use eskit_testkit::checker::{Checker, Committed, Observed};
//! use uuid::Uuid;
//!
//! let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
//! let report = Checker::new()
//!     .committed([Committed::new(a, "s", 1), Committed::new(b, "s", 2)])
//!     .observed([Observed::new(a, "s", false), Observed::new(a, "s", true), Observed::new(b, "s", true)])
//!     .check();
//! assert!(report.is_ok(), "{report}");
//! assert_eq!(report.retried_attempts, 1);
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use eskit::{EntryState, OutboxEntry};
use uuid::Uuid;

/// A committed outbox entry, as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Entry id (the idempotency key a destination carries).
    pub id: Uuid,
    /// Stream id.
    pub stream: String,
    /// Commit order within the stream (the entry's `seq`, or the stream version).
    pub order: i64,
}

impl Committed {
    /// A committed entry.
    pub fn new(id: Uuid, stream: impl Into<String>, order: i64) -> Self {
        Self {
            id,
            stream: stream.into(),
            order,
        }
    }
}

impl From<&OutboxEntry> for Committed {
    fn from(e: &OutboxEntry) -> Self {
        Self::new(e.id, e.stream_id.clone(), e.seq)
    }
}

/// One delivery attempt as a receiver saw it, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Entry id the attempt carried.
    pub id: Uuid,
    /// Stream id the attempt carried.
    pub stream: String,
    /// Whether the receiver accepted it (a successful delivery).
    pub success: bool,
}

impl Observed {
    /// An observed attempt.
    pub fn new(id: Uuid, stream: impl Into<String>, success: bool) -> Self {
        Self {
            id,
            stream: stream.into(),
            success,
        }
    }
}

/// One entry first delivered before an entry of the same stream committed earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderViolation {
    /// The stream.
    pub stream: String,
    /// The entry that arrived too late (lower commit order).
    pub late: Uuid,
    /// The entry that overtook it (higher commit order, first delivered earlier).
    pub overtaking: Uuid,
}

/// Builds a [`Report`] from committed entries, dead-lettered entries and observed attempts.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    committed: Vec<Committed>,
    dead: HashSet<Uuid>,
    observed: Vec<Observed>,
}

impl Checker {
    /// An empty checker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds committed entries.
    pub fn committed(mut self, entries: impl IntoIterator<Item = Committed>) -> Self {
        self.committed.extend(entries);
        self
    }

    /// Adds entries that are in the dead-letter queue (accounted for, not lost).
    pub fn dead(mut self, ids: impl IntoIterator<Item = Uuid>) -> Self {
        self.dead.extend(ids);
        self
    }

    /// Adds the committed entries and the dead ones from stored outbox entries of one
    /// destination (e.g. everything `list_entries` returns once the relay is done).
    pub fn entries<'a>(mut self, entries: impl IntoIterator<Item = &'a OutboxEntry>) -> Self {
        for e in entries {
            if e.state == EntryState::Dead {
                self.dead.insert(e.id);
            }
            self.committed.push(Committed::from(e));
        }
        self
    }

    /// Adds observed delivery attempts, in arrival order.
    pub fn observed(mut self, attempts: impl IntoIterator<Item = Observed>) -> Self {
        self.observed.extend(attempts);
        self
    }

    /// Computes the report.
    pub fn check(&self) -> Report {
        let committed: HashMap<Uuid, &Committed> = self.committed.iter().map(|c| (c.id, c)).collect();

        let mut first_success: HashSet<Uuid> = HashSet::new();
        let mut attempted: HashSet<Uuid> = HashSet::new();
        let mut phantoms: Vec<Uuid> = Vec::new();
        let mut duplicates = 0u64;
        let mut failed_attempts = 0u64;
        let mut duplicate_ids: HashSet<Uuid> = HashSet::new();
        // Per stream: (highest commit order first-delivered so far, its id).
        let mut high_water: HashMap<&str, (i64, Uuid)> = HashMap::new();
        let mut order_violations = Vec::new();

        for o in &self.observed {
            let Some(c) = committed.get(&o.id) else {
                if attempted.insert(o.id) {
                    phantoms.push(o.id);
                }
                continue;
            };
            attempted.insert(o.id);
            if !o.success {
                failed_attempts += 1;
                continue;
            }
            if !first_success.insert(o.id) {
                duplicates += 1;
                duplicate_ids.insert(o.id);
                continue;
            }
            match high_water.get(c.stream.as_str()) {
                Some((high, overtaking)) if *high > c.order => order_violations.push(OrderViolation {
                    stream: c.stream.clone(),
                    late: c.id,
                    overtaking: *overtaking,
                }),
                _ => {
                    high_water.insert(c.stream.as_str(), (c.order, c.id));
                }
            }
        }

        let mut lost: Vec<&Committed> = self
            .committed
            .iter()
            .filter(|c| !first_success.contains(&c.id) && !self.dead.contains(&c.id))
            .collect();
        lost.sort_by(|a, b| (a.stream.as_str(), a.order).cmp(&(b.stream.as_str(), b.order)));
        let dead_delivered = self.dead.iter().filter(|id| first_success.contains(id)).count() as u64;

        let mut streams: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &self.committed {
            *streams.entry(c.stream.as_str()).or_default() += 1;
        }

        Report {
            committed: self.committed.len() as u64,
            streams: streams.len() as u64,
            delivered: first_success.len() as u64,
            dead: self.dead.len() as u64,
            dead_but_delivered: dead_delivered,
            attempts: self.observed.len() as u64,
            retried_attempts: failed_attempts,
            duplicates,
            duplicate_ids: duplicate_ids.len() as u64,
            lost: lost.into_iter().map(|c| c.id).collect(),
            phantoms,
            order_violations,
        }
    }
}

/// What the checker found. [`Report::is_ok`] holds when nothing was lost, nothing
/// phantom was delivered and no stream was reordered; duplicates are allowed
/// (at-least-once) and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Committed entries.
    pub committed: u64,
    /// Distinct streams among them.
    pub streams: u64,
    /// Committed entries delivered successfully at least once.
    pub delivered: u64,
    /// Entries in the dead-letter queue.
    pub dead: u64,
    /// Dead entries that were nevertheless delivered once (e.g. replayed, or a crash
    /// between delivery and recording followed by a permanent error).
    pub dead_but_delivered: u64,
    /// Every observed attempt.
    pub attempts: u64,
    /// Attempts the receiver did not accept.
    pub retried_attempts: u64,
    /// Successful deliveries beyond the first of an entry.
    pub duplicates: u64,
    /// Entries delivered successfully more than once.
    pub duplicate_ids: u64,
    /// Committed entries neither delivered nor dead, in (stream, order) order.
    pub lost: Vec<Uuid>,
    /// Ids observed but never committed (e.g. from a rolled-back transaction).
    pub phantoms: Vec<Uuid>,
    /// First successful deliveries that came after a later entry of the same stream.
    pub order_violations: Vec<OrderViolation>,
}

impl Report {
    /// Nothing lost, no phantoms, no order violations.
    pub fn is_ok(&self) -> bool {
        self.lost.is_empty() && self.phantoms.is_empty() && self.order_violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} committed over {} streams; {} delivered, {} dead ({} of them also delivered)",
            self.committed, self.streams, self.delivered, self.dead, self.dead_but_delivered
        )?;
        writeln!(
            f,
            "{} attempts, {} not accepted, {} duplicate deliveries ({} entries)",
            self.attempts, self.retried_attempts, self.duplicates, self.duplicate_ids
        )?;
        write!(
            f,
            "lost: {}, phantoms: {}, order violations: {}",
            self.lost.len(),
            self.phantoms.len(),
            self.order_violations.len()
        )?;
        const SHOW: usize = 5;
        for id in self.lost.iter().take(SHOW) {
            write!(f, "\n  lost {id}")?;
        }
        for id in self.phantoms.iter().take(SHOW) {
            write!(f, "\n  phantom {id}")?;
        }
        for v in self.order_violations.iter().take(SHOW) {
            write!(
                f,
                "\n  stream {:?}: {} first delivered after the later {}",
                v.stream, v.late, v.overtaking
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    #[test]
    fn clean_run_is_ok() {
        let id = ids(3);
        let r = Checker::new()
            .committed([
                Committed::new(id[0], "a", 1),
                Committed::new(id[1], "a", 2),
                Committed::new(id[2], "b", 3),
            ])
            .observed([
                Observed::new(id[2], "b", true),
                Observed::new(id[0], "a", false),
                Observed::new(id[0], "a", true),
                Observed::new(id[1], "a", true),
                Observed::new(id[1], "a", true),
            ])
            .check();
        assert!(r.is_ok(), "{r}");
        assert_eq!((r.delivered, r.duplicates, r.retried_attempts), (3, 1, 1));
    }

    #[test]
    fn finds_loss_phantoms_and_reordering() {
        let id = ids(5);
        let r = Checker::new()
            .committed([
                Committed::new(id[0], "a", 1),
                Committed::new(id[1], "a", 2),
                Committed::new(id[2], "a", 3),
                Committed::new(id[3], "b", 4),
            ])
            .dead([id[3]])
            .observed([
                Observed::new(id[1], "a", true),
                Observed::new(id[0], "a", true),
                Observed::new(id[4], "x", false),
            ])
            .check();
        assert!(!r.is_ok());
        assert_eq!(r.lost, vec![id[2]]);
        assert_eq!(r.phantoms, vec![id[4]]);
        assert_eq!(
            r.order_violations,
            vec![OrderViolation {
                stream: "a".into(),
                late: id[0],
                overtaking: id[1]
            }]
        );
        let text = r.to_string();
        assert!(text.contains("lost: 1, phantoms: 1, order violations: 1"), "{text}");
    }

    #[test]
    fn only_first_success_counts_for_order() {
        let id = ids(2);
        // a1, a2 delivered in order; a1 delivered again afterwards (a duplicate) is fine.
        let r = Checker::new()
            .committed([Committed::new(id[0], "a", 1), Committed::new(id[1], "a", 2)])
            .observed([
                Observed::new(id[0], "a", true),
                Observed::new(id[1], "a", true),
                Observed::new(id[0], "a", true),
            ])
            .check();
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.duplicates, 1);
    }
}
