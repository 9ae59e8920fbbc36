//! `eskit bench`: throughput and latency of the store and the relay, each beside the
//! physical bound measured in the same run on the same database (plain SQL on plain
//! tables), modelled on River's bench: a burn-down of N entries, or fixed-duration
//! phases.
//!
//! Phases: appends (one event per transaction, then batches; routes write one outbox
//! entry per event) beside plain inserts of the same rows; relay drains to a null
//! destination and to a loopback webhook beside a plain select-and-mark loop; commit →
//! delivery latency with wakeups on; the null drain again while another session holds a
//! transaction open, and with many already-delivered rows in the outbox table. The
//! targets are reported, never asserted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use eskit::{RouteFilter, StoreOptions};

use super::bench_append::{self as append, AppendPlan, Budget, Rate};
use super::bench_raw::{RawDb, Table};
use super::bench_relay::{self as relay, Latency, Loopback};
use crate::cli::parse_duration;
use crate::config::redact_url;
use crate::error::{CliError, CliResult};
use crate::store::{DatabaseUrl, OpenStore, open_url};

/// `eskit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Database: a SQLite file (default: a fresh one in a temp dir) or postgres://… (a
    /// fresh schema, dropped afterwards).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// burn-down: each phase works through --entries; duration: each phase runs for
    /// --duration.
    #[arg(long, value_enum, default_value_t = Mode::BurnDown)]
    pub mode: Mode,
    /// Entries per phase (burn-down).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub entries: u64,
    /// Length of each phase (duration mode).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Events per transaction in the batched append phase.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// Concurrent writers in the append phases.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub writers: u64,
    /// Streams the events are spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub streams: u64,
    /// Partitions of the store (and workers of the plain-SQL loop).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// Already-delivered rows in the outbox table for the "delivered rows" phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub delivered_rows: u64,
    /// Events appended (one per transaction) in the latency phase.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub latency_events: u64,
    /// Appends per second in the latency phase.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub latency_rate: u64,
    /// Keep the database afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// How phases are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Work through N entries per phase.
    BurnDown,
    /// Run each phase for a fixed time.
    Duration,
}

/// A measurement beside its bound.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Pair {
    /// eskit.
    pub eskit: Rate,
    /// The bound (plain SQL, or the clean run).
    pub bound: Rate,
}

impl Pair {
    /// eskit's rate over the bound's.
    pub fn ratio(&self) -> f64 {
        let b = self.bound.per_second();
        if b > 0.0 { self.eskit.per_second() / b } else { 0.0 }
    }
}

/// Everything `eskit bench` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResults {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The database (password redacted).
    pub database: String,
    /// Burn-down or duration.
    pub mode: Mode,
    /// Entries per phase (burn-down) or seconds per phase (duration).
    pub size: String,
    /// Events per transaction in the batched phase.
    pub batch: u64,
    /// Writers.
    pub writers: u64,
    /// Partitions.
    pub partitions: u32,
    /// Appends, one event per transaction (events/s) vs plain inserts.
    pub append_single: Pair,
    /// Appends, `batch` events per transaction vs plain inserts.
    pub append_batched: Pair,
    /// Appends, one event per transaction, vs plain inserts of the same rows into eskit's
    /// own tables (same indexes and trigger, without the store's checks).
    pub append_single_same_schema: Pair,
    /// Appends, `batch` events per transaction, vs the same into eskit's own tables.
    pub append_batched_same_schema: Pair,
    /// Relay to null vs the plain select-and-mark loop over eskit's own outbox table.
    pub relay_null_same_schema: Pair,
    /// Relay to a null destination vs the plain select-and-mark loop.
    pub relay_null: Pair,
    /// Relay to the loopback webhook vs the plain loop posting with the same client.
    pub relay_webhook: Pair,
    /// Commit → delivery latency with wakeups on.
    pub latency: Latency,
    /// Relay to null while a transaction is held open, vs the same drain without it.
    pub relay_open_transaction: Pair,
    /// Relay to null with `delivered_rows` delivered rows of the destination in the
    /// table, vs the same drain without them.
    pub relay_delivered_rows: Pair,
    /// Delivered rows in the outbox table during that phase.
    pub delivered_rows: u64,
}

/// Runs `eskit bench`.
pub async fn run(args: BenchArgs) -> CliResult {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (url, schema, temp_dir) = database(&args, &suffix)?;
    let options = StoreOptions::default()
        .partitions(args.partitions)
        .with_outbox("null", RouteFilter::all().stream_prefix("n-"))
        .with_outbox("webhook", RouteFilter::all().stream_prefix("w-"))
        .with_outbox("latency", RouteFilter::all().stream_prefix("l-"));
    let store = open_url(&url, &schema, options.clone()).await?;
    let outcome = measure(&args, &store, &url, &schema, options).await;
    if !args.keep {
        cleanup(&store, temp_dir.as_ref()).await;
    } else if let OpenStore::Postgres(_) = store {
        eprintln!("bench: kept the PostgreSQL schema {schema}");
    }
    let results = outcome?;
    if args.json {
        let json = serde_json::to_string_pretty(&results)
            .map_err(|e| CliError::Failed(format!("encoding the results: {e}")))?;
        println!("{json}");
    } else {
        println!("{}", super::bench_report::render(&results));
    }
    Ok(())
}

fn progress(line: &str) {
    eprintln!("bench: {line}");
}

async fn measure(
    args: &BenchArgs,
    store: &OpenStore,
    url: &str,
    schema: &str,
    options: StoreOptions,
) -> CliResult<BenchResults> {
    let raw = RawDb::of(store);
    raw.setup().await?;
    let budget = match args.mode {
        Mode::BurnDown => Budget::Count(args.entries),
        Mode::Duration => Budget::Time(args.duration),
    };
    let plan = |prefix, batch| AppendPlan {
        prefix,
        streams: args.streams,
        batch,
        writers: args.writers,
        budget,
    };
    let p = args.partitions;

    progress("appends, one event per transaction");
    let single = Pair {
        eskit: append::eskit_appends(store, &plan("n-", 1)).await?,
        bound: append::raw_appends(&raw, Table::Plain, &plan("n-", 1), p).await?,
    };
    let single_same_schema = append::raw_appends(&raw, Table::Eskit, &plan("n-", 1), p).await?;
    progress(&format!("appends, {} events per transaction", args.batch));
    let batched = Pair {
        eskit: append::eskit_appends(store, &plan("n-", args.batch)).await?,
        bound: append::raw_appends(&raw, Table::Plain, &plan("n-", args.batch), p).await?,
    };
    let batched_same_schema = append::raw_appends(&raw, Table::Eskit, &plan("n-", args.batch), p).await?;

    let pending = single.eskit.count + batched.eskit.count;
    let drain_budget = |n: u64| match args.mode {
        Mode::BurnDown => Budget::Count(n),
        Mode::Duration => Budget::Time(args.duration),
    };
    progress(&format!("relay to a null destination ({pending} entries)"));
    let relay_null_eskit = relay::drain_null(store, "null", pending, drain_budget(pending)).await?;
    raw.fill_queue(pending, args.streams, p, &append::payload(0)).await?;
    let relay_null = Pair {
        eskit: relay_null_eskit,
        bound: relay::raw_loop(&raw, Table::Plain, p, pending, drain_budget(pending), None).await?,
    };
    // The rows the same-schema append bounds wrote, drained by the plain loop.
    let same_schema_pending = single_same_schema.count + batched_same_schema.count;
    let relay_null_same_schema = relay::raw_loop(
        &raw,
        Table::Eskit,
        p,
        same_schema_pending,
        drain_budget(same_schema_pending),
        None,
    )
    .await?;

    // Later phases work through what the clean relay did (burn-down: --entries).
    let k = match args.mode {
        Mode::BurnDown => args.entries,
        Mode::Duration => relay_null.eskit.count.max(1),
    };

    progress(&format!("relay to a loopback webhook ({k} entries)"));
    let loopback = Loopback::start().await?;
    append::prefill(store, "w-", k, args.streams).await?;
    let webhook_eskit = relay::drain_webhook(store, "webhook", &loopback, k, drain_budget(k)).await?;
    raw.fill_queue(k, args.streams, p, &append::payload(0)).await?;
    let client: Arc<dyn eskit::Destination> = Arc::new(loopback.destination()?);
    let relay_webhook = Pair {
        eskit: webhook_eskit,
        bound: relay::raw_loop(&raw, Table::Plain, p, k, drain_budget(k), Some(client)).await?,
    };
    drop(loopback);

    progress(&format!(
        "commit → delivery latency ({} appends at {}/s)",
        args.latency_events, args.latency_rate
    ));
    let latency = match store {
        // A store of its own for the relay: wakeups can only come through NOTIFY.
        OpenStore::Postgres(_) => {
            let relay_store = open_url(url, schema, options).await?;
            let l = relay::latency(
                store,
                &relay_store,
                "latency",
                "l-",
                args.latency_events,
                args.latency_rate,
            )
            .await;
            if let OpenStore::Postgres(pg) = &relay_store {
                pg.pool().close().await;
            }
            l?
        }
        OpenStore::Sqlite(_) => {
            relay::latency(store, store, "latency", "l-", args.latency_events, args.latency_rate).await?
        }
    };

    // The baseline of the next two phases: the same drain, same shape, clean.
    progress(&format!("relay to null, clean ({k} entries)"));
    raw.settle().await?;
    append::prefill(store, "n-", k, args.streams).await?;
    let clean = relay::drain_null(store, "null", k, drain_budget(k)).await?;

    progress(&format!("relay to null while a transaction is held open ({k} entries)"));
    raw.settle().await?;
    let held = raw.hold_transaction().await?;
    append::prefill(store, "n-", k, args.streams).await?;
    let open_tx = relay::drain_null(store, "null", k, drain_budget(k)).await;
    held.release().await;
    let relay_open_transaction = Pair {
        eskit: open_tx?,
        bound: clean,
    };

    let delivered_so_far = pending + 2 * k;
    let extra = args.delivered_rows.saturating_sub(delivered_so_far);
    progress(&format!(
        "relay to null with {} delivered rows in the table ({k} entries)",
        delivered_so_far + extra
    ));
    raw.insert_delivered("null", extra, p, &append::payload(0)).await?;
    raw.settle().await?;
    append::prefill(store, "n-", k, args.streams).await?;
    let relay_delivered_rows = Pair {
        eskit: relay::drain_null(store, "null", k, drain_budget(k)).await?,
        bound: clean,
    };

    Ok(BenchResults {
        backend: if raw.is_postgres() { "postgres" } else { "sqlite" },
        database: match store {
            OpenStore::Postgres(_) => format!("{} schema {schema}", redact_url(url)),
            OpenStore::Sqlite(_) => redact_url(url),
        },
        mode: args.mode,
        size: match args.mode {
            Mode::BurnDown => format!("{} entries per phase", args.entries),
            Mode::Duration => format!("{} per phase", humantime::format_duration(args.duration)),
        },
        batch: args.batch,
        writers: args.writers,
        partitions: p,
        append_single: single,
        append_batched: batched,
        append_single_same_schema: Pair {
            eskit: single.eskit,
            bound: single_same_schema,
        },
        append_batched_same_schema: Pair {
            eskit: batched.eskit,
            bound: batched_same_schema,
        },
        relay_null_same_schema: Pair {
            eskit: relay_null.eskit,
            bound: relay_null_same_schema,
        },
        relay_null,
        relay_webhook,
        latency,
        relay_open_transaction,
        relay_delivered_rows,
        delivered_rows: delivered_so_far + extra,
    })
}

/// The database URL, the PostgreSQL schema, and a temp dir to remove.
fn database(args: &BenchArgs, suffix: &str) -> CliResult<(String, String, Option<PathBuf>)> {
    let schema = format!("eskit_bench_{}", &suffix[..12]);
    match args.db.as_deref().map(DatabaseUrl::parse) {
        None => {
            let dir = std::env::temp_dir().join(format!("eskit-bench-{}", &suffix[..12]));
            std::fs::create_dir_all(&dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
            Ok((
                format!("sqlite://{}", dir.join("bench.db").display()),
                schema,
                Some(dir),
            ))
        }
        Some(Err(e)) => Err(CliError::Usage(format!("--db: {e}"))),
        Some(Ok(DatabaseUrl::Sqlite { path: None, .. })) => Err(CliError::Usage(
            "--db: the bench needs a SQLite file, not an in-memory database".into(),
        )),
        Some(Ok(DatabaseUrl::Sqlite { path: Some(path), url })) => {
            if path.exists() {
                return Err(CliError::Usage(format!(
                    "--db: the bench needs a fresh database, and {} already exists",
                    path.display()
                )));
            }
            Ok((url, schema, None))
        }
        Some(Ok(DatabaseUrl::Postgres { url })) => Ok((url, schema, None)),
    }
}

async fn cleanup(store: &OpenStore, temp_dir: Option<&PathBuf>) {
    match store {
        OpenStore::Postgres(pg) => {
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema().quoted());
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pg.pool()).await {
                eprintln!("warning: could not drop the bench schema: {e}");
            }
        }
        OpenStore::Sqlite(s) => {
            s.pool().close().await;
            if let Some(dir) = temp_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
