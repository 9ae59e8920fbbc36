//! A real loopback HTTP webhook receiver with fault injection.
//!
//! [`Receiver::start`] binds `127.0.0.1:0` and serves every path. Each request is
//! recorded as a [`Delivery`]: the `webhook-id` header, the parsed JSON envelope
//! (`{"id", "stream", "type", "payload", "created_at"}`), the arrival time, the attempt
//! number for that id, the signature check and the response given. With a `whsec_`
//! secret it verifies Standard Webhooks signatures (HMAC-SHA256 over
//! `id.timestamp.body`, `webhook-signature: v1,<base64>`, several space-separated
//! signatures allowed) and answers 401 to a bad one. A [`FaultPlan`] makes it answer
//! 5xx, 429 with `Retry-After`, hang past the client's timeout, or reject chosen
//! streams for good; the random draws come from a seeded generator.
//!
//! ```no_run
//! use std::time::Duration;
//! use eskit_testkit::receiver::{FaultPlan, Receiver, ReceiverConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let receiver = Receiver::start(
//!     ReceiverConfig::new()
//!         .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!         .faults(FaultPlan::new(7).server_errors(0.1).timeouts(0.02, Duration::from_secs(30)).failing_stream("poison", 400)),
//! )
//! .await?;
//! println!("POST webhooks to {}", receiver.url());
//! // ... run a relay against receiver.url() ...
//! let all_in = receiver.wait_for(Duration::from_secs(30), |d| d.iter().filter(|d| d.accepted()).count() >= 100).await;
//! println!("{all_in}: {:?}", receiver.counts());
//! receiver.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::checker::Observed;

/// Errors starting a receiver.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The secret is not `whsec_` followed by base64.
    #[error("invalid webhook secret: expected \"whsec_\" followed by base64")]
    InvalidSecret,
    /// Binding or serving failed.
    #[error("receiver I/O error while {context}: {source}")]
    Io {
        /// What the receiver was doing.
        context: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Which faults the receiver injects. Rates are probabilities per request, checked in
/// this order on one uniform draw: server error, too many requests, timeout. Build with
/// [`FaultPlan::new`] and the setters; [`FaultPlan::default`] injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Seed of the generator the random faults draw from.
    pub seed: u64,
    /// Share of requests answered `503 Service Unavailable`.
    pub server_error_rate: f64,
    /// Share of requests answered `429 Too Many Requests`.
    pub too_many_requests_rate: f64,
    /// The `Retry-After` a 429 carries (whole seconds, rounded up; `None`: no header).
    pub retry_after: Option<Duration>,
    /// Share of requests that hang instead of answering.
    pub timeout_rate: f64,
    /// How long a hanging request hangs (longer than the client's timeout); it ends
    /// early when the receiver shuts down.
    pub hang: Duration,
    /// Streams whose every request is answered with this status: 400 (or another 4xx)
    /// dead-letters each entry at once; 410 Gone makes the relay disable the whole
    /// destination.
    pub failing_streams: HashMap<String, u16>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            seed: 0,
            server_error_rate: 0.0,
            too_many_requests_rate: 0.0,
            retry_after: Some(Duration::from_secs(1)),
            timeout_rate: 0.0,
            hang: Duration::from_secs(60),
            failing_streams: HashMap::new(),
        }
    }
}

impl FaultPlan {
    /// No faults yet, random draws seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Answers a share `rate` of requests with 503.
    pub fn server_errors(mut self, rate: f64) -> Self {
        self.server_error_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Answers a share `rate` of requests with 429 and `Retry-After: retry_after`.
    pub fn too_many_requests(mut self, rate: f64, retry_after: Option<Duration>) -> Self {
        self.too_many_requests_rate = rate.clamp(0.0, 1.0);
        self.retry_after = retry_after;
        self
    }

    /// Lets a share `rate` of requests hang for `hang` (longer than the client timeout).
    pub fn timeouts(mut self, rate: f64, hang: Duration) -> Self {
        self.timeout_rate = rate.clamp(0.0, 1.0);
        self.hang = hang;
        self
    }

    /// Answers every request for `stream` with `status`: a 4xx such as 400 is a permanent
    /// failure of each entry; 410 Gone disables the whole destination in the relay.
    pub fn failing_stream(mut self, stream: impl Into<String>, status: u16) -> Self {
        self.failing_streams.insert(stream.into(), status);
        self
    }
}

/// How a receiver behaves.
#[derive(Debug, Clone, Default)]
pub struct ReceiverConfig {
    /// The `whsec_` secret signatures are verified with (`None`: not verified).
    pub secret: Option<String>,
    /// Faults to inject.
    pub faults: FaultPlan,
}

impl ReceiverConfig {
    /// Accepts everything, verifies nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies signatures with this `whsec_` secret.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Injects these faults.
    pub fn faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }
}

/// The JSON envelope the webhook destination posts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookBody {
    /// The outbox entry id.
    pub id: Uuid,
    /// The stream id.
    pub stream: String,
    /// The event or message type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// When the entry was created (RFC 3339), as sent.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl WebhookBody {
    /// `created_at` parsed, when present and valid RFC 3339.
    pub fn created_at(&self) -> Option<OffsetDateTime> {
        let text = self.created_at.as_deref()?;
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
    }
}

/// The result of checking a request's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// No secret configured: not checked.
    NotChecked,
    /// One of the signatures matched.
    Valid,
    /// Signature, id or timestamp header missing.
    Missing,
    /// No signature matched.
    Invalid,
}

/// What the receiver answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200 OK`: delivered.
    Accepted,
    /// `401`: bad or missing signature.
    BadSignature,
    /// `400`: the body is not the expected JSON envelope.
    BadRequest,
    /// Injected `503`.
    ServerError,
    /// Injected `429` (with `Retry-After` when configured).
    TooManyRequests,
    /// Injected hang: no answer within the client's timeout.
    Timeout,
    /// The stream's configured permanent failure status.
    FailingStream(u16),
}

impl Answer {
    /// The HTTP status sent (`None` for a hang).
    pub fn status(self) -> Option<u16> {
        match self {
            Answer::Accepted => Some(200),
            Answer::BadSignature => Some(401),
            Answer::BadRequest => Some(400),
            Answer::ServerError => Some(503),
            Answer::TooManyRequests => Some(429),
            Answer::Timeout => None,
            Answer::FailingStream(s) => Some(s),
        }
    }
}

/// One request the receiver got.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The `webhook-id` header.
    pub webhook_id: Option<String>,
    /// The `webhook-timestamp` header.
    pub timestamp: Option<i64>,
    /// The parsed envelope (`None` when the body did not parse).
    pub body: Option<WebhookBody>,
    /// The raw body.
    pub raw_body: Bytes,
    /// Attempt number for this webhook id (1 for the first request carrying it).
    pub attempt: u32,
    /// Arrival time.
    pub received_at: OffsetDateTime,
    /// Signature check.
    pub signature: SignatureCheck,
    /// The answer.
    pub answer: Answer,
}

impl Delivery {
    /// Whether the receiver accepted it (answered 2xx).
    pub fn accepted(&self) -> bool {
        self.answer == Answer::Accepted
    }

    /// The entry id: from the body, else from the `webhook-id` header.
    pub fn entry_id(&self) -> Option<Uuid> {
        self.body
            .as_ref()
            .map(|b| b.id)
            .or_else(|| self.webhook_id.as_deref().and_then(|h| Uuid::parse_str(h).ok()))
    }

    /// The attempt as the [`checker`](crate::checker) takes it (`None` without an id).
    pub fn observed(&self) -> Option<Observed> {
        let id = self.entry_id()?;
        let stream = self.body.as_ref().map(|b| b.stream.clone()).unwrap_or_default();
        Some(Observed::new(id, stream, self.accepted()))
    }
}

/// Request counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every request.
    pub requests: u64,
    /// Answered 2xx.
    pub accepted: u64,
    /// Answered with an error status (including bad signatures).
    pub rejected: u64,
    /// Answered 401 for a missing or bad signature.
    pub bad_signatures: u64,
    /// Left hanging.
    pub timeouts: u64,
}

struct Shared {
    key: Option<Vec<u8>>,
    faults: FaultPlan,
    rng: Mutex<StdRng>,
    deliveries: Mutex<Vec<Delivery>>,
    attempts: Mutex<HashMap<String, u32>>,
    counts: Mutex<Counts>,
    changed: Notify,
    cancel: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running loopback webhook receiver. Dropping it stops the server (hanging
/// requests end); [`Receiver::shutdown`] also waits for the server task.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start(config: ReceiverConfig) -> Result<Receiver, ReceiverError> {
        let key = config.secret.as_deref().map(decode_secret).transpose()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| ReceiverError::Io {
                context: "binding 127.0.0.1:0",
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ReceiverError::Io {
            context: "reading the bound address",
            source,
        })?;
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            key,
            rng: Mutex::new(StdRng::seed_from_u64(config.faults.seed)),
            faults: config.faults,
            deliveries: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
            changed: Notify::new(),
            cancel: cancel.clone(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned());
            if let Err(err) = server.await {
                tracing::warn!(error = %err, "webhook receiver stopped with an error");
            }
        });
        Ok(Receiver {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// The URL to post to, e.g. `http://127.0.0.1:41234/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of every request so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.shared.deliveries).clone()
    }

    /// Every request with an entry id, as the [`checker`](crate::checker) takes them.
    pub fn observed(&self) -> Vec<Observed> {
        lock(&self.shared.deliveries)
            .iter()
            .filter_map(Delivery::observed)
            .collect()
    }

    /// Distinct entry ids accepted at least once.
    pub fn accepted_ids(&self) -> std::collections::HashSet<Uuid> {
        lock(&self.shared.deliveries)
            .iter()
            .filter(|d| d.accepted())
            .filter_map(Delivery::entry_id)
            .collect()
    }

    /// Request counts so far.
    pub fn counts(&self) -> Counts {
        *lock(&self.shared.counts)
    }

    /// Waits until `predicate` holds for the recorded deliveries (re-checked on each
    /// request), or `within` passes. Returns whether it held.
    pub async fn wait_for(&self, within: Duration, mut predicate: impl FnMut(&[Delivery]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if predicate(&lock(&self.shared.deliveries)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return predicate(&lock(&self.shared.deliveries));
            }
        }
    }

    /// Stops the server: hanging requests end, open connections close; waits for it.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::warn!(error = %err, "webhook receiver task failed");
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, ReceiverError> {
    let b64 = secret.strip_prefix("whsec_").ok_or(ReceiverError::InvalidSecret)?;
    BASE64.decode(b64).map_err(|_| ReceiverError::InvalidSecret)
}

/// The Standard Webhooks signature header value (`v1,<base64>`) of `body` with this
/// `whsec_` secret, id and timestamp.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, ReceiverError> {
    let key = decode_secret(secret)?;
    Ok(format!(
        "v1,{}",
        BASE64.encode(mac(&key, id, timestamp, body).finalize().into_bytes())
    ))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Verifies a `webhook-signature` header (space-separated `v1,<base64>` entries; any
/// match is enough, in constant time per candidate).
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split_whitespace().any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(raw) = BASE64.decode(b64) else {
            return false;
        };
        mac(key, id, timestamp, body).verify_slice(&raw).is_ok()
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let received_at = OffsetDateTime::now_utc();
    let webhook_id = header_str(&headers, "webhook-id").map(str::to_owned);
    let timestamp = header_str(&headers, "webhook-timestamp").and_then(|t| t.trim().parse::<i64>().ok());
    let signature = match &shared.key {
        None => SignatureCheck::NotChecked,
        Some(key) => match (&webhook_id, timestamp, header_str(&headers, "webhook-signature")) {
            (Some(id), Some(ts), Some(sig)) => {
                if verify(key, id, ts, &body, sig) {
                    SignatureCheck::Valid
                } else {
                    SignatureCheck::Invalid
                }
            }
            _ => SignatureCheck::Missing,
        },
    };
    let parsed: Option<WebhookBody> = serde_json::from_slice(&body).ok();

    let answer = if matches!(signature, SignatureCheck::Invalid | SignatureCheck::Missing) {
        Answer::BadSignature
    } else if let Some(b) = &parsed {
        if let Some(status) = shared.faults.failing_streams.get(&b.stream) {
            Answer::FailingStream(*status)
        } else {
            let f = &shared.faults;
            let draw: f64 = lock(&shared.rng).random();
            if draw < f.server_error_rate {
                Answer::ServerError
            } else if draw < f.server_error_rate + f.too_many_requests_rate {
                Answer::TooManyRequests
            } else if draw < f.server_error_rate + f.too_many_requests_rate + f.timeout_rate {
                Answer::Timeout
            } else {
                Answer::Accepted
            }
        }
    } else {
        Answer::BadRequest
    };

    let attempt_key = webhook_id
        .clone()
        .or_else(|| parsed.as_ref().map(|b| b.id.to_string()))
        .unwrap_or_default();
    let attempt = {
        let mut attempts = lock(&shared.attempts);
        let n = attempts.entry(attempt_key).or_default();
        *n += 1;
        *n
    };
    {
        let mut counts = lock(&shared.counts);
        counts.requests += 1;
        match answer {
            Answer::Accepted => counts.accepted += 1,
            Answer::Timeout => counts.timeouts += 1,
            Answer::BadSignature => {
                counts.rejected += 1;
                counts.bad_signatures += 1;
            }
            _ => counts.rejected += 1,
        }
    }
    lock(&shared.deliveries).push(Delivery {
        webhook_id,
        timestamp,
        body: parsed,
        raw_body: body,
        attempt,
        received_at,
        signature,
        answer,
    });
    shared.changed.notify_waiters();

    match answer {
        Answer::Accepted => StatusCode::OK.into_response(),
        Answer::BadSignature => (StatusCode::UNAUTHORIZED, "bad signature").into_response(),
        Answer::BadRequest => (StatusCode::BAD_REQUEST, "expected the webhook JSON envelope").into_response(),
        Answer::ServerError => (StatusCode::SERVICE_UNAVAILABLE, "injected failure").into_response(),
        Answer::TooManyRequests => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "injected rate limit").into_response();
            if let Some(after) = shared.faults.retry_after {
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            response
        }
        Answer::Timeout => {
            tokio::select! {
                _ = shared.cancel.cancelled() => {}
                _ = tokio::time::sleep(shared.faults.hang) => {}
            }
            (StatusCode::SERVICE_UNAVAILABLE, "injected timeout").into_response()
        }
        Answer::FailingStream(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, "stream rejected").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn standard_webhooks_vector() {
        let sig = sign(
            SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let key = decode_secret(SECRET).unwrap();
        let header = format!("v1,bm9wZQ== {sig}");
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            &header
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_331,
            br#"{"test": 2432232314}"#,
            &header
        ));
        assert!(matches!(decode_secret("nope"), Err(ReceiverError::InvalidSecret)));
    }

    fn envelope(id: Uuid, stream: &str) -> String {
        serde_json::json!({"id": id, "stream": stream, "type": "T", "payload": {"n": 1}, "created_at": "2024-01-01T00:00:00Z"})
            .to_string()
    }

    async fn post(
        client: &reqwest::Client,
        r: &Receiver,
        id: Uuid,
        stream: &str,
        sign_with: Option<&str>,
    ) -> reqwest::Response {
        let body = envelope(id, stream);
        let ts = OffsetDateTime::now_utc().unix_timestamp();
        let mut req = client
            .post(r.url())
            .header("webhook-id", id.to_string())
            .header("webhook-timestamp", ts.to_string())
            .body(body.clone());
        if let Some(secret) = sign_with {
            req = req.header(
                "webhook-signature",
                sign(secret, &id.to_string(), ts, body.as_bytes()).unwrap(),
            );
        }
        req.send().await.unwrap()
    }

    #[tokio::test]
    async fn records_verifies_and_injects() {
        let r = Receiver::start(
            ReceiverConfig::new()
                .secret(SECRET)
                .faults(FaultPlan::new(1).failing_stream("poison", 400)),
        )
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let id = Uuid::now_v7();
        assert_eq!(post(&client, &r, id, "s", Some(SECRET)).await.status(), 200);
        assert_eq!(post(&client, &r, id, "s", Some(SECRET)).await.status(), 200);
        assert_eq!(post(&client, &r, id, "s", Some("whsec_AAAA")).await.status(), 401);
        assert_eq!(post(&client, &r, id, "s", None).await.status(), 401);
        assert_eq!(
            post(&client, &r, Uuid::now_v7(), "poison", Some(SECRET)).await.status(),
            400
        );
        let c = r.counts();
        assert_eq!((c.requests, c.accepted, c.rejected, c.bad_signatures), (5, 2, 3, 2));
        let d = r.deliveries();
        assert_eq!(d.iter().map(|d| d.attempt).collect::<Vec<_>>(), vec![1, 2, 3, 4, 1]);
        assert_eq!(d[0].body.as_ref().unwrap().payload, serde_json::json!({"n": 1}));
        assert!(d[0].body.as_ref().unwrap().created_at().is_some());
        assert_eq!(d[0].signature, SignatureCheck::Valid);
        assert_eq!(r.accepted_ids().len(), 1);
        r.shutdown().await;
    }

    #[tokio::test]
    async fn rate_limits_and_hangs_end_on_shutdown() {
        let r = Receiver::start(
            ReceiverConfig::new().faults(FaultPlan::new(3).too_many_requests(1.0, Some(Duration::from_millis(1500)))),
        )
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let resp = post(&client, &r, Uuid::now_v7(), "s", None).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "2");
        r.shutdown().await;

        let r =
            Receiver::start(ReceiverConfig::new().faults(FaultPlan::new(3).timeouts(1.0, Duration::from_secs(3600))))
                .await
                .unwrap();
        let url = r.url();
        let pending = tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .body(envelope(Uuid::now_v7(), "s"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert!(r.wait_for(Duration::from_secs(10), |d| d.len() == 1).await);
        assert_eq!(r.counts().timeouts, 1);
        // Shutdown must not wait for the hour-long hang.
        tokio::time::timeout(Duration::from_secs(30), r.shutdown())
            .await
            .unwrap();
        let _ = pending.await.unwrap();
    }

    #[tokio::test]
    async fn seeded_faults_are_reproducible() {
        async fn run() -> Vec<Option<u16>> {
            let r = Receiver::start(ReceiverConfig::new().faults(FaultPlan::new(99).server_errors(0.5)))
                .await
                .unwrap();
            let client = reqwest::Client::new();
            for _ in 0..32 {
                post(&client, &r, Uuid::now_v7(), "s", None).await;
            }
            let out = r.deliveries().iter().map(|d| d.answer.status()).collect();
            r.shutdown().await;
            out
        }
        let a = run().await;
        assert_eq!(a, run().await);
        assert!(a.contains(&Some(200)) && a.contains(&Some(503)));
    }
}
