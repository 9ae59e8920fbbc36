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
    /// The entry a route produces for an event. Its id is [`route_entry_id`]: derived
    /// from the event id and the destination, so it is stable across idempotent re-appends.
    pub fn for_event(destination: &str, stream_id: &str, version: u64, event: &EventData, partitions: u32) -> Self {
        Self {
            id: route_entry_id(event.id, destination),
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

/// The id of the outbox entry a route writes for event `event_id` to `destination`.
///
/// A UUIDv8 (RFC 9562): the first 48 bits are the event id's (for the default
/// UUIDv7 event ids, the event's creation time in unix milliseconds), the other bits
/// come from `UUIDv5(event id, destination)`. So the id is
/// - **stable**: the same event and destination always give the same id (an idempotent
///   re-append, a replay, a consumer deduplicating on it);
/// - **distinct per destination**: one event routed to two destinations gives two ids;
/// - **time-ordered** like the event ids: entries written later sort later, so the
///   entry-id index grows at its right edge instead of taking each insert (and each
///   result write's lookup) on a random page. With UUIDv4 event ids the prefix is random
///   and so is the order.
pub fn route_entry_id(event_id: Uuid, destination: &str) -> Uuid {
    let mut bytes = *Uuid::new_v5(&event_id, destination.as_bytes()).as_bytes();
    bytes[..6].copy_from_slice(&event_id.as_bytes()[..6]);
    Uuid::new_v8(bytes)
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

    #[test]
    fn route_entry_ids_are_stable_distinct_and_time_ordered() {
        let event = Uuid::parse_str("01938f6e-2a4b-7c3d-8e5f-0123456789ab").unwrap();
        let id = route_entry_id(event, "hook");
        assert_eq!(id, route_entry_id(event, "hook"), "stable");
        assert_ne!(id, route_entry_id(event, "audit"), "one id per destination");
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.as_bytes()[..6], event.as_bytes()[..6], "the event's timestamp first");
        // Known value: pins the layout (changing it changes every stored route entry id).
        assert_eq!(id.to_string(), "01938f6e-2a4b-82a3-9ad2-51115d6012a8");

        // Entries of events created in later milliseconds sort later, whatever the
        // destination; with v4 event ids nothing is promised.
        let at = |ms: u64| {
            Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                (ms % 1000) as u32 * 1_000_000,
            ))
        };
        let mut previous = route_entry_id(at(1_733_000_000_000), "hook");
        for ms in 1_733_000_000_001..1_733_000_000_200 {
            let next = route_entry_id(at(ms), if ms % 2 == 0 { "audit" } else { "hook" });
            assert!(next > previous, "{next} after {previous}");
            previous = next;
        }
    }
}
