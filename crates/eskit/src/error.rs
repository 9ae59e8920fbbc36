//! Errors returned by eskit, as enums with context.

use crate::event::ExpectedVersion;

/// Boxed source error from a backend or destination.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across eskit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Bad input. Returned before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The stream id is empty.
    #[error("stream id is empty")]
    EmptyStreamId,
    /// The stream id is longer than the limit.
    #[error("stream id is {len} bytes long; the limit is {max}")]
    StreamIdTooLong {
        /// Actual length in bytes.
        len: usize,
        /// Configured limit in bytes.
        max: usize,
    },
    /// A text field contains a control character (including NUL).
    #[error("{field} contains a control character at byte {at}")]
    ControlCharacter {
        /// Which field.
        field: &'static str,
        /// Byte offset of the offending character.
        at: usize,
    },
    /// A text field is empty where a value is required.
    #[error("{field} is empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
    /// A text field is longer than allowed.
    #[error("{field} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Actual length in bytes.
        len: usize,
        /// Limit in bytes.
        max: usize,
    },
    /// A JSON document does not parse.
    #[error("{field} is not valid JSON: {reason}")]
    InvalidJson {
        /// Which field.
        field: &'static str,
        /// Parser message.
        reason: String,
    },
    /// A JSON document contains a NUL character (`\u0000`), which PostgreSQL cannot store.
    #[error("{field} contains a NUL character (\\u0000)")]
    NulInJson {
        /// Which field.
        field: &'static str,
    },
    /// A JSON document nests deeper than allowed.
    #[error("{field} nests deeper than {max} levels")]
    TooDeep {
        /// Which field.
        field: &'static str,
        /// Limit.
        max: usize,
    },
    /// A payload is larger than the configured cap.
    #[error("{field} is {len} bytes; the cap is {max} bytes")]
    PayloadTooLarge {
        /// Which field.
        field: &'static str,
        /// Actual size in bytes.
        len: usize,
        /// Configured cap in bytes.
        max: usize,
    },
    /// An append with no events.
    #[error("an append needs at least one event")]
    NoEvents,
    /// The same event id appears twice in one append.
    #[error("event id {0} appears twice in one append")]
    DuplicateEventId(uuid::Uuid),
    /// A schema or table name that does not match the allowed pattern.
    #[error(
        "invalid identifier {0:?}: use letters, digits and underscores, starting with a letter or underscore, at most 63 bytes"
    )]
    InvalidIdentifier(String),
}

/// Every error eskit returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input; nothing was written.
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationError),
    /// The stream is not at the expected version; nothing was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected}, actual {}", actual.map_or_else(|| "no stream".to_string(), |v| v.to_string()))]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The current version (`None` when the stream does not exist).
        actual: Option<u64>,
    },
    /// An event id is already stored with different content or in another stream.
    #[error("event id {event_id} is already stored with different content or in another stream")]
    IdempotencyConflict {
        /// The conflicting event id.
        event_id: uuid::Uuid,
    },
    /// An outbox message names a destination no route or configuration knows.
    #[error("unknown destination {0:?}")]
    UnknownDestination(String),
    /// The relay's lease on a partition was lost (expired and taken over); results were not written.
    #[error("lease lost on destination {destination:?} partition {partition}")]
    LeaseLost {
        /// Destination.
        destination: String,
        /// Partition.
        partition: u32,
    },
    /// No entry matched an operator command.
    #[error("not found: {0}")]
    NotFound(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database failed.
    #[error("database error during {context}: {source}")]
    Database {
        /// What eskit was doing.
        context: &'static str,
        /// The driver error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Wraps a driver error with what eskit was doing.
    pub fn database(context: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Database {
            context,
            source: source.into(),
        }
    }

    /// Whether the error is bad input (a [`ValidationError`]).
    pub fn is_validation(&self) -> bool {
        matches!(self, Error::Validation(_))
    }
}
