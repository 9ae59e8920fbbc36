//! Turning responses and transport errors into delivery outcomes.

use std::error::Error as StdError;
use std::time::Duration;

use eskit::DeliveryError;
use reqwest::Response;
use reqwest::header::RETRY_AFTER;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio::time::{Instant, timeout_at};

use super::guard::AddressNotAllowed;

/// Longest `Retry-After` honoured; longer hints are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Most characters of a response body quoted in an error message.
const EXCERPT_CHARS: usize = 200;

/// Most characters of a transport error's description.
const CHAIN_CHARS: usize = 300;

/// Classifies a response by status; reads at most `cap` body bytes, before `deadline`.
pub(crate) async fn classify(
    origin: &str,
    response: Response,
    deadline: Instant,
    cap: usize,
) -> Result<(), DeliveryError> {
    let status = response.status();
    if status.is_success() {
        // The status decides; reading a little lets a small body's connection go back to
        // the pool.
        let _ = read_capped(response, deadline, cap).await;
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, OffsetDateTime::now_utc()));
    let body = read_capped(response, deadline, cap).await;

    let code = status.as_u16();
    let mut message = match status.canonical_reason() {
        Some(reason) => format!("HTTP {code} {reason} from {origin}"),
        None => format!("HTTP {code} from {origin}"),
    };
    if status.is_redirection() {
        message.push_str(" (redirects are not followed: set `url` to the final address)");
    }
    let excerpt = excerpt(&body);
    if !excerpt.is_empty() {
        message.push_str(": ");
        message.push_str(&excerpt);
    }
    Err(match code {
        300..=399 => DeliveryError::permanent(message),
        408 | 429 | 500..=599 => DeliveryError::retryable(message).with_retry_after(retry_after),
        410 => DeliveryError::gone(message),
        400..=499 => DeliveryError::permanent(message),
        // Informational or non-standard codes: not an acceptance, maybe transient.
        _ => DeliveryError::retryable(message).with_retry_after(retry_after),
    })
}

/// Reads the body up to `cap` bytes, chunk by chunk; never more, never past `deadline`.
async fn read_capped(mut response: Response, deadline: Instant, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let take = chunk.len().min(cap - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            _ => break,
        }
    }
    body
}

/// A one-line, length-capped rendering of a response body.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect();
    cap_chars(words.join(" "), EXCERPT_CHARS)
}

/// `text`, cut to `max` characters plus `…` when longer.
fn cap_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// Parses a `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, relative to `now`; a past date means no wait).
/// Capped at [`MAX_RETRY_AFTER`]; `None` when it does not parse.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    let after = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit: clearly "very long".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        // IMF-fixdate; the day name is redundant, so it is not checked.
        let (_, date) = value.split_once(", ")?;
        let at = PrimitiveDateTime::parse(
            date.trim(),
            format_description!("[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"),
        )
        .ok()?
        .assume_utc();
        let wait = at - now;
        if wait.is_negative() {
            Duration::ZERO
        } else {
            Duration::try_from(wait).ok()?
        }
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// The request did not complete within the total deadline.
pub(crate) fn timed_out(origin: &str, timeout: Duration) -> DeliveryError {
    DeliveryError::retryable(format!("request to {origin} timed out after {timeout:?}"))
}

/// Classifies an error that happened before a response arrived.
pub(crate) fn transport_error(origin: &str, timeout: Duration, error: &reqwest::Error) -> DeliveryError {
    if let Some(refused) = find_source::<AddressNotAllowed>(error) {
        return DeliveryError::permanent(refused.to_string());
    }
    // The top-level error's text carries the full URL: describe its causes only.
    let causes = error.source().map(error_chain).unwrap_or_default();
    let detail = if causes.is_empty() {
        String::new()
    } else {
        format!(": {causes}")
    };
    if error.is_connect() && error.is_timeout() {
        DeliveryError::retryable(format!("connecting to {origin} timed out{detail}"))
    } else if error.is_timeout() {
        timed_out(origin, timeout)
    } else if error.is_connect() {
        DeliveryError::retryable(format!("connecting to {origin} failed{detail}"))
    } else if error.is_builder() {
        DeliveryError::permanent(format!("cannot build the request to {origin}{detail}"))
    } else {
        DeliveryError::retryable(format!("request to {origin} failed{detail}"))
    }
}

/// The first error of type `T` in `error`'s source chain.
fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// `error: cause: cause`, skipping causes the previous text already includes, capped.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) && !text.is_empty() {
            parts.push(text);
        }
        current = e.source();
    }
    cap_chars(parts.join(": "), CHAIN_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = datetime!(2015-10-21 07:28:00 UTC);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn excerpts_are_one_line_and_capped() {
        assert_eq!(excerpt(b"  boom\n\n  at line\t2\r\n"), "boom at line 2");
        let long = "x".repeat(1000);
        let shown = excerpt(long.as_bytes());
        assert_eq!(shown.chars().count(), EXCERPT_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(excerpt(&[0xff, b'o', b'k']), "\u{fffd}ok");
        assert_eq!(excerpt(b""), "");
    }
}
