//! `eskit demo`: the whole story on a fresh database, checked end to end.
//!
//! 1. A fresh database: a SQLite file in a temporary directory (or `./eskit-demo.db`
//!    with `--keep`, or `--db URL`), or a fresh schema on `--db postgres://…`.
//! 2. A loopback webhook receiver that verifies Standard Webhooks signatures with a
//!    generated `whsec_` secret and injects faults: 503s, 429s with `Retry-After`,
//!    requests that hang past the webhook timeout, and one stream rejected for good.
//! 3. A store routing every event to a webhook destination pointing at the receiver,
//!    and the relay running beside the writers.
//! 4. Several writer tasks appending the events in batched transactions.
//! 5. Wait until nothing is pending, then check what the receiver saw against what
//!    was committed, and print the summary. Exit 1 if anything was lost, reordered,
//!    phantom, or badly signed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use comfy_table::{Cell, CellAlignment, Color};
use eskit::{
    BreakerConfig, DestinationPolicy, Destinations, EntryFilter, EntryState, EventData, ExpectedVersion,
    NewOutboxEntry, OutboxEntry, OutboxStore, Relay, RelayConfig, RetryPolicy, RouteFilter, StoreOptions,
};
use eskit_destinations::webhook::{WebhookConfig, WebhookDestination};
use eskit_testkit::checker::{Checker, Committed, Report};
use eskit_testkit::receiver::{Answer, Delivery, FaultPlan, Receiver, ReceiverConfig, SignatureCheck};
use hdrhistogram::Histogram;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use time::OffsetDateTime;
use tokio::task::JoinSet;

use crate::cli::DemoArgs;
use crate::commands::outbox::new_table;
use crate::config::redact_url;
use crate::error::{CliError, CliResult};
use crate::store::{DatabaseUrl, OpenStore, PendingAppend, open_url};

/// The destination name the demo routes every event to.
const DESTINATION: &str = "webhook";
/// Writer tasks appending concurrently.
const WRITERS: usize = 4;
/// Events per transaction.
const EVENTS_PER_TRANSACTION: usize = 25;
/// Partitions of the demo store: the default, so that a kept database opens with the
/// default configuration.
fn partitions() -> u32 {
    StoreOptions::default().partitions
}
/// The webhook's request timeout; hanging requests exceed it.
const WEBHOOK_TIMEOUT: Duration = Duration::from_millis(250);
/// Status the receiver answers for the permanently failing stream (a permanent 4xx;
/// not 410, which would disable the whole destination).
const POISON_STATUS: u16 = 422;
/// Default file kept with `--keep`.
const KEPT_FILE: &str = "eskit-demo.db";

/// Runs `eskit demo`.
pub async fn run(args: DemoArgs) -> CliResult {
    let db = DemoDb::prepare(&args)?;
    let mut opened: Option<OpenStore> = None;
    let outcome = tokio::select! {
        r = run_demo(&args, &db, &mut opened) => r,
        _ = tokio::signal::ctrl_c() => Err(CliError::Failed("interrupted".into())),
    };
    db.cleanup(opened.as_ref()).await;
    outcome
}

/// Where the demo's database lives and what is removed afterwards.
enum DemoDb {
    Sqlite {
        url: String,
        file: PathBuf,
        /// A directory the demo created and removes (temp dir), if any.
        temp_dir: Option<PathBuf>,
        keep: bool,
    },
    Postgres {
        url: String,
        schema: String,
        keep: bool,
    },
}

impl DemoDb {
    fn prepare(args: &DemoArgs) -> CliResult<Self> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        match args.db.as_deref().map(DatabaseUrl::parse) {
            None if args.keep => Self::sqlite_file(PathBuf::from(KEPT_FILE), None, true),
            None => {
                let dir = std::env::temp_dir().join(format!("eskit-demo-{}", &suffix[..12]));
                std::fs::create_dir_all(&dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
                Self::sqlite_file(dir.join("demo.db"), Some(dir), false)
            }
            Some(Err(e)) => Err(CliError::Usage(format!("--db: {e}"))),
            Some(Ok(DatabaseUrl::Sqlite { path: None, .. })) => Err(CliError::Usage(
                "--db: the demo needs a SQLite file, not an in-memory database".into(),
            )),
            Some(Ok(DatabaseUrl::Sqlite { path: Some(path), .. })) => Self::sqlite_file(path, None, args.keep),
            Some(Ok(DatabaseUrl::Postgres { url })) => Ok(DemoDb::Postgres {
                url,
                schema: format!("eskit_demo_{}", &suffix[..12]),
                keep: args.keep,
            }),
        }
    }

    fn sqlite_file(file: PathBuf, temp_dir: Option<PathBuf>, keep: bool) -> CliResult<Self> {
        if file.exists() {
            return Err(CliError::Usage(format!(
                "the demo needs a fresh database, and {} already exists: remove it or pass --db with another path",
                file.display()
            )));
        }
        Ok(DemoDb::Sqlite {
            url: format!("sqlite://{}", file.display()),
            file,
            temp_dir,
            keep,
        })
    }

    fn url(&self) -> &str {
        match self {
            DemoDb::Sqlite { url, .. } | DemoDb::Postgres { url, .. } => url,
        }
    }

    fn schema(&self) -> &str {
        match self {
            DemoDb::Sqlite { .. } => "eskit",
            DemoDb::Postgres { schema, .. } => schema,
        }
    }

    fn describe(&self) -> String {
        match self {
            DemoDb::Sqlite {
                file,
                temp_dir: Some(_),
                ..
            } => format!("SQLite {} (temporary)", file.display()),
            DemoDb::Sqlite { file, .. } => format!("SQLite {}", file.display()),
            DemoDb::Postgres { url, schema, .. } => format!("PostgreSQL {} schema {schema}", redact_url(url)),
        }
    }

    /// Removes what the demo created, unless `--keep`.
    async fn cleanup(&self, store: Option<&OpenStore>) {
        match self {
            DemoDb::Sqlite { file, keep: true, .. } => {
                eprintln!(
                    "kept the database {0}; look inside with e.g. `ESKIT_DATABASE=sqlite://{0} eskit outbox dlq list`",
                    file.display()
                );
            }
            DemoDb::Sqlite {
                file,
                temp_dir,
                keep: false,
                ..
            } => {
                if let Some(dir) = temp_dir {
                    let _ = std::fs::remove_dir_all(dir);
                } else {
                    for f in sqlite_files(file) {
                        let _ = std::fs::remove_file(f);
                    }
                }
            }
            DemoDb::Postgres {
                url,
                schema,
                keep: true,
            } => eprintln!(
                "kept the PostgreSQL schema {schema}; look inside with e.g. \
                 `ESKIT_DATABASE={} ESKIT_SCHEMA={schema} eskit outbox dlq list`",
                redact_url(url)
            ),
            DemoDb::Postgres {
                schema, keep: false, ..
            } => {
                if let Some(OpenStore::Postgres(pg)) = store {
                    let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema().quoted());
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pg.pool()).await {
                        eprintln!("warning: could not drop the demo schema {schema}: {e}");
                    }
                }
            }
        }
    }
}

fn sqlite_files(file: &Path) -> Vec<PathBuf> {
    let mut files = vec![file.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

/// What the writers committed.
struct Appended {
    committed: Vec<Committed>,
    events: u64,
    transactions: u64,
    elapsed: Duration,
}

async fn run_demo(args: &DemoArgs, db: &DemoDb, opened: &mut Option<OpenStore>) -> CliResult {
    let events = args.events;
    let streams = args.streams;
    let seed: u64 = rand::random();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    );
    // With one stream there is nothing to compare a failing stream with.
    let poison = (streams > 1).then(|| stream_name(7 % streams));

    let mut faults = FaultPlan::new(seed)
        .server_errors(0.05)
        .too_many_requests(0.01, Some(Duration::from_secs(1)))
        .timeouts(0.005, Duration::from_secs(5));
    if let Some(p) = &poison {
        faults = faults.failing_stream(p.clone(), POISON_STATUS);
    }
    let receiver = Receiver::start(ReceiverConfig::new().secret(secret.clone()).faults(faults))
        .await
        .map_err(|e| {
            CliError::Failed(format!(
                "starting the demo webhook receiver: {}",
                crate::error::one_line(&e)
            ))
        })?;

    let options = StoreOptions::default()
        .with_outbox(DESTINATION, RouteFilter::all())
        .partitions(partitions());
    let store = open_url(db.url(), db.schema(), options).await?;
    *opened = Some(store.clone());
    let outbox = store.outbox();

    let webhook = WebhookDestination::new(
        WebhookConfig::new(receiver.url(), secret)
            .timeout(WEBHOOK_TIMEOUT)
            .allow_cidr("127.0.0.0/8".parse().map_err(|_| CliError::Failed("bad CIDR".into()))?),
    )
    .map_err(|e| CliError::Failed(format!("building the demo webhook: {}", crate::error::one_line(&e))))?;
    let mut destinations = Destinations::new();
    destinations.insert(DESTINATION, webhook);

    println!("eskit demo");
    println!("  database:  {}", db.describe());
    println!(
        "  workload:  {events} events over {streams} streams, {WRITERS} writers, {EVENTS_PER_TRANSACTION} events per transaction"
    );
    println!(
        "  receiver:  {} (signatures checked; 5% answered 503, 1% 429 + Retry-After, 0.5% hang past the {}ms timeout{}; fault seed {seed})",
        receiver.url(),
        WEBHOOK_TIMEOUT.as_millis(),
        poison
            .as_ref()
            .map(|p| format!(", stream {p} rejected with {POISON_STATUS}"))
            .unwrap_or_default()
    );
    println!();

    let relay_config = RelayConfig::default()
        .poll_interval(Duration::from_millis(50))
        .rescan_interval(Duration::from_millis(250))
        .lease_ttl(Duration::from_secs(5))
        .shutdown_grace(Duration::from_secs(2))
        .batch_size(200)
        .concurrency(32)
        .retry(
            RetryPolicy::builder()
                .initial(Duration::from_millis(10))
                .max(Duration::from_millis(250))
                .multiplier(2.0)
                .jitter(0.2)
                .max_attempts(8),
        );
    // A share of failures is the point of the demo: keep the circuit breaker from
    // pausing the destination for long.
    let policy = DestinationPolicy::default().breaker(BreakerConfig {
        failure_threshold: 50,
        open_for: Duration::from_millis(100),
    });
    let started_at = OffsetDateTime::now_utc();
    let relay = Relay::new(outbox.clone(), destinations)
        .policy(DESTINATION, policy)
        .config(relay_config)
        .start();

    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {rate} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", state.per_sec());
        })
        .progress_chars("=> ");
    let append_bar = progress.add(
        ProgressBar::new(events)
            .with_style(style.clone())
            .with_prefix("appended"),
    );
    let deliver_bar = progress.add(ProgressBar::new(events).with_style(style).with_prefix("settled"));

    let watcher = {
        let outbox = outbox.clone();
        let bar = deliver_bar.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(n) = settled(outbox.as_ref()).await {
                    bar.set_position(n);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let appended = append_all(&store, events, streams, &append_bar).await;
    append_bar.finish();
    let appended = match appended {
        Ok(a) => a,
        Err(e) => {
            watcher.abort();
            relay.shutdown().await;
            return Err(e);
        }
    };

    let deadline = Duration::from_secs(60) + Duration::from_millis(10 * events);
    let drained = wait_drained(outbox.as_ref(), appended.committed.len() as u64, deadline).await;
    watcher.abort();
    deliver_bar.set_position(settled(outbox.as_ref()).await.unwrap_or(0));
    deliver_bar.finish();
    relay.shutdown().await;
    let _ = progress.clear();
    drained?;

    let entries = all_entries(outbox.as_ref()).await?;
    let deliveries = receiver.deliveries();
    let counts = receiver.counts();
    receiver.shutdown().await;

    let summary = Summary::compute(&appended, &entries, &deliveries, counts.bad_signatures, started_at);
    summary.print(&appended, poison.as_deref());
    if summary.ok() {
        println!("OK: every committed entry was delivered or dead-lettered, in order per stream.");
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "the demo found {} lost, {} phantom, {} reordered and {} badly signed deliveries",
            summary.lost,
            summary.phantoms,
            summary.report.order_violations.len(),
            summary.bad_signatures
        )))
    }
}

fn stream_name(i: u64) -> String {
    format!("order-{i:04}")
}

/// Delivered plus dead entries of the demo destination.
async fn settled(outbox: &dyn OutboxStore) -> eskit::Result<u64> {
    Ok(outbox
        .status()
        .await?
        .iter()
        .filter(|s| s.destination == DESTINATION)
        .map(|s| s.delivered + s.dead)
        .sum())
}

/// Appends `events` events round-robin over `streams` streams from several writers,
/// each owning a disjoint set of streams, in transactions of several appends.
async fn append_all(store: &OpenStore, events: u64, streams: u64, bar: &ProgressBar) -> CliResult<Appended> {
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS as u64 {
        let store = store.clone();
        let bar = bar.clone();
        writers.spawn(async move {
            let mine: Vec<u64> = (0..events).filter(|k| (k % streams) % WRITERS as u64 == w).collect();
            let mut committed = Vec::with_capacity(mine.len());
            let mut transactions = 0u64;
            for chunk in mine.chunks(EVENTS_PER_TRANSACTION) {
                let mut batch: Vec<PendingAppend> = Vec::new();
                let mut sent: Vec<(String, Vec<EventData>)> = Vec::new();
                for &k in chunk {
                    let stream = stream_name(k % streams);
                    let event = EventData::json(
                        if k % 3 == 0 { "OrderPaid" } else { "OrderPlaced" },
                        &serde_json::json!({"n": k, "stream": stream, "amount": (k * 37) % 1000}),
                    )
                    .map_err(|e| CliError::Failed(format!("building event {k}: {e}")))?;
                    sent.push((stream.clone(), vec![event.clone()]));
                    batch.push(PendingAppend {
                        stream,
                        expected: ExpectedVersion::Any,
                        events: vec![event],
                    });
                }
                let results = store.append_batch(batch).await.map_err(|e| CliError::Store {
                    context: "appending the demo events".into(),
                    source: e.error,
                })?;
                transactions += 1;
                for ((stream, events), result) in sent.iter().zip(results) {
                    for (i, event) in events.iter().enumerate() {
                        let version = result.first_version + i as u64;
                        let entry = NewOutboxEntry::for_event(DESTINATION, stream, version, event, partitions());
                        committed.push(Committed::new(entry.id, stream.clone(), version as i64));
                    }
                }
                bar.inc(chunk.len() as u64);
            }
            Ok::<_, CliError>((committed, transactions))
        });
    }
    let mut appended = Appended {
        committed: Vec::with_capacity(events as usize),
        events: 0,
        transactions: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = writers.join_next().await {
        let (committed, transactions) =
            joined.map_err(|e| CliError::Failed(format!("a writer task failed: {e}")))??;
        appended.events += committed.len() as u64;
        appended.committed.extend(committed);
        appended.transactions += transactions;
    }
    appended.elapsed = started.elapsed();
    Ok(appended)
}

/// Polls until nothing is pending for the demo destination and every committed entry
/// is settled, or the deadline passes.
async fn wait_drained(outbox: &dyn OutboxStore, expected: u64, within: Duration) -> CliResult {
    let deadline = Instant::now() + within;
    loop {
        let status = outbox
            .status()
            .await
            .map_err(CliError::store("reading the outbox status"))?;
        let s = status.iter().find(|s| s.destination == DESTINATION);
        let pending = s.map_or(0, |s| s.pending);
        let settled = s.map_or(0, |s| s.delivered + s.dead);
        if pending == 0 && settled >= expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "gave up after {}: {pending} entries still pending, {settled} of {expected} settled",
                humantime::format_duration(within)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every outbox entry of the demo destination, paging by `seq`.
async fn all_entries(outbox: &dyn OutboxStore) -> CliResult<Vec<OutboxEntry>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = outbox
            .list_entries(&EntryFilter {
                destination: Some(DESTINATION.into()),
                state: None,
                stream_id: None,
                after_seq: after,
                limit: Some(1000),
            })
            .await
            .map_err(CliError::store("listing the demo's outbox entries"))?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        let full = page.len() == 1000;
        all.extend(page);
        if !full {
            break;
        }
        after = Some(last);
    }
    Ok(all)
}

/// The numbers the demo prints.
struct Summary {
    report: Report,
    entries: u64,
    retried: u64,
    dead: u64,
    /// Lost per the checker plus entries marked delivered that the receiver never accepted.
    lost: u64,
    marked_but_not_received: u64,
    /// Phantoms per the checker plus store entries the writers never committed.
    phantoms: u64,
    bad_signatures: u64,
    requests: u64,
    answers: HashMap<&'static str, u64>,
    delivered_per_sec: f64,
    latency: Option<(Duration, Duration, Duration)>,
}

impl Summary {
    fn compute(
        appended: &Appended,
        entries: &[OutboxEntry],
        deliveries: &[Delivery],
        bad_signatures: u64,
        started_at: OffsetDateTime,
    ) -> Self {
        let dead_ids: Vec<uuid::Uuid> = entries
            .iter()
            .filter(|e| e.state == EntryState::Dead)
            .map(|e| e.id)
            .collect();
        let report = Checker::new()
            .committed(appended.committed.iter().cloned())
            .dead(dead_ids.iter().copied())
            .observed(deliveries.iter().filter_map(Delivery::observed))
            .check();

        let accepted: HashSet<uuid::Uuid> = deliveries
            .iter()
            .filter(|d| d.accepted())
            .filter_map(Delivery::entry_id)
            .collect();
        let marked_but_not_received = entries
            .iter()
            .filter(|e| e.state == EntryState::Delivered && !accepted.contains(&e.id))
            .count() as u64;
        // Entries the store holds that the writers do not know of are as bad as phantoms.
        let committed_ids: HashSet<uuid::Uuid> = appended.committed.iter().map(|c| c.id).collect();
        let unknown_in_store = entries.iter().filter(|e| !committed_ids.contains(&e.id)).count() as u64;

        let mut answers: HashMap<&'static str, u64> = HashMap::new();
        for d in deliveries {
            let key = match d.answer {
                Answer::Accepted => "200",
                Answer::ServerError => "503",
                Answer::TooManyRequests => "429",
                Answer::Timeout => "timeout",
                Answer::FailingStream(_) => "rejected",
                Answer::BadSignature => "401",
                Answer::BadRequest => "400",
            };
            *answers.entry(key).or_default() += 1;
        }

        // Commit → first successful delivery, from the entry's created_at to arrival.
        let created: HashMap<uuid::Uuid, OffsetDateTime> = entries.iter().map(|e| (e.id, e.created_at)).collect();
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        let mut seen = HashSet::new();
        let mut last_arrival = started_at;
        for d in deliveries
            .iter()
            .filter(|d| d.accepted() && d.signature != SignatureCheck::Invalid)
        {
            let Some(id) = d.entry_id() else { continue };
            if !seen.insert(id) {
                continue;
            }
            last_arrival = last_arrival.max(d.received_at);
            if let (Some(h), Some(created)) = (histogram.as_mut(), created.get(&id)) {
                let micros = (d.received_at - *created).whole_microseconds().clamp(1, 3_600_000_000) as u64;
                let _ = h.record(micros);
            }
        }
        let latency = histogram.filter(|h| !h.is_empty()).map(|h| {
            (
                Duration::from_micros(h.value_at_quantile(0.5)),
                Duration::from_micros(h.value_at_quantile(0.99)),
                Duration::from_micros(h.max()),
            )
        });
        let delivering_secs = (last_arrival - started_at).as_seconds_f64().max(1e-3);

        Summary {
            entries: entries.len() as u64,
            retried: entries.iter().filter(|e| e.attempts > 1).count() as u64,
            dead: dead_ids.len() as u64,
            lost: report.lost.len() as u64 + marked_but_not_received,
            marked_but_not_received,
            bad_signatures,
            requests: deliveries.len() as u64,
            answers,
            delivered_per_sec: report.delivered as f64 / delivering_secs,
            latency,
            phantoms: report.phantoms.len() as u64 + unknown_in_store,
            report,
        }
    }

    fn ok(&self) -> bool {
        self.lost == 0 && self.phantoms == 0 && self.report.order_violations.is_empty() && self.bad_signatures == 0
    }

    fn print(&self, appended: &Appended, poison: Option<&str>) {
        let r = &self.report;
        let check = |n: u64| {
            if n == 0 {
                Cell::new("0 ✓").fg(Color::Green)
            } else {
                Cell::new(format!("{n} ✗")).fg(Color::Red)
            }
        };
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        let answer = |k: &str| self.answers.get(k).copied().unwrap_or(0);
        let mut table = new_table(&["", "", "notes"]);
        table.add_row(vec![
            Cell::new("appended"),
            right(appended.events.to_string()),
            Cell::new(format!(
                "{} streams, {} transactions, {} outbox entries",
                r.streams, appended.transactions, self.entries
            )),
        ]);
        table.add_row(vec![
            Cell::new("delivered"),
            right(r.delivered.to_string()),
            Cell::new(format!(
                "{} requests: {} accepted, {} × 503, {} × 429, {} timeouts, {} rejected",
                self.requests,
                answer("200"),
                answer("503"),
                answer("429"),
                answer("timeout"),
                answer("rejected")
            )),
        ]);
        table.add_row(vec![
            Cell::new("retried (attempts > 1)"),
            right(self.retried.to_string()),
            Cell::new(""),
        ]);
        table.add_row(vec![
            Cell::new("dead-lettered"),
            right(self.dead.to_string()),
            Cell::new(match poison {
                Some(p) => format!("stream {p} is rejected with {POISON_STATUS}; see `eskit outbox dlq list`"),
                None => String::new(),
            }),
        ]);
        table.add_row(vec![
            Cell::new("duplicates received"),
            right(r.duplicates.to_string()),
            Cell::new("at-least-once: receivers drop them by webhook-id"),
        ]);
        table.add_row(vec![
            Cell::new("order violations"),
            check(r.order_violations.len() as u64),
            Cell::new("per stream, first deliveries in commit order"),
        ]);
        table.add_row(vec![
            Cell::new("lost"),
            check(self.lost),
            Cell::new(if self.marked_but_not_received > 0 {
                format!("{} marked delivered but never received", self.marked_but_not_received)
            } else {
                "committed − delivered − dead".into()
            }),
        ]);
        table.add_row(vec![
            Cell::new("phantoms"),
            check(self.phantoms),
            Cell::new("delivered but never committed"),
        ]);
        table.add_row(vec![
            Cell::new("bad signatures"),
            check(self.bad_signatures),
            Cell::new("Standard Webhooks v1 HMAC-SHA256"),
        ]);
        table.add_row(vec![
            Cell::new("append throughput"),
            right(format!(
                "{:.0} events/s",
                appended.events as f64 / appended.elapsed.as_secs_f64().max(1e-3)
            )),
            Cell::new(format!("{WRITERS} writers, in {:.2}s", appended.elapsed.as_secs_f64())),
        ]);
        table.add_row(vec![
            Cell::new("delivery throughput"),
            right(format!("{:.0} entries/s", self.delivered_per_sec)),
            Cell::new("relay start → last first delivery"),
        ]);
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        table.add_row(vec![
            Cell::new("commit → delivery p50 / p99"),
            right(
                self.latency
                    .map(|(p50, p99, _)| format!("{} / {}", ms(p50), ms(p99)))
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(
                self.latency
                    .map(|(_, _, max)| format!("max {} (includes retries)", ms(max)))
                    .unwrap_or_default(),
            ),
        ]);
        println!("{table}");
        if !r.is_ok() {
            println!("{r}");
        }
    }
}
