//! Redis Streams destination (feature `redis`).
//!
//! Each entry is appended with `XADD <stream> [MAXLEN ~ <n>] * id <entry id>
//! stream <stream id> type <event type> created_at <RFC 3339> payload <body>
//! [traceparent <tp>]`; the call returns once Redis replied with the new stream
//! entry id. Redis has no built-in deduplication here: consumers deduplicate on the
//! `id` field. How durable an acknowledged `XADD` is depends on the server's
//! persistence settings (`appendonly`, `appendfsync`).
//!
//! ```toml
//! [[destinations]]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//! stream = "orders:{stream}"
//! maxlen = 100000      # optional, approximate trimming (MAXLEN ~)
//! timeout = "10s"      # optional
//! body = "envelope"    # or "payload"
//! ```

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ErrorKind, RedisError};
use serde::Deserialize;

use eskit::{DeliveryError, Destination, OutboxEntry};

use crate::broker::{BrokerConfigError, Sanitize, SecretUrl, Template};
use crate::envelope::{BodyFormat, body, created_at, traceparent};

/// Default connect and response timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of a Redis Streams destination (`type = "redis"`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Server URL, e.g. `redis://127.0.0.1:6379`, `redis://:password@host:6379/0`,
    /// `rediss://` for TLS; the password is never logged.
    pub url: String,
    /// Stream key template; `{stream}` and `{type}` are replaced by the entry's
    /// stream id and event type, as they are (Redis keys are binary-safe).
    pub stream: String,
    /// Approximate cap on the stream's length (`XADD … MAXLEN ~ n`); unset means no
    /// trimming.
    #[serde(default)]
    pub maxlen: Option<u64>,
    /// Connect timeout and the wait for each reply (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// What the `payload` field holds: the JSON envelope (default) or the payload
    /// alone.
    #[serde(default)]
    pub body: BodyFormat,
}

impl RedisConfig {
    /// A config with the given URL and stream key template, other keys at defaults.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            maxlen: None,
            timeout: None,
            body: BodyFormat::default(),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &SecretUrl::new(&self.url))
            .field("stream", &self.stream)
            .field("maxlen", &self.maxlen)
            .field("timeout", &self.timeout)
            .field("body", &self.body)
            .finish()
    }
}

/// Appends entries to Redis Streams with `XADD`.
///
/// Connects lazily on the first delivery through a [`ConnectionManager`], which
/// reconnects by itself after a connection loss; a failed first connect is retried
/// on the next delivery.
pub struct RedisDestination {
    url: SecretUrl,
    client: ::redis::Client,
    stream: Template,
    maxlen: Option<u64>,
    timeout: Duration,
    body: BodyFormat,
    manager: tokio::sync::Mutex<Option<ConnectionManager>>,
}

impl fmt::Debug for RedisDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDestination")
            .field("url", &self.url)
            .field("stream", &self.stream.text())
            .field("maxlen", &self.maxlen)
            .field("timeout", &self.timeout)
            .field("body", &self.body)
            .finish()
    }
}

impl RedisDestination {
    /// Validates `config`; no connection is made until the first delivery.
    pub fn new(config: RedisConfig) -> Result<Self, BrokerConfigError> {
        let url = SecretUrl::new(&config.url);
        let client = ::redis::Client::open(config.url.as_str()).map_err(|e| BrokerConfigError::InvalidUrl {
            kind: "redis",
            url: url.redacted().to_string(),
            reason: url.scrub(&e.to_string()),
        })?;
        let stream = Template::parse("stream", &config.stream, Sanitize::Verbatim)?;
        if config.maxlen == Some(0) {
            return Err(BrokerConfigError::InvalidValue {
                field: "maxlen",
                reason: "must be at least 1 (leave it out for no trimming)".into(),
            });
        }
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(BrokerConfigError::InvalidValue {
                field: "timeout",
                reason: "must be greater than zero".into(),
            });
        }
        Ok(Self {
            url,
            client,
            stream,
            maxlen: config.maxlen,
            timeout,
            body: config.body,
            manager: tokio::sync::Mutex::new(None),
        })
    }

    /// The stream key `entry` is appended to.
    pub fn stream_for(&self, entry: &OutboxEntry) -> String {
        self.stream.render(entry)
    }

    async fn manager(&self) -> Result<ConnectionManager, DeliveryError> {
        let mut slot = self.manager.lock().await;
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connect = self.client.get_connection_manager_with_config(config);
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), connect).await {
            Ok(Ok(manager)) => {
                *slot = Some(manager.clone());
                Ok(manager)
            }
            Ok(Err(e)) => Err(self.classify(&format!("cannot connect to {}", self.url), &e)),
            Err(_) => Err(DeliveryError::retryable(format!(
                "redis: connecting to {} timed out after {:?}",
                self.url, self.timeout
            ))),
        }
    }

    fn classify(&self, what: &str, error: &RedisError) -> DeliveryError {
        let message = format!("redis: {what}: {}", self.url.scrub(&error.to_string()));
        if is_permanent(error) {
            DeliveryError::permanent(message)
        } else {
            DeliveryError::retryable(message)
        }
    }

    fn command(&self, key: &str, entry: &OutboxEntry) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("XADD");
        cmd.arg(key);
        if let Some(n) = self.maxlen {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*")
            .arg("id")
            .arg(entry.id.to_string())
            .arg("stream")
            .arg(&entry.stream_id)
            .arg("type")
            .arg(&entry.event_type)
            .arg("created_at")
            .arg(created_at(entry))
            .arg("payload")
            .arg(body(entry, self.body));
        if let Some(tp) = traceparent(entry) {
            cmd.arg("traceparent").arg(tp);
        }
        cmd
    }
}

/// Errors that will not go away by retrying the same command.
fn is_permanent(error: &RedisError) -> bool {
    if matches!(error.code(), Some("WRONGTYPE" | "NOPERM" | "WRONGPASS" | "NOAUTH")) {
        return true;
    }
    if matches!(
        error.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
    ) {
        return true;
    }
    if error.code() == Some("ERR") {
        let detail = error.detail().unwrap_or_default().to_ascii_lowercase();
        return [
            "unknown command",
            "syntax error",
            "wrong number of arguments",
            "invalid bulk length",
        ]
        .iter()
        .any(|d| detail.contains(d));
    }
    false
}

#[async_trait::async_trait]
impl Destination for RedisDestination {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let key = self.stream.render(entry);
        let mut manager = self.manager().await?;
        let cmd = self.command(&key, entry);
        let reply = tokio::time::timeout(self.timeout, cmd.query_async::<String>(&mut manager)).await;
        match reply {
            Ok(Ok(_stream_entry_id)) => Ok(()),
            Ok(Err(e)) => Err(self.classify(&format!("XADD to `{key}` failed"), &e)),
            Err(_) => Err(DeliveryError::retryable(format!(
                "redis: no reply to XADD `{key}` within {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_rejects_unknown_keys() {
        let c: RedisConfig = serde_json::from_str(
            r#"{"url":"redis://127.0.0.1:6379","stream":"s:{stream}","maxlen":1000,"timeout":"2s"}"#,
        )
        .unwrap();
        assert_eq!(c.maxlen, Some(1000));
        assert_eq!(c.timeout, Some(Duration::from_secs(2)));
        assert!(serde_json::from_str::<RedisConfig>(r#"{"url":"x","stream":"a","max_len":1}"#).is_err());
    }

    #[test]
    fn bad_configs_are_errors_without_secrets() {
        let err = RedisDestination::new(RedisConfig::new("http://:hunter2@h", "s")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let mut c = RedisConfig::new("redis://h", "s");
        c.maxlen = Some(0);
        assert!(RedisDestination::new(c).is_err());
        assert!(RedisDestination::new(RedisConfig::new("redis://h", "s:{x}")).is_err());
        let d = RedisDestination::new(RedisConfig::new("redis://:hunter2@h:6379", "s")).unwrap();
        let s = format!("{d:?}");
        assert!(!s.contains("hunter2") && s.contains(":***@h"), "{s}");
    }
}
