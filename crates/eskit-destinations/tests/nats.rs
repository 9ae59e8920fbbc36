//! NATS JetStream destination against the real server on 127.0.0.1:4222 (and, for
//! permissions, a private `nats-server` started by the test). Each test uses its own
//! JetStream stream and subject prefix.

mod broker_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use eskit::Destination;
use eskit_destinations::{BodyFormat, NatsConfig, NatsDestination};
use futures::StreamExt;

use broker_common::*;

const URL: &str = "nats://127.0.0.1:4222";

/// A JetStream stream capturing `eskit-test.<id>.>`, deleted by `cleanup`.
struct TestStream {
    js: jetstream::Context,
    name: String,
    prefix: String,
}

impl TestStream {
    async fn new() -> Self {
        let client = async_nats::connect(URL).await.expect("connect to NATS on 4222");
        let js = jetstream::new(client);
        let id = unique();
        let name = format!("ESKIT_T_{id}");
        let prefix = format!("eskit-test.{id}");
        js.create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(900),
            ..Default::default()
        })
        .await
        .expect("create stream");
        Self { js, name, prefix }
    }

    async fn count(&self) -> u64 {
        let mut s = self.js.get_stream(&self.name).await.expect("get stream");
        s.info().await.expect("stream info").state.messages
    }

    /// Reads `n` messages with a pull consumer, in stream order.
    async fn read(&self, n: usize) -> Vec<async_nats::Message> {
        let s = self.js.get_stream(&self.name).await.expect("get stream");
        let consumer: consumer::PullConsumer = s
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("create consumer");
        let mut messages = consumer.messages().await.expect("consume");
        let mut out = Vec::new();
        while out.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", out.len()));
            out.push(next.expect("stream ended").expect("message").message);
        }
        out
    }

    async fn cleanup(self) {
        self.js.delete_stream(&self.name).await.expect("delete stream");
    }
}

fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

fn destination(subject: &str) -> Arc<NatsDestination> {
    Arc::new(NatsDestination::new(NatsConfig::new(URL, subject)).expect("valid config"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_stream_in_order_with_headers_and_exact_bytes() {
    let ts = TestStream::new().await;
    let dest = destination(&format!("{}.{{stream}}.{{type}}", ts.prefix));
    let streams = ["order-1", "order.2 x", "customer-7"];
    let by_stream = entries(&streams, 8);
    deliver_like_relay(dest.clone(), &by_stream).await;

    let messages = ts.read(24).await;
    let mut seen: BTreeMap<String, Vec<async_nats::Message>> = BTreeMap::new();
    for m in messages {
        let stream = header(&m, "eskit-stream").expect("eskit-stream header").to_string();
        seen.entry(stream).or_default().push(m);
    }
    assert_eq!(seen.len(), 3);
    for (stream, expected) in &by_stream {
        let got = &seen[stream];
        let got_ids: Vec<&str> = got.iter().map(|m| header(m, "eskit-entry-id").unwrap()).collect();
        let want_ids: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(got_ids, want_ids, "per-stream order of {stream}");
        for (m, e) in got.iter().zip(expected) {
            check_envelope(&m.payload, e);
            assert_eq!(header(m, "Nats-Msg-Id"), Some(e.id.to_string().as_str()));
            for (name, value) in expected_headers(e) {
                assert_eq!(header(m, name), Some(value.as_str()), "header {name}");
            }
            if e.metadata.is_none() {
                assert_eq!(header(m, "traceparent"), None);
            }
            // `{stream}` and `{type}` each become exactly one subject token.
            let sanitized_stream = e.stream_id.replace(['.', ' '], "_");
            let sanitized_type = e.event_type.replace('.', "_");
            assert_eq!(
                m.subject.as_str(),
                format!("{}.{sanitized_stream}.{sanitized_type}", ts.prefix)
            );
            assert_eq!(dest.subject_for(e), m.subject.as_str());
        }
    }
    ts.cleanup().await;
}

#[tokio::test]
async fn the_same_entry_twice_is_stored_once() {
    let ts = TestStream::new().await;
    let dest = destination(&format!("{}.{{stream}}", ts.prefix));
    let e = entry("order-1", 0, "OrderPlaced");
    dest.deliver(&e).await.expect("first delivery");
    dest.deliver(&e).await.expect("redelivery is acknowledged too");
    let other = entry("order-1", 1, "OrderPlaced");
    dest.deliver(&other).await.expect("another entry");
    assert_eq!(ts.count().await, 2, "JetStream must drop the duplicate (Nats-Msg-Id)");
    ts.cleanup().await;
}

#[tokio::test]
async fn body_payload_sends_the_payload_alone() {
    let ts = TestStream::new().await;
    let mut config = NatsConfig::new(URL, format!("{}.static", ts.prefix));
    config.body = BodyFormat::Payload;
    let dest = NatsDestination::new(config).unwrap();
    let e = entry("s", 1, "T");
    dest.deliver(&e).await.expect("deliver");
    let m = ts.read(1).await.remove(0);
    assert_eq!(&m.payload[..], e.payload.get().as_bytes());
    assert_eq!(m.subject.as_str(), format!("{}.static", ts.prefix));
    assert_eq!(header(&m, "eskit-entry-id"), Some(e.id.to_string().as_str()));
    ts.cleanup().await;
}

#[tokio::test]
async fn a_subject_no_stream_captures_is_a_permanent_error() {
    let dest = destination(&format!("eskit-nostream.{}.{{stream}}", unique()));
    let err = assert_permanent(dest.deliver(&entry("order-1", 0, "T")).await);
    assert!(err.message.contains("no JetStream stream"), "{}", err.message);
}

#[tokio::test]
async fn broker_down_is_retryable_then_a_new_destination_delivers() {
    let ts = TestStream::new().await;
    let subject = format!("{}.{{stream}}", ts.prefix);
    let mut down = NatsConfig::new(
        format!("nats://eskit:pw-not-shown@127.0.0.1:{}", closed_port()),
        subject.clone(),
    );
    down.timeout = Some(Duration::from_secs(2));
    let down = NatsDestination::new(down).unwrap();
    let e = entry("order-1", 0, "T");
    let err = assert_retryable(down.deliver(&e).await, Some("pw-not-shown"));
    assert!(err.message.contains("eskit:***@127.0.0.1"), "{}", err.message);
    // Still down on the next attempt: the lazy connection is retried, not cached.
    assert_retryable(down.deliver(&e).await, Some("pw-not-shown"));

    let up = destination(&subject);
    up.deliver(&e).await.expect("delivers once the broker is reachable");
    let m = ts.read(1).await.remove(0);
    assert_eq!(header(&m, "eskit-entry-id"), Some(e.id.to_string().as_str()));
    ts.cleanup().await;
}

#[test]
fn invalid_configs_are_rejected() {
    assert!(NatsDestination::new(NatsConfig::new(URL, "a.{bogus}")).is_err());
    assert!(NatsDestination::new(NatsConfig::new(URL, "a..b")).is_err());
    assert!(NatsDestination::new(NatsConfig::new("amqp://127.0.0.1", "a")).is_err());
    let toml_like = serde_json::json!({"url": URL, "subject": "a", "subjet": "typo"});
    assert!(serde_json::from_value::<NatsConfig>(toml_like).is_err());
}

/// A private nats-server with one user allowed to publish to `allowed.>` only.
struct PrivateServer {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl PrivateServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                r#"
listen: "127.0.0.1:{port}"
authorization {{
  users = [
    {{ user: "eskit", password: "s3cret-pw", permissions: {{
        publish: {{ allow: ["allowed.>"] }},
        subscribe: {{ allow: ["_INBOX.>"] }} }} }}
  ]
}}
"#
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server binary (installed with the NATS service)");
        eventually(
            Duration::from_secs(10),
            "private nats-server to listen",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        Self {
            _child: child,
            _dir: dir,
            port,
        }
    }
}

#[tokio::test]
async fn permission_and_auth_failures_are_permanent_and_hide_the_password() {
    let server = PrivateServer::start().await;

    let mut denied = NatsConfig::new(
        format!("nats://eskit:s3cret-pw@127.0.0.1:{}", server.port),
        "denied.{stream}",
    );
    denied.timeout = Some(Duration::from_secs(2));
    let denied = NatsDestination::new(denied).unwrap();
    let err = assert_permanent(denied.deliver(&entry("order-1", 0, "T")).await);
    assert!(
        err.message.to_lowercase().contains("permissions violation"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("s3cret-pw"));

    let mut wrong = NatsConfig::new(
        format!("nats://eskit:wrong-pw-123@127.0.0.1:{}", server.port),
        "allowed.x",
    );
    wrong.timeout = Some(Duration::from_secs(2));
    let wrong = NatsDestination::new(wrong).unwrap();
    let err = assert_permanent(wrong.deliver(&entry("order-1", 0, "T")).await);
    assert!(!err.message.contains("wrong-pw-123"), "{}", err.message);
    assert!(!format!("{wrong:?}").contains("wrong-pw-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retryable_and_the_same_destination_delivers_after_it() {
    let ts = TestStream::new().await;
    let proxy = Proxy::start("127.0.0.1:4222").await;
    let mut config = NatsConfig::new(
        format!("nats://127.0.0.1:{}", proxy.port()),
        format!("{}.{{stream}}", ts.prefix),
    );
    config.timeout = Some(Duration::from_secs(1));
    let dest = NatsDestination::new(config).unwrap();
    let before = entry("order-1", 0, "T");
    dest.deliver(&before).await.expect("delivers before the outage");

    proxy.down().await;
    let during = entry("order-1", 1, "T");
    assert_retryable(dest.deliver(&during).await, None);

    proxy.up().await;
    deliver_until_ok(&dest, &during, Duration::from_secs(30)).await;
    let ids: Vec<String> = ts
        .read(2)
        .await
        .iter()
        .map(|m| header(m, "eskit-entry-id").unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![before.id.to_string(), during.id.to_string()]);
    // A publish buffered during the outage and flushed on reconnect is dropped as
    // a duplicate of the retry.
    assert_eq!(ts.count().await, 2);
    ts.cleanup().await;
}
