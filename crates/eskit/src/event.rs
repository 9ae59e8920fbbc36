//! Events: what an application appends and what it reads back.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ValidationError;

/// The version a stream must be at for an append to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (any version).
    StreamExists,
    /// The stream must be at exactly this version (the number of events in it).
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (`None`: no stream) satisfies this expectation.
    pub fn accepts(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual.unwrap_or(0) == v,
        }
    }
}

/// A new event to append.
#[derive(Debug, Clone)]
pub struct EventData {
    /// Stable event id; re-appending the same id with the same content is a no-op.
    pub id: Uuid,
    /// Event type, e.g. `OrderPlaced`.
    pub event_type: String,
    /// JSON payload, kept as the caller's text.
    pub payload: Box<RawValue>,
    /// Optional JSON metadata (a W3C `traceparent` here is propagated by the relay).
    pub metadata: Option<Box<RawValue>>,
}

impl EventData {
    /// An event whose payload is any serializable value; the id is a fresh UUIDv7.
    pub fn json(event_type: impl Into<String>, payload: &impl Serialize) -> Result<Self, ValidationError> {
        let payload = serde_json::value::to_raw_value(payload).map_err(|e| ValidationError::InvalidJson {
            field: "payload",
            reason: e.to_string(),
        })?;
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            payload,
            metadata: None,
        })
    }

    /// An event from JSON text; invalid JSON is a [`ValidationError::InvalidJson`].
    pub fn from_json_str(event_type: impl Into<String>, payload: &str) -> Result<Self, ValidationError> {
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            payload: parse_raw("payload", payload)?,
            metadata: None,
        })
    }

    /// Sets the event id (for idempotent appends).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Sets JSON metadata.
    pub fn with_metadata(mut self, metadata: &impl Serialize) -> Result<Self, ValidationError> {
        self.metadata = Some(
            serde_json::value::to_raw_value(metadata).map_err(|e| ValidationError::InvalidJson {
                field: "metadata",
                reason: e.to_string(),
            })?,
        );
        Ok(self)
    }
}

/// Parses JSON text into a raw value, naming the field on error.
pub fn parse_raw(field: &'static str, text: &str) -> Result<Box<RawValue>, ValidationError> {
    serde_json::from_str::<Box<RawValue>>(text).map_err(|e| ValidationError::InvalidJson {
        field,
        reason: e.to_string(),
    })
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Global position (1-based, increasing in commit order on SQLite, in insert order on PostgreSQL).
    pub position: i64,
    /// The stream.
    pub stream_id: String,
    /// Version of the stream after this event (1 for the first event).
    pub stream_version: u64,
    /// The event id.
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The payload.
    pub payload: serde_json::Value,
    /// The metadata, if any.
    pub metadata: Option<serde_json::Value>,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// What an append stored (or, for an idempotent repeat, had stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// Stream version of the first appended event.
    pub first_version: u64,
    /// Stream version after the append.
    pub last_version: u64,
    /// Global position of the first appended event.
    pub first_position: i64,
    /// Global position of the last appended event.
    pub last_position: i64,
    /// Number of outbox entries written for these events.
    pub outbox_entries: usize,
    /// True when every event was already stored: nothing was written.
    pub idempotent_repeat: bool,
}

/// Direction of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ReadDirection {
    /// From `from_version` upwards.
    #[default]
    Forward,
    /// From `from_version` downwards.
    Backward,
}
