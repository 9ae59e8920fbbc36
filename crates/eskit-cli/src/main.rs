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
        Err(e) => return usage_error(e),
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
        Command::Chaos(args) => commands::chaos::run(args).await,
        Command::Bench(args) => commands::bench::run(args).await,
    }
}

fn load(source: &ConfigSource) -> CliResult<Config> {
    let config = Config::load(source)?;
    destinations::validate(&config)?;
    tracing::debug!(config = ?config, "configuration loaded");
    Ok(config)
}

/// Help and version go to stdout with exit 0 (help for a bare `eskit` to stderr, exit
/// 2); a usage error is one line on stderr, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            e.exit()
        }
        _ => {
            // clap's message spans several lines (a list of arguments, tips, a usage
            // block): keep the message and the tips, on one line.
            let text = e.render().to_string();
            let message = text.split("\nUsage:").next().unwrap_or_default();
            let message = message.split("\nFor more information").next().unwrap_or_default();
            let mut line = String::new();
            for part in message.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if !line.is_empty() {
                    line.push_str(if part.starts_with("tip:") { "; " } else { " " });
                }
                line.push_str(part);
            }
            if line.is_empty() {
                line.push_str("error: invalid usage");
            }
            eprintln!("{line} (see --help)");
            ExitCode::from(2)
        }
    }
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
