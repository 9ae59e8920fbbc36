//! Webhook configuration: deserializable from the `[[destinations]]` table of the eskit
//! config file, or built in code.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// Default total request deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on the response body bytes read.
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 4 * 1024;

/// Configuration of one webhook destination.
///
/// In a config file (TOML), inside a `[[destinations]]` table with `type = "webhook"`:
///
/// ```toml
/// url = "https://example.com/hooks/eskit"
/// secret = ["whsec_new...", "whsec_old..."]   # or one string
/// timeout = "10s"
/// connect_timeout = "5s"
/// allowed_cidrs = ["127.0.0.0/8"]
/// danger_accept_invalid_certs = false
/// max_response_body = 4096
/// headers = { authorization = "Bearer ..." }
/// ```
///
/// Unknown keys are errors. Validation of the values (URL form, secret form) happens
/// in [`WebhookDestination::new`](super::WebhookDestination::new). `Debug` redacts
/// the secrets and the header values.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST: an `http` or `https` URL with a host.
    pub url: String,
    /// Signing secrets (`whsec_` + base64 of 24 to 64 bytes). Several during a
    /// rotation: every delivery carries one signature per secret. Config key `secret`
    /// (a string or a list of strings).
    #[serde(rename = "secret", alias = "secrets", deserialize_with = "one_or_many_secrets")]
    pub secrets: Vec<String>,
    /// Total deadline of one request: connect, send, and read the response.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Deadline of the TCP (and TLS) connect.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Explicit opt-in for addresses the SSRF guard refuses (loopback, private,
    /// link-local, ...): CIDRs or single addresses.
    #[serde(default, deserialize_with = "cidrs")]
    pub allowed_cidrs: Vec<IpNet>,
    /// Turns off TLS certificate verification (logs a warning). For tests only.
    #[serde(default)]
    pub danger_accept_invalid_certs: bool,
    /// Most bytes of a response body read (for the error excerpt); the rest is never
    /// read.
    #[serde(default = "default_max_response_body")]
    pub max_response_body: usize,
    /// Extra static headers sent with every request (e.g. `authorization`). They may not
    /// replace the headers the webhook sets itself.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_max_response_body() -> usize {
    DEFAULT_MAX_RESPONSE_BODY
}

impl WebhookConfig {
    /// A configuration with one secret and the defaults.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secrets: vec![secret.into()],
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            allowed_cidrs: Vec::new(),
            danger_accept_invalid_certs: false,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
            headers: BTreeMap::new(),
        }
    }

    /// Adds another signing secret (rotation).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Sets the total request deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Allows addresses in `cidr` that the SSRF guard would refuse.
    pub fn allow_cidr(mut self, cidr: IpNet) -> Self {
        self.allowed_cidrs.push(cidr);
        self
    }

    /// Turns TLS certificate verification off (`true`) or on.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.danger_accept_invalid_certs = accept;
        self
    }

    /// Sets the cap on response body bytes read.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// Adds a static header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self.headers.keys().map(|k| (k.as_str(), "<redacted>")).collect();
        f.debug_struct("WebhookConfig")
            .field("url", &super::redact_url_text(&self.url))
            .field("secrets", &format_args!("[<redacted>; {}]", self.secrets.len()))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("allowed_cidrs", &self.allowed_cidrs)
            .field("danger_accept_invalid_certs", &self.danger_accept_invalid_certs)
            .field("max_response_body", &self.max_response_body)
            .field("headers", &headers)
            .finish()
    }
}

/// `secret = "whsec_..."` or `secret = ["whsec_...", ...]`. Never echoes a value in
/// its errors.
fn one_or_many_secrets<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct SecretsVisitor;

    impl<'de> Visitor<'de> for SecretsVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a `whsec_` secret string or a list of them")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut secrets = Vec::new();
            while let Some(secret) = seq.next_element::<SecretText>()? {
                secrets.push(secret.0);
            }
            Ok(secrets)
        }
    }

    deserializer.deserialize_any(SecretsVisitor)
}

/// One secret string in a list.
struct SecretText(String);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = SecretText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a `whsec_` secret string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(SecretText(v.to_string()))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// CIDRs (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
fn cidrs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    de::Error::invalid_value(
                        de::Unexpected::Str(text),
                        &"a CIDR like \"127.0.0.0/8\" or an IP address",
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_one_secret() {
        let config: WebhookConfig = serde_json::from_str(r#"{"url": "http://x", "secret": "whsec_a"}"#).unwrap();
        assert_eq!(config.secrets, vec!["whsec_a".to_string()]);
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(config.max_response_body, DEFAULT_MAX_RESPONSE_BODY);
        assert!(!config.danger_accept_invalid_certs);
        assert!(config.allowed_cidrs.is_empty());
    }

    #[test]
    fn every_key() {
        let config: WebhookConfig = serde_json::from_str(
            r#"{"url": "https://example.com/h", "secret": ["whsec_a", "whsec_b"], "timeout": "5s",
                "connect_timeout": "250ms", "allowed_cidrs": ["127.0.0.0/8", "::1", "10.1.2.3"],
                "danger_accept_invalid_certs": true, "max_response_body": 100,
                "headers": {"authorization": "Bearer t"}}"#,
        )
        .unwrap();
        assert_eq!(config.secrets.len(), 2);
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            config.allowed_cidrs,
            vec![
                "127.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap(),
                "10.1.2.3/32".parse().unwrap()
            ]
        );
        assert!(config.danger_accept_invalid_certs);
        assert_eq!(config.max_response_body, 100);
        assert_eq!(config.headers["authorization"], "Bearer t");
    }

    #[test]
    fn errors_name_the_key_and_hide_secrets() {
        let err = serde_json::from_str::<WebhookConfig>(r#"{"url": "http://x", "secret": "whsec_a", "timeot": "1s"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeot"), "{err}");
        let err =
            serde_json::from_str::<WebhookConfig>(r#"{"url": "http://x", "secret": "whsec_a", "timeout": "soon"}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("soon") || err.contains("duration"), "{err}");
        let err = serde_json::from_str::<WebhookConfig>(r#"{"url": "http://x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret"), "{err}");
        let err = serde_json::from_str::<WebhookConfig>(
            r#"{"url": "http://x", "secret": "whsec_a", "allowed_cidrs": ["nope"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nope"), "{err}");
        let err = serde_json::from_str::<WebhookConfig>(r#"{"url": "http://x", "secret": ["whsec_hidden", 5]}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hidden"), "{err}");
    }

    #[test]
    fn debug_redacts() {
        let config = WebhookConfig::new("https://user:pw@example.com/p?token=abc", "whsec_topsecret")
            .header("authorization", "Bearer hunter2");
        let shown = format!("{config:?}");
        for secret in ["topsecret", "hunter2", "pw@", "token=abc"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("example.com"));
    }
}
