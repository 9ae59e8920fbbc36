//! Helpers shared by the broker destination tests (nats.rs, rabbitmq.rs, redis.rs).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eskit::{DeliveryError, Destination, EntryState, OutboxEntry, RawValue};
use time::OffsetDateTime;
use uuid::Uuid;

/// A W3C traceparent put in some entries' metadata.
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A short unique suffix for broker object names.
pub fn unique() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// An entry of `stream` with a JSON payload whose bytes are not canonical (spaces,
/// key order), so byte-for-byte comparison catches re-serialisation.
pub fn entry(stream: &str, n: usize, event_type: &str) -> OutboxEntry {
    let payload = format!(r#"{{"n": {n},  "stream":"{stream}", "z":[1, 2.50]}}"#);
    let metadata = n
        .is_multiple_of(2)
        .then(|| format!(r#"{{"traceparent":"{TRACEPARENT}","other":1}}"#));
    let now = OffsetDateTime::now_utc();
    OutboxEntry {
        seq: n as i64,
        id: Uuid::now_v7(),
        destination: "broker".into(),
        stream_id: stream.into(),
        partition: 0,
        event_type: event_type.into(),
        payload: RawValue::from_string(payload).expect("valid json"),
        metadata: metadata.map(|m| RawValue::from_string(m).expect("valid json")),
        event_id: None,
        stream_version: Some(n as u64),
        state: EntryState::Pending,
        attempts: 0,
        last_error: None,
        created_at: now,
        next_attempt_at: now,
        delivered_at: None,
        dead_at: None,
    }
}

/// `per_stream` entries for each of `streams`, in per-stream order.
pub fn entries(streams: &[&str], per_stream: usize) -> BTreeMap<String, Vec<OutboxEntry>> {
    streams
        .iter()
        .map(|s| {
            let list = (0..per_stream)
                .map(|n| {
                    entry(
                        s,
                        n,
                        if n.is_multiple_of(3) {
                            "OrderPlaced"
                        } else {
                            "Order.Shipped"
                        },
                    )
                })
                .collect();
            (s.to_string(), list)
        })
        .collect()
}

/// Delivers like the relay does: streams concurrently, each stream's entries one at
/// a time, the next only after the previous succeeded.
pub async fn deliver_like_relay<D: Destination>(destination: Arc<D>, by_stream: &BTreeMap<String, Vec<OutboxEntry>>) {
    let mut tasks = Vec::new();
    for entries in by_stream.values() {
        let destination = destination.clone();
        let entries = entries.clone();
        tasks.push(tokio::spawn(async move {
            for e in &entries {
                destination
                    .deliver(e)
                    .await
                    .unwrap_or_else(|err| panic!("delivering {} of {}: {err:?}", e.id, e.stream_id));
            }
        }));
    }
    for t in tasks {
        t.await.expect("delivery task");
    }
}

/// The envelope a destination must send for `e`, computed independently of the
/// crate's own function.
pub fn expected_envelope(e: &OutboxEntry) -> serde_json::Value {
    serde_json::json!({
        "id": e.id.to_string(),
        "stream": e.stream_id,
        "type": e.event_type,
        "payload": serde_json::from_str::<serde_json::Value>(e.payload.get()).unwrap(),
        "created_at": e.created_at.format(&time::format_description::well_known::Rfc3339).unwrap(),
    })
}

/// Checks an envelope body: exact key order, the payload embedded byte for byte, and
/// every field.
pub fn check_envelope(body: &[u8], e: &OutboxEntry) {
    let text = std::str::from_utf8(body).expect("utf-8 body");
    let prefix = format!(
        r#"{{"id":"{}","stream":{},"type":{},"payload":{},"created_at":"#,
        e.id,
        serde_json::to_string(&e.stream_id).unwrap(),
        serde_json::to_string(&e.event_type).unwrap(),
        e.payload.get()
    );
    assert!(text.starts_with(&prefix), "body {text}\nexpected prefix {prefix}");
    let value: serde_json::Value = serde_json::from_str(text).expect("json body");
    assert_eq!(value, expected_envelope(e));
}

/// The expected headers of `e` (without any broker-specific ones).
pub fn expected_headers(e: &OutboxEntry) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("eskit-entry-id", e.id.to_string()),
        ("eskit-stream", e.stream_id.clone()),
        ("eskit-event-type", e.event_type.clone()),
        (
            "eskit-created-at",
            e.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        ),
    ];
    if e.metadata.is_some() {
        h.push(("traceparent", TRACEPARENT.to_string()));
    }
    h
}

/// Polls `f` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// Asserts a retryable failure whose message does not leak `secret`.
pub fn assert_retryable(result: Result<(), DeliveryError>, secret: Option<&str>) -> DeliveryError {
    let err = result.expect_err("delivery must fail");
    assert!(!err.is_permanent(), "expected retryable, got {err:?}");
    if let Some(s) = secret {
        assert!(!err.message.contains(s), "secret leaked: {}", err.message);
    }
    err
}

/// Asserts a permanent failure.
pub fn assert_permanent(result: Result<(), DeliveryError>) -> DeliveryError {
    let err = result.expect_err("delivery must fail");
    assert!(err.is_permanent(), "expected permanent, got {err:?}");
    err
}

/// A TCP proxy on a loopback port in front of a real broker, which a test can take
/// down (listener closed, every connection cut) and bring back on the same port:
/// a broker outage without touching the shared broker.
pub struct Proxy {
    port: u16,
    upstream: std::net::SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (e.g. `127.0.0.1:4222`).
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Self {
            port: listener.local_addr().expect("addr").port(),
            upstream: upstream.parse().expect("upstream address"),
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// The broker "goes down": no new connections, every open one cut.
    pub async fn down(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        // Wait until the listener is really closed.
        eventually(Duration::from_secs(5), "proxy listener to close", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
                .then_some(())
        })
        .await;
    }

    /// The broker is back on the same port.
    pub async fn up(&self) {
        let listener = eventually(Duration::from_secs(5), "proxy port to be free again", || async {
            tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.ok()
        })
        .await;
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// Delivers `e` until it succeeds (within `within`), asserting every failure on the
/// way is retryable. Returns how many attempts failed.
pub async fn deliver_until_ok<D: Destination>(d: &D, e: &OutboxEntry, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut failures = 0;
    loop {
        match d.deliver(e).await {
            Ok(()) => return failures,
            Err(err) => {
                assert!(!err.is_permanent(), "a broker outage must be retryable: {err:?}");
                failures += 1;
                assert!(Instant::now() < deadline, "still failing after {within:?}: {err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
