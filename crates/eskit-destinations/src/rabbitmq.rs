//! RabbitMQ (AMQP 0-9-1) destination (feature `rabbitmq`).
//!
//! Each entry is published to an exchange with a routing key rendered from the
//! configured template, on a channel in confirm mode, with `mandatory` set and
//! persistent delivery mode. The call returns only once the broker confirmed the
//! message: an ack means every queue the message was routed to has it (on disk, for
//! durable queues); a nack is retryable; a message no queue is bound for comes back
//! (`basic.return`) and is a permanent "unroutable" error, never a silent success.
//!
//! ```toml
//! [[destinations]]
//! type = "rabbitmq"
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! exchange = "orders"
//! routing_key = "orders.{stream}.{type}"
//! timeout = "10s"      # optional
//! body = "envelope"    # or "payload"
//! ```

use std::fmt;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind};
use serde::Deserialize;

use eskit::{DeliveryError, Destination, OutboxEntry};

use crate::broker::{BrokerConfigError, Sanitize, SecretUrl, Template};
use crate::envelope::{BodyFormat, body, entry_headers};

/// Default wait for the connection and for each publisher confirm.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// AMQP short strings (exchange names, routing keys) are at most 255 bytes.
const MAX_SHORT_STRING: usize = 255;

/// Configuration of a RabbitMQ destination (`type = "rabbitmq"`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqConfig {
    /// AMQP URI, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` (`amqps://` for TLS);
    /// the password is never logged.
    pub url: String,
    /// Exchange to publish to; it must exist. `""` is the default exchange (the
    /// routing key is then a queue name).
    pub exchange: String,
    /// Routing-key template; `{stream}` and `{type}` are replaced by the entry's
    /// stream id and event type, each made into one word (whitespace, `.`, `*`, `#`
    /// and `>` become `_`). At most 255 bytes once rendered.
    pub routing_key: String,
    /// Connect timeout and the wait for each publisher confirm (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// What the message body is: the JSON envelope (default) or the payload alone.
    #[serde(default)]
    pub body: BodyFormat,
}

impl RabbitMqConfig {
    /// A config with the given URL, exchange and routing-key template, other keys at
    /// defaults.
    pub fn new(url: impl Into<String>, exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            timeout: None,
            body: BodyFormat::default(),
        }
    }
}

impl fmt::Debug for RabbitMqConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqConfig")
            .field("url", &SecretUrl::new(&self.url))
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("timeout", &self.timeout)
            .field("body", &self.body)
            .finish()
    }
}

/// The live connection and its confirm-mode channel.
struct Link {
    connection: Connection,
    channel: Channel,
}

/// Publishes entries to a RabbitMQ exchange and waits for the publisher confirm.
///
/// The connection is opened lazily on the first delivery and re-created after it
/// (or the channel) fails; concurrent deliveries share one channel.
pub struct RabbitMqDestination {
    url: SecretUrl,
    exchange: ShortString,
    routing_key: Template,
    timeout: Duration,
    body: BodyFormat,
    link: tokio::sync::Mutex<Option<Link>>,
}

impl fmt::Debug for RabbitMqDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqDestination")
            .field("url", &self.url)
            .field("exchange", &self.exchange.as_str())
            .field("routing_key", &self.routing_key.text())
            .field("timeout", &self.timeout)
            .field("body", &self.body)
            .finish()
    }
}

impl RabbitMqDestination {
    /// Validates `config`; no connection is made until the first delivery.
    pub fn new(config: RabbitMqConfig) -> Result<Self, BrokerConfigError> {
        let url = SecretUrl::new(&config.url);
        let parsed: lapin::uri::AMQPUri = config.url.parse().map_err(|e: String| BrokerConfigError::InvalidUrl {
            kind: "rabbitmq",
            url: url.redacted().to_string(),
            reason: url.scrub(&e),
        })?;
        let _ = parsed;
        let exchange = ShortString::try_new(config.exchange.clone()).map_err(|e| BrokerConfigError::InvalidValue {
            field: "exchange",
            reason: e.to_string(),
        })?;
        if config.exchange.chars().any(char::is_control) {
            return Err(BrokerConfigError::InvalidValue {
                field: "exchange",
                reason: "contains a control character".into(),
            });
        }
        let routing_key = Template::parse("routing_key", &config.routing_key, Sanitize::Token)?;
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(BrokerConfigError::InvalidValue {
                field: "timeout",
                reason: "must be greater than zero".into(),
            });
        }
        Ok(Self {
            url,
            exchange,
            routing_key,
            timeout,
            body: config.body,
            link: tokio::sync::Mutex::new(None),
        })
    }

    /// The routing key `entry` is published with.
    pub fn routing_key_for(&self, entry: &OutboxEntry) -> String {
        self.routing_key.render(entry)
    }

    /// The confirm-mode channel, (re)connecting if there is none or it is broken.
    async fn channel(&self) -> Result<Channel, DeliveryError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.channel.status().connected() {
                return Ok(l.channel.clone());
            }
            if l.connection.status().connected() {
                // The channel was closed by an error (e.g. a missing exchange); the
                // connection is fine: open a new channel on it.
                let channel = self.open_channel(&l.connection).await?;
                if let Some(l) = link.as_mut() {
                    l.channel = channel.clone();
                }
                return Ok(channel);
            }
            tracing::info!(url = %self.url, "rabbitmq: connection lost; reconnecting");
        }
        *link = None;
        let properties = ConnectionProperties::default().with_connection_name("eskit".into());
        let connection =
            match tokio::time::timeout(self.timeout, Connection::connect(self.url.expose(), properties)).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    return Err(self.classify(&format!("cannot connect to {}", self.url), &e));
                }
                Err(_) => {
                    return Err(DeliveryError::retryable(format!(
                        "rabbitmq: connecting to {} timed out after {:?}",
                        self.url, self.timeout
                    )));
                }
            };
        let channel = self.open_channel(&connection).await?;
        *link = Some(Link {
            connection,
            channel: channel.clone(),
        });
        Ok(channel)
    }

    async fn open_channel(&self, connection: &Connection) -> Result<Channel, DeliveryError> {
        let open = async {
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(channel)
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(self.classify("cannot open a confirm-mode channel", &e)),
            Err(_) => Err(DeliveryError::retryable(format!(
                "rabbitmq: opening a channel timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// Forgets a broken link so the next delivery reconnects.
    async fn reset_if_broken(&self) {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref()
            && !(l.connection.status().connected() && l.channel.status().connected())
        {
            *link = None;
        }
    }

    /// Forgets the channel (it may be stuck); the connection is re-checked next time.
    async fn reset_channel(&self) {
        let mut link = self.link.lock().await;
        if let Some(l) = link.take() {
            // Bounded: on a half-open connection the close-ok never comes.
            let close = l.channel.close(200, "eskit: confirm timed out".into());
            let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
            if l.connection.status().connected() {
                // Keep the connection; a fresh channel is opened on next use.
                match self.open_channel(&l.connection).await {
                    Ok(channel) => {
                        *link = Some(Link {
                            connection: l.connection,
                            channel,
                        })
                    }
                    Err(_) => *link = None,
                }
            }
        }
    }

    fn classify(&self, what: &str, error: &lapin::Error) -> DeliveryError {
        let message = format!("rabbitmq: {what}: {}", self.url.scrub(&error.to_string()));
        if is_permanent(error) {
            DeliveryError::permanent(message)
        } else {
            DeliveryError::retryable(message)
        }
    }

    fn properties(&self, entry: &OutboxEntry) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in entry_headers(entry) {
            headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
        }
        let mut properties = BasicProperties::default()
            .with_message_id(entry.id.to_string().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_app_id("eskit".into())
            .with_headers(headers);
        if let Ok(ts) = u64::try_from(entry.created_at.unix_timestamp()) {
            properties = properties.with_timestamp(ts);
        }
        if let Ok(kind) = ShortString::try_new(entry.event_type.clone()) {
            properties = properties.with_type(kind);
        }
        properties
    }
}

/// Errors that will not go away by retrying the same message.
fn is_permanent(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::NOTFOUND
                    | AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::CONTENTTOOLARGE
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::NOROUTE,
            ) | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED | AMQPHardError::INVALIDPATH)
        ),
        ErrorKind::AuthProviderError(_) | ErrorKind::InvalidProtocolVersion(_) => true,
        _ => false,
    }
}

#[async_trait::async_trait]
impl Destination for RabbitMqDestination {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let rendered = self.routing_key.render(entry);
        let routing_key = ShortString::try_new(rendered.clone()).map_err(|_| {
            DeliveryError::permanent(format!(
                "rabbitmq: routing key for stream `{}` is {} bytes, more than AMQP's {MAX_SHORT_STRING}",
                entry.stream_id,
                rendered.len()
            ))
        })?;
        let channel = self.channel().await?;
        let payload = body(entry, self.body);
        let properties = self.properties(entry);
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let publish = async {
            channel
                .basic_publish(self.exchange.clone(), routing_key, options, &payload, properties)
                .await?
                .await
        };
        let where_to = || format!("exchange `{}` routing key `{rendered}`", self.exchange);
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)))) => {
                Err(DeliveryError::permanent(format!(
                    "rabbitmq: unroutable: no queue is bound for {} ({} {})",
                    where_to(),
                    returned.reply_code,
                    returned.reply_text
                )))
            }
            Ok(Ok(Confirmation::Nack(None))) => Err(DeliveryError::retryable(format!(
                "rabbitmq: broker nacked the message for {}",
                where_to()
            ))),
            Ok(Ok(Confirmation::NotRequested)) => {
                self.reset_channel().await;
                Err(DeliveryError::retryable(
                    "rabbitmq: channel was not in confirm mode; reopening it",
                ))
            }
            Ok(Err(e)) => {
                self.reset_if_broken().await;
                Err(self.classify(&format!("publish to {} failed", where_to()), &e))
            }
            Err(_) => {
                self.reset_channel().await;
                Err(DeliveryError::retryable(format!(
                    "rabbitmq: no publisher confirm for {} within {:?}",
                    where_to(),
                    self.timeout
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_rejects_unknown_keys() {
        let c: RabbitMqConfig = serde_json::from_str(
            r#"{"url":"amqp://guest:guest@127.0.0.1:5672/%2f","exchange":"x","routing_key":"{stream}","body":"payload"}"#,
        )
        .unwrap();
        assert_eq!(c.body, BodyFormat::Payload);
        assert_eq!(c.timeout, None);
        assert!(
            serde_json::from_str::<RabbitMqConfig>(r#"{"url":"x","exchange":"x","routing_key":"a","x":1}"#).is_err()
        );
    }

    #[test]
    fn bad_configs_are_errors_without_secrets() {
        let err = RabbitMqDestination::new(RabbitMqConfig::new("http://u:hunter2@h", "x", "a")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(RabbitMqDestination::new(RabbitMqConfig::new("amqp://h", "x".repeat(256), "a")).is_err());
        assert!(RabbitMqDestination::new(RabbitMqConfig::new("amqp://h", "x", "{nope}")).is_err());
        let d = RabbitMqDestination::new(RabbitMqConfig::new("amqp://u:hunter2@h/%2f", "x", "a.{stream}")).unwrap();
        let s = format!("{d:?}");
        assert!(!s.contains("hunter2") && s.contains("u:***@h"), "{s}");
    }
}
