//! The webhook destination against real loopback HTTP servers (axum on 127.0.0.1:0).
//!
//! No test sends traffic to a non-loopback address: private and metadata addresses are
//! refused when the destination is built (IP literals) or inside DNS resolution
//! (names), and connection counters on the loopback servers prove that refused
//! requests never connect.

#![cfg(feature = "webhook")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::serve::ListenerExt;
use eskit::{DeliveryError, Destination, EntryState, FailureKind, OutboxEntry, RawValue};
use eskit_destinations::webhook::{
    AddressGuard, GuardedResolver, MAX_RETRY_AFTER, WebhookConfig, WebhookDestination, WebhookError, WebhookSecret,
    sign, verify,
};
use futures::stream;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_2: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Upper bound for any single delivery in these tests (never reached when things work).
const BOUND: Duration = Duration::from_secs(30);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Captured {
    headers: HeaderMap,
    body: Bytes,
}

/// A loopback receiver: the address, accepted TCP connections, captured requests.
struct Receiver {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Captured>>>,
    streamed: Arc<AtomicUsize>,
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct AppState {
    requests: Arc<Mutex<Vec<Captured>>>,
    streamed: Arc<AtomicUsize>,
}

/// `/hook` answers 200; `/status/{code}?retry_after=..&body=..&location=..` answers
/// `code`; `/hang` never answers; `/huge/{code}` streams an endless body;
/// `/slow-body` sends a 500 status and part of a body, then stalls.
async fn start_receiver() -> Receiver {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let streamed = Arc::new(AtomicUsize::new(0));
    let state = AppState {
        requests: requests.clone(),
        streamed: streamed.clone(),
    };
    let app = Router::new()
        .route("/hook", post(capture))
        .route("/status/{code}", any(status))
        .route("/hang", post(hang))
        .route("/huge/{code}", post(huge))
        .route("/slow-body", post(slow_body))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        addr,
        connections,
        requests,
        streamed,
    }
}

async fn capture(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    state.requests.lock().unwrap().push(Captured { headers, body });
    StatusCode::OK
}

async fn status(
    State(state): State<AppState>,
    Path(code): Path<u16>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.lock().unwrap().push(Captured { headers, body });
    let mut response = (
        StatusCode::from_u16(code).unwrap(),
        query.get("body").cloned().unwrap_or_default(),
    )
        .into_response();
    if let Some(after) = query.get("retry_after") {
        response.headers_mut().insert("retry-after", after.parse().unwrap());
    }
    if let Some(location) = query.get("location") {
        response.headers_mut().insert("location", location.parse().unwrap());
    }
    response
}

async fn hang() -> StatusCode {
    std::future::pending::<()>().await;
    StatusCode::OK
}

async fn huge(State(state): State<AppState>, Path(code): Path<u16>) -> Response {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let counter = state.streamed.clone();
    let body = stream::repeat_with(move || {
        counter.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok::<_, Infallible>(chunk.clone())
    });
    (StatusCode::from_u16(code).unwrap(), Body::from_stream(body)).into_response()
}

async fn slow_body() -> Response {
    let first = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"partial failure report")) });
    let stall = stream::once(async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Bytes::new())
    });
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Body::from_stream(stream::select(first, stall)),
    )
        .into_response()
}

fn entry(metadata: Option<&str>) -> OutboxEntry {
    OutboxEntry {
        seq: 1,
        id: Uuid::now_v7(),
        destination: "hook".into(),
        stream_id: "order-42".into(),
        partition: 3,
        event_type: "OrderPlaced".into(),
        payload: RawValue::from_string(r#"{"total": 12.5,  "items":[1, 2]}"#.into()).unwrap(),
        metadata: metadata.map(|m| RawValue::from_string(m.into()).unwrap()),
        event_id: None,
        stream_version: Some(7),
        state: EntryState::Pending,
        attempts: 0,
        last_error: None,
        created_at: datetime!(2024-05-06 07:08:09.123456 UTC),
        next_attempt_at: datetime!(2024-05-06 07:08:09 UTC),
        delivered_at: None,
        dead_at: None,
    }
}

fn loopback(url: String) -> WebhookConfig {
    WebhookConfig::new(url, SECRET).allow_cidr("127.0.0.0/8".parse().unwrap())
}

async fn deliver(destination: &WebhookDestination, entry: &OutboxEntry) -> Result<(), DeliveryError> {
    tokio::time::timeout(BOUND, destination.deliver(entry))
        .await
        .expect("delivery did not finish within the test bound")
}

fn header<'a>(captured: &'a Captured, name: &str) -> &'a str {
    captured
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn headers_and_body_are_exact_and_signed() {
    let receiver = start_receiver().await;
    let destination =
        WebhookDestination::new(loopback(receiver.url("/hook")).header("authorization", "Bearer receiver-token"))
            .unwrap();
    let metadata = format!(r#"{{"traceparent": "{TRACEPARENT}", "user": "u1"}}"#);
    let entry = entry(Some(&metadata));

    deliver(&destination, &entry).await.unwrap();
    deliver(&destination, &entry).await.unwrap();

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let expected_body = format!(
        r#"{{"id":"{}","stream":"order-42","type":"OrderPlaced","payload":{{"total": 12.5,  "items":[1, 2]}},"created_at":"2024-05-06T07:08:09.123456Z"}}"#,
        entry.id
    );
    let secret: WebhookSecret = SECRET.parse().unwrap();
    for request in &requests {
        assert_eq!(std::str::from_utf8(&request.body).unwrap(), expected_body);
        assert_eq!(header(request, "content-type"), "application/json");
        assert_eq!(header(request, "webhook-id"), entry.id.to_string());
        assert_eq!(header(request, "eskit-stream"), "order-42");
        assert_eq!(header(request, "eskit-event-type"), "OrderPlaced");
        assert_eq!(header(request, "traceparent"), TRACEPARENT);
        assert_eq!(header(request, "authorization"), "Bearer receiver-token");
        assert!(header(request, "user-agent").starts_with("eskit-webhook/"));
        let timestamp: i64 = header(request, "webhook-timestamp").parse().unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (now - 300..=now + 300).contains(&timestamp),
            "timestamp {timestamp} is not a current unix time"
        );
        let signature = header(request, "webhook-signature");
        assert_eq!(
            signature,
            sign(&secret, &entry.id.to_string(), timestamp, &request.body)
        );
        assert!(verify(
            std::slice::from_ref(&secret),
            &entry.id.to_string(),
            timestamp,
            &request.body,
            signature
        ));
        // A tampered body does not verify.
        assert!(!verify(
            std::slice::from_ref(&secret),
            &entry.id.to_string(),
            timestamp,
            b"{}",
            signature
        ));
    }
    // The id is stable across attempts: receivers deduplicate on it.
    assert_eq!(header(&requests[0], "webhook-id"), header(&requests[1], "webhook-id"));
    // One pooled connection served both requests.
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test]
async fn no_traceparent_header_without_a_valid_one() {
    let receiver = start_receiver().await;
    let destination = WebhookDestination::new(loopback(receiver.url("/hook"))).unwrap();
    for metadata in [
        None,
        Some(r#"{"traceparent": 5}"#),
        Some(r#"{"traceparent": "nope"}"#),
        Some("[1, 2]"),
    ] {
        deliver(&destination, &entry(metadata)).await.unwrap();
    }
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert!(request.headers.get("traceparent").is_none());
    }
}

#[tokio::test]
async fn rotation_sends_one_signature_per_secret() {
    let receiver = start_receiver().await;
    let destination = WebhookDestination::new(loopback(receiver.url("/hook")).secret(SECRET_2)).unwrap();
    let entry = entry(None);
    deliver(&destination, &entry).await.unwrap();

    let request = &receiver.requests()[0];
    let id = entry.id.to_string();
    let timestamp: i64 = header(request, "webhook-timestamp").parse().unwrap();
    let signature = header(request, "webhook-signature");
    let first: WebhookSecret = SECRET.parse().unwrap();
    let second: WebhookSecret = SECRET_2.parse().unwrap();
    let tokens: Vec<&str> = signature.split(' ').collect();
    assert_eq!(
        tokens,
        vec![
            sign(&first, &id, timestamp, &request.body),
            sign(&second, &id, timestamp, &request.body)
        ]
    );
    // A receiver that knows only one of the secrets accepts the delivery.
    assert!(verify(&[first], &id, timestamp, &request.body, signature));
    assert!(verify(&[second], &id, timestamp, &request.body, signature));
    let stranger = WebhookSecret::from_bytes(&[9u8; 32]).unwrap();
    assert!(!verify(&[stranger], &id, timestamp, &request.body, signature));
}

#[tokio::test]
async fn statuses_are_classified() {
    let receiver = start_receiver().await;
    let cases: &[(&str, Option<FailureKind>, Option<Duration>)] = &[
        ("/status/200", None, None),
        ("/status/201", None, None),
        ("/status/202", None, None),
        ("/status/204", None, None),
        ("/status/301?location=/status/200", Some(FailureKind::Permanent), None),
        ("/status/302?location=/status/200", Some(FailureKind::Permanent), None),
        ("/status/307?location=/status/200", Some(FailureKind::Permanent), None),
        ("/status/308?location=/status/200", Some(FailureKind::Permanent), None),
        ("/status/400?body=bad+request", Some(FailureKind::Permanent), None),
        ("/status/401", Some(FailureKind::Permanent), None),
        ("/status/404", Some(FailureKind::Permanent), None),
        ("/status/422", Some(FailureKind::Permanent), None),
        ("/status/410", Some(FailureKind::Gone), None),
        ("/status/408", Some(FailureKind::Retryable), None),
        ("/status/429", Some(FailureKind::Retryable), None),
        (
            "/status/429?retry_after=7",
            Some(FailureKind::Retryable),
            Some(Duration::from_secs(7)),
        ),
        (
            "/status/503?retry_after=Wed,+21+Oct+2015+07:28:00+GMT",
            Some(FailureKind::Retryable),
            Some(Duration::ZERO),
        ),
        (
            "/status/429?retry_after=Fri,+31+Dec+9999+23:59:59+GMT",
            Some(FailureKind::Retryable),
            Some(MAX_RETRY_AFTER),
        ),
        ("/status/503?retry_after=soon", Some(FailureKind::Retryable), None),
        ("/status/500?body=boom", Some(FailureKind::Retryable), None),
        ("/status/502", Some(FailureKind::Retryable), None),
        ("/status/504", Some(FailureKind::Retryable), None),
    ];
    for (path, expected, retry_after) in cases {
        let destination = WebhookDestination::new(loopback(receiver.url(path))).unwrap();
        let outcome = deliver(&destination, &entry(None)).await;
        match (expected, outcome) {
            (None, Ok(())) => {}
            (Some(kind), Err(err)) => {
                assert_eq!(err.kind, *kind, "{path}: {err}");
                assert_eq!(err.retry_after, *retry_after, "{path}");
                let code = &path[8..11];
                assert!(
                    err.message.starts_with(&format!("HTTP {code}")),
                    "{path}: {}",
                    err.message
                );
                assert!(!err.message.contains('?'), "{path}: query leaked into {}", err.message);
            }
            (expected, outcome) => panic!("{path}: expected {expected:?}, got {outcome:?}"),
        }
    }
    // Redirects were never followed: the only requests are the ones listed above.
    assert_eq!(receiver.requests().len(), cases.len());

    let destination = WebhookDestination::new(loopback(receiver.url("/status/500?body=database+is+down"))).unwrap();
    let err = deliver(&destination, &entry(None)).await.unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "HTTP 500 Internal Server Error from http://{}: database is down",
            receiver.addr
        )
    );
}

#[tokio::test]
async fn a_hanging_receiver_times_out_as_retryable() {
    let receiver = start_receiver().await;
    let destination =
        WebhookDestination::new(loopback(receiver.url("/hang")).timeout(Duration::from_millis(300))).unwrap();
    let err = deliver(&destination, &entry(None)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable, "{err}");
    assert!(err.message.contains("timed out"), "{err}");
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test]
async fn a_stalled_error_body_keeps_the_status() {
    let receiver = start_receiver().await;
    let destination =
        WebhookDestination::new(loopback(receiver.url("/slow-body")).timeout(Duration::from_millis(300))).unwrap();
    let err = deliver(&destination, &entry(None)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable, "{err}");
    assert!(err.message.starts_with("HTTP 500"), "{err}");
    assert!(err.message.contains("partial failure report"), "{err}");
}

#[tokio::test]
async fn endless_response_bodies_are_cut() {
    let receiver = start_receiver().await;
    // The request deadline is far beyond the test bound: only the cap can end the read.
    let endless = |url| loopback(url).max_response_body(1024).timeout(BOUND * 4);
    let destination = WebhookDestination::new(endless(receiver.url("/huge/500"))).unwrap();
    let err = deliver(&destination, &entry(None)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable, "{err}");
    assert!(err.message.starts_with("HTTP 500"), "{err}");
    assert!(err.message.contains("xxxx"), "{err}");
    assert!(
        err.message.len() < 400,
        "excerpt not capped: {} bytes",
        err.message.len()
    );

    // A success with an endless body is still a success, and returns.
    let destination = WebhookDestination::new(endless(receiver.url("/huge/200"))).unwrap();
    deliver(&destination, &entry(None)).await.unwrap();
    // The body never ends, so returning at all proves the client stopped reading;
    // what the server managed to push is bounded by socket buffers, far from "all".
    assert!(receiver.streamed.load(Ordering::SeqCst) < 512 * 1024 * 1024);
}

#[tokio::test]
async fn connection_errors_are_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let destination = WebhookDestination::new(loopback(format!("http://{addr}/hook?token=s3cr3t"))).unwrap();
    let err = deliver(&destination, &entry(None)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable, "{err}");
    assert!(
        err.message.starts_with(&format!("connecting to http://{addr} failed")),
        "{err}"
    );
    assert!(!err.message.contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let receiver = start_receiver().await;
    // IP literal: refused when the destination is built.
    let err = WebhookDestination::new(WebhookConfig::new(receiver.url("/hook"), SECRET)).unwrap_err();
    assert!(matches!(err, WebhookError::AddressNotAllowed(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("destination address not allowed: 127.0.0.1"),
        "{err}"
    );

    // A name resolving to loopback: refused inside DNS resolution, as a permanent failure.
    let by_name = format!("http://localhost:{}/hook", receiver.addr.port());
    let destination = WebhookDestination::new(WebhookConfig::new(by_name.clone(), SECRET)).unwrap();
    let err = deliver(&destination, &entry(None)).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert!(
        err.message.starts_with("destination address not allowed: localhost"),
        "{err}"
    );
    assert!(err.message.contains("127.0.0.1"), "{err}");
    assert_eq!(receiver.connections(), 0, "a refused address was connected to");

    // Opted in with 127.0.0.0/8: both forms are delivered.
    let destination = WebhookDestination::new(loopback(receiver.url("/hook"))).unwrap();
    deliver(&destination, &entry(None)).await.unwrap();
    let destination = WebhookDestination::new(loopback(by_name)).unwrap();
    deliver(&destination, &entry(None)).await.unwrap();
    assert_eq!(receiver.requests().len(), 2);

    // A single address works as an allow-list entry too.
    let destination = WebhookDestination::new(
        WebhookConfig::new(receiver.url("/hook"), SECRET).allow_cidr("127.0.0.1/32".parse().unwrap()),
    )
    .unwrap();
    deliver(&destination, &entry(None)).await.unwrap();
}

#[tokio::test]
async fn internal_addresses_and_numeric_forms_are_refused() {
    let receiver = start_receiver().await;
    let port = receiver.addr.port();
    let urls = [
        "http://10.0.0.1/hook".to_string(),
        "http://172.16.5.4/hook".to_string(),
        "http://192.168.1.1/hook".to_string(),
        "http://100.64.0.1/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
        "http://[fe80::1]/hook".to_string(),
        "http://[fc00::1]/hook".to_string(),
        "http://[64:ff9b::a9fe:a9fe]/hook".to_string(),
        "http://224.0.0.1/hook".to_string(),
        "http://255.255.255.255/hook".to_string(),
        format!("http://0.0.0.0:{port}/hook"),
        format!("http://[::]:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0x7f000001:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        format!("https://127.0.0.1:{port}/hook"),
    ];
    for url in &urls {
        let err = WebhookDestination::new(WebhookConfig::new(url.clone(), SECRET)).unwrap_err();
        assert!(matches!(err, WebhookError::AddressNotAllowed(_)), "{url}: {err:?}");
        assert!(
            err.to_string().starts_with("destination address not allowed"),
            "{url}: {err}"
        );
    }
    // Numeric forms are normalised to the address they denote: opted-in loopback works.
    for form in ["127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]"] {
        let destination = WebhookDestination::new(loopback(format!("http://{form}:{port}/hook"))).unwrap();
        deliver(&destination, &entry(None)).await.unwrap();
    }
    // Only those opted-in requests reached the receiver.
    assert_eq!(receiver.requests().len(), 4);

    // The resolver refuses the same addresses when a name (or a numeric form the
    // system resolver understands) resolves to them; resolving an IP literal sends no
    // DNS query and nothing connects.
    let resolver = GuardedResolver::new(Arc::new(AddressGuard::default()));
    for host in [
        "localhost",
        "127.1",
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
    ] {
        let err = resolver.lookup(host).await.unwrap_err();
        assert!(
            err.to_string().starts_with("destination address not allowed"),
            "{host}: {err}"
        );
    }
    let opted_in = GuardedResolver::new(Arc::new(AddressGuard::new(["10.0.0.0/8".parse().unwrap()])));
    let allowed = opted_in.lookup("10.1.2.3").await.unwrap();
    assert_eq!(allowed, vec!["10.1.2.3:0".parse::<SocketAddr>().unwrap()]);
}

#[tokio::test]
async fn malformed_secrets_are_config_errors_without_the_secret() {
    let too_short = "whsec_c2hvcnQ=".to_string(); // "short": 5 bytes
    let too_long = format!("whsec_{}", "QUFB".repeat(30)); // 90 bytes
    let cases = [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        "whsec_".to_string(),
        "whsec_this-is-not-base64!".to_string(),
        "wHsEc_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        "sk_live_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string(),
        too_short,
        too_long,
    ];
    for secret in &cases {
        let err = WebhookDestination::new(WebhookConfig::new("https://example.com/hook", secret.clone())).unwrap_err();
        assert!(matches!(err, WebhookError::InvalidSecret { index: 0, .. }), "{err:?}");
        let text = err.to_string();
        let debug = format!("{err:?}");
        let secret_part = secret.trim_start_matches("whsec_");
        if !secret_part.is_empty() {
            assert!(!text.contains(secret_part), "{text}");
            assert!(!debug.contains(secret_part), "{debug}");
        }
    }
    // The position of the bad one in a rotation list is reported.
    let err = WebhookDestination::new(WebhookConfig::new("https://example.com/hook", SECRET).secret("whsec_bad"))
        .unwrap_err();
    assert!(matches!(err, WebhookError::InvalidSecret { index: 1, .. }), "{err:?}");
    // No secret at all.
    let mut config = WebhookConfig::new("https://example.com/hook", SECRET);
    config.secrets.clear();
    assert!(matches!(WebhookDestination::new(config), Err(WebhookError::NoSecret)));
}

#[test]
fn other_config_errors() {
    let build = |config: WebhookConfig| WebhookDestination::new(config).unwrap_err();
    assert!(matches!(
        build(WebhookConfig::new("ftp://example.com/x", SECRET)),
        WebhookError::UnsupportedScheme { .. }
    ));
    assert!(matches!(
        build(WebhookConfig::new("example.com/x", SECRET)),
        WebhookError::InvalidUrl { .. }
    ));
    assert!(matches!(
        build(WebhookConfig::new("http://", SECRET)),
        WebhookError::InvalidUrl { .. } | WebhookError::MissingHost
    ));
    assert!(matches!(
        build(WebhookConfig::new("https://example.com", SECRET).timeout(Duration::ZERO)),
        WebhookError::ZeroTimeout { key: "timeout" }
    ));
    assert!(matches!(
        build(WebhookConfig::new("https://example.com", SECRET).connect_timeout(Duration::ZERO)),
        WebhookError::ZeroTimeout { key: "connect_timeout" }
    ));
    assert!(matches!(
        build(WebhookConfig::new("https://example.com", SECRET).header("Webhook-Signature", "v1,forged")),
        WebhookError::ReservedHeader { .. }
    ));
    assert!(matches!(
        build(WebhookConfig::new("https://example.com", SECRET).header("bad header", "x")),
        WebhookError::InvalidHeaderName { .. }
    ));
    let err = build(WebhookConfig::new("https://example.com", SECRET).header("authorization", "Bearer a\nb"));
    assert!(matches!(err, WebhookError::InvalidHeaderValue { .. }));
    assert!(!err.to_string().contains("Bearer"), "{err}");
}

#[test]
fn debug_output_is_redacted() {
    let config = WebhookConfig::new("https://user:pw@example.com/hooks/T0/secret-path?token=abc", SECRET)
        .secret(SECRET_2)
        .header("authorization", "Bearer hunter2");
    let destination = WebhookDestination::new(config.clone()).unwrap();
    for shown in [format!("{config:?}"), format!("{destination:?}")] {
        for hidden in ["MfKQ9r8G", "AAECAwQF", "hunter2", "pw@", "token", "secret-path"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains("https://example.com"), "{shown}");
    }
    assert_eq!(destination.redacted_url(), "https://example.com");
}

#[test]
fn embeds_in_a_destinations_table() {
    // The shape the CLI uses: `[[destinations]] name = "...", type = "webhook", ...`.
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Table {
        destinations: Vec<Named>,
    }
    #[derive(serde::Deserialize, Debug)]
    struct Named {
        name: String,
        #[serde(flatten)]
        kind: Kind,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(tag = "type", rename_all = "lowercase")]
    enum Kind {
        Webhook(WebhookConfig),
    }

    let table: Table = serde_json::from_str(&format!(
        r#"{{"destinations": [{{"name": "orders", "type": "webhook", "url": "http://127.0.0.1:9/h",
            "secret": ["{SECRET}", "{SECRET_2}"], "timeout": "5s", "connect_timeout": "1s",
            "allowed_cidrs": ["127.0.0.0/8"], "danger_accept_invalid_certs": false, "max_response_body": 512}}]}}"#
    ))
    .unwrap();
    assert_eq!(table.destinations[0].name, "orders");
    let Kind::Webhook(config) = &table.destinations[0].kind;
    assert_eq!(config.secrets.len(), 2);
    assert_eq!(config.timeout, Duration::from_secs(5));
    assert_eq!(config.connect_timeout, Duration::from_secs(1));
    assert_eq!(config.max_response_body, 512);
    WebhookDestination::new(config.clone()).unwrap();

    let err = serde_json::from_str::<Table>(&format!(
        r#"{{"destinations": [{{"name": "orders", "type": "webhook", "url": "http://x", "secret": "{SECRET}", "timout": "5s"}}]}}"#
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `timout`"), "{err}");
    assert!(!err.contains("MfKQ9r8G"), "{err}");
}

#[tokio::test]
async fn tls_handshake_failures_are_retryable() {
    // The receiver speaks plain HTTP: the TLS handshake (rustls, aws-lc-rs) fails.
    let receiver = start_receiver().await;
    let url = format!("https://{}/hook", receiver.addr);
    for danger in [false, true] {
        let destination = WebhookDestination::new(loopback(url.clone()).danger_accept_invalid_certs(danger)).unwrap();
        let err = deliver(&destination, &entry(None)).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::Retryable, "{err}");
        assert!(
            err.message
                .starts_with(&format!("connecting to https://{} failed", receiver.addr)),
            "{err}"
        );
    }
    assert!(receiver.requests().is_empty());
}
