//! The `eskit` configuration: a TOML file (default `eskit.toml`) with `ESKIT_*`
//! environment overrides, merged by figment.
//!
//! Environment variables are named `ESKIT_` + the key path in upper case, with `__`
//! (two underscores) between nested keys: `ESKIT_DATABASE`,
//! `ESKIT_RELAY__BATCH_SIZE`, `ESKIT_RETRY__MAX_ATTEMPTS`. Values are parsed like
//! TOML values, so arrays and tables work too
//! (`ESKIT_ROUTES='[{destination="hooks"}]'`).
//!
//! Every table rejects unknown keys, and every error names the key it is about.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eskit::{RelayConfig, RetryPolicy, RouteFilter, StoreOptions};
use eskit_destinations::nats::NatsConfig;
use eskit_destinations::rabbitmq::RabbitMqConfig;
use eskit_destinations::redis::RedisConfig;
use eskit_destinations::webhook::WebhookConfig;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use serde::Deserialize;

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "ESKIT_";
/// The separator between nested keys in environment overrides.
pub const ENV_SEPARATOR: &str = "__";
/// The config file read when `--config` is not given (optional).
pub const DEFAULT_CONFIG_FILE: &str = "eskit.toml";

/// Environment variables with the `ESKIT_` prefix that are not configuration keys
/// (read by the command line instead).
const NOT_CONFIG_KEYS: &[&str] = &["config", "log_format", "admin_token"];

/// `ESKIT_TEST_*` variables belong to the test suite (e.g. `ESKIT_TEST_PG_URL`), never to
/// the configuration (lower-cased, after the `ESKIT_` prefix).
const TEST_ENV_PREFIX: &str = "test_";

/// A configuration error: one line naming the key (and where it came from).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The explicitly given config file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A key has a bad value, is unknown, or is missing.
    #[error("config key `{key}`: {message}{}", origin.as_ref().map(|o| format!(" (from {o})")).unwrap_or_default())]
    Key {
        /// The key path, e.g. `relay.poll_interval`.
        key: String,
        /// What is wrong with it.
        message: String,
        /// Where the value came from (file or environment), when known.
        origin: Option<String>,
    },
    /// The configuration as a whole is wrong (e.g. a syntax error in the file).
    #[error("config: {0}")]
    Other(String),
}

impl ConfigError {
    fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            message: message.into(),
            origin: None,
        }
    }

    fn from_figment(err: figment::Error) -> Self {
        // figment chains several errors; the first one is enough for one clear line.
        let err = err
            .into_iter()
            .next()
            .unwrap_or_else(|| figment::Error::from("unknown error".to_string()));
        let origin = err.metadata.as_ref().map(|md| match &md.source {
            Some(figment::Source::File(path)) => path.display().to_string(),
            Some(other) => other.to_string(),
            None if md.name.contains("environment") && !err.path.is_empty() => env_var_name(&err.path),
            None => md.name.to_string(),
        });
        let message = describe_kind(&err.kind);
        if err.path.is_empty() {
            return ConfigError::Other(match origin {
                Some(o) => format!("{message} (in {o})"),
                None => message,
            });
        }
        ConfigError::Key {
            key: err.path.join("."),
            message,
            origin,
        }
    }
}

/// figment's error is large; keep results small.
type FigResult<T> = Result<T, Box<figment::Error>>;

/// The environment variable that sets a key path.
fn env_var_name(path: &[String]) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.iter()
            .map(|k| k.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(ENV_SEPARATOR)
    )
}

/// figment's messages, made readable on one line.
fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(_, expected) => format!("unknown key; the keys here are: {}", expected.join(", ")),
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value {found:?}; expected one of: {}", expected.join(", "))
        }
        Kind::MissingField(_) => "missing (required)".to_string(),
        Kind::Message(text) if text.contains('\n') => {
            // Parser errors (TOML) come with a drawing of the line; keep the first and
            // the last line: where, and what.
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            match (lines.first(), lines.last()) {
                (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
                _ => text.replace('\n', " "),
            }
        }
        other => other.to_string(),
    }
}

/// The whole configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://path`, a plain file path, or `postgres://…`.
    pub database: String,
    /// PostgreSQL schema for eskit's tables (ignored for SQLite).
    pub schema: String,
    /// Largest payload or metadata document accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Relay settings.
    pub relay: RelaySection,
    /// Retry policy.
    pub retry: RetrySection,
    /// `[admin]`: the relay daemon's admin API, metrics and health endpoints.
    pub admin: crate::admin::AdminSection,
    /// `[retention]`: how long delivered entries are kept.
    pub retention: crate::admin::RetentionSection,
    /// Routes: which appended events produce outbox entries for which destination.
    pub routes: Vec<RouteConfig>,
    /// Destinations (parsed separately so that errors name `destinations.N.key`).
    #[serde(rename = "destinations")]
    raw_destinations: Vec<Value>,
    /// Parsed destinations.
    #[serde(skip)]
    pub destinations: Vec<DestinationConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: "sqlite://eskit.db".into(),
            schema: "eskit".into(),
            max_payload_bytes: eskit::Limits::default().max_payload_bytes,
            relay: RelaySection::default(),
            retry: RetrySection::default(),
            admin: crate::admin::AdminSection::default(),
            retention: crate::admin::RetentionSection::default(),
            routes: Vec::new(),
            raw_destinations: Vec::new(),
            destinations: Vec::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database", &redact_url(&self.database))
            .field("schema", &self.schema)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("relay", &self.relay)
            .field("retry", &self.retry)
            .field("admin", &self.admin)
            .field("retention", &self.retention)
            .field("routes", &self.routes)
            .field("destinations", &self.destinations)
            .finish()
    }
}

/// `[relay]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// Entries read per batch and partition.
    pub batch_size: u32,
    /// Streams delivered at once per partition.
    pub concurrency: usize,
    /// Poll interval when no wakeup arrives.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Number of partitions entries are spread over (fixed per database).
    pub partitions: u32,
    /// Lease duration (renewed at a third of it).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often a partition is re-scanned from its oldest pending entry.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
    /// How long shutdown waits for in-flight deliveries.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for RelaySection {
    fn default() -> Self {
        let d = RelayConfig::default();
        Self {
            batch_size: d.batch_size,
            concurrency: d.concurrency,
            poll_interval: d.poll_interval,
            partitions: StoreOptions::default().partitions,
            lease_ttl: d.lease_ttl,
            rescan_interval: d.rescan_interval,
            shutdown_grace: d.shutdown_grace,
        }
    }
}

/// `[retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Cap on the delay.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Jitter fraction, 0 to 1.
    pub jitter: f64,
    /// Attempts before an entry is dead-lettered.
    pub max_attempts: u32,
}

impl Default for RetrySection {
    fn default() -> Self {
        let d = RetryPolicy::default();
        Self {
            initial: d.initial,
            max: d.max,
            multiplier: d.multiplier,
            jitter: d.jitter,
            max_attempts: d.max_attempts,
        }
    }
}

impl RetrySection {
    /// The core retry policy.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy::builder()
            .initial(self.initial)
            .max(self.max)
            .multiplier(self.multiplier)
            .jitter(self.jitter)
            .max_attempts(self.max_attempts)
    }
}

/// `[[routes]]`: events matching every condition given get an outbox entry for
/// `destination` in the append's transaction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A destination declared in `[[destinations]]`.
    pub destination: String,
    /// Only these event types (all when absent).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Only streams whose id starts with this (all when absent).
    #[serde(default)]
    pub stream_prefix: Option<String>,
}

impl RouteConfig {
    /// The core route filter.
    pub fn filter(&self) -> RouteFilter {
        let mut filter = RouteFilter::all();
        if let Some(types) = &self.event_types {
            filter = filter.event_types(types.iter().cloned());
        }
        if let Some(prefix) = &self.stream_prefix {
            filter = filter.stream_prefix(prefix.clone());
        }
        filter
    }
}

/// `[[destinations]]`: a name, a `type`, and the keys of that type.
#[derive(Clone)]
pub struct DestinationConfig {
    /// The name routes and outbox messages use.
    pub name: String,
    /// The destination itself, by type.
    pub kind: DestinationKind,
    /// How the relay treats it: `max_in_flight`, `breaker_failures`, `breaker_open_for`.
    pub policy: PolicyConfig,
}

/// Per-destination relay keys, beside `name` and `type` in `[[destinations]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Most deliveries in flight at once to this destination, across all partitions.
    pub max_in_flight: Option<usize>,
    /// Consecutive retryable failures that open the circuit (default 20).
    pub breaker_failures: Option<u32>,
    /// How long an open circuit waits before one probe (default "5s").
    #[serde(default, with = "humantime_serde")]
    pub breaker_open_for: Option<std::time::Duration>,
}

impl PolicyConfig {
    /// Keys of this table, taken out of a destination before its type's keys are parsed.
    const KEYS: &'static [&'static str] = &["max_in_flight", "breaker_failures", "breaker_open_for"];

    /// The relay's policy for this destination.
    pub fn to_policy(&self) -> eskit::DestinationPolicy {
        let mut policy = eskit::DestinationPolicy::default();
        if let Some(n) = self.max_in_flight {
            policy = policy.max_in_flight(n);
        }
        let defaults = eskit::BreakerConfig::default();
        policy.breaker(eskit::BreakerConfig {
            failure_threshold: self.breaker_failures.unwrap_or(defaults.failure_threshold).max(1),
            open_for: self.breaker_open_for.unwrap_or(defaults.open_for),
        })
    }
}

impl fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("type", &self.kind.type_name())
            .field("kind", &self.kind)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The destination types, internally tagged by the `type` key. To add a type: add a
/// variant, its name in [`DestinationKind::TYPES`], and one arm in
/// [`DestinationKind::parse`] and [`DestinationKind::type_name`].
#[derive(Clone)]
#[non_exhaustive]
pub enum DestinationKind {
    /// `type = "webhook"`: HTTP POST with Standard Webhooks signatures.
    Webhook(WebhookConfig),
    /// `type = "nats"`: NATS JetStream publish with ack and `Nats-Msg-Id`.
    Nats(NatsConfig),
    /// `type = "rabbitmq"`: AMQP publish with publisher confirms, mandatory, message-id.
    RabbitMq(RabbitMqConfig),
    /// `type = "redis"`: Redis Streams XADD with the entry id as a field.
    Redis(RedisConfig),
}

impl fmt::Debug for DestinationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each type's own Debug redacts its secrets.
        match self {
            DestinationKind::Webhook(c) => fmt::Debug::fmt(c, f),
            DestinationKind::Nats(c) => fmt::Debug::fmt(c, f),
            DestinationKind::RabbitMq(c) => fmt::Debug::fmt(c, f),
            DestinationKind::Redis(c) => fmt::Debug::fmt(c, f),
        }
    }
}

impl DestinationKind {
    /// Every `type` value understood.
    pub const TYPES: &'static [&'static str] = &["webhook", "nats", "rabbitmq", "redis"];

    /// The `type` value.
    pub fn type_name(&self) -> &'static str {
        match self {
            DestinationKind::Webhook(_) => "webhook",
            DestinationKind::Nats(_) => "nats",
            DestinationKind::RabbitMq(_) => "rabbitmq",
            DestinationKind::Redis(_) => "redis",
        }
    }

    /// Parses the keys of a destination of type `kind` (everything but `name` and `type`).
    fn parse(kind: &str, keys: &Value) -> FigResult<Self> {
        match kind {
            "webhook" => Ok(DestinationKind::Webhook(keys.deserialize()?)),
            "nats" => Ok(DestinationKind::Nats(keys.deserialize()?)),
            "rabbitmq" => Ok(DestinationKind::RabbitMq(keys.deserialize()?)),
            "redis" => Ok(DestinationKind::Redis(keys.deserialize()?)),
            other => Err(Box::new(
                figment::Error::from(figment::error::Kind::UnknownVariant(other.to_string(), Self::TYPES))
                    .with_path("type"),
            )),
        }
    }
}

impl DestinationConfig {
    fn from_value(value: &Value) -> FigResult<Self> {
        let Some(dict) = value.as_dict() else {
            return Err(Box::new(figment::Error::from(figment::error::Kind::InvalidType(
                value.to_actual(),
                "a table with `name`, `type` and the type's keys".into(),
            ))));
        };
        let name = required_string(dict, "name")?;
        let kind = required_string(dict, "type")?;
        let (policy, rest): (Dict, Dict) = dict
            .iter()
            .filter(|(k, _)| *k != "name" && *k != "type")
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| PolicyConfig::KEYS.contains(&k.as_str()));
        let kind = DestinationKind::parse(&kind, &Value::Dict(value.tag(), rest))?;
        let policy = Value::Dict(value.tag(), policy).deserialize()?;
        Ok(Self { name, kind, policy })
    }
}

fn required_string(dict: &Dict, key: &str) -> FigResult<String> {
    match dict.get(key) {
        None => Err(Box::new(
            figment::Error::from(figment::error::Kind::MissingField(key.to_string().into())).with_path(key),
        )),
        Some(v) => v.deserialize::<String>().map_err(|e| Box::new(e.with_path(key))),
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config PATH` (or `ESKIT_CONFIG`): must exist. `None`: `eskit.toml` if present.
    pub path: Option<PathBuf>,
}

impl Config {
    /// Loads the file (if any), applies `ESKIT_*` overrides, and validates.
    pub fn load(source: &ConfigSource) -> Result<Self, ConfigError> {
        let file = match &source.path {
            Some(path) if !path.is_file() => return Err(ConfigError::MissingFile(path.clone())),
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        Self::from_figment(Self::figment(file.as_deref()))
    }

    /// The figment: defaults, then the file, then the environment.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(NOT_CONFIG_KEYS)
                .filter(|key| !key.as_str().to_ascii_lowercase().starts_with(TEST_ENV_PREFIX))
                .split(ENV_SEPARATOR),
        )
    }

    /// Extracts and validates a configuration from a figment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        let mut destinations = Vec::with_capacity(config.raw_destinations.len());
        for (i, raw) in config.raw_destinations.iter().enumerate() {
            let parsed = DestinationConfig::from_value(raw).map_err(|e| {
                let mut e = *e;
                e.path.splice(0..0, ["destinations".to_string(), i.to_string()]);
                if e.metadata.is_none() {
                    e.metadata = figment.get_metadata(raw.tag()).cloned();
                }
                ConfigError::from_figment(e)
            })?;
            destinations.push(parsed);
        }
        config.raw_destinations.clear();
        config.destinations = destinations;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: ranges, references between tables.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.database.trim().is_empty() {
            return Err(ConfigError::key("database", "must not be empty"));
        }
        crate::store::DatabaseUrl::parse(&self.database).map_err(|e| ConfigError::key("database", e.to_string()))?;
        if self.max_payload_bytes == 0 {
            return Err(ConfigError::key("max_payload_bytes", "must be greater than 0"));
        }
        self.admin.validate().map_err(|e| ConfigError::key(e.key, e.message))?;
        let r = &self.relay;
        for (key, zero) in [
            ("relay.batch_size", r.batch_size == 0),
            ("relay.concurrency", r.concurrency == 0),
            ("relay.partitions", r.partitions == 0),
            ("relay.poll_interval", r.poll_interval.is_zero()),
            ("relay.lease_ttl", r.lease_ttl.is_zero()),
            ("relay.rescan_interval", r.rescan_interval.is_zero()),
            ("retry.max_attempts", self.retry.max_attempts == 0),
        ] {
            if zero {
                return Err(ConfigError::key(key, "must be greater than 0"));
            }
        }
        let t = &self.retry;
        if !(t.multiplier.is_finite() && t.multiplier >= 1.0) {
            return Err(ConfigError::key("retry.multiplier", "must be a number ≥ 1.0"));
        }
        if !(0.0..=1.0).contains(&t.jitter) {
            return Err(ConfigError::key("retry.jitter", "must be between 0.0 and 1.0"));
        }
        if t.initial > t.max {
            return Err(ConfigError::key(
                "retry.initial",
                format!(
                    "{} is greater than retry.max ({})",
                    humantime::format_duration(t.initial),
                    humantime::format_duration(t.max)
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            if d.name.trim().is_empty() {
                return Err(ConfigError::key(format!("destinations.{i}.name"), "must not be empty"));
            }
            if !names.insert(d.name.as_str()) {
                return Err(ConfigError::key(
                    format!("destinations.{i}.name"),
                    format!("destination {:?} is declared twice", d.name),
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if !names.contains(route.destination.as_str()) {
                return Err(ConfigError::key(
                    format!("routes.{i}.destination"),
                    format!(
                        "destination {:?} is not declared in [[destinations]]{}",
                        route.destination,
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(" (declared: {})", names.iter().copied().collect::<Vec<_>>().join(", "))
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The store options: routes, declared destinations, partitions, payload cap.
    pub fn store_options(&self) -> StoreOptions {
        let mut options = StoreOptions::default()
            .partitions(self.relay.partitions)
            .max_payload_bytes(self.max_payload_bytes);
        for d in &self.destinations {
            options = options.destination(d.name.clone());
        }
        for route in &self.routes {
            options = options.with_outbox(route.destination.clone(), route.filter());
        }
        options
    }

    /// The relay options.
    pub fn relay_config(&self) -> RelayConfig {
        let r = &self.relay;
        RelayConfig::default()
            .batch_size(r.batch_size)
            .concurrency(r.concurrency)
            .poll_interval(r.poll_interval)
            .lease_ttl(r.lease_ttl)
            .rescan_interval(r.rescan_interval)
            .shutdown_grace(r.shutdown_grace)
            .retry(self.retry.policy())
    }
}

/// Hides the password of a URL like `postgres://user:secret@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let redacted = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_string()
    };
    format!("{}{}{}", &url[..scheme_end + 3], redacted, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    const GOOD: &str = r#"
database = "sqlite://x.db"
[relay]
batch_size = 50
poll_interval = "200ms"
[retry]
initial = "100ms"
max = "5s"
[[routes]]
destination = "hooks"
event_types = ["A"]
[[destinations]]
name = "hooks"
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
timeout = "2s"
allowed_cidrs = ["127.0.0.0/8"]
"#;

    #[test]
    fn parses_broker_destinations_and_policy_keys() {
        let toml = r#"
            [[destinations]]
            name = "events"
            type = "nats"
            url = "nats://127.0.0.1:4222"
            subject = "eskit.{stream}"
            max_in_flight = 4
            breaker_failures = 3
            breaker_open_for = "2s"

            [[destinations]]
            name = "queue"
            type = "rabbitmq"
            url = "amqp://guest:guest@127.0.0.1:5672/%2f"
            exchange = "eskit"
            routing_key = "{type}"

            [[destinations]]
            name = "log"
            type = "redis"
            url = "redis://127.0.0.1:6379"
            stream = "eskit-{stream}"
            maxlen = 1000
        "#;
        let c = parse(toml).unwrap();
        let types: Vec<_> = c.destinations.iter().map(|d| d.kind.type_name()).collect();
        assert_eq!(types, ["nats", "rabbitmq", "redis"]);
        assert_eq!(c.destinations[0].policy.max_in_flight, Some(4));
        let policy = c.destinations[0].policy.to_policy();
        assert_eq!(policy.breaker.unwrap().failure_threshold, 3);
        assert_eq!(policy.breaker.unwrap().open_for, Duration::from_secs(2));
        assert!(!format!("{c:?}").contains("guest:guest"), "passwords are redacted");

        let bad = toml.replace("maxlen = 1000", "maxlen = 1000\nmax_len = 5");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("max_len"), "{err}");
    }

    #[test]
    fn parses_a_full_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.relay.batch_size, 50);
        assert_eq!(c.relay.poll_interval, Duration::from_millis(200));
        assert_eq!(c.retry.max, Duration::from_secs(5));
        assert_eq!(c.destinations.len(), 1);
        assert_eq!(c.destinations[0].name, "hooks");
        assert_eq!(c.destinations[0].kind.type_name(), "webhook");
        let debug = format!("{c:?}");
        assert!(!debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{debug}");
    }

    #[test]
    fn defaults_without_anything() {
        let c = parse("").unwrap();
        assert_eq!(c.database, "sqlite://eskit.db");
        assert_eq!(c.retry.max_attempts, 10);
    }

    fn key_of(err: ConfigError) -> String {
        match err {
            ConfigError::Key { key, .. } => key,
            other => panic!("not a key error: {other}"),
        }
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[relay]\nbatch_sise = 3\n").unwrap_err();
        assert_eq!(key_of(e.clone()), "relay.batch_sise", "{e}");
        let e = parse("[relay]\npoll_interval = \"fast\"\n").unwrap_err();
        assert_eq!(key_of(e.clone()), "relay.poll_interval", "{e}");
        let e = parse("databse = \"x\"\n").unwrap_err();
        assert_eq!(key_of(e), "databse");
        let e = parse(&GOOD.replace("timeout = \"2s\"", "timeout = \"soon\"")).unwrap_err();
        assert_eq!(key_of(e.clone()), "destinations.0.timeout", "{e}");
        let e = parse(&GOOD.replace("timeout = \"2s\"", "timeot = \"2s\"")).unwrap_err();
        assert!(key_of(e.clone()).starts_with("destinations.0"), "{e}");
        assert!(e.to_string().contains("timeot"), "{e}");
        let e = parse(&GOOD.replace("type = \"webhook\"", "type = \"carrier-pigeon\"")).unwrap_err();
        assert_eq!(key_of(e.clone()), "destinations.0.type", "{e}");
        let e = parse(&GOOD.replace("destination = \"hooks\"", "destination = \"nope\"")).unwrap_err();
        assert_eq!(key_of(e.clone()), "routes.0.destination", "{e}");
        let e = parse("[retry]\njitter = 2.0\n").unwrap_err();
        assert_eq!(key_of(e), "retry.jitter");
        let e = parse("database = \"mysql://x\"\n").unwrap_err();
        assert_eq!(key_of(e), "database");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(redact_url("x.db"), "x.db");
    }
}
