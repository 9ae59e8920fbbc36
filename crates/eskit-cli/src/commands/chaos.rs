//! `eskit chaos`: the crash-loop checker (see `eskit_testkit::chaos`).
//!
//! Runs writers in this process, relays as child processes of this same binary
//! (`eskit relay --config <generated file>`), SIGKILLs and restarts them at seeded
//! moments, optionally restarts PostgreSQL once, delivers to a loopback webhook that
//! injects faults, heals, drains and checks. Prints a one-screen report (or JSON) and
//! exits 1 on any violation, with the command that replays the seed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use eskit::{RouteFilter, StoreOptions};
use eskit_testkit::chaos::{self, ChaosConfig, ChaosReport, RelayLauncher};

use crate::cli::parse_duration;
use crate::config::redact_url;
use crate::error::{CliError, CliResult};
use crate::store::{DatabaseUrl, OpenStore, open_url};

/// The destination every chaos event is routed to.
const DESTINATION: &str = "sink";
/// Webhook request timeout of the relays (hanging sink requests exceed it).
const WEBHOOK_TIMEOUT: &str = "300ms";

/// `eskit chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Database: a fresh SQLite file (default: one in the work directory) or
    /// postgres://… (a fresh schema is created, and dropped after a passing run).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// SIGKILLs of relay processes, at seeded moments 0.3–1.5 s apart.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Events to append.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Streams to spread them over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub streams: u64,
    /// Writer tasks (each owns a share of the streams).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub writers: u64,
    /// Relay processes running at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub relays: u64,
    /// Seed of the kill schedule, the fault plan and the writers (default: random,
    /// printed; pass it again to replay).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Restart PostgreSQL once, mid-run (`pg_ctlcluster --skip-systemctl-redirect
    /// <version> main restart`). Needs a postgres:// database on this machine.
    #[arg(long)]
    pub restart_postgres: bool,
    /// The command that restarts PostgreSQL (split on whitespace), instead of the
    /// pg_ctlcluster default.
    #[arg(long, value_name = "CMD", requires = "restart_postgres")]
    pub restart_command: Option<String>,
    /// Relay batch size.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Partitions.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// How long to wait for the outbox to drain after healing.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Keep the work directory (logs, deliveries.jsonl, report.json) and the database
    /// after a passing run (they are always kept after a failing one).
    #[arg(long)]
    pub keep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `eskit chaos`.
pub async fn run(args: ChaosArgs) -> CliResult {
    let seed = args.seed.unwrap_or_else(rand::random);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let work_dir = std::env::temp_dir().join(format!("eskit-chaos-{seed}-{}", &suffix[..8]));
    let (url, schema) = database(&args, &work_dir, &suffix)?;
    let restart = if args.restart_postgres {
        if !matches!(DatabaseUrl::parse(&url), Ok(DatabaseUrl::Postgres { .. })) {
            return Err(CliError::Usage("--restart-postgres needs --db postgres://…".into()));
        }
        Some(restart_command(args.restart_command.as_deref())?)
    } else {
        None
    };
    std::fs::create_dir_all(&work_dir).map_err(CliError::io(format!("creating {}", work_dir.display())))?;

    let options = StoreOptions::default()
        .partitions(args.partitions)
        .with_outbox(DESTINATION, RouteFilter::all());
    let store = match open_url(&url, &schema, options).await {
        Ok(store) => store,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work_dir);
            return Err(e);
        }
    };
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    );
    let launcher = Arc::new(EskitRelay {
        exe: std::env::current_exe().map_err(CliError::io("finding the eskit binary"))?,
        dir: work_dir.clone(),
        url: url.clone(),
        schema: schema.clone(),
        partitions: args.partitions,
        batch_size: args.batch_size,
        secret: secret.clone(),
        configs: AtomicUsize::new(0),
    });
    let config = ChaosConfig {
        seed,
        kills: args.kills,
        events: args.events,
        streams: args.streams as usize,
        writers: args.writers as usize,
        relays: args.relays as usize,
        batch_size: args.batch_size,
        partitions: args.partitions,
        destination: DESTINATION.into(),
        secret,
        db_restart: restart,
        work_dir: work_dir.clone(),
        drain_timeout: args.drain_timeout,
    };
    let replay = replay_command(&args, seed);
    eprintln!("chaos: replay with: {replay}");
    let progress: chaos::Progress = Arc::new(|line: &str| eprintln!("chaos: {line}"));
    let run = async {
        match &store {
            OpenStore::Sqlite(s) => chaos::run(Arc::new(s.clone()), launcher, config, progress).await,
            OpenStore::Postgres(s) => chaos::run(Arc::new(s.clone()), launcher, config, progress).await,
        }
    };
    // On Ctrl-C or SIGTERM the run is dropped, which SIGKILLs its relay processes (they
    // are killed on drop).
    let outcome = tokio::select! {
        outcome = run => outcome,
        signal = interrupted() => {
            eprintln!("chaos: {signal}; logs kept in {}", work_dir.display());
            return Err(CliError::Failed(format!("chaos run interrupted by {signal}")));
        }
    };
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            eprintln!("chaos: logs kept in {}", work_dir.display());
            return Err(CliError::Failed(format!(
                "chaos run failed: {}",
                crate::error::one_line(&e)
            )));
        }
    };

    if args.json {
        let json = serde_json::to_string_pretty(&serde_json::json!({ "replay": replay, "report": &report }))
            .map_err(|e| CliError::Failed(format!("encoding the report: {e}")))?;
        println!("{json}");
    } else {
        println!(
            "{}",
            super::chaos_report::render(&report, &describe(&url, &schema), &replay)
        );
    }

    if report.passed() && !args.keep {
        cleanup(&store, &work_dir).await;
    } else {
        eprintln!("chaos: work directory kept: {}", work_dir.display());
        if let OpenStore::Postgres(_) = store {
            eprintln!("chaos: PostgreSQL schema kept: {schema}");
        }
    }
    if report.passed() {
        Ok(())
    } else {
        Err(failure(&report, &replay))
    }
}

/// Waits for SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

fn failure(report: &ChaosReport, replay: &str) -> CliError {
    CliError::Failed(format!(
        "chaos: {} violation(s) with seed {}: {}; replay with: {replay}",
        report.violations.len(),
        report.seed,
        report.violations.join("; ")
    ))
}

/// The database URL and PostgreSQL schema of the run.
fn database(args: &ChaosArgs, work_dir: &Path, suffix: &str) -> CliResult<(String, String)> {
    let default_schema = format!("eskit_chaos_{}", &suffix[..12]);
    match args.db.as_deref().map(DatabaseUrl::parse) {
        None => Ok((
            format!("sqlite://{}", work_dir.join("chaos.db").display()),
            default_schema,
        )),
        Some(Err(e)) => Err(CliError::Usage(format!("--db: {e}"))),
        Some(Ok(DatabaseUrl::Sqlite { path: None, .. })) => Err(CliError::Usage(
            "--db: relay processes need a SQLite file, not an in-memory database".into(),
        )),
        Some(Ok(DatabaseUrl::Sqlite { path: Some(path), url })) => {
            if path.exists() {
                return Err(CliError::Usage(format!(
                    "--db: the chaos run needs a fresh database, and {} already exists",
                    path.display()
                )));
            }
            Ok((url, default_schema))
        }
        Some(Ok(DatabaseUrl::Postgres { url })) => Ok((url, default_schema)),
    }
}

/// `pg_ctlcluster --skip-systemctl-redirect <version> main restart`, the version being
/// the one directory in /etc/postgresql.
fn restart_command(custom: Option<&str>) -> CliResult<Vec<String>> {
    if let Some(custom) = custom {
        let parts: Vec<String> = custom.split_whitespace().map(str::to_string).collect();
        if parts.is_empty() {
            return Err(CliError::Usage("--restart-command is empty".into()));
        }
        return Ok(parts);
    }
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .map_err(CliError::io("listing /etc/postgresql (pass --restart-command)"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match versions.as_slice() {
        [version] => Ok(vec![
            "pg_ctlcluster".into(),
            "--skip-systemctl-redirect".into(),
            version.clone(),
            "main".into(),
            "restart".into(),
        ]),
        _ => Err(CliError::Usage(format!(
            "found {} PostgreSQL versions in /etc/postgresql; pass --restart-command",
            versions.len()
        ))),
    }
}

/// The command line that replays this run (the URL's password redacted).
fn replay_command(args: &ChaosArgs, seed: u64) -> String {
    let mut parts = vec!["eskit chaos".to_string()];
    if let Some(db) = &args.db {
        parts.push(format!("--db {}", redact_url(db)));
    }
    parts.push(format!(
        "--seed {seed} --kills {} --events {} --streams {} --writers {} --relays {} --batch-size {} --partitions {}",
        args.kills, args.events, args.streams, args.writers, args.relays, args.batch_size, args.partitions
    ));
    if args.restart_postgres {
        parts.push("--restart-postgres".into());
    }
    parts.join(" ")
}

fn describe(url: &str, schema: &str) -> String {
    match DatabaseUrl::parse(url) {
        Ok(DatabaseUrl::Postgres { .. }) => format!("PostgreSQL {} schema {schema}", redact_url(url)),
        _ => format!("SQLite {url}"),
    }
}

async fn cleanup(store: &OpenStore, work_dir: &Path) {
    if let OpenStore::Postgres(pg) = store {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema().quoted());
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pg.pool()).await {
            eprintln!("warning: could not drop the chaos schema: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(work_dir);
}

/// Starts `eskit relay --config <file>` with a generated configuration per sink URL.
struct EskitRelay {
    exe: PathBuf,
    dir: PathBuf,
    url: String,
    schema: String,
    partitions: u32,
    batch_size: u32,
    secret: String,
    configs: AtomicUsize,
}

impl EskitRelay {
    /// The relay configuration delivering to `sink_url`.
    fn config(&self, sink_url: &str) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        format!(
            r#"# Generated by `eskit chaos`.
database = {database}
schema = {schema}

[relay]
batch_size = {batch}
concurrency = 16
poll_interval = "100ms"
partitions = {partitions}
lease_ttl = "2s"
rescan_interval = "500ms"
shutdown_grace = "2s"

[retry]
initial = "20ms"
max = "500ms"
multiplier = 2.0
jitter = 0.2
max_attempts = 1000

[admin]
enabled = false

[[routes]]
destination = {destination}

[[destinations]]
name = {destination}
type = "webhook"
url = {sink}
secret = {secret}
timeout = "{WEBHOOK_TIMEOUT}"
allowed_cidrs = ["127.0.0.0/8"]
"#,
            database = q(&self.url),
            schema = q(&self.schema),
            batch = self.batch_size,
            partitions = self.partitions,
            destination = q(DESTINATION),
            sink = q(sink_url),
            secret = q(&self.secret),
        )
    }
}

impl RelayLauncher for EskitRelay {
    fn command(&self, sink_url: &str) -> std::io::Result<std::process::Command> {
        let path = self.dir.join(format!("relay-{}.toml", sink_id(sink_url)));
        if !path.exists() {
            std::fs::write(&path, self.config(sink_url))?;
            self.configs.fetch_add(1, Ordering::Relaxed);
        }
        let mut command = std::process::Command::new(&self.exe);
        // The generated file is the whole configuration: no ESKIT_* overrides.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESKIT_") {
                command.env_remove(key);
            }
        }
        command.arg("--config").arg(&path).arg("relay");
        Ok(command)
    }
}

/// A file-name-safe id of a sink URL (its port).
fn sink_id(url: &str) -> String {
    url.rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_parses() {
        let relay = EskitRelay {
            exe: PathBuf::from("eskit"),
            dir: PathBuf::from("."),
            url: "postgres://u:p@h/db".into(),
            schema: "eskit_chaos_x".into(),
            partitions: 8,
            batch_size: 50,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            configs: AtomicUsize::new(0),
        };
        let text = relay.config("http://127.0.0.1:4242/hook");
        let config = crate::config::Config::from_figment(
            figment::Figment::new().merge(<figment::providers::Toml as figment::providers::Format>::string(&text)),
        )
        .expect("the generated config is valid");
        assert_eq!(config.relay.partitions, 8);
        assert_eq!(config.destinations.len(), 1);
        assert!(!config.admin.enabled);
        crate::destinations::validate(&config).expect("the webhook builds");
        assert_eq!(sink_id("http://127.0.0.1:4242/hook"), "4242hook");
    }
}
