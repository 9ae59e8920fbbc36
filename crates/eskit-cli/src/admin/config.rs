//! `[admin]` and `[retention]`: the daemon's admin endpoints and the background purge
//! of delivered entries.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// The environment variable that holds the admin token (wins over `admin.token`).
pub const TOKEN_ENV: &str = "ESKIT_ADMIN_TOKEN";
/// The admin address when `admin.bind` is not set.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9187);
/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// How `/api/*` is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// A bearer token (`admin.token` or `ESKIT_ADMIN_TOKEN`) is required (the default).
    #[default]
    Token,
    /// No token: allowed only when `admin.bind` is a loopback address.
    NoneOnLoopback,
}

/// `[admin]`: the HTTP endpoints of `eskit relay`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Serve the endpoints at all (default true).
    pub enabled: bool,
    /// Address to listen on (default [`DEFAULT_BIND`]; port 0 picks a free port). When
    /// it is not set and the default address is taken, the relay runs without the admin
    /// server (with a warning); an address that is set must be free.
    pub bind: Option<SocketAddr>,
    /// The bearer token for `/api/*` (prefer `ESKIT_ADMIN_TOKEN`).
    pub token: Option<String>,
    /// `token` (default) or `none-on-loopback`.
    pub auth: AuthMode,
    /// How often the metrics sampler reads the outbox status (default 5 s).
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: None,
            token: None,
            auth: AuthMode::Token,
            sample_interval: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSection")
            .field("enabled", &self.enabled)
            .field("bind", &self.bind_addr())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("sample_interval", &self.sample_interval)
            .finish()
    }
}

/// A configuration value that is wrong: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct SectionError {
    /// The key path, e.g. `admin.auth`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl AdminSection {
    /// The address to listen on.
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind.unwrap_or(DEFAULT_BIND)
    }

    /// Checks what serde cannot (the token itself is checked by [`AdminSection::auth`]).
    pub fn validate(&self) -> Result<(), SectionError> {
        if self.auth == AuthMode::NoneOnLoopback && !self.bind_addr().ip().is_loopback() {
            return Err(SectionError {
                key: "admin.auth",
                message: format!(
                    "\"none-on-loopback\" needs a loopback admin.bind, not {}; use a token",
                    self.bind_addr().ip()
                ),
            });
        }
        if self.sample_interval.is_zero() {
            return Err(SectionError {
                key: "admin.sample_interval",
                message: "must be greater than 0".into(),
            });
        }
        Ok(())
    }

    /// The effective protection: `ESKIT_ADMIN_TOKEN` (from `env`) wins over
    /// `admin.token`. Errors name the key, never the token.
    pub fn auth(&self, env: Option<String>) -> Result<Auth, SectionError> {
        self.validate()?;
        match self.auth {
            AuthMode::NoneOnLoopback => Ok(Auth::Disabled),
            AuthMode::Token => {
                let (key, token) = match env.filter(|t| !t.is_empty()) {
                    Some(t) => (TOKEN_ENV, Some(t)),
                    None => ("admin.token", self.token.clone().filter(|t| !t.is_empty())),
                };
                match token {
                    None => Ok(Auth::Unconfigured),
                    Some(t) if t.trim().len() < MIN_TOKEN_LEN => Err(SectionError {
                        key: if key == TOKEN_ENV {
                            "admin.token (ESKIT_ADMIN_TOKEN)"
                        } else {
                            "admin.token"
                        },
                        message: format!("must be at least {MIN_TOKEN_LEN} characters"),
                    }),
                    Some(t) => Ok(Auth::Token(super::auth::Token::new(t.trim()))),
                }
            }
        }
    }
}

/// How `/api/*` requests are checked.
#[derive(Clone, Debug)]
pub enum Auth {
    /// A bearer token is required.
    Token(super::auth::Token),
    /// A token is required but none is configured: every `/api/*` request is refused.
    Unconfigured,
    /// No check (`auth = "none-on-loopback"` on a loopback bind).
    Disabled,
}

/// `[retention]`: how long delivered entries are kept. Dead entries are never purged
/// automatically.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Keep delivered entries this long (default `7d`; `0` deletes them right after
    /// delivery, within `interval`).
    #[serde(with = "humantime_serde")]
    pub delivered: Duration,
    /// How often the purge runs (default `1m`, or `1s` when `delivered = "0"`).
    #[serde(with = "humantime_serde::option")]
    pub interval: Option<Duration>,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            delivered: Duration::from_secs(7 * 24 * 3600),
            interval: None,
        }
    }
}

impl RetentionSection {
    /// How often the purge runs.
    pub fn interval(&self) -> Duration {
        self.interval
            .filter(|d| !d.is_zero())
            .unwrap_or(if self.delivered.is_zero() {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(60)
            })
    }
}
