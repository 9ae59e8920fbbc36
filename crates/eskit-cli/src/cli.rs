//! Command-line definitions (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

/// eskit: an event store with a transactional outbox.
#[derive(Debug, Parser)]
#[command(name = "eskit", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Default: ./eskit.toml when it exists. Every key can be
    /// overridden by an ESKIT_* environment variable (ESKIT_RELAY__BATCH_SIZE=50).
    #[arg(long, global = true, value_name = "PATH", env = "ESKIT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "ESKIT_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole story on a fresh database: append events, deliver them to a
    /// loopback webhook receiver that injects failures, check and summarize.
    Demo(DemoArgs),
    /// Append events (one from flags, or many from a JSONL file).
    Append(AppendArgs),
    /// Read events of one stream or of all streams, as JSON lines.
    Read(ReadArgs),
    /// Run the relay daemon until SIGINT/SIGTERM.
    Relay(RelayArgs),
    /// Inspect and operate the outbox and its dead-letter queue.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Crash-loop checker: relays killed at seeded moments, a faulty sink, then the
    /// delivery checks (lost, phantoms, order, duplicates, recovery times).
    Chaos(crate::commands::chaos::ChaosArgs),
    /// Measure append and relay throughput and latency beside plain-SQL bounds.
    Bench(crate::commands::bench::BenchArgs),
}

/// `eskit demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Database to run against: a SQLite file (default: a fresh file in a temp dir) or
    /// postgres://… (a fresh schema is created and dropped afterwards).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Number of events to append.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Number of streams to spread them over.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub streams: u64,
    /// Keep the database (SQLite file ./eskit-demo.db, or the PostgreSQL schema) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// `eskit append`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["stream", "file"])))]
pub struct AppendArgs {
    /// Stream to append to.
    #[arg(long, value_name = "S", requires_all = ["event_type", "data"], conflicts_with = "file")]
    pub stream: Option<String>,
    /// Event type.
    #[arg(long = "type", value_name = "T", requires = "stream")]
    pub event_type: Option<String>,
    /// Event payload (JSON).
    #[arg(long, value_name = "JSON", requires = "stream")]
    pub data: Option<String>,
    /// Event metadata (JSON).
    #[arg(long, value_name = "JSON", requires = "stream")]
    pub metadata: Option<String>,
    /// Expected stream version: a number, `any` (default), `no-stream` or `exists`.
    #[arg(long, value_name = "V", value_parser = parse_expected_version, requires = "stream")]
    pub expected_version: Option<eskit::ExpectedVersion>,
    /// Event id (default: a fresh UUIDv7). Re-appending the same id and content is a no-op.
    #[arg(long, value_name = "UUID", requires = "stream")]
    pub id: Option<Uuid>,
    /// JSONL file, one {"stream","type","data"[,"id","metadata","expected_version"]}
    /// per line (`-` reads stdin).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// With --file: group N lines per transaction (default 1).
    #[arg(long, value_name = "N", requires = "file", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: Option<u64>,
}

/// `eskit read`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["stream", "all"])))]
pub struct ReadArgs {
    /// Read this stream.
    #[arg(long, value_name = "S")]
    pub stream: Option<String>,
    /// Read all streams in global position order.
    #[arg(long)]
    pub all: bool,
    /// Start here (inclusive): a stream version with --stream (default 1, or the end
    /// with --backward), a global position with --all (default 1).
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// At most this many events (default: all).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// With --stream: newest first.
    #[arg(long, conflicts_with = "all")]
    pub backward: bool,
}

/// `eskit relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {}

/// `eskit outbox …`.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Counts per destination: pending, retrying, delivered, dead, oldest pending age.
    Status(JsonFlag),
    /// List outbox entries, oldest first.
    List(ListArgs),
    /// The dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Delete delivered entries delivered longer ago than --older-than.
    Purge(PurgeArgs),
    /// Re-enable a destination that a `410 Gone` or an operator disabled.
    Enable(DestinationArgs),
    /// Stop delivering to a destination (its entries stay pending) until it is enabled.
    Disable(DisableArgs),
}

/// `eskit outbox enable`.
#[derive(Debug, Args)]
pub struct DestinationArgs {
    /// The destination.
    #[arg(long, value_name = "NAME")]
    pub destination: String,
}

/// `eskit outbox disable`.
#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The destination.
    #[arg(long, value_name = "NAME")]
    pub destination: String,
    /// Why (shown by `outbox status`).
    #[arg(long, value_name = "TEXT", default_value = "disabled by an operator")]
    pub reason: String,
}

/// Dead-letter filters shared by `dlq list`, `dlq replay` and `dlq discard`.
#[derive(Debug, Clone, Default, Args)]
pub struct DeadFilterArgs {
    /// Only entries dead-lettered at or after this time: RFC 3339
    /// (`2026-01-01T00:00:00Z`) or an age (`1h` = one hour ago).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub dead_from: Option<time::OffsetDateTime>,
    /// Only entries dead-lettered before this time (RFC 3339 or an age).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub dead_to: Option<time::OffsetDateTime>,
    /// Only entries whose last error contains this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub error: Option<String>,
}

impl DeadFilterArgs {
    /// Whether any filter is set.
    pub fn is_set(&self) -> bool {
        self.dead_from.is_some() || self.dead_to.is_some() || self.error.is_some()
    }
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `eskit outbox list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this destination.
    #[arg(long, value_name = "D")]
    pub destination: Option<String>,
    /// Only entries in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Only this stream.
    #[arg(long, value_name = "S")]
    pub stream: Option<String>,
    /// At most this many entries.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    /// Only entries after this `seq` (paging: pass the last `seq` printed).
    #[arg(long, value_name = "SEQ")]
    pub after_seq: Option<i64>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Entry states on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Waiting for delivery (including retries).
    Pending,
    /// Delivered.
    Delivered,
    /// In the dead-letter queue.
    Dead,
}

impl From<StateArg> for eskit::EntryState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Pending => eskit::EntryState::Pending,
            StateArg::Delivered => eskit::EntryState::Delivered,
            StateArg::Dead => eskit::EntryState::Dead,
        }
    }
}

/// `eskit outbox dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead entries with their attempts and last error.
    List(DlqListArgs),
    /// Move dead entries back to pending (attempts reset, due now).
    Replay(DeadSelectorArgs),
    /// Delete dead entries.
    Discard(DeadSelectorArgs),
}

/// `eskit outbox dlq list`.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Only this destination.
    #[arg(long, value_name = "D")]
    pub destination: Option<String>,
    /// Time range and error text.
    #[command(flatten)]
    pub filter: DeadFilterArgs,
    /// At most this many entries.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    /// Only entries after this `seq` (paging: pass the last `seq` printed).
    #[arg(long, value_name = "SEQ")]
    pub after_seq: Option<i64>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which dead entries: `--id`, `--destination`, or both (the entry must then belong to
/// it); or a filter (`--error`, `--dead-from`, `--dead-to`, optionally with
/// `--destination`).
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("selector").required(true).multiple(true).args(["id", "destination", "dead_from", "dead_to", "error"])))]
pub struct DeadSelectorArgs {
    /// One dead entry.
    #[arg(long, value_name = "ID", conflicts_with_all = ["dead_from", "dead_to", "error"])]
    pub id: Option<Uuid>,
    /// Every dead entry of this destination.
    #[arg(long, value_name = "NAME")]
    pub destination: Option<String>,
    /// Time range and error text.
    #[command(flatten)]
    pub filter: DeadFilterArgs,
}

/// `eskit outbox purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Age, e.g. `1d`, `12h`, `30m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Duration,
}

/// Parses `--expected-version`.
pub fn parse_expected_version(s: &str) -> Result<eskit::ExpectedVersion, String> {
    match s {
        "any" => Ok(eskit::ExpectedVersion::Any),
        "no-stream" => Ok(eskit::ExpectedVersion::NoStream),
        "exists" => Ok(eskit::ExpectedVersion::StreamExists),
        n => n
            .parse::<u64>()
            .map(eskit::ExpectedVersion::Exact)
            .map_err(|_| format!("{n:?} is not a version: use a number, `any`, `no-stream` or `exists`")),
    }
}

/// Parses an RFC 3339 time, or an age such as `1h` (that long ago).
pub fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let age = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor an age (1h, 30m)"))?;
    time::Duration::try_from(age)
        .ok()
        .and_then(|age| time::OffsetDateTime::now_utc().checked_sub(age))
        .ok_or_else(|| format!("{s:?} is too long ago"))
}

/// Parses a humantime duration (`1d`, `500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e}); e.g. 1d, 12h, 30m, 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_global() {
        let a = Cli::try_parse_from(["eskit", "--config", "a.toml", "outbox", "status"]).unwrap();
        let b = Cli::try_parse_from(["eskit", "outbox", "dlq", "list", "--config", "a.toml"]).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("a.toml")));
        assert_eq!(b.config, Some(PathBuf::from("a.toml")));
    }

    #[test]
    fn append_needs_stream_or_file() {
        assert!(Cli::try_parse_from(["eskit", "append"]).is_err());
        assert!(Cli::try_parse_from(["eskit", "append", "--stream", "s"]).is_err());
        assert!(Cli::try_parse_from(["eskit", "append", "--stream", "s", "--type", "T", "--data", "{}"]).is_ok());
        assert!(Cli::try_parse_from(["eskit", "append", "--file", "x", "--batch", "10"]).is_ok());
        assert!(Cli::try_parse_from(["eskit", "append", "--file", "x", "--stream", "s"]).is_err());
        assert!(Cli::try_parse_from(["eskit", "outbox", "dlq", "replay"]).is_err());
        assert!(
            Cli::try_parse_from([
                "eskit",
                "outbox",
                "dlq",
                "discard",
                "--destination",
                "d",
                "--id",
                &Uuid::nil().to_string()
            ])
            .is_ok()
        );
    }
}
