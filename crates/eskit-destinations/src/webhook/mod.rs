//! The webhook destination: an HTTP POST per outbox entry, signed the
//! [Standard Webhooks](https://www.standardwebhooks.com/) way.
//!
//! Every request carries the JSON [envelope](crate::envelope::envelope)
//! `{"id", "stream", "type", "payload", "created_at"}` and the headers
//! `webhook-id` (the entry id, stable across retries: the receiver's idempotency key),
//! `webhook-timestamp`, `webhook-signature`, `eskit-stream` and `eskit-event-type`.
//! Redirects are never followed, response bodies are read only up to a cap, every
//! request has a total deadline, and an SSRF guard inside DNS resolution refuses
//! loopback, private, link-local and other internal addresses unless they are listed
//! in `allowed_cidrs`.
//!
//! ```no_run
//! use eskit_destinations::webhook::{WebhookConfig, WebhookDestination};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = WebhookConfig::new("https://example.com/hooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .timeout(std::time::Duration::from_secs(5));
//! let webhook = WebhookDestination::new(config)?;
//! let mut destinations = eskit::Destinations::new();
//! destinations.insert("orders-webhook", webhook);
//! # Ok(())
//! # }
//! ```

mod config;
mod guard;
mod response;
mod secret;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use eskit::{DeliveryError, Destination, OutboxEntry};

use crate::envelope;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::{Client, Url};
use time::OffsetDateTime;
use tokio::time::{Instant, timeout_at};

pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BODY, DEFAULT_TIMEOUT, WebhookConfig};
pub use guard::{AddressGuard, AddressNotAllowed, BLOCKED_RANGES, GuardedResolver, is_blocked};
pub use response::{MAX_RETRY_AFTER, parse_retry_after};
pub use secret::{
    MAX_SECRET_BYTES, MIN_SECRET_BYTES, SECRET_PREFIX, SecretError, WebhookSecret, sign, signature_header, verify,
};

/// Header carrying the entry id (stable across retries).
pub const WEBHOOK_ID: &str = "webhook-id";
/// Header carrying the attempt's unix time in seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated `v1,` signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Header carrying the entry's stream id (UTF-8).
pub const ESKIT_STREAM: &str = envelope::headers::STREAM;
/// Header carrying the entry's event type (UTF-8).
pub const ESKIT_EVENT_TYPE: &str = envelope::headers::EVENT_TYPE;
/// W3C trace context header, copied from the entry metadata's `traceparent` string.
pub const TRACEPARENT: &str = "traceparent";

/// Headers the webhook sets itself; `headers` in the config may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    WEBHOOK_ID,
    WEBHOOK_TIMESTAMP,
    WEBHOOK_SIGNATURE,
    ESKIT_STREAM,
    ESKIT_EVENT_TYPE,
    TRACEPARENT,
];

/// An invalid webhook configuration. Never contains a secret, a header value, or the
/// URL's credentials or query.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL does not parse.
    #[error("webhook url is invalid: {reason}")]
    InvalidUrl {
        /// Why.
        reason: String,
    },
    /// Only `http` and `https` are supported.
    #[error("webhook url must use http or https, not `{scheme}`")]
    UnsupportedScheme {
        /// The URL's scheme.
        scheme: String,
    },
    /// The URL has no host.
    #[error("webhook url has no host")]
    MissingHost,
    /// The URL's host is an IP literal the SSRF guard refuses.
    #[error(transparent)]
    AddressNotAllowed(#[from] AddressNotAllowed),
    /// No secret was configured.
    #[error("webhook needs at least one `secret`")]
    NoSecret,
    /// A secret is malformed (`index` counts from 0 in the `secret` list).
    #[error("webhook `secret` #{index} is invalid: {source}")]
    InvalidSecret {
        /// Position in the list.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: SecretError,
    },
    /// A timeout is zero.
    #[error("webhook `{key}` must be greater than zero")]
    ZeroTimeout {
        /// `timeout` or `connect_timeout`.
        key: &'static str,
    },
    /// A configured header name is not a valid HTTP header name.
    #[error("webhook `headers`: `{name}` is not a valid header name")]
    InvalidHeaderName {
        /// The name.
        name: String,
    },
    /// A configured header value is not a valid HTTP header value.
    #[error("webhook `headers`: the value of `{name}` is not a valid header value")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
    /// A configured header would replace one the webhook sets itself.
    #[error("webhook `headers`: `{name}` is set by the webhook itself and cannot be configured")]
    ReservedHeader {
        /// The header's name.
        name: String,
    },
    /// The HTTP client could not be built.
    #[error("building the webhook HTTP client failed: {reason}")]
    Client {
        /// Why.
        reason: String,
    },
}

/// `scheme://host[:port]` of a URL: no credentials, path, query or fragment (paths of
/// webhook URLs often carry tokens).
pub(crate) fn redact_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// The IP address of an IP-literal host (`127.0.0.1`, `[::1]`), if it is one.
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// [`redact_url`] for text that may not parse.
pub(crate) fn redact_url_text(text: &str) -> String {
    Url::parse(text).map_or_else(|_| "<invalid url>".to_string(), |url| redact_url(&url))
}

/// A webhook destination: one HTTP client (connection pool) per destination.
#[derive(Clone)]
pub struct WebhookDestination {
    client: Client,
    url: Url,
    origin: Arc<str>,
    secrets: Arc<[WebhookSecret]>,
    timeout: Duration,
    max_response_body: usize,
    headers: HeaderMap,
}

impl fmt::Debug for WebhookDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookDestination")
            .field("url", &self.origin)
            .field("secrets", &format_args!("[<redacted>; {}]", self.secrets.len()))
            .field("timeout", &self.timeout)
            .field("max_response_body", &self.max_response_body)
            .finish_non_exhaustive()
    }
}

impl WebhookDestination {
    /// Validates `config` and builds the destination and its HTTP client.
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookError> {
        let url = Url::parse(config.url.trim()).map_err(|e| WebhookError::InvalidUrl { reason: e.to_string() })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookError::UnsupportedScheme {
                scheme: url.scheme().to_string(),
            });
        }
        let guard = Arc::new(AddressGuard::new(config.allowed_cidrs.iter().copied()));
        // IP-literal hosts never reach the resolver: check them here. The URL parser
        // has already normalised numeric forms such as `127.1` or `0x7f000001`.
        if url.host_str().is_none_or(str::is_empty) {
            return Err(WebhookError::MissingHost);
        }
        let literal = literal_ip(&url);
        if let Some(ip) = literal
            && !guard.allows(ip)
        {
            return Err(AddressNotAllowed {
                host: ip.to_string(),
                addresses: vec![ip],
            }
            .into());
        }

        if config.secrets.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        let secrets = config
            .secrets
            .iter()
            .enumerate()
            .map(|(index, text)| {
                WebhookSecret::parse(text).map_err(|source| WebhookError::InvalidSecret { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;

        for (key, value) in [("timeout", config.timeout), ("connect_timeout", config.connect_timeout)] {
            if value.is_zero() {
                return Err(WebhookError::ZeroTimeout { key });
            }
        }

        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| WebhookError::InvalidHeaderName { name: name.clone() })?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(WebhookError::ReservedHeader { name: name.clone() });
            }
            let mut value =
                HeaderValue::from_str(value).map_err(|_| WebhookError::InvalidHeaderValue { name: name.clone() })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }

        let origin = redact_url(&url);
        if config.danger_accept_invalid_certs {
            tracing::warn!(
                url = %origin,
                "webhook TLS certificate verification is OFF (danger_accept_invalid_certs = true); \
                 anyone on the network path can read and forge these deliveries"
            );
        }

        let client = Client::builder()
            .redirect(Policy::none())
            // A proxy would resolve the host itself, past the guard.
            .no_proxy()
            .dns_resolver(GuardedResolver::new(guard))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .tls_danger_accept_invalid_certs(config.danger_accept_invalid_certs)
            .user_agent(concat!("eskit-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client {
                reason: response::error_chain(&e.without_url()),
            })?;

        Ok(Self {
            client,
            url,
            origin: origin.into(),
            secrets: secrets.into(),
            timeout: config.timeout,
            max_response_body: config.max_response_body,
            headers,
        })
    }

    /// The URL with credentials, path and query removed (`scheme://host[:port]`).
    pub fn redacted_url(&self) -> &str {
        &self.origin
    }

    /// The headers of one attempt, signed at `timestamp`.
    fn request_headers(&self, entry: &OutboxEntry, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let signature = signature_header(&self.secrets, id, timestamp, body);
        for (name, value) in [
            (WEBHOOK_ID, id.as_bytes()),
            (WEBHOOK_TIMESTAMP, timestamp.to_string().as_bytes()),
            (WEBHOOK_SIGNATURE, signature.as_bytes()),
            (ESKIT_STREAM, entry.stream_id.as_bytes()),
            (ESKIT_EVENT_TYPE, entry.event_type.as_bytes()),
        ] {
            // Only stream ids or types with control characters can fail here; the
            // store rejects those, and the body carries them anyway.
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        if let Some(value) = envelope::traceparent(entry).and_then(|tp| HeaderValue::from_str(&tp).ok()) {
            headers.insert(HeaderName::from_static(TRACEPARENT), value);
        }
        headers
    }
}

#[async_trait::async_trait]
impl Destination for WebhookDestination {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let body = envelope::envelope(entry);
        let id = entry.id.to_string();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let headers = self.request_headers(entry, &id, timestamp, &body);

        let deadline = Instant::now() + self.timeout;
        let request = self.client.post(self.url.clone()).headers(headers).body(body);
        let response = match timeout_at(deadline, request.send()).await {
            Err(_) => return Err(response::timed_out(&self.origin, self.timeout)),
            Ok(Err(error)) => return Err(response::transport_error(&self.origin, self.timeout, &error)),
            Ok(Ok(response)) => response,
        };
        response::classify(&self.origin, response, deadline, self.max_response_body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url_text("https://user:pw@example.com:8443/hooks/T0/B0/secret?token=x#f"),
            "https://example.com:8443"
        );
        assert_eq!(redact_url_text("http://[::1]/x"), "http://[::1]");
        assert_eq!(redact_url_text("not a url"), "<invalid url>");
    }
}
