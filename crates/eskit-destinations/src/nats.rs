//! NATS JetStream destination (feature `nats`).
//!
//! Each entry is published to a subject rendered from the configured template and
//! the call returns only once JetStream has acknowledged it (the PubAck), i.e. the
//! message is stored in a stream. The `Nats-Msg-Id` header is the entry id, so
//! JetStream drops a redelivered entry as a duplicate inside the stream's
//! duplicate window.
//!
//! ```toml
//! [[destinations]]
//! type = "nats"
//! url = "nats://127.0.0.1:4222"
//! subject = "orders.{stream}.{type}"
//! timeout = "10s"      # optional
//! body = "envelope"    # or "payload"
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectErrorKind, Event, HeaderMap, ServerError};
use serde::Deserialize;

use eskit::{DeliveryError, Destination, OutboxEntry};

use crate::broker::{BrokerConfigError, Sanitize, SecretUrl, Template, percent_decode};
use crate::envelope::{BodyFormat, body, entry_headers};

/// Default wait for the connection and for each PubAck.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of a NATS JetStream destination (`type = "nats"`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222`; `user:password@` or `token@` in it
    /// are used to authenticate (and never logged). Several servers: comma-separated.
    pub url: String,
    /// Subject template; `{stream}` and `{type}` are replaced by the entry's stream
    /// id and event type, each made into one valid subject token (whitespace, `.`,
    /// `*`, `>` and `#` become `_`). A JetStream stream must capture the subjects.
    pub subject: String,
    /// Connect timeout and the wait for each PubAck (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// What the message body is: the JSON envelope (default) or the payload alone.
    #[serde(default)]
    pub body: BodyFormat,
}

impl NatsConfig {
    /// A config with the given URL and subject template, other keys at defaults.
    pub fn new(url: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subject: subject.into(),
            timeout: None,
            body: BodyFormat::default(),
        }
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &SecretUrl::new(&self.url))
            .field("subject", &self.subject)
            .field("timeout", &self.timeout)
            .field("body", &self.body)
            .finish()
    }
}

/// Credentials taken from the URL.
#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    None,
    UserPassword(String, String),
    Token(String),
}

/// Permission violations the server reported, kept briefly so that a publish that
/// timed out because of one is reported as permanent.
type Violations = Arc<Mutex<VecDeque<(Instant, String)>>>;

const MAX_VIOLATIONS: usize = 64;

/// Publishes entries to NATS JetStream and waits for the PubAck.
///
/// Connects lazily on the first delivery; a failed connect is retried on the next
/// one, and an established connection reconnects by itself.
pub struct NatsDestination {
    url: SecretUrl,
    servers: Vec<async_nats::ServerAddr>,
    credentials: Credentials,
    subject: Template,
    timeout: Duration,
    body: BodyFormat,
    context: tokio::sync::Mutex<Option<jetstream::Context>>,
    violations: Violations,
}

impl fmt::Debug for NatsDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDestination")
            .field("url", &self.url)
            .field("subject", &self.subject.text())
            .field("timeout", &self.timeout)
            .field("body", &self.body)
            .finish()
    }
}

impl NatsDestination {
    /// Validates `config`; no connection is made until the first delivery.
    pub fn new(config: NatsConfig) -> Result<Self, BrokerConfigError> {
        let url = SecretUrl::new(&config.url);
        let bad = |reason: String| BrokerConfigError::InvalidUrl {
            kind: "nats",
            url: url.redacted().to_string(),
            reason: url.scrub(&reason),
        };
        let mut servers = Vec::new();
        let mut credentials = Credentials::None;
        for server in config.url.split(',') {
            let addr: async_nats::ServerAddr = server.trim().parse().map_err(|e: std::io::Error| bad(e.to_string()))?;
            if !matches!(addr.scheme(), "nats" | "tls") {
                return Err(bad(format!("unsupported scheme `{}`", addr.scheme())));
            }
            // The client takes credentials from its options, not from the URL.
            let found = match (addr.username(), addr.password()) {
                (Some(user), Some(pass)) => Credentials::UserPassword(percent_decode(user), percent_decode(pass)),
                (Some(token), None) => Credentials::Token(percent_decode(token)),
                _ => Credentials::None,
            };
            match (&credentials, found) {
                (_, Credentials::None) => {}
                (Credentials::None, found) => credentials = found,
                (current, found) if *current == found => {}
                _ => return Err(bad("servers in the list carry different credentials".into())),
            }
            servers.push(addr);
        }
        let subject = Template::parse("subject", &config.subject, Sanitize::Token)?;
        check_publish_subject(&subject.render_with("s", "t")).map_err(|reason| BrokerConfigError::InvalidTemplate {
            field: "subject",
            template: config.subject.clone(),
            reason,
        })?;
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(BrokerConfigError::InvalidValue {
                field: "timeout",
                reason: "must be greater than zero".into(),
            });
        }
        Ok(Self {
            url,
            servers,
            credentials,
            subject,
            timeout,
            body: config.body,
            context: tokio::sync::Mutex::new(None),
            violations: Arc::default(),
        })
    }

    /// The subject `entry` is published to.
    pub fn subject_for(&self, entry: &OutboxEntry) -> String {
        self.subject.render(entry)
    }

    async fn context(&self) -> Result<jetstream::Context, DeliveryError> {
        let mut slot = self.context.lock().await;
        if let Some(context) = slot.as_ref() {
            return Ok(context.clone());
        }
        let violations = self.violations.clone();
        let options = match &self.credentials {
            Credentials::None => async_nats::ConnectOptions::new(),
            Credentials::UserPassword(user, pass) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), pass.clone())
            }
            Credentials::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
        };
        let connect = options
            .name("eskit")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .event_callback(move |event| {
                let violations = violations.clone();
                async move { record_event(&violations, event) }
            })
            .connect(self.servers.clone());
        let client = match tokio::time::timeout(self.timeout + Duration::from_secs(1), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                let message = format!(
                    "nats: cannot connect to {}: {}",
                    self.url,
                    self.url.scrub(&e.to_string())
                );
                return Err(match e.kind() {
                    ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                        DeliveryError::permanent(message)
                    }
                    _ => DeliveryError::retryable(message),
                });
            }
            Err(_) => {
                return Err(DeliveryError::retryable(format!(
                    "nats: connecting to {} timed out after {:?}",
                    self.url, self.timeout
                )));
            }
        };
        let mut context = jetstream::new(client);
        context.set_timeout(self.timeout);
        *slot = Some(context.clone());
        Ok(context)
    }

    /// A permission violation the server reported for `subject` (or for the ack
    /// inbox) since `since`.
    fn violation_since(&self, subject: &str, since: Instant) -> Option<String> {
        let quoted = format!("\"{subject}\"");
        let violations = self.violations.lock().ok()?;
        violations
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .find(|(_, message)| message.contains(&quoted) || message.contains("_INBOX"))
            .map(|(_, message)| message.clone())
    }

    fn classify(&self, subject: &str, started: Instant, error: &PublishError) -> DeliveryError {
        let detail = self.url.scrub(&error.to_string());
        match error.kind() {
            PublishErrorKind::StreamNotFound => DeliveryError::permanent(format!(
                "nats: no JetStream stream captures subject `{subject}` (no responders)"
            )),
            PublishErrorKind::MaxPayloadExceeded => {
                DeliveryError::permanent(format!("nats: message for `{subject}` too large: {detail}"))
            }
            PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => {
                DeliveryError::permanent(format!("nats: publish to `{subject}` rejected: {detail}"))
            }
            PublishErrorKind::TimedOut => self.timed_out(subject, started),
            PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
                DeliveryError::retryable(format!("nats: publish to `{subject}` failed: {detail}"))
            }
            PublishErrorKind::Other => {
                let api = std::error::Error::source(error).and_then(|s| s.downcast_ref::<jetstream::Error>());
                match api {
                    Some(api) if is_permanent_api_error(api) => {
                        DeliveryError::permanent(format!("nats: publish to `{subject}` rejected: {detail}"))
                    }
                    Some(_) => DeliveryError::retryable(format!("nats: publish to `{subject}` rejected: {detail}")),
                    // Invalid subject and the like are caught by `publish_subject`;
                    // anything else here is a client or connection problem.
                    None => DeliveryError::retryable(format!("nats: publish to `{subject}` failed: {detail}")),
                }
            }
        }
    }

    fn timed_out(&self, subject: &str, started: Instant) -> DeliveryError {
        match self.violation_since(subject, started) {
            Some(violation) => DeliveryError::permanent(format!("nats: publish to `{subject}` refused: {violation}")),
            None => DeliveryError::retryable(format!(
                "nats: no PubAck for `{subject}` within {:?} (server unreachable or JetStream unavailable)",
                self.timeout
            )),
        }
    }
}

fn record_event(violations: &Violations, event: Event) {
    match event {
        Event::ServerError(ServerError::Other(message))
            if message.to_ascii_lowercase().contains("permissions violation") =>
        {
            tracing::warn!(error = %message, "nats: server reported a permissions violation");
            if let Ok(mut v) = violations.lock() {
                if v.len() >= MAX_VIOLATIONS {
                    v.pop_front();
                }
                v.push_back((Instant::now(), message));
            }
        }
        Event::Disconnected => tracing::warn!("nats: disconnected; reconnecting"),
        Event::Connected => tracing::debug!("nats: connected"),
        other => tracing::debug!(event = %other, "nats: event"),
    }
}

/// Checks that `subject` is a valid NATS publish subject: non-empty dot-separated
/// tokens, no whitespace, no wildcards.
pub(crate) fn check_publish_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("subject is empty".into());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("subject contains whitespace".into());
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Err("subject has an empty token (leading, trailing or double `.`)".into());
        }
        if token == "*" || token == ">" {
            return Err("subject contains a wildcard; publish subjects must be literal".into());
        }
    }
    Ok(())
}

/// JetStream API errors that will not go away by retrying the same message.
fn is_permanent_api_error(error: &jetstream::Error) -> bool {
    let code = error.error_code();
    if [
        ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM,
        ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM,
        ErrorCode::STREAM_SEALED,
        ErrorCode::STREAM_NOT_FOUND,
        ErrorCode::BAD_REQUEST,
        ErrorCode::INVALID_JSON,
        ErrorCode::STREAM_WRONG_LAST_MESSAGE_ID,
        ErrorCode::STREAM_WRONG_LAST_SEQUENCE,
        ErrorCode::NO_ACCOUNT,
        ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
    ]
    .contains(&code)
    {
        return true;
    }
    // Store failures (limits reached with discard-new, storage trouble), cluster
    // trouble and anything unknown: retry.
    let status = error.code();
    matches!(status, 400 | 403 | 413)
        && ![
            ErrorCode::STREAM_STORE_FAILED,
            ErrorCode::ACCOUNT_RESOURCES_EXCEEDED,
            ErrorCode::STORAGE_RESOURCES_EXCEEDED,
            ErrorCode::MEMORY_RESOURCES_EXCEEDED,
            ErrorCode::INSUFFICIENT_RESOURCES,
        ]
        .contains(&code)
}

#[async_trait::async_trait]
impl Destination for NatsDestination {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let subject = self.subject.render(entry);
        check_publish_subject(&subject).map_err(|reason| {
            DeliveryError::permanent(format!("nats: rendered subject `{subject}` is invalid: {reason}"))
        })?;
        let context = self.context().await?;

        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, entry.id.to_string());
        for (name, value) in entry_headers(entry) {
            headers.insert(name, value);
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(body(entry, self.body).into())
            .headers(headers);

        let started = Instant::now();
        let attempt = async {
            let ack = context.send_publish(subject.clone(), publish).await?;
            ack.await
        };
        // The client bounds both steps by the context timeout; this outer bound is a
        // safety net (e.g. a publish stuck behind a full write buffer).
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), attempt).await {
            Ok(Ok(ack)) => {
                if ack.duplicate {
                    tracing::debug!(entry = %entry.id, stream = %ack.stream, "nats: duplicate dropped by JetStream");
                }
                Ok(())
            }
            Ok(Err(error)) => Err(self.classify(&subject, started, &error)),
            Err(_) => Err(self.timed_out(&subject, started)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_rejects_unknown_keys() {
        let c: NatsConfig =
            serde_json::from_str(r#"{"url":"nats://127.0.0.1:4222","subject":"a.{stream}","timeout":"1500ms"}"#)
                .unwrap();
        assert_eq!(c.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.body, BodyFormat::Envelope);
        assert!(serde_json::from_str::<NatsConfig>(r#"{"url":"x","subject":"a","nope":1}"#).is_err());
    }

    #[test]
    fn bad_configs_are_errors() {
        for (url, subject) in [
            ("nats://127.0.0.1:4222", "a..b"),
            ("nats://127.0.0.1:4222", "a.*"),
            ("nats://127.0.0.1:4222", "a.{nope}"),
            ("http://127.0.0.1:4222", "a"),
        ] {
            assert!(
                NatsDestination::new(NatsConfig::new(url, subject)).is_err(),
                "{url} {subject}"
            );
        }
        let mut c = NatsConfig::new("nats://127.0.0.1:4222", "a");
        c.timeout = Some(Duration::ZERO);
        assert!(NatsDestination::new(c).is_err());
    }

    #[test]
    fn publish_subjects_are_checked() {
        assert!(check_publish_subject("a.b.c").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b"] {
            assert!(check_publish_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = NatsConfig::new("nats://user:hunter2@127.0.0.1:4222", "a.b");
        assert!(!format!("{c:?}").contains("hunter2"));
        let d = NatsDestination::new(c).unwrap();
        let s = format!("{d:?}");
        assert!(!s.contains("hunter2") && s.contains("user:***@"), "{s}");
    }
}
