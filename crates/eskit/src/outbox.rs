//! Outbox entries: what the relay delivers.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ValidationError;
use crate::event::{EventData, parse_raw};

/// Lifecycle of an outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Waiting to be delivered (possibly after a failed attempt).
    Pending,
    /// Delivered; kept until retention purges it.
    Delivered,
    /// In the dead-letter queue: attempts exhausted or a permanent error.
    Dead,
}

impl EntryState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Delivered => "delivered",
            EntryState::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(EntryState::Pending),
            "delivered" => Some(EntryState::Delivered),
            "dead" => Some(EntryState::Dead),
            _ => None,
        }
    }
}

/// An explicit outbox message (not an event), written through the outbox writer
/// in the application's transaction.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// Entry id, the stable idempotency key receivers see (fresh UUIDv7 by default).
    pub id: Uuid,
    /// Destination name.
    pub destination: String,
    /// Ordering key: messages of one stream are delivered in commit order.
    pub stream_id: String,
    /// Message type.
    pub message_type: String,
    /// JSON payload.
    pub payload: Box<RawValue>,
    /// Optional JSON metadata.
    pub metadata: Option<Box<RawValue>>,
}

impl OutboxMessage {
    /// A message with a serializable payload.
    pub fn json(
        destination: impl Into<String>,
        stream_id: impl Into<String>,
        message_type: impl Into<String>,
        payload: &impl Serialize,
    ) -> Result<Self, ValidationError> {
        let payload = serde_json::value::to_raw_value(payload).map_err(|e| ValidationError::InvalidJson {
            field: "payload",
            reason: e.to_string(),
        })?;
        Ok(Self {
            id: Uuid::now_v7(),
            destination: destination.into(),
            stream_id: stream_id.into(),
            message_type: message_type.into(),
            payload,
            metadata: None,
        })
    }

    /// A message from JSON text.
    pub fn from_json_str(
        destination: impl Into<String>,
        stream_id: impl Into<String>,
        message_type: impl Into<String>,
        payload: &str,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            id: Uuid::now_v7(),
            destination: destination.into(),
            stream_id: stream_id.into(),
            message_type: message_type.into(),
            payload: parse_raw("payload", payload)?,
            metadata: None,
        })
    }
}

/// A row to insert into the outbox, as computed by the core for a backend.
#[derive(Debug, Clone)]
pub struct NewOutboxEntry {
    /// Entry id.
    pub id: Uuid,
    /// Destination.
    pub destination: String,
    /// Stream id.
    pub stream_id: String,
    /// Partition (hash of the stream id mod the store's partition count).
    pub partition: u32,
    /// Event or message type.
    pub event_type: String,
    /// Payload (JSON text).
    pub payload: Box<RawValue>,
    /// Metadata (JSON text).
    pub metadata: Option<Box<RawValue>>,
    /// The source event id, for entries produced by routes.
    pub event_id: Option<Uuid>,
    /// The source event's stream version, for entries produced by routes.
    pub stream_version: Option<u64>,
}

impl NewOutboxEntry {
    /// The entry a route produces for an event. Its id is derived from the event id and
    /// the destination, so it is stable across idempotent re-appends.
    pub fn for_event(destination: &str, stream_id: &str, version: u64, event: &EventData, partitions: u32) -> Self {
        Self {
            id: Uuid::new_v5(&event.id, destination.as_bytes()),
            destination: destination.to_string(),
            stream_id: stream_id.to_string(),
            partition: partition_of(stream_id, partitions),
            event_type: event.event_type.clone(),
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
            event_id: Some(event.id),
            stream_version: Some(version),
        }
    }

    /// The entry for an explicit message.
    pub fn for_message(message: OutboxMessage, partitions: u32) -> Self {
        Self {
            id: message.id,
            partition: partition_of(&message.stream_id, partitions),
            destination: message.destination,
            stream_id: message.stream_id,
            event_type: message.message_type,
            payload: message.payload,
            metadata: message.metadata,
            event_id: None,
            stream_version: None,
        }
    }
}

/// A stored outbox entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Insertion sequence; within one stream it follows commit order.
    pub seq: i64,
    /// Stable entry id: the idempotency key every destination carries.
    pub id: Uuid,
    /// Destination name.
    pub destination: String,
    /// Stream id.
    pub stream_id: String,
    /// Partition.
    pub partition: u32,
    /// Event or message type.
    pub event_type: String,
    /// Payload.
    pub payload: Box<RawValue>,
    /// Metadata.
    pub metadata: Option<Box<RawValue>>,
    /// Source event id, if the entry came from a route.
    pub event_id: Option<Uuid>,
    /// Source event's stream version, if the entry came from a route.
    pub stream_version: Option<u64>,
    /// State.
    pub state: EntryState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// When it was written (commit time, to the database clock's precision).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Earliest time of the next attempt.
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// When it was delivered: the time the relay recorded its batch's results (within
    /// the batch's duration after the destination acknowledged it).
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    /// When it was dead-lettered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub dead_at: Option<OffsetDateTime>,
}

/// Partition of a stream: FNV-1a of the stream id, modulo `partitions`. Stable across
/// processes, platforms and backends.
pub fn partition_of(stream_id: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in stream_id.as_bytes() {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_and_in_range() {
        assert_eq!(partition_of("order-1", 16), partition_of("order-1", 16));
        for i in 0..1000 {
            assert!(partition_of(&format!("s{i}"), 7) < 7);
        }
        // Known value: FNV-1a("a") = 0xe40c292c.
        assert_eq!(partition_of("a", u32::MAX), 0xe40c_292c);
    }
}
