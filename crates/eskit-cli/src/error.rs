//! Errors of the `eskit` command and how they are printed: one line, `error: ` and the
//! cause chain joined by `": "`, exit code 2 for usage and configuration errors, 1
//! for everything else.

use std::error::Error as StdError;
use std::process::ExitCode;

use crate::config::ConfigError;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad command-line usage that clap cannot detect (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Bad input data, e.g. a line of a JSONL file (exit code 1).
    #[error("{0}")]
    Input(String),
    /// The store refused or failed (exit code 1).
    #[error("{context}")]
    Store {
        /// What the command was doing.
        context: String,
        /// The store's error.
        #[source]
        source: eskit::Error,
    },
    /// A file or terminal operation failed (exit code 1).
    #[error("{context}")]
    Io {
        /// What the command was doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Something else failed (exit code 1), e.g. the demo's checks.
    #[error("{0}")]
    Failed(String),
}

/// Result alias for commands.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// Wraps a store error with what the command was doing.
    pub fn store(context: impl Into<String>) -> impl FnOnce(eskit::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Store { context, source }
    }

    /// Wraps an I/O error with what the command was doing.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Io { context, source }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) | CliError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }

    /// The one-line message: the error and its causes joined by `": "`, skipping a
    /// cause whose text the previous message already contains.
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// Formats an error and its source chain on one line.
pub fn one_line(err: &(dyn StdError + 'static)) -> String {
    let mut line = err.to_string();
    let mut current = err.source();
    while let Some(cause) = current {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        current = cause.source();
    }
    // Keep it on one line whatever the causes contain.
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_is_joined_without_repeats() {
        let inner = std::io::Error::other("disk on fire");
        let err = CliError::io("writing x")(inner);
        assert_eq!(err.one_line(), "writing x: disk on fire");
        let err = CliError::store("appending")(eskit::Error::database("insert", std::io::Error::other("boom")));
        assert_eq!(err.one_line(), "appending: database error during insert: boom");
    }
}
