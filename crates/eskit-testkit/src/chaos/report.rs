//! The checks of a chaos run and their report.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use eskit::{EntryState, OutboxEntry, partition_of};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::log::version_of;
use super::plan::Plan;
use super::writers::{AppendRecord, Outcome};
use crate::checker::{Checker, Committed, Observed};
use crate::receiver::{Answer, Delivery, SignatureCheck};

/// The size of a run (echoed in the report).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Events appended.
    pub events: u64,
    /// Streams.
    pub streams: usize,
    /// Writer tasks.
    pub writers: usize,
    /// Relay processes.
    pub relays: usize,
    /// Relay batch size.
    pub batch_size: u32,
    /// Partitions.
    pub partitions: u32,
    /// Whether the database was restarted once.
    pub db_restart: bool,
}

/// What the writers did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppendCounts {
    /// Appends tried.
    pub attempted: u64,
    /// Committed.
    pub ok: u64,
    /// Failed before the commit.
    pub failed: u64,
    /// The commit failed; committed or not.
    pub unknown: u64,
    /// Unknown appends found committed afterwards.
    pub unknown_committed: u64,
    /// Unknown appends found rolled back afterwards.
    pub unknown_rolled_back: u64,
    /// Events stored at the end.
    pub events_stored: u64,
    /// Error kinds the writers saw, with counts.
    pub errors: BTreeMap<String, u64>,
}

/// What the sinks saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkCounts {
    /// Every request.
    pub requests: u64,
    /// Answered 200.
    pub accepted: u64,
    /// Answered 503 (injected).
    pub server_errors: u64,
    /// Answered 429 (injected).
    pub too_many_requests: u64,
    /// Left hanging past the webhook timeout (injected).
    pub hangs: u64,
    /// Missing or bad signatures.
    pub bad_signatures: u64,
}

/// One kill and how long its partitions took to deliver again.
#[derive(Debug, Clone, Serialize)]
pub struct KillReport {
    /// Milliseconds since the chaos phase started.
    pub at_ms: u64,
    /// Relay slot.
    pub relay: usize,
    /// Its process id.
    pub pid: Option<u32>,
    /// Partitions it held (`None`: could not be read).
    pub partitions: Option<Vec<u32>>,
    /// Milliseconds from the kill to the first accepted delivery of an entry of one of
    /// those partitions, not counting the killed relay's own last requests served in the
    /// first 20 ms (`None`: it held none, or nothing of them was left to deliver).
    pub recovery_ms: Option<u64>,
}

/// The database restart.
#[derive(Debug, Clone, Serialize)]
pub struct DbRestartReport {
    /// Milliseconds since the chaos phase started.
    pub at_ms: u64,
    /// How long the restart command took.
    pub downtime_ms: u64,
    /// Milliseconds from the restart to the first accepted delivery after it.
    pub recovery_ms: Option<u64>,
    /// Milliseconds from the restart to the first committed append after it.
    pub append_recovery_ms: Option<u64>,
    /// The command's error, if it failed.
    pub error: Option<String>,
}

/// Phase durations in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Durations {
    /// Chaos phase (writers, kills, restart).
    pub chaos_ms: u64,
    /// From healing to nothing pending.
    pub drain_ms: u64,
    /// The whole run.
    pub total_ms: u64,
}

/// Everything a chaos run found. [`ChaosReport::passed`] when `violations` is empty.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// The seed (replays the kill schedule and the fault plan).
    pub seed: u64,
    /// The size of the run.
    pub settings: Settings,
    /// The seeded plan.
    pub plan: Plan,
    /// Appends.
    pub appends: AppendCounts,
    /// Outbox entries committed.
    pub committed: u64,
    /// Committed entries delivered at least once.
    pub delivered: u64,
    /// Entries in the dead-letter queue.
    pub dead: u64,
    /// Entries still pending when the run gave up waiting (0 when drained).
    pub pending_after_drain: u64,
    /// committed − delivered − dead.
    pub lost: u64,
    /// Delivered entries that were never committed.
    pub phantoms: u64,
    /// First deliveries that came after a later entry of their stream.
    pub order_violations: u64,
    /// First deliveries that skipped an earlier, not yet delivered entry of their stream.
    pub gaps: u64,
    /// Missing stream versions in the store itself.
    pub version_holes: u64,
    /// Entries marked delivered that no sink accepted.
    pub delivered_without_record: u64,
    /// Appends reported committed whose events are not stored.
    pub acknowledged_but_missing: u64,
    /// Appends reported failed whose events are stored.
    pub failed_but_stored: u64,
    /// Stored events no writer appended, or without their outbox entry.
    pub unexplained_rows: u64,
    /// Stream version surprises seen by the writers.
    pub version_anomalies: Vec<String>,
    /// Accepted deliveries beyond the first of an entry.
    pub duplicates: u64,
    /// Duplicates per 10,000 committed entries.
    pub duplicates_per_10k: f64,
    /// The bound: (kills + database restarts) × batch size × partitions.
    pub duplicate_bound: u64,
    /// What the sinks saw.
    pub sink: SinkCounts,
    /// Each kill.
    pub kills: Vec<KillReport>,
    /// The database restart.
    pub db_restart: Option<DbRestartReport>,
    /// Relays that exited on their own (a violation), with their last log line.
    pub unexpected_exits: Vec<String>,
    /// Relays that exited on their own while the database restarted, e.g. refusing to
    /// start while it was down (reported, not a violation: nothing can be lost that way).
    pub exits_during_db_restart: Vec<String>,
    /// Phase durations.
    pub durations: Durations,
    /// A few example ids behind the violations.
    pub examples: Vec<String>,
    /// Every violation, one line each.
    pub violations: Vec<String>,
    /// Where the logs are.
    pub work_dir: PathBuf,
}

impl ChaosReport {
    /// No violation.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Recovery times of the kills that have one, sorted.
    pub fn recoveries_ms(&self) -> Vec<u64> {
        let mut r: Vec<u64> = self.kills.iter().filter_map(|k| k.recovery_ms).collect();
        r.sort_unstable();
        r
    }
}

/// A kill as it happened.
#[derive(Debug, Clone)]
pub(crate) struct KillRecord {
    pub at: OffsetDateTime,
    pub at_ms: u64,
    pub relay: usize,
    pub pid: Option<u32>,
    pub partitions: Option<Vec<u32>>,
}

/// The database restart as it happened.
#[derive(Debug, Clone)]
pub(crate) struct DbRestartRecord {
    pub started: OffsetDateTime,
    pub at_ms: u64,
    pub downtime_ms: u64,
    pub error: Option<String>,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub id: Uuid,
    pub stream: String,
    pub version: u64,
}

/// Everything observed, for [`analyze`].
pub(crate) struct Observations {
    pub seed: u64,
    pub settings: Settings,
    pub plan: Plan,
    pub records: Vec<AppendRecord>,
    pub anomalies: Vec<String>,
    pub errors: BTreeMap<String, u64>,
    pub events: Vec<StoredEvent>,
    pub entries: Vec<OutboxEntry>,
    /// (sink, request), in arrival order.
    pub deliveries: Vec<(u8, Delivery)>,
    pub kills: Vec<KillRecord>,
    pub db_restart: Option<DbRestartRecord>,
    pub pending_after_drain: u64,
    pub unexpected_exits: Vec<(OffsetDateTime, String)>,
    pub durations: Durations,
    pub work_dir: PathBuf,
}

const EXAMPLES: usize = 5;

/// How late after the database restart an exit may be noticed and still count as part
/// of it (the harness looks at its relays before each kill and while draining).
const EXIT_NOTICE_DELAY: time::Duration = time::Duration::seconds(10);

/// Deliveries this soon after a kill are the killed relay's last requests (already in
/// the socket), not the partition's recovery.
const IN_FLIGHT_GRACE: time::Duration = time::Duration::milliseconds(20);

/// Runs every check.
pub(crate) fn analyze(o: Observations) -> ChaosReport {
    let mut violations = Vec::new();
    let mut examples = Vec::new();

    // Appends against the store.
    let stored: HashMap<Uuid, &StoredEvent> = o.events.iter().map(|e| (e.id, e)).collect();
    let mut appends = AppendCounts {
        attempted: o.records.len() as u64,
        events_stored: o.events.len() as u64,
        errors: o.errors.clone(),
        ..AppendCounts::default()
    };
    let mut acknowledged_but_missing = 0u64;
    let mut failed_but_stored = 0u64;
    let mut attempted_ids: HashSet<Uuid> = HashSet::new();
    for r in &o.records {
        attempted_ids.extend(r.event_ids.iter().copied());
        let present = r.event_ids.iter().filter(|id| stored.contains_key(id)).count();
        let all = present == r.event_ids.len();
        match r.outcome {
            Outcome::Ok => {
                appends.ok += 1;
                if !all {
                    acknowledged_but_missing += 1;
                    push_example(
                        &mut examples,
                        format!("acknowledged append missing: stream {}", r.stream),
                    );
                }
            }
            Outcome::Failed => {
                appends.failed += 1;
                if present > 0 {
                    failed_but_stored += 1;
                    push_example(&mut examples, format!("failed append stored: stream {}", r.stream));
                }
            }
            Outcome::Unknown => {
                appends.unknown += 1;
                match r.resolved_committed {
                    Some(true) => appends.unknown_committed += 1,
                    Some(false) => appends.unknown_rolled_back += 1,
                    None => {}
                }
                if present != 0 && !all {
                    failed_but_stored += 1;
                    push_example(&mut examples, format!("append half stored: stream {}", r.stream));
                }
                if r.resolved_committed.is_some_and(|c| c != all) {
                    o_anomaly(&mut examples, r);
                    failed_but_stored += 1;
                }
            }
        }
    }
    let entry_events: HashSet<Uuid> = o.entries.iter().filter_map(|e| e.event_id).collect();
    let unexplained_rows = o
        .events
        .iter()
        .filter(|e| !attempted_ids.contains(&e.id) || !entry_events.contains(&e.id))
        .count() as u64
        + o.entries
            .iter()
            .filter(|e| e.event_id.is_none_or(|id| !stored.contains_key(&id)))
            .count() as u64;

    // Versions in the store: 1..=n per stream.
    let mut versions: HashMap<&str, BTreeSet<u64>> = HashMap::new();
    for e in &o.events {
        versions.entry(e.stream.as_str()).or_default().insert(e.version);
    }
    let version_holes: u64 = versions
        .values()
        .map(|v| v.last().copied().unwrap_or(0) - v.len() as u64)
        .sum();

    // Deliveries against the committed entries.
    let committed: Vec<Committed> = o
        .entries
        .iter()
        .map(|e| Committed::new(e.id, e.stream_id.clone(), e.stream_version.map_or(e.seq, |v| v as i64)))
        .collect();
    let dead: Vec<Uuid> = o
        .entries
        .iter()
        .filter(|e| e.state == EntryState::Dead)
        .map(|e| e.id)
        .collect();
    let observed: Vec<Observed> = o.deliveries.iter().filter_map(|(_, d)| d.observed()).collect();
    let check = Checker::new()
        .committed(committed)
        .dead(dead.iter().copied())
        .observed(observed)
        .check();
    for id in check.lost.iter().take(EXAMPLES) {
        push_example(&mut examples, format!("lost entry {id}"));
    }
    for id in check.phantoms.iter().take(EXAMPLES) {
        push_example(&mut examples, format!("phantom entry {id}"));
    }
    for v in check.order_violations.iter().take(EXAMPLES) {
        push_example(
            &mut examples,
            format!("stream {}: {} first delivered after {}", v.stream, v.late, v.overtaking),
        );
    }

    let accepted: HashSet<Uuid> = o
        .deliveries
        .iter()
        .filter(|(_, d)| d.accepted())
        .filter_map(|(_, d)| d.entry_id())
        .collect();
    let delivered_without_record = o
        .entries
        .iter()
        .filter(|e| e.state == EntryState::Delivered && !accepted.contains(&e.id))
        .count() as u64;

    let gaps = count_gaps(&o.entries, &o.deliveries);
    let sink = sink_counts(&o.deliveries);

    let kills: Vec<KillReport> = o
        .kills
        .iter()
        .map(|k| KillReport {
            at_ms: k.at_ms,
            relay: k.relay,
            pid: k.pid,
            partitions: k.partitions.clone(),
            recovery_ms: k.partitions.as_ref().and_then(|held| {
                let held: HashSet<u32> = held.iter().copied().collect();
                // Requests the killed relay had already written to its socket are still
                // served right after the kill; they are not a recovery.
                let after = k.at + IN_FLIGHT_GRACE;
                first_accepted_after(&o.deliveries, after, |stream| {
                    held.contains(&partition_of(stream, o.settings.partitions))
                })
                .map(|ms| ms + IN_FLIGHT_GRACE.whole_milliseconds() as u64)
            }),
        })
        .collect();
    let db_restart = o.db_restart.as_ref().map(|r| {
        let back = r.started + time::Duration::milliseconds(r.downtime_ms as i64);
        DbRestartReport {
            at_ms: r.at_ms,
            downtime_ms: r.downtime_ms,
            recovery_ms: first_accepted_after(&o.deliveries, back, |_| true).map(|ms| ms + r.downtime_ms),
            append_recovery_ms: o
                .records
                .iter()
                .filter(|a| a.outcome == Outcome::Ok && a.at_ms >= r.at_ms + r.downtime_ms)
                .map(|a| a.at_ms - r.at_ms)
                .min(),
            error: r.error.clone(),
        }
    });

    let committed_n = o.entries.len() as u64;
    let lost = check.lost.len() as u64;
    let restarts = u64::from(o.db_restart.is_some());
    let duplicate_bound =
        (o.kills.len() as u64 + restarts) * u64::from(o.settings.batch_size) * u64::from(o.settings.partitions);
    let duplicates_per_10k = if committed_n == 0 {
        0.0
    } else {
        check.duplicates as f64 * 10_000.0 / committed_n as f64
    };

    // Exits noticed while the database was restarting (or shortly after: the harness
    // notices at its next look) are tolerated.
    let restart_window = o.db_restart.as_ref().map(|r| {
        (
            r.started,
            r.started + time::Duration::milliseconds(r.downtime_ms as i64) + EXIT_NOTICE_DELAY,
        )
    });
    let (during_restart, unexpected_exits): (Vec<_>, Vec<_>) = o
        .unexpected_exits
        .into_iter()
        .partition(|(at, _)| restart_window.is_some_and(|(from, to)| *at >= from && *at <= to));
    let unexpected_exits: Vec<String> = unexpected_exits.into_iter().map(|(_, t)| t).collect();
    let exits_during_db_restart: Vec<String> = during_restart.into_iter().map(|(_, t)| t).collect();

    let mut require = |ok: bool, text: String| {
        if !ok {
            violations.push(text);
        }
    };
    require(
        o.pending_after_drain == 0,
        format!(
            "{} entries still pending after the drain deadline",
            o.pending_after_drain
        ),
    );
    require(lost == 0, format!("lost = committed − delivered − dead = {lost}"));
    require(
        check.phantoms.is_empty(),
        format!("phantom deliveries: {}", check.phantoms.len()),
    );
    require(
        check.order_violations.is_empty(),
        format!("per-stream order violations: {}", check.order_violations.len()),
    );
    require(gaps == 0, format!("per-stream gaps in first deliveries: {gaps}"));
    require(
        version_holes == 0,
        format!("missing stream versions in the store: {version_holes}"),
    );
    require(
        delivered_without_record == 0,
        format!("entries marked delivered without a sink record: {delivered_without_record}"),
    );
    require(
        acknowledged_but_missing == 0,
        format!("acknowledged appends not stored: {acknowledged_but_missing}"),
    );
    require(
        failed_but_stored == 0,
        format!("failed or rolled-back appends stored: {failed_but_stored}"),
    );
    require(
        unexplained_rows == 0,
        format!("unexplained events or entries: {unexplained_rows}"),
    );
    require(
        o.anomalies.is_empty(),
        format!("stream version anomalies seen by writers: {}", o.anomalies.len()),
    );
    require(
        check.duplicates <= duplicate_bound,
        format!("duplicates {} exceed the bound {duplicate_bound}", check.duplicates),
    );
    require(
        sink.bad_signatures == 0,
        format!("bad signatures: {}", sink.bad_signatures),
    );
    require(
        unexpected_exits.is_empty(),
        format!("relays exited on their own: {}", unexpected_exits.len()),
    );
    if let Some(r) = &db_restart {
        require(
            r.error.is_none(),
            format!("database restart failed: {}", r.error.clone().unwrap_or_default()),
        );
    }
    require(committed_n > 0, "nothing was committed".to_string());

    ChaosReport {
        seed: o.seed,
        settings: o.settings,
        plan: o.plan,
        appends,
        committed: committed_n,
        delivered: check.delivered,
        dead: dead.len() as u64,
        pending_after_drain: o.pending_after_drain,
        lost,
        phantoms: check.phantoms.len() as u64,
        order_violations: check.order_violations.len() as u64,
        gaps,
        version_holes,
        delivered_without_record,
        acknowledged_but_missing,
        failed_but_stored,
        unexplained_rows,
        version_anomalies: o.anomalies,
        duplicates: check.duplicates,
        duplicates_per_10k,
        duplicate_bound,
        sink,
        kills,
        db_restart,
        unexpected_exits,
        exits_during_db_restart,
        durations: o.durations,
        examples,
        violations,
        work_dir: o.work_dir,
    }
}

fn push_example(examples: &mut Vec<String>, text: String) {
    if examples.len() < 3 * EXAMPLES {
        examples.push(text);
    }
}

fn o_anomaly(examples: &mut Vec<String>, r: &AppendRecord) {
    push_example(
        examples,
        format!("unknown append on {} settled differently from what is stored", r.stream),
    );
}

/// Milliseconds from `after` to the first accepted delivery after it of a stream that
/// `matches`.
fn first_accepted_after(
    deliveries: &[(u8, Delivery)],
    after: OffsetDateTime,
    matches: impl Fn(&str) -> bool,
) -> Option<u64> {
    deliveries
        .iter()
        .filter(|(_, d)| d.accepted() && d.received_at > after)
        .find(|(_, d)| d.body.as_ref().is_some_and(|b| matches(&b.stream)))
        .map(|(_, d)| (d.received_at - after).whole_milliseconds().max(0) as u64)
}

/// First deliveries that came while an earlier (not dead) entry of the same stream had
/// not been delivered yet.
fn count_gaps(entries: &[OutboxEntry], deliveries: &[(u8, Delivery)]) -> u64 {
    // Per stream: versions still expected, in order (dead entries are not expected).
    let mut expected: HashMap<&str, BTreeSet<u64>> = HashMap::new();
    for e in entries {
        if e.state != EntryState::Dead
            && let Some(v) = e.stream_version
        {
            expected.entry(e.stream_id.as_str()).or_default().insert(v);
        }
    }
    let mut gaps = 0;
    let mut seen: HashSet<Uuid> = HashSet::new();
    for (_, d) in deliveries {
        if !d.accepted() {
            continue;
        }
        let (Some(id), Some(body), Some(version)) = (d.entry_id(), d.body.as_ref(), version_of(d)) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        if let Some(left) = expected.get_mut(body.stream.as_str()) {
            if left.first().is_some_and(|first| *first < version) {
                gaps += 1;
            }
            left.remove(&version);
        }
    }
    gaps
}

fn sink_counts(deliveries: &[(u8, Delivery)]) -> SinkCounts {
    let mut c = SinkCounts::default();
    for (_, d) in deliveries {
        c.requests += 1;
        match d.answer {
            Answer::Accepted => c.accepted += 1,
            Answer::ServerError => c.server_errors += 1,
            Answer::TooManyRequests => c.too_many_requests += 1,
            Answer::Timeout => c.hangs += 1,
            _ => {}
        }
        if matches!(d.signature, SignatureCheck::Invalid | SignatureCheck::Missing) {
            c.bad_signatures += 1;
        }
    }
    c
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        writeln!(
            f,
            "chaos seed {}: {} events over {} streams, {} writers, {} relays, {} kills{}",
            self.seed,
            s.events,
            s.streams,
            s.writers,
            s.relays,
            self.kills.len(),
            if s.db_restart { ", 1 database restart" } else { "" }
        )?;
        let a = &self.appends;
        writeln!(
            f,
            "appends: {} tried, {} ok, {} failed, {} unknown ({} committed, {} rolled back)",
            a.attempted, a.ok, a.failed, a.unknown, a.unknown_committed, a.unknown_rolled_back
        )?;
        writeln!(
            f,
            "entries: {} committed, {} delivered, {} dead, {} pending; sink: {} requests, {} accepted, {} 503, {} 429, {} hangs",
            self.committed,
            self.delivered,
            self.dead,
            self.pending_after_drain,
            self.sink.requests,
            self.sink.accepted,
            self.sink.server_errors,
            self.sink.too_many_requests,
            self.sink.hangs
        )?;
        writeln!(
            f,
            "lost {}, phantoms {}, order violations {}, gaps {}, delivered without record {}",
            self.lost, self.phantoms, self.order_violations, self.gaps, self.delivered_without_record
        )?;
        writeln!(
            f,
            "duplicates {} ({:.1} per 10k; bound {})",
            self.duplicates, self.duplicates_per_10k, self.duplicate_bound
        )?;
        let r = self.recoveries_ms();
        if let (Some(min), Some(max)) = (r.first(), r.last()) {
            writeln!(
                f,
                "recovery after kill: {} measured, min {min} ms, median {} ms, max {max} ms",
                r.len(),
                r[r.len() / 2]
            )?;
        }
        if let Some(d) = &self.db_restart {
            writeln!(
                f,
                "database restart at {} ms: down {} ms, deliveries again after {:?} ms, appends after {:?} ms",
                d.at_ms, d.downtime_ms, d.recovery_ms, d.append_recovery_ms
            )?;
        }
        if self.passed() {
            write!(f, "PASSED")
        } else {
            write!(f, "FAILED: {}", self.violations.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::WebhookBody;
    use axum::body::Bytes;
    use serde_json::value::RawValue;

    fn entry(stream: &str, version: u64, state: EntryState) -> OutboxEntry {
        let now = OffsetDateTime::now_utc();
        OutboxEntry {
            seq: version as i64,
            id: Uuid::now_v7(),
            destination: "sink".into(),
            stream_id: stream.into(),
            partition: partition_of(stream, 4),
            event_type: "ChaosEvent".into(),
            payload: RawValue::from_string(format!("{{\"v\":{version}}}")).unwrap(),
            metadata: None,
            event_id: Some(Uuid::now_v7()),
            stream_version: Some(version),
            state,
            attempts: 1,
            last_error: None,
            created_at: now,
            next_attempt_at: now,
            delivered_at: None,
            dead_at: None,
        }
    }

    fn delivery(e: &OutboxEntry, answer: Answer, at_ms: i64) -> (u8, Delivery) {
        (
            1,
            Delivery {
                webhook_id: Some(e.id.to_string()),
                timestamp: Some(0),
                body: Some(WebhookBody {
                    id: e.id,
                    stream: e.stream_id.clone(),
                    event_type: e.event_type.clone(),
                    payload: serde_json::json!({ "v": e.stream_version }),
                    created_at: None,
                }),
                raw_body: Bytes::new(),
                attempt: 1,
                received_at: OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(at_ms),
                signature: SignatureCheck::Valid,
                answer,
            },
        )
    }

    /// Observations of a clean run: both entries stored, appended ok, delivered in order.
    fn clean() -> (Observations, Vec<OutboxEntry>) {
        let entries = vec![
            entry("s", 1, EntryState::Delivered),
            entry("s", 2, EntryState::Delivered),
        ];
        let events = entries
            .iter()
            .map(|e| StoredEvent {
                id: e.event_id.unwrap(),
                stream: e.stream_id.clone(),
                version: e.stream_version.unwrap(),
            })
            .collect();
        let records = vec![AppendRecord {
            writer: 0,
            stream: "s".into(),
            first_version: 1,
            event_ids: entries.iter().map(|e| e.event_id.unwrap()).collect(),
            outcome: Outcome::Ok,
            resolved_committed: None,
            at_ms: 0,
        }];
        let deliveries = vec![
            delivery(&entries[0], Answer::ServerError, 1),
            delivery(&entries[0], Answer::Accepted, 2),
            delivery(&entries[1], Answer::Accepted, 3),
        ];
        let o = Observations {
            seed: 1,
            settings: Settings {
                events: 2,
                streams: 1,
                writers: 1,
                relays: 1,
                batch_size: 10,
                partitions: 4,
                db_restart: false,
            },
            plan: Plan::new(1, 0, 1, 1, false),
            records,
            anomalies: Vec::new(),
            errors: BTreeMap::new(),
            events,
            entries: entries.clone(),
            deliveries,
            kills: Vec::new(),
            db_restart: None,
            pending_after_drain: 0,
            unexpected_exits: Vec::new(),
            durations: Durations::default(),
            work_dir: PathBuf::new(),
        };
        (o, entries)
    }

    #[test]
    fn a_clean_run_passes() {
        let (o, _) = clean();
        let r = analyze(o);
        assert!(r.passed(), "{:?}", r.violations);
        assert_eq!(
            (r.committed, r.delivered, r.duplicates, r.sink.server_errors),
            (2, 2, 0, 1)
        );
    }

    #[test]
    fn each_violation_is_caught() {
        let violation = |f: &dyn Fn(&mut Observations, &[OutboxEntry]), needle: &str| {
            let (mut o, entries) = clean();
            f(&mut o, &entries);
            let r = analyze(o);
            assert!(
                r.violations.iter().any(|v| v.contains(needle)),
                "{needle}: {:?}",
                r.violations
            );
        };
        violation(
            &|o, _| {
                o.deliveries.pop();
            },
            "lost",
        );
        violation(
            &|o, e| o.deliveries.insert(0, delivery(&e[1], Answer::Accepted, 0)),
            "order violations",
        );
        violation(
            &|o, e| o.deliveries.insert(0, delivery(&e[1], Answer::Accepted, 0)),
            "gaps",
        );
        violation(
            &|o, _| {
                o.deliveries
                    .push(delivery(&entry("x", 1, EntryState::Pending), Answer::Accepted, 9))
            },
            "phantom",
        );
        violation(
            &|o, _| {
                o.events.pop();
            },
            "acknowledged appends not stored",
        );
        violation(
            &|o, _| o.records[0].outcome = Outcome::Failed,
            "failed or rolled-back appends stored",
        );
        violation(
            &|o, e| o.deliveries.push(delivery(&e[0], Answer::Accepted, 9)),
            "duplicates 1 exceed the bound 0",
        );
        violation(&|o, _| o.pending_after_drain = 3, "still pending");
        violation(
            &|o, _| o.deliveries[0].1.signature = SignatureCheck::Invalid,
            "bad signatures",
        );
        violation(
            &|o, _| {
                o.unexpected_exits
                    .push((OffsetDateTime::UNIX_EPOCH, "relay 0 exited".into()))
            },
            "exited on their own",
        );
        violation(&|o, _| o.events[1].version = 3, "missing stream versions");
        violation(
            &|o, _| {
                o.deliveries.retain(|(_, d)| {
                    d.answer != Answer::Accepted || d.body.as_ref().is_some_and(|b| b.payload["v"] != 2)
                });
            },
            "without a sink record",
        );
    }

    #[test]
    fn recovery_is_the_first_delivery_of_a_killed_partition() {
        let (mut o, _) = clean();
        let p = partition_of("s", 4);
        o.kills.push(KillRecord {
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(1),
            at_ms: 0,
            relay: 0,
            pid: Some(7),
            partitions: Some(vec![p]),
        });
        o.kills.push(KillRecord {
            at: OffsetDateTime::UNIX_EPOCH,
            at_ms: 0,
            relay: 0,
            pid: Some(8),
            partitions: Some(vec![(p + 1) % 4]),
        });
        let r = analyze(o);
        assert_eq!(
            r.kills[0].recovery_ms, None,
            "accepted 1 ms after the kill: the killed relay's own request"
        );
        let (mut o, entries) = clean();
        o.kills.push(KillRecord {
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(1),
            at_ms: 0,
            relay: 0,
            pid: Some(7),
            partitions: Some(vec![p]),
        });
        o.deliveries.push(delivery(&entries[1], Answer::Accepted, 101));
        o.kills.push(KillRecord {
            at: OffsetDateTime::UNIX_EPOCH,
            at_ms: 0,
            relay: 0,
            pid: Some(8),
            partitions: Some(vec![(p + 1) % 4]),
        });
        let r = analyze(o);
        assert_eq!(r.kills[0].recovery_ms, Some(100), "the next delivery of its partition");
        assert_eq!(r.kills[1].recovery_ms, None, "nothing of that partition was delivered");
        assert_eq!(r.duplicate_bound, 2 * 10 * 4);
    }

    #[test]
    fn exits_during_the_db_restart_are_tolerated() {
        let (mut o, _) = clean();
        let start = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100);
        o.db_restart = Some(DbRestartRecord {
            started: start,
            at_ms: 0,
            downtime_ms: 3000,
            error: None,
        });
        o.unexpected_exits
            .push((start + time::Duration::seconds(4), "refused to start".into()));
        let r = analyze(o);
        assert!(r.passed(), "{:?}", r.violations);
        assert_eq!(r.exits_during_db_restart, vec!["refused to start".to_string()]);

        let (mut o, _) = clean();
        o.db_restart = Some(DbRestartRecord {
            started: start,
            at_ms: 0,
            downtime_ms: 3000,
            error: None,
        });
        o.unexpected_exits
            .push((start + time::Duration::seconds(60), "crashed".into()));
        assert!(!analyze(o).passed(), "an exit long after the restart is a violation");
    }
}
