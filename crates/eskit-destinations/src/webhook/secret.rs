//! Standard Webhooks secrets and signatures.
//!
//! A secret is written `whsec_` followed by the standard base64 encoding of 24 to 64
//! random bytes. The signature of a delivery is `v1,` followed by the base64 HMAC-SHA256
//! of `{webhook-id}.{webhook-timestamp}.{body}` keyed with the decoded bytes. During a
//! secret rotation a sender signs with every configured secret and puts the signatures,
//! separated by spaces, in one `webhook-signature` header; a receiver accepts the
//! delivery when any of them verifies.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix every secret carries.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest key bytes a secret may decode to.
pub const MIN_SECRET_BYTES: usize = 24;
/// Most key bytes a secret may decode to.
pub const MAX_SECRET_BYTES: usize = 64;

/// Standard base64, padding optional (some tools strip it).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a secret was rejected. Never contains the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text does not start with `whsec_`.
    #[error("a webhook secret must start with `whsec_`")]
    MissingPrefix,
    /// The part after `whsec_` is not standard base64.
    #[error("a webhook secret must be `whsec_` followed by standard base64")]
    NotBase64,
    /// The key is too short or too long.
    #[error(
        "a webhook secret must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, this one decodes to {len}"
    )]
    BadLength {
        /// Decoded length in bytes.
        len: usize,
    },
}

/// A validated signing secret. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct WebhookSecret {
    mac: Hmac<Sha256>,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`; the key must be 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = LENIENT_BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(&key)
    }

    /// A secret from raw key bytes (24 to 64 of them).
    pub fn from_bytes(key: &[u8]) -> Result<Self, SecretError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength { len: key.len() });
        }
        // HMAC accepts keys of any length; the error arm is unreachable in practice.
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| SecretError::BadLength { len: key.len() })?;
        Ok(Self { mac })
    }

    /// The signature of one delivery: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.tag(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Whether `signature` (one `v1,<base64>` token) is this secret's signature of the
    /// delivery. Compares in constant time.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = STANDARD.decode(encoded) else {
            return false;
        };
        self.tag(id, timestamp, body).verify_slice(&tag).is_ok()
    }

    fn tag(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The `webhook-signature` value for one secret: `v1,<base64 HMAC-SHA256>`.
///
/// ```
/// use eskit_destinations::webhook::{WebhookSecret, sign};
///
/// let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
/// assert_eq!(
///     sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
/// );
/// ```
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    secret.sign(id, timestamp, body)
}

/// The `webhook-signature` value for several secrets (rotation): one `v1,` signature
/// per secret, in order, separated by single spaces.
pub fn signature_header(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Receiver side: whether any signature in a `webhook-signature` header verifies with
/// any of `secrets`. Checking the timestamp's age (replay window) is up to the caller.
pub fn verify(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header
        .split_ascii_whitespace()
        .any(|token| secrets.iter().any(|secret| secret.verify(id, timestamp, body, token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const KAT_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const KAT_TS: i64 = 1_614_265_330;
    const KAT_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const KAT_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn known_answer_vector() {
        let secret = WebhookSecret::parse(KAT_SECRET).unwrap();
        assert_eq!(sign(&secret, KAT_ID, KAT_TS, KAT_BODY), KAT_SIG);
        assert!(verify(std::slice::from_ref(&secret), KAT_ID, KAT_TS, KAT_BODY, KAT_SIG));
        assert!(!verify(
            std::slice::from_ref(&secret),
            KAT_ID,
            KAT_TS + 1,
            KAT_BODY,
            KAT_SIG
        ));
        assert!(!verify(&[secret], KAT_ID, KAT_TS, b"{\"test\": 2432232315}", KAT_SIG));
    }

    #[test]
    fn rotation_header_carries_every_signature() {
        let old = WebhookSecret::parse(KAT_SECRET).unwrap();
        let new = WebhookSecret::from_bytes(&[7u8; 32]).unwrap();
        let header = signature_header(&[new.clone(), old.clone()], KAT_ID, KAT_TS, KAT_BODY);
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], KAT_SIG);
        assert!(verify(&[old], KAT_ID, KAT_TS, KAT_BODY, &header));
        assert!(verify(&[new], KAT_ID, KAT_TS, KAT_BODY, &header));
        let other = WebhookSecret::from_bytes(&[8u8; 32]).unwrap();
        assert!(!verify(&[other], KAT_ID, KAT_TS, KAT_BODY, &header));
    }

    #[test]
    fn malformed_secrets_are_rejected_without_echo() {
        let short = format!("whsec_{}", STANDARD.encode([1u8; 23]));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        let cases = [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretError::MissingPrefix),
            ("whsec_not*base64!", SecretError::NotBase64),
            (short.as_str(), SecretError::BadLength { len: 23 }),
            (long.as_str(), SecretError::BadLength { len: 65 }),
        ];
        for (text, expected) in cases {
            let err = WebhookSecret::parse(text).unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.to_string().contains(text));
        }
        assert!(WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 64]))).is_ok());
        // Padding may be left off.
        assert!(WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 25]).trim_end_matches('='))).is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let secret = WebhookSecret::parse(KAT_SECRET).unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.contains("MfKQ"));
    }
}
