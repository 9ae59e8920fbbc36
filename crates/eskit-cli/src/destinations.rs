//! Building the configured destinations.

use eskit::Destinations;
use eskit_destinations::nats::NatsDestination;
use eskit_destinations::rabbitmq::RabbitMqDestination;
use eskit_destinations::redis::RedisDestination;
use eskit_destinations::webhook::WebhookDestination;

use crate::config::{Config, ConfigError, DestinationConfig, DestinationKind};

/// Builds every `[[destinations]]` entry; an invalid one is a configuration error
/// naming `destinations.N`.
pub fn build(config: &Config) -> Result<Destinations, ConfigError> {
    let mut destinations = Destinations::new();
    for (index, d) in config.destinations.iter().enumerate() {
        build_one(index, d, &mut destinations)?;
    }
    Ok(destinations)
}

/// Validates every destination without keeping it.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    build(config).map(|_| ())
}

fn build_one(index: usize, d: &DestinationConfig, into: &mut Destinations) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Key {
        key: format!("destinations.{index}"),
        message: format!("destination {:?}: {message}", d.name),
        origin: None,
    };
    let fail = |e: &(dyn std::error::Error + 'static)| invalid(crate::error::one_line(e));
    match &d.kind {
        DestinationKind::Webhook(c) => {
            into.insert(
                d.name.clone(),
                WebhookDestination::new(c.clone()).map_err(|e| fail(&e))?,
            );
        }
        DestinationKind::Nats(c) => {
            into.insert(d.name.clone(), NatsDestination::new(c.clone()).map_err(|e| fail(&e))?);
        }
        DestinationKind::RabbitMq(c) => {
            into.insert(
                d.name.clone(),
                RabbitMqDestination::new(c.clone()).map_err(|e| fail(&e))?,
            );
        }
        DestinationKind::Redis(c) => {
            into.insert(d.name.clone(), RedisDestination::new(c.clone()).map_err(|e| fail(&e))?);
        }
    }
    Ok(())
}
