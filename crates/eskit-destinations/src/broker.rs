//! Pieces shared by the broker destinations: name templates, secret redaction and
//! the configuration error.

use std::fmt;

use eskit::OutboxEntry;

/// A broker destination's configuration is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerConfigError {
    /// The URL does not parse or has the wrong scheme. `url` is redacted.
    #[error("invalid {kind} url `{url}`: {reason}")]
    InvalidUrl {
        /// `nats`, `rabbitmq` or `redis`.
        kind: &'static str,
        /// The URL with its credentials replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name template (subject, routing key, stream key) is invalid.
    #[error("invalid {field} template `{template}`: {reason}")]
    InvalidTemplate {
        /// The config key, e.g. `subject`.
        field: &'static str,
        /// The template text.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another key has an invalid value.
    #[error("invalid {field}: {reason}")]
    InvalidValue {
        /// The config key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// How substituted values are made safe for the broker's name syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sanitize {
    /// NATS subject tokens and AMQP routing-key words: whitespace, `.`, `*`, `>` and
    /// `#` become `_`, so a value is always exactly one token.
    #[cfg_attr(not(any(feature = "nats", feature = "rabbitmq")), allow(dead_code))]
    Token,
    /// Redis keys are binary-safe: values are used as they are.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Verbatim,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Stream,
    Type,
}

/// A name with `{stream}` and `{type}` placeholders (`{{` and `}}` are literal braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    text: String,
    parts: Vec<Part>,
    sanitize: Sanitize,
}

impl Template {
    /// Parses `text`. Unknown placeholders and unbalanced braces are errors.
    pub(crate) fn parse(field: &'static str, text: &str, sanitize: Sanitize) -> Result<Self, BrokerConfigError> {
        let err = |reason: &str| BrokerConfigError::InvalidTemplate {
            field,
            template: text.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(err("unclosed `{`")),
                        }
                    }
                    let part = match name.as_str() {
                        "stream" => Part::Stream,
                        "type" => Part::Type,
                        other => {
                            return Err(err(&format!(
                                "unknown placeholder `{{{other}}}` (use {{stream}} or {{type}})"
                            )));
                        }
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                '}' => return Err(err("unmatched `}` (write `}}` for a literal brace)")),
                c if c.is_control() => return Err(err("contains a control character")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err(err("is empty"));
        }
        Ok(Self {
            text: text.to_string(),
            parts,
            sanitize,
        })
    }

    /// The template as configured.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Renders the name for `entry`.
    pub(crate) fn render(&self, entry: &OutboxEntry) -> String {
        self.render_with(&entry.stream_id, &entry.event_type)
    }

    /// Renders the name for a stream id and an event type.
    pub(crate) fn render_with(&self, stream: &str, event_type: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + stream.len());
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Stream => push_sanitized(&mut out, stream, self.sanitize),
                Part::Type => push_sanitized(&mut out, event_type, self.sanitize),
            }
        }
        out
    }
}

fn push_sanitized(out: &mut String, value: &str, sanitize: Sanitize) {
    match sanitize {
        Sanitize::Verbatim => out.push_str(value),
        Sanitize::Token => {
            if value.is_empty() {
                out.push('_');
            }
            for c in value.chars() {
                if c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '#') {
                    out.push('_');
                } else {
                    out.push(c);
                }
            }
        }
    }
}

/// A URL with its secrets: a redacted form for messages and the secret strings to
/// scrub from any text a client library produces.
#[derive(Clone)]
pub(crate) struct SecretUrl {
    url: String,
    redacted: String,
    secrets: Vec<String>,
}

impl SecretUrl {
    /// Wraps `url`.
    pub(crate) fn new(url: &str) -> Self {
        let (redacted, secrets) = redact(url);
        Self {
            url: url.to_string(),
            redacted,
            secrets,
        }
    }

    /// The URL itself, for the client library only.
    #[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with credentials replaced by `***`.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `text` with the URL and every secret in it replaced.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.redacted);
        for secret in &self.secrets {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Query parameters whose values are secrets.
fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "token", "secret", "key", "auth", "cred", "nkey", "jwt"]
        .iter()
        .any(|s| key.contains(s))
}

/// Replaces the userinfo of `url` (the password, or a lone token) and secret query
/// parameters with `***`. Returns the redacted text and the secrets removed (raw
/// and percent-decoded).
pub(crate) fn redact(url: &str) -> (String, Vec<String>) {
    // A server list (NATS): redact each URL.
    if url.contains(',') {
        let mut secrets = Vec::new();
        let parts: Vec<String> = url
            .split(',')
            .map(|part| {
                let (redacted, s) = redact(part);
                secrets.extend(s);
                redacted
            })
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        return (parts.join(","), secrets);
    }
    let mut secrets = Vec::new();
    let mut push_secret = |s: &str| {
        if !s.is_empty() {
            secrets.push(s.to_string());
            let decoded = percent_decode(s);
            if decoded != s && !decoded.is_empty() {
                secrets.push(decoded);
            }
        }
    };
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let host = &authority[at + 1..];
            match userinfo.split_once(':') {
                Some((user, password)) => {
                    push_secret(password);
                    if password.is_empty() {
                        format!("{user}:@{host}")
                    } else {
                        format!("{user}:***@{host}")
                    }
                }
                // A lone userinfo is a token for NATS; treat it as a secret everywhere.
                None => {
                    push_secret(userinfo);
                    format!("***@{host}")
                }
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if is_secret_param(k) && !v.is_empty() => {
                        push_secret(v);
                        format!("{k}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            let mut t = format!("{path}?{}", query.join("&"));
            if let Some(f) = fragment {
                t.push('#');
                t.push_str(f);
            }
            t
        }
        None => tail.to_string(),
    };
    // Longest first, so a secret that contains another is scrubbed whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    (format!("{scheme}{authority}{tail}"), secrets)
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_sanitize() {
        let t = Template::parse("subject", "events.{stream}.{type}", Sanitize::Token).unwrap();
        assert_eq!(t.render_with("order-1", "Placed"), "events.order-1.Placed");
        assert_eq!(t.render_with("a.b c*>#", "T"), "events.a_b_c___.T");
        let t = Template::parse("stream", "s:{stream}:{{x}}", Sanitize::Verbatim).unwrap();
        assert_eq!(t.render_with("a.b c", "T"), "s:a.b c:{x}");
        let t = Template::parse("subject", "plain", Sanitize::Token).unwrap();
        assert_eq!(t.render_with("x", "y"), "plain");
        assert_eq!(t.text(), "plain");
        for bad in ["", "a.{nope}", "a.{stream", "a}", "a\nb"] {
            assert!(Template::parse("subject", bad, Sanitize::Token).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        let u = SecretUrl::new("amqp://guest:s3cr%40t@127.0.0.1:5672/%2f");
        assert_eq!(u.redacted(), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(format!("{u:?}"), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(
            u.scrub("failed: amqp://guest:s3cr%40t@127.0.0.1:5672/%2f and s3cr@t"),
            "failed: amqp://guest:***@127.0.0.1:5672/%2f and ***"
        );
        assert_eq!(SecretUrl::new("nats://tok3n@h:4222").redacted(), "nats://***@h:4222");
        assert_eq!(
            SecretUrl::new("redis://127.0.0.1:6379").redacted(),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            SecretUrl::new("redis://h/0?password=pw&db=1#f").redacted(),
            "redis://h/0?password=***&db=1#f"
        );
        assert_eq!(SecretUrl::new("redis://:pw@h").redacted(), "redis://:***@h");
        let list = SecretUrl::new("nats://a:pw1@h1:4222, nats://b:pw2@h2:4222");
        assert_eq!(list.redacted(), "nats://a:***@h1:4222, nats://b:***@h2:4222");
        assert_eq!(list.scrub("pw1 pw2"), "*** ***");
    }
}
