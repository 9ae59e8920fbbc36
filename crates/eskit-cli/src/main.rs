//! `eskit`: the command-line tool of the eskit event store and transactional outbox.
//!
//! See the README for every command, flag and configuration key.

mod admin;
mod cli;
mod commands;
mod config;
mod destinations;
mod error;
mod store;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{Config, ConfigSource};
use crate::error::{CliError, CliResult};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with exit 0; usage errors to stderr with exit 2.
        Err(e) => e.exit(),
    };
    let default_level = match cli.command {
        Command::Relay(_) => "info",
        // The demo's failures are injected on purpose: its summary reports them.
        Command::Demo(_) => "error",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(CliError::io("starting the async runtime")(e)),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

async fn run(cli: Cli) -> CliResult {
    let source = ConfigSource { path: cli.config };
    match cli.command {
        // The demo is self-contained: it does not read the config file.
        Command::Demo(args) => commands::demo::run(args).await,
        Command::Append(args) => commands::append::run(&load(&source)?, args).await,
        Command::Read(args) => commands::read::run(&load(&source)?, args).await,
        Command::Relay(args) => commands::relay::run(&load(&source)?, args).await,
        Command::Outbox(command) => commands::outbox::run(&load(&source)?, command).await,
    }
}

fn load(source: &ConfigSource) -> CliResult<Config> {
    let config = Config::load(source)?;
    destinations::validate(&config)?;
    tracing::debug!(config = ?config, "configuration loaded");
    Ok(config)
}

/// Prints the one-line error and picks the exit code. A closed stdout (`| head`) is
/// not an error.
fn report(err: CliError) -> ExitCode {
    if let CliError::Io { source, .. } = &err
        && source.kind() == std::io::ErrorKind::BrokenPipe
    {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", err.one_line());
    err.exit_code()
}

/// Logs go to stderr. `RUST_LOG` overrides the level (default: `info` for the relay,
/// `error` for the demo, `warn` for the other commands).
fn init_logging(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging is not available: {e}");
    }
}
