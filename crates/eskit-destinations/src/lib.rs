//! Built-in eskit destinations, each behind a cargo feature.
//!
//! | feature    | destination                                                   | default |
//! |------------|---------------------------------------------------------------|---------|
//! | `webhook`  | HTTP POST with Standard Webhooks signatures                   | on      |
//! | `nats`     | `nats::NatsDestination`: NATS JetStream, PubAck awaited       | off     |
//! | `rabbitmq` | `rabbitmq::RabbitMqDestination`: AMQP 0-9-1, publisher confirms | off   |
//! | `redis`    | `redis::RedisDestination`: Redis Streams `XADD`               | off     |
//!
//! Every destination implements [`eskit::Destination`], has a serde config struct
//! (`deny_unknown_fields`, durations as humantime strings like `"10s"`) and sends the
//! JSON envelope from [`envelope`] unless configured with `body = "payload"`.
#![warn(missing_docs)]

// Shared file: the webhook helper owns the `webhook` lines, the brokers helper the
// `broker`/`nats`/`rabbitmq`/`redis` lines. `envelope` is shared by every sink.
pub mod envelope;

#[cfg(feature = "webhook")]
pub mod webhook;

#[cfg(any(feature = "nats", feature = "rabbitmq", feature = "redis"))]
pub mod broker;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(any(feature = "nats", feature = "rabbitmq", feature = "redis"))]
pub use broker::BrokerConfigError;
pub use envelope::BodyFormat;
#[cfg(feature = "nats")]
pub use nats::{NatsConfig, NatsDestination};
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{RabbitMqConfig, RabbitMqDestination};
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisDestination};
