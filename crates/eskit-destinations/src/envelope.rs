//! The bytes every built-in destination delivers, and the entry attributes they
//! carry as headers.
//!
//! By default a destination sends the JSON envelope
//!
//! ```json
//! {"id":"<entry id>","stream":"<stream id>","type":"<event type>","payload":<payload>,"created_at":"<RFC 3339>"}
//! ```
//!
//! with the payload embedded verbatim (the caller's JSON text, byte for byte). With
//! [`BodyFormat::Payload`] the payload alone is sent.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use eskit::OutboxEntry;

/// What a destination sends as the message body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// The JSON envelope `{"id","stream","type","payload","created_at"}` (the default).
    #[default]
    Envelope,
    /// The entry's payload alone, byte for byte.
    Payload,
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: Uuid,
    stream: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    payload: &'a RawValue,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// The JSON envelope of an entry: `{"id","stream","type","payload","created_at"}`, in
/// that order, the payload embedded verbatim.
pub fn envelope(entry: &OutboxEntry) -> Vec<u8> {
    let envelope = Envelope {
        id: entry.id,
        stream: &entry.stream_id,
        event_type: &entry.event_type,
        payload: &entry.payload,
        created_at: entry.created_at,
    };
    match serde_json::to_vec(&envelope) {
        Ok(bytes) => bytes,
        // Unreachable in practice (strings, a UUID and already-valid JSON); a
        // timestamp outside RFC 3339's range is the only way here. Fall back to a
        // numeric timestamp rather than failing the delivery.
        Err(_) => serde_json::json!({
            "id": entry.id,
            "stream": entry.stream_id,
            "type": entry.event_type,
            "payload": &*entry.payload,
            "created_at": entry.created_at.unix_timestamp(),
        })
        .to_string()
        .into_bytes(),
    }
}

/// The body to send for `entry` in the given format.
pub fn body(entry: &OutboxEntry, format: BodyFormat) -> Vec<u8> {
    match format {
        BodyFormat::Envelope => envelope(entry),
        BodyFormat::Payload => entry.payload.get().as_bytes().to_vec(),
    }
}

/// The entry's creation time as RFC 3339 text (the `created_at` field and the
/// `eskit-created-at` header).
pub fn created_at(entry: &OutboxEntry) -> String {
    entry
        .created_at
        .format(&Rfc3339)
        .unwrap_or_else(|_| entry.created_at.unix_timestamp().to_string())
}

/// The W3C `traceparent` in the entry's metadata (`{"traceparent": "00-…"}`), if it
/// has a well-formed one. Malformed values are ignored rather than propagated.
pub fn traceparent(entry: &OutboxEntry) -> Option<String> {
    #[derive(Deserialize)]
    struct Meta {
        traceparent: Option<String>,
    }
    let metadata = entry.metadata.as_ref()?;
    let meta: Meta = serde_json::from_str(metadata.get()).ok()?;
    let value = meta.traceparent?;
    is_valid_traceparent(&value).then_some(value)
}

/// `version-traceid-parentid-flags`, lowercase hex, version not `ff`, ids not all zero.
fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match parts.as_slice() {
        [version, trace_id, parent_id, flags, ..] => {
            hex(version, 2)
                && *version != "ff"
                && hex(trace_id, 32)
                && hex(parent_id, 16)
                && hex(flags, 2)
                && trace_id.bytes().any(|b| b != b'0')
                && parent_id.bytes().any(|b| b != b'0')
                // Version 00 has exactly four fields; later versions may add more.
                && (parts.len() == 4 || *version != "00")
        }
        _ => false,
    }
}

/// Header / property names the broker destinations set on every message.
pub mod headers {
    /// The entry id (the idempotency key).
    pub const ENTRY_ID: &str = "eskit-entry-id";
    /// The stream id.
    pub const STREAM: &str = "eskit-stream";
    /// The event or message type.
    pub const EVENT_TYPE: &str = "eskit-event-type";
    /// When the entry was written, RFC 3339.
    pub const CREATED_AT: &str = "eskit-created-at";
    /// W3C trace context, when the entry's metadata has a `traceparent`.
    pub const TRACEPARENT: &str = "traceparent";
}

/// The headers every broker message carries, in a fixed order: entry id, stream,
/// event type, created-at, and `traceparent` when the metadata has one.
pub fn entry_headers(entry: &OutboxEntry) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (headers::ENTRY_ID, entry.id.to_string()),
        (headers::STREAM, entry.stream_id.clone()),
        (headers::EVENT_TYPE, entry.event_type.clone()),
        (headers::CREATED_AT, created_at(entry)),
    ];
    if let Some(tp) = traceparent(entry) {
        out.push((headers::TRACEPARENT, tp));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use eskit::EntryState;
    use time::macros::datetime;

    fn entry(payload: &str, metadata: Option<&str>) -> OutboxEntry {
        OutboxEntry {
            seq: 1,
            id: Uuid::parse_str("0190f5a4-0000-7000-8000-000000000001").unwrap(),
            destination: "d".into(),
            stream_id: "order-1".into(),
            partition: 0,
            event_type: "OrderPlaced".into(),
            payload: RawValue::from_string(payload.into()).unwrap(),
            metadata: metadata.map(|m| RawValue::from_string(m.into()).unwrap()),
            event_id: None,
            stream_version: None,
            state: EntryState::Pending,
            attempts: 0,
            last_error: None,
            created_at: datetime!(2024-05-06 07:08:09.123456 UTC),
            next_attempt_at: datetime!(2024-05-06 07:08:09 UTC),
            delivered_at: None,
            dead_at: None,
        }
    }

    #[test]
    fn envelope_is_exact_and_keeps_payload_bytes() {
        let e = entry(r#"{"b": 1,  "a":[1, 2]}"#, None);
        assert_eq!(
            String::from_utf8(envelope(&e)).unwrap(),
            r#"{"id":"0190f5a4-0000-7000-8000-000000000001","stream":"order-1","type":"OrderPlaced","payload":{"b": 1,  "a":[1, 2]},"created_at":"2024-05-06T07:08:09.123456Z"}"#
        );
        assert_eq!(body(&e, BodyFormat::Payload), br#"{"b": 1,  "a":[1, 2]}"#);
        assert_eq!(body(&e, BodyFormat::Envelope), envelope(&e));
    }

    #[test]
    fn traceparent_is_taken_only_when_well_formed() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let e = entry("1", Some(&format!(r#"{{"traceparent":"{tp}","x":1}}"#)));
        assert_eq!(traceparent(&e).as_deref(), Some(tp));
        let h = entry_headers(&e);
        assert_eq!(h.last(), Some(&("traceparent", tp.to_string())));
        for bad in [
            r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y"}"#,
            r#"{"traceparent":"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#,
            r#"{"traceparent":"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}"#,
            r#"{"traceparent":"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}"#,
            r#"{"traceparent":12}"#,
            r#"[1]"#,
        ] {
            assert_eq!(traceparent(&entry("1", Some(bad))), None, "{bad}");
        }
        assert_eq!(traceparent(&entry("1", None)), None);
        assert_eq!(entry_headers(&entry("1", None)).len(), 4);
    }

    #[test]
    fn body_format_parses_from_config_text() {
        #[derive(Deserialize)]
        struct C {
            body: BodyFormat,
        }
        let c: C = serde_json::from_str(r#"{"body":"payload"}"#).unwrap();
        assert_eq!(c.body, BodyFormat::Payload);
        assert!(serde_json::from_str::<C>(r#"{"body":"raw"}"#).is_err());
    }
}
