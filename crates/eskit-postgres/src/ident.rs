//! The configurable schema name: validated once against an allowlist pattern, then
//! quoted. Nothing else user-supplied is ever spliced into SQL text.

use eskit::ValidationError;

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_IDENT_LEN: usize = 63;

/// A schema name matching `^[A-Za-z_][A-Za-z0-9_]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaName(String);

impl SchemaName {
    /// Validates `name`; anything else (quotes, spaces, dots, semicolons, non-ASCII,
    /// longer than 63 bytes) is [`ValidationError::InvalidIdentifier`].
    pub fn new(name: &str) -> Result<Self, ValidationError> {
        let mut chars = name.chars();
        let valid_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid_start && valid_rest && name.len() <= MAX_IDENT_LEN {
            Ok(Self(name.to_string()))
        } else {
            Err(ValidationError::InvalidIdentifier(name.to_string()))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted identifier (`"name"`, case preserved). Safe to splice into
    /// SQL: the pattern admits no quote.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// The LISTEN/NOTIFY channel of this schema's outbox: `eskit_<schema>`, or, when
    /// that would exceed PostgreSQL's 63-byte limit, `eskit_` and a hash of the name.
    pub fn channel(&self) -> String {
        let plain = format!("eskit_{}", self.0);
        if plain.len() <= MAX_IDENT_LEN {
            plain
        } else {
            format!("eskit_{:016x}", fnv1a64(self.0.as_bytes()))
        }
    }

    /// The advisory-lock key that serializes writers of `stream_id` in this schema
    /// (advisory locks are per database, so the schema is part of the key).
    pub fn stream_lock_key(&self, stream_id: &str) -> i64 {
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + stream_id.len());
        bytes.extend_from_slice(self.0.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(stream_id.as_bytes());
        i64::from_ne_bytes(fnv1a64(&bytes).to_ne_bytes())
    }
}

impl std::fmt::Display for SchemaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_identifiers() {
        for ok in ["eskit", "_x", "A1_b2", &"a".repeat(63)] {
            assert!(SchemaName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a.b",
            "x\"; DROP TABLE y; --",
            "é",
            &"a".repeat(64),
            "a\0",
        ] {
            assert_eq!(
                SchemaName::new(bad),
                Err(ValidationError::InvalidIdentifier(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn channel_fits_and_lock_keys_differ() {
        let long = SchemaName::new(&"a".repeat(63)).unwrap();
        assert!(long.channel().len() <= 63);
        let s = SchemaName::new("eskit").unwrap();
        assert_eq!(s.channel(), "eskit_eskit");
        assert_ne!(s.stream_lock_key("a"), s.stream_lock_key("b"));
        let t = SchemaName::new("other").unwrap();
        assert_ne!(s.stream_lock_key("a"), t.stream_lock_key("a"));
    }
}
