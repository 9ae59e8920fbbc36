//! Building the configured destinations.

use eskit::Destinations;
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
    match &d.kind {
        DestinationKind::Webhook(c) => {
            let webhook = WebhookDestination::new(c.clone()).map_err(|e| invalid(crate::error::one_line(&e)))?;
            into.insert(d.name.clone(), webhook);
        }
    }
    Ok(())
}
