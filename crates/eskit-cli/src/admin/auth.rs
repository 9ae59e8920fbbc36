//! The bearer-token check in front of `/api/*`.
//!
//! Tokens are compared in constant time (SHA-256 of both sides, then
//! [`subtle::ConstantTimeEq`], so neither the content nor the length leaks through
//! timing). The token is never logged: it has no `Display`, its `Debug` is redacted, and
//! refusals log nothing about the header.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiError;
use super::config::Auth;
use super::state::AdminState;

/// A secret bearer token; only its SHA-256 is kept.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Keeps the digest of `token`.
    pub fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `candidate` is the token, in constant time.
    pub fn verify(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

/// The token from an `Authorization: Bearer …` header value.
fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: lets a request through only with the right bearer token.
pub async fn require_token(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    let allowed = match &state.auth {
        Auth::Disabled => true,
        Auth::Unconfigured => {
            return unauthorized(
                "no admin token is configured: set admin.token or ESKIT_ADMIN_TOKEN (or admin.auth = \"none-on-loopback\" on a loopback bind)",
            );
        }
        Auth::Token(token) => request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(bearer)
            .is_some_and(|candidate| token.verify(candidate)),
    };
    if allowed {
        next.run(request).await
    } else {
        unauthorized("missing or wrong bearer token")
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"eskit\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_token() {
        let t = Token::new("s3cret-token-0123456789");
        assert!(t.verify("s3cret-token-0123456789"));
        assert!(!t.verify("s3cret-token-012345678"));
        assert!(!t.verify(""));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer(&HeaderValue::from_static("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&HeaderValue::from_static("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer")), None);
    }
}
