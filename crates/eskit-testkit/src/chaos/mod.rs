//! The crash-loop checker: the promise of DESIGN.md, measured under crashes.
//!
//! [`run`] appends events over many streams from several writer tasks (recording for
//! every append whether it committed, failed, or cannot be known), runs the relay as
//! real child processes and kills them with SIGKILL at seeded moments, restarting
//! them; optionally restarts the database once; delivers to a loopback webhook
//! [`Receiver`] that injects 503s, 429s and hangs and whose every request is written
//! to `deliveries.jsonl`; then heals everything (a fault-free sink, relays restarted
//! with SIGTERM), waits until nothing is pending and checks:
//!
//! - lost = committed − delivered − dead = 0, phantoms = 0;
//! - per stream, first deliveries in commit order (0 violations) and without gaps;
//! - every entry marked delivered has a sink record;
//! - appends reported committed are stored, failed ones are not;
//! - duplicates are counted and stay within (kills + restarts) × batch × partitions;
//! - recovery time after each kill (first delivery of a partition the killed relay
//!   held) and after the database restart.
//!
//! The seed fixes the kill schedule, the restart moment, the sink's fault draws and
//! the writers' choices ([`Plan`]); replaying a seed replays them.
//!
//! The relay processes come from a [`RelayLauncher`] (the `eskit chaos` command runs
//! `eskit relay --config <generated file>`), so this module works with any binary.

mod log;
mod plan;
mod relays;
mod report;
mod writers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eskit::{EntryFilter, EventStore, OutboxStore, TransactionalStore};
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use plan::{HANG, HANG_RATE, Plan, PlannedKill, SERVER_ERROR_RATE, TOO_MANY_REQUESTS_RATE};
pub use relays::RelayLauncher;
pub use report::{AppendCounts, ChaosReport, DbRestartReport, Durations, KillReport, Settings, SinkCounts};
pub use writers::{AppendRecord, EVENT_TYPE, Outcome};

use crate::receiver::{Delivery, Receiver, ReceiverConfig, ReceiverError};
use log::DeliveryLog;
use relays::Relays;
use report::{DbRestartRecord, KillRecord, Observations, StoredEvent};
use writers::{Writer, WriterTally};

/// Errors that stop a chaos run before it can report.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The sink could not start.
    #[error("starting the loopback sink: {0}")]
    Receiver(#[from] ReceiverError),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed while reading the final state.
    #[error("{context}: {source}")]
    Store {
        /// What the harness was doing.
        context: &'static str,
        /// The error.
        #[source]
        source: eskit::Error,
    },
}

/// How a chaos run is shaped. The store it runs against must route every event to
/// [`ChaosConfig::destination`] and have [`ChaosConfig::partitions`] partitions; the
/// relays the launcher starts must use the same database.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// SIGKILLs of relay processes.
    pub kills: usize,
    /// Events to append.
    pub events: u64,
    /// Streams to spread them over.
    pub streams: usize,
    /// Writer tasks.
    pub writers: usize,
    /// Relay processes running at once.
    pub relays: usize,
    /// The relays' batch size (for the duplicate bound).
    pub batch_size: u32,
    /// The store's partitions.
    pub partitions: u32,
    /// The destination the sink stands for.
    pub destination: String,
    /// The webhook secret (`whsec_…`) the relays sign with; the sink verifies it.
    pub secret: String,
    /// A command that restarts the database once (program and arguments); `None`: no restart.
    pub db_restart: Option<Vec<String>>,
    /// Where the logs go (`deliveries.jsonl`, `appends.jsonl`, relay logs).
    pub work_dir: PathBuf,
    /// How long to wait for the outbox to drain after healing.
    pub drain_timeout: Duration,
}

impl ChaosConfig {
    /// The seeded plan of this configuration.
    pub fn plan(&self) -> Plan {
        Plan::new(
            self.seed,
            self.kills,
            self.relays,
            self.writers,
            self.db_restart.is_some(),
        )
    }

    /// Stream ids of the run.
    pub fn stream_ids(&self) -> Vec<String> {
        (0..self.streams.max(1)).map(|i| format!("chaos-{i}")).collect()
    }
}

/// Progress messages for the caller (e.g. printed to stderr).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs the crash loop and returns what it found.
pub async fn run<S>(
    store: Arc<S>,
    launcher: Arc<dyn RelayLauncher>,
    config: ChaosConfig,
    progress: Progress,
) -> Result<ChaosReport, ChaosError>
where
    S: TransactionalStore + OutboxStore,
{
    let run_started = Instant::now();
    let plan = config.plan();
    let io = |context: String| move |source| ChaosError::Io { context, source };
    std::fs::create_dir_all(&config.work_dir).map_err(io(format!("creating {}", config.work_dir.display())))?;
    let log = DeliveryLog::create(&config.work_dir.join("deliveries.jsonl"))?;

    // The faulty sink and the relays.
    let faulty = Arc::new(
        Receiver::start(
            ReceiverConfig::new()
                .secret(config.secret.clone())
                .faults(plan.faults()),
        )
        .await?,
    );
    let stop_faulty_log = CancellationToken::new();
    let faulty_log = tokio::spawn(log.clone().follow(faulty.clone(), 1, stop_faulty_log.clone()));
    let mut relays = Relays::new(launcher, config.relays.max(1), config.work_dir.clone());
    relays.start_all(&faulty.url())?;
    // The chaos clock starts once the relays hold every partition, so that the first
    // kills hit working relays, not starting ones.
    if !relays_ready(
        &*store,
        &config.destination,
        config.partitions,
        relays.len(),
        READY_TIMEOUT,
    )
    .await
    {
        progress("the relays did not take every partition in time; starting anyway");
    }
    progress(&format!(
        "seed {}: {} relays, {} kills over {:.1}s, {} events over {} streams from {} writers",
        config.seed,
        config.relays,
        plan.kills.len(),
        plan.window.as_secs_f64(),
        config.events,
        config.streams,
        config.writers
    ));

    // Writers.
    let chaos_started = Instant::now();
    let streams = config.stream_ids();
    let writers_n = config.writers.max(1);
    let mut writers = JoinSet::new();
    for (w, seed) in plan.writer_seeds.iter().enumerate() {
        let owned: Vec<String> = streams.iter().skip(w).step_by(writers_n).cloned().collect();
        let quota = config.events / writers_n as u64 + u64::from((w as u64) < config.events % writers_n as u64);
        writers.spawn(
            Writer {
                store: store.clone(),
                index: w,
                streams: owned,
                quota,
                seed: *seed,
                window: plan.window,
                started: chaos_started,
            }
            .run(),
        );
    }

    // The database restart runs on its own.
    let restart = match (&config.db_restart, plan.db_restart_at) {
        (Some(command), Some(at)) => Some(tokio::spawn(restart_db(
            command.clone(),
            chaos_started + at,
            chaos_started,
            progress.clone(),
        ))),
        _ => None,
    };

    // Kills, on schedule.
    let mut kills = Vec::with_capacity(plan.kills.len());
    for planned in &plan.kills {
        tokio::time::sleep_until(chaos_started + planned.at).await;
        relays.check_alive()?;
        let pid = relays.pid(planned.relay);
        let partitions = match pid {
            Some(pid) => held_partitions(&*store, &config.destination, pid).await,
            None => None,
        };
        let at = OffsetDateTime::now_utc();
        let at_ms = chaos_started.elapsed().as_millis() as u64;
        relays.kill(planned.relay).await;
        kills.push(KillRecord {
            at,
            at_ms,
            relay: planned.relay,
            pid,
            partitions,
        });
        tokio::time::sleep(planned.restart_after).await;
        relays.spawn(planned.relay)?;
    }
    if !plan.kills.is_empty() {
        progress(&format!("{} kills done", plan.kills.len()));
    }

    // Writers finish (they are paced to the window, later if the store is slower).
    let mut tally = WriterTally::default();
    while let Some(done) = writers.join_next().await {
        if let Ok(t) = done {
            tally.records.extend(t.records);
            tally.anomalies.extend(t.anomalies);
            for (k, n) in t.errors {
                *tally.errors.entry(k).or_default() += n;
            }
        }
    }
    let db_restart = match restart {
        Some(task) => task.await.ok(),
        None => None,
    };
    tokio::time::sleep_until(chaos_started + plan.window).await;
    relays.check_alive()?;
    let chaos_ms = chaos_started.elapsed().as_millis() as u64;
    progress(&format!(
        "chaos over after {:.1}s ({} appends); healing",
        chaos_ms as f64 / 1000.0,
        tally.records.len()
    ));

    // Heal: relays stop gracefully, a fault-free sink, relays again.
    relays.stop_all().await;
    stop_faulty_log.cancel();
    let _ = faulty_log.await;
    let healed = Arc::new(Receiver::start(ReceiverConfig::new().secret(config.secret.clone())).await?);
    let stop_healed_log = CancellationToken::new();
    let healed_log = tokio::spawn(log.clone().follow(healed.clone(), 2, stop_healed_log.clone()));
    let faulty_deliveries = faulty.deliveries();
    if let Ok(r) = Arc::try_unwrap(faulty) {
        r.shutdown().await;
    }
    relays.start_all(&healed.url())?;

    let drain_started = Instant::now();
    let pending_after_drain = drain(&*store, &config.destination, config.drain_timeout, &mut relays).await?;
    let drain_ms = drain_started.elapsed().as_millis() as u64;
    progress(&format!("drained in {:.1}s; checking", drain_ms as f64 / 1000.0));
    relays.stop_all().await;
    stop_healed_log.cancel();
    let _ = healed_log.await;
    let healed_deliveries = healed.deliveries();
    if let Ok(r) = Arc::try_unwrap(healed) {
        r.shutdown().await;
    }

    // What is stored.
    let events = stored_events(&*store).await?;
    let entries = all_entries(&*store, &config.destination).await?;
    write_appends(&config.work_dir, &tally);

    let mut deliveries: Vec<(u8, Delivery)> = faulty_deliveries
        .into_iter()
        .map(|d| (1, d))
        .chain(healed_deliveries.into_iter().map(|d| (2, d)))
        .collect();
    deliveries.sort_by_key(|(_, d)| d.received_at);

    let report = report::analyze(Observations {
        seed: config.seed,
        settings: Settings {
            events: config.events,
            streams: config.streams,
            writers: config.writers,
            relays: config.relays,
            batch_size: config.batch_size,
            partitions: config.partitions,
            db_restart: config.db_restart.is_some(),
        },
        plan,
        records: tally.records,
        anomalies: tally.anomalies,
        errors: tally.errors,
        events,
        entries,
        deliveries,
        kills,
        db_restart,
        pending_after_drain,
        unexpected_exits: std::mem::take(&mut relays.unexpected_exits)
            .into_iter()
            .map(|e| (e.at, e.text))
            .collect(),
        durations: Durations {
            chaos_ms,
            drain_ms,
            total_ms: run_started.elapsed().as_millis() as u64,
        },
        work_dir: config.work_dir.clone(),
    });
    if let Ok(json) = serde_json::to_string_pretty(&report) {
        let _ = std::fs::write(config.work_dir.join("report.json"), json);
    }
    Ok(report)
}

/// How long the relays get to take every partition before the chaos starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until every partition of `destination` has a live lease and every relay holds
/// one (or as many relays as there are partitions do).
async fn relays_ready<S: OutboxStore>(
    store: &S,
    destination: &str,
    partitions: u32,
    relays: usize,
    within: Duration,
) -> bool {
    crate::wait::wait_until(within, || async {
        store.list_leases(destination).await.is_ok_and(|leases| {
            let live: Vec<_> = leases.iter().filter(|l| l.live).collect();
            let owners: std::collections::HashSet<&str> = live.iter().map(|l| l.owner.as_str()).collect();
            live.len() as u32 >= partitions && owners.len() >= relays.min(partitions as usize)
        })
    })
    .await
}

/// Partitions of `destination` whose live lease belongs to the relay with this pid
/// (relay owner ids contain `-<pid>-`).
async fn held_partitions<S: OutboxStore>(store: &S, destination: &str, pid: u32) -> Option<Vec<u32>> {
    let marker = format!("-{pid}-");
    let leases = store.list_leases(destination).await.ok()?;
    Some(
        leases
            .into_iter()
            .filter(|l| l.live && l.owner.contains(&marker))
            .map(|l| l.partition)
            .collect(),
    )
}

/// Runs the restart command at `at`.
async fn restart_db(command: Vec<String>, at: Instant, started: Instant, progress: Progress) -> DbRestartRecord {
    tokio::time::sleep_until(at).await;
    let begun = Instant::now();
    let started_at = OffsetDateTime::now_utc();
    progress(&format!("restarting the database: {}", command.join(" ")));
    let error = match command.split_first() {
        None => Some("empty restart command".to_string()),
        Some((program, args)) => match tokio::process::Command::new(program).args(args).output().await {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "{} ({})",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Some(e.to_string()),
        },
    };
    DbRestartRecord {
        started: started_at,
        at_ms: begun.duration_since(started).as_millis() as u64,
        downtime_ms: begun.elapsed().as_millis() as u64,
        error,
    }
}

/// Waits until `destination` has nothing pending (restarting relays that exit on their
/// own); returns what is still pending at the deadline.
async fn drain<S: OutboxStore>(
    store: &S,
    destination: &str,
    within: Duration,
    relays: &mut Relays,
) -> Result<u64, ChaosError> {
    let deadline = Instant::now() + within;
    let mut pending = u64::MAX;
    loop {
        if let Ok(status) = store.status().await {
            pending = status
                .iter()
                .find(|s| s.destination == destination)
                .map_or(0, |s| s.pending);
            if pending == 0 {
                return Ok(0);
            }
        }
        if Instant::now() >= deadline {
            return Ok(pending);
        }
        relays.check_alive()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every stored event (paged).
async fn stored_events<S: EventStore>(store: &S) -> Result<Vec<StoredEvent>, ChaosError> {
    const PAGE: usize = 1000;
    let mut out = Vec::new();
    let mut from = 0i64;
    loop {
        let page = store.read_all(from, PAGE).await.map_err(|source| ChaosError::Store {
            context: "reading the stored events",
            source,
        })?;
        let n = page.len();
        if let Some(last) = page.last() {
            from = last.position + 1;
        }
        out.extend(page.into_iter().map(|e| StoredEvent {
            id: e.event_id,
            stream: e.stream_id,
            version: e.stream_version,
        }));
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// Every entry of a destination (paged), oldest first.
async fn all_entries<S: OutboxStore>(store: &S, destination: &str) -> Result<Vec<eskit::OutboxEntry>, ChaosError> {
    const PAGE: u32 = 1000;
    let mut filter = EntryFilter {
        destination: Some(destination.to_string()),
        limit: Some(PAGE),
        ..EntryFilter::default()
    };
    let mut out: Vec<eskit::OutboxEntry> = Vec::new();
    loop {
        let page = store.list_entries(&filter).await.map_err(|source| ChaosError::Store {
            context: "reading the outbox entries",
            source,
        })?;
        let n = page.len();
        if let Some(last) = page.last() {
            filter.after_seq = Some(last.seq);
        }
        out.extend(page);
        if n < PAGE as usize {
            return Ok(out);
        }
    }
}

/// `appends.jsonl`: every append and its outcome (best effort).
fn write_appends(dir: &std::path::Path, tally: &WriterTally) {
    use std::io::Write;
    let Ok(file) = std::fs::File::create(dir.join("appends.jsonl")) else {
        return;
    };
    let mut out = std::io::BufWriter::new(file);
    for r in &tally.records {
        if let Ok(line) = serde_json::to_string(r) {
            let _ = writeln!(out, "{line}");
        }
    }
}
