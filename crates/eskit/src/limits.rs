//! Input limits and the validation that enforces them, shared by every backend.

use serde_json::value::RawValue;

use crate::error::ValidationError;
use crate::event::EventData;
use crate::outbox::OutboxMessage;

/// Size limits applied before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest stream id in bytes (default 256).
    pub max_stream_id_len: usize,
    /// Longest event type / destination name in bytes (default 256).
    pub max_name_len: usize,
    /// Largest payload or metadata document in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// Deepest JSON nesting (default 64).
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stream_id_len: 256,
            max_name_len: 256,
            max_payload_bytes: 1024 * 1024,
            max_json_depth: 64,
        }
    }
}

impl Limits {
    /// Checks a stream id: non-empty, within the length limit, no control characters.
    pub fn check_stream_id(&self, stream_id: &str) -> Result<(), ValidationError> {
        if stream_id.is_empty() {
            return Err(ValidationError::EmptyStreamId);
        }
        if stream_id.len() > self.max_stream_id_len {
            return Err(ValidationError::StreamIdTooLong {
                len: stream_id.len(),
                max: self.max_stream_id_len,
            });
        }
        check_no_control("stream id", stream_id)
    }

    /// Checks a short name (event type, destination): non-empty, bounded, no control characters.
    pub fn check_name(&self, field: &'static str, value: &str) -> Result<(), ValidationError> {
        if value.is_empty() {
            return Err(ValidationError::Empty { field });
        }
        if value.len() > self.max_name_len {
            return Err(ValidationError::TooLong {
                field,
                len: value.len(),
                max: self.max_name_len,
            });
        }
        check_no_control(field, value)
    }

    /// Checks a JSON document: within the size cap, no NUL character, bounded nesting.
    pub fn check_json(&self, field: &'static str, json: &RawValue) -> Result<(), ValidationError> {
        let text = json.get();
        if text.len() > self.max_payload_bytes {
            return Err(ValidationError::PayloadTooLarge {
                field,
                len: text.len(),
                max: self.max_payload_bytes,
            });
        }
        scan_json(field, text, self.max_json_depth)
    }

    /// Checks everything about an event.
    pub fn check_event(&self, event: &EventData) -> Result<(), ValidationError> {
        self.check_name("event type", &event.event_type)?;
        self.check_json("payload", &event.payload)?;
        if let Some(meta) = &event.metadata {
            self.check_json("metadata", meta)?;
        }
        Ok(())
    }

    /// Checks a whole append: stream id, at least one event, unique ids, every event.
    pub fn check_append(&self, stream_id: &str, events: &[EventData]) -> Result<(), ValidationError> {
        self.check_stream_id(stream_id)?;
        if events.is_empty() {
            return Err(ValidationError::NoEvents);
        }
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        for event in events {
            if !seen.insert(event.id) {
                return Err(ValidationError::DuplicateEventId(event.id));
            }
            self.check_event(event)?;
        }
        Ok(())
    }

    /// Checks an explicit outbox message.
    pub fn check_message(&self, message: &OutboxMessage) -> Result<(), ValidationError> {
        self.check_name("destination", &message.destination)?;
        self.check_stream_id(&message.stream_id)?;
        self.check_name("message type", &message.message_type)?;
        self.check_json("payload", &message.payload)?;
        if let Some(meta) = &message.metadata {
            self.check_json("metadata", meta)?;
        }
        Ok(())
    }
}

fn check_no_control(field: &'static str, value: &str) -> Result<(), ValidationError> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, _)) => Err(ValidationError::ControlCharacter { field, at }),
        None => Ok(()),
    }
}

/// One pass over valid JSON text: rejects `\u0000` escapes (raw NUL cannot occur in
/// valid JSON), nesting deeper than `max_depth`, and what `serde_json::Value` (hence
/// every reader) and PostgreSQL's `jsonb` cannot take back although the JSON grammar
/// allows it: lone UTF-16 surrogate escapes and numbers beyond the `f64` range.
fn scan_json(field: &'static str, text: &str, max_depth: usize) -> Result<(), ValidationError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => {
                    if bytes.get(i + 1) == Some(&b'u') {
                        i = check_unicode_escape(field, bytes, i)?;
                    } else {
                        i += 2;
                    }
                    continue;
                }
                b'"' => in_string = false,
                0 => return Err(ValidationError::NulInJson { field }),
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max_depth {
                        return Err(ValidationError::TooDeep { field, max: max_depth });
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                0 => return Err(ValidationError::NulInJson { field }),
                b'-' | b'0'..=b'9' => {
                    i = check_number(field, bytes, i)?;
                    continue;
                }
                _ => {}
            }
        }
        i += 1;
    }
    Ok(())
}

/// The 4 hex digits of a `\uXXXX` escape at `at` (pointing at the backslash).
fn escape_code(bytes: &[u8], at: usize) -> Option<u16> {
    let hex = bytes.get(at + 2..at + 6)?;
    u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Checks the `\uXXXX` escape at `at`: not NUL, and surrogates only in pairs. Returns
/// the index after the escape (after the pair for a surrogate pair).
fn check_unicode_escape(field: &'static str, bytes: &[u8], at: usize) -> Result<usize, ValidationError> {
    let lone = |code: u16| ValidationError::InvalidJson {
        field,
        reason: format!("lone UTF-16 surrogate escape \\u{code:04x} at byte {at}"),
    };
    match escape_code(bytes, at) {
        Some(0) => Err(ValidationError::NulInJson { field }),
        Some(high @ 0xD800..=0xDBFF) => {
            let paired = bytes.get(at + 6) == Some(&b'\\')
                && bytes.get(at + 7) == Some(&b'u')
                && escape_code(bytes, at + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low));
            if paired { Ok(at + 12) } else { Err(lone(high)) }
        }
        Some(low @ 0xDC00..=0xDFFF) => Err(lone(low)),
        _ => Ok(at + 6),
    }
}

/// Checks the number starting at `at`: within the `f64` range (a longer or exponent
/// form is parsed). Returns the index after it.
fn check_number(field: &'static str, bytes: &[u8], at: usize) -> Result<usize, ValidationError> {
    let end = bytes[at..]
        .iter()
        .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
        .map_or(bytes.len(), |n| at + n);
    let token = &bytes[at..end];
    // Shorter plain numbers always fit (f64::MAX has 309 digits).
    if token.len() > 300 || token.iter().any(|b| matches!(b, b'e' | b'E')) {
        let finite = std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(f64::is_finite);
        if !finite {
            return Err(ValidationError::InvalidJson {
                field,
                reason: format!("number out of range at byte {at}"),
            });
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_raw;

    #[test]
    fn stream_ids() {
        let l = Limits::default();
        assert_eq!(l.check_stream_id(""), Err(ValidationError::EmptyStreamId));
        assert!(matches!(
            l.check_stream_id(&"a".repeat(257)),
            Err(ValidationError::StreamIdTooLong { .. })
        ));
        assert!(matches!(
            l.check_stream_id("a\nb"),
            Err(ValidationError::ControlCharacter { at: 1, .. })
        ));
        assert!(matches!(
            l.check_stream_id("a\0b"),
            Err(ValidationError::ControlCharacter { .. })
        ));
        assert!(l.check_stream_id("order-42").is_ok());
    }

    #[test]
    fn json_nul_depth_and_size() {
        let l = Limits {
            max_payload_bytes: 64,
            max_json_depth: 3,
            ..Limits::default()
        };
        let nul = parse_raw("payload", r#"{"a":"x\u0000y"}"#).unwrap();
        assert_eq!(
            l.check_json("payload", &nul),
            Err(ValidationError::NulInJson { field: "payload" })
        );
        let escaped_backslash = parse_raw("payload", r#"{"a":"x\\u0000y"}"#).unwrap();
        assert!(l.check_json("payload", &escaped_backslash).is_ok());
        let deep = parse_raw("payload", "[[[[1]]]]").unwrap();
        assert!(matches!(
            l.check_json("payload", &deep),
            Err(ValidationError::TooDeep { .. })
        ));
        let big = parse_raw("payload", &format!("\"{}\"", "x".repeat(100))).unwrap();
        assert!(matches!(
            l.check_json("payload", &big),
            Err(ValidationError::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            parse_raw("payload", "{"),
            Err(ValidationError::InvalidJson { .. })
        ));
    }

    #[test]
    fn json_that_readers_cannot_take_back() {
        let l = Limits::default();
        let check = |text: &str| l.check_json("payload", &parse_raw("payload", text).unwrap());
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"["\uDBFF"]"#,
            r#"{"a":1e400}"#,
            r#"[-1E+309]"#,
        ] {
            assert!(
                matches!(check(bad), Err(ValidationError::InvalidJson { field: "payload", .. })),
                "{bad}: {:?}",
                check(bad)
            );
        }
        let huge = format!("[1{}]", "0".repeat(400));
        assert!(matches!(check(&huge), Err(ValidationError::InvalidJson { .. })));
        for good in [
            r#"{"a":"\ud83e\udd80"}"#,
            r#"{"a":"\u00e9\\ud800"}"#,
            r#"[1e308, -1.5e-400, 0, -0.0, 12345678901234567890]"#,
            r#"{"\ud800\udc00": true}"#,
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
            serde_json::from_str::<serde_json::Value>(good).expect("a reader takes it back");
        }
        assert_eq!(
            check(r#"{"a":"x\u0000"}"#),
            Err(ValidationError::NulInJson { field: "payload" })
        );
    }
}
