//! The DLQ web page: one static HTML file with its script, embedded in the binary and
//! served at `/`. It holds no data; it calls `/api/*` with the token the operator
//! enters (kept in `sessionStorage`).
//!
//! The Content-Security-Policy allows exactly the page's own inline script and style
//! (by SHA-256 hash) and requests to the same origin, on top of the page putting every
//! API value into the DOM as text.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The page.
pub const HTML: &str = include_str!("page.html");

/// `GET /`.
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, csp()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        HTML,
    )
        .into_response()
}

/// The Content-Security-Policy of the page.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let script = inline_hash("script");
        let style = inline_hash("style");
        format!(
            "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; img-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// `'sha256-…'` of the content of the page's first `<tag>` element, or `'none'`.
fn inline_hash(tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let Some(start) = HTML.find(&open).map(|i| i + open.len()) else {
        return "'none'".into();
    };
    let Some(len) = HTML[start..].find(&close) else {
        return "'none'".into();
    };
    let digest = Sha256::digest(&HTML.as_bytes()[start..start + len]);
    format!("'sha256-{}'", base64(&digest))
}

/// Standard base64 with padding (for CSP hashes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn csp_pins_the_inline_script_and_style() {
        let csp = csp();
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
        assert!(!csp.contains("unsafe-inline"));
        assert!(
            !HTML.contains("innerHTML"),
            "the page must build the DOM with textContent only"
        );
    }
}
