//! RabbitMQ destination against the real broker on 127.0.0.1:5672 (guest/guest).
//! Each test declares its own exchange and queue (unique names) and deletes them.

mod broker_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eskit::Destination;
use eskit_destinations::{BodyFormat, RabbitMqConfig, RabbitMqDestination};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use broker_common::*;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A topic exchange and a queue bound to it with `binding`.
struct Topology {
    _connection: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
}

impl Topology {
    async fn new(binding: Option<&str>) -> Self {
        let connection = Connection::connect(URL, ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ on 5672");
        let channel = connection.create_channel().await.expect("channel");
        let id = unique();
        let exchange = format!("eskit-test-x-{id}");
        let queue = format!("eskit-test-q-{id}");
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare exchange");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare queue");
        if let Some(binding) = binding {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    binding.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind queue");
        }
        Self {
            _connection: connection,
            channel,
            exchange,
            queue,
        }
    }

    /// Consumes `n` messages from the queue, in queue order.
    async fn read(&self, n: usize) -> Vec<Delivery> {
        let mut consumer = self
            .channel
            .basic_consume(
                self.queue.as_str().into(),
                format!("reader-{}", unique()).into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut out = Vec::new();
        while out.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", out.len()));
            out.push(next.expect("consumer ended").expect("delivery"));
        }
        out
    }

    async fn cleanup(self) {
        self.channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete queue");
        self.channel
            .exchange_delete(self.exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .expect("delete exchange");
    }
}

fn header(d: &Delivery, name: &str) -> Option<String> {
    let headers = d.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8(s.as_bytes().to_vec()).expect("utf-8 header")),
        other => panic!("header {name} is not a long string: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_stream_in_order_with_properties_and_exact_bytes() {
    let topo = Topology::new(Some("orders.#")).await;
    let dest = Arc::new(
        RabbitMqDestination::new(RabbitMqConfig::new(URL, &topo.exchange, "orders.{stream}.{type}")).expect("config"),
    );
    let by_stream = entries(&["order-1", "order.2 x", "customer-7"], 8);
    deliver_like_relay(dest.clone(), &by_stream).await;

    let mut seen: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    for d in topo.read(24).await {
        seen.entry(header(&d, "eskit-stream").expect("eskit-stream"))
            .or_default()
            .push(d);
    }
    assert_eq!(seen.len(), 3);
    for (stream, expected) in &by_stream {
        let got = &seen[stream];
        let got_ids: Vec<String> = got
            .iter()
            .map(|d| d.properties.message_id().clone().unwrap().to_string())
            .collect();
        let want_ids: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(got_ids, want_ids, "per-stream order of {stream}");
        for (d, e) in got.iter().zip(expected) {
            check_envelope(&d.data, e);
            let p = &d.properties;
            assert_eq!(p.delivery_mode(), &Some(2), "persistent");
            assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
            assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some(e.event_type.as_str()));
            assert_eq!(p.timestamp(), &Some(e.created_at.unix_timestamp() as u64));
            for (name, value) in expected_headers(e) {
                assert_eq!(header(d, name), Some(value), "header {name}");
            }
            if e.metadata.is_none() {
                assert_eq!(header(d, "traceparent"), None);
            }
            let key = format!(
                "orders.{}.{}",
                e.stream_id.replace(['.', ' '], "_"),
                e.event_type.replace('.', "_")
            );
            assert_eq!(d.routing_key.as_str(), key);
            assert_eq!(dest.routing_key_for(e), key);
            assert_eq!(d.exchange.as_str(), topo.exchange);
        }
    }
    topo.cleanup().await;
}

#[tokio::test]
async fn an_unroutable_message_is_a_permanent_error_and_the_channel_stays_usable() {
    let topo = Topology::new(Some("good.#")).await;
    let dest = RabbitMqDestination::new(RabbitMqConfig::new(URL, &topo.exchange, "{stream}.x")).unwrap();
    let err = assert_permanent(dest.deliver(&entry("bad", 0, "T")).await);
    assert!(err.message.contains("unroutable"), "{}", err.message);
    assert!(err.message.contains("bad.x"), "{}", err.message);

    let ok = entry("good", 1, "T");
    dest.deliver(&ok).await.expect("a routable message right after");
    let got = topo.read(1).await;
    assert_eq!(
        got[0].properties.message_id().clone().unwrap().as_str(),
        ok.id.to_string()
    );
    topo.cleanup().await;
}

#[tokio::test]
async fn a_missing_exchange_is_permanent_and_the_destination_recovers_once_it_exists() {
    let id = unique();
    let exchange = format!("eskit-test-missing-{id}");
    let dest = RabbitMqDestination::new(RabbitMqConfig::new(URL, &exchange, "k")).unwrap();
    let err = assert_permanent(dest.deliver(&entry("s", 0, "T")).await);
    assert!(
        err.message.contains("NOT_FOUND") || err.message.contains("404"),
        "{}",
        err.message
    );

    // The broker closed the channel; once the exchange exists the same destination
    // opens a new one and delivers.
    let topo = Topology::new(None).await;
    topo.channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    topo.channel
        .queue_bind(
            topo.queue.as_str().into(),
            exchange.as_str().into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let e = entry("s", 1, "T");
    dest.deliver(&e).await.expect("delivers after the exchange was created");
    let got = topo.read(1).await;
    assert_eq!(
        got[0].properties.message_id().clone().unwrap().as_str(),
        e.id.to_string()
    );
    topo.channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    topo.cleanup().await;
}

#[tokio::test]
async fn default_exchange_and_body_payload() {
    let topo = Topology::new(None).await;
    let mut config = RabbitMqConfig::new(URL, "", &topo.queue);
    config.body = BodyFormat::Payload;
    let dest = RabbitMqDestination::new(config).unwrap();
    let e = entry("s", 3, "T");
    dest.deliver(&e).await.expect("deliver");
    let d = topo.read(1).await.remove(0);
    assert_eq!(d.data, e.payload.get().as_bytes());
    assert_eq!(header(&d, "eskit-entry-id"), Some(e.id.to_string()));
    topo.cleanup().await;
}

#[tokio::test]
async fn broker_down_is_retryable_then_a_new_destination_delivers() {
    let topo = Topology::new(Some("#")).await;
    let mut down = RabbitMqConfig::new(
        format!("amqp://guest:pw-not-shown@127.0.0.1:{}/%2f", closed_port()),
        &topo.exchange,
        "{stream}",
    );
    down.timeout = Some(Duration::from_secs(2));
    let down = RabbitMqDestination::new(down).unwrap();
    let e = entry("order-1", 0, "T");
    let err = assert_retryable(down.deliver(&e).await, Some("pw-not-shown"));
    assert!(err.message.contains("guest:***@127.0.0.1"), "{}", err.message);
    assert_retryable(down.deliver(&e).await, Some("pw-not-shown"));
    assert!(!format!("{down:?}").contains("pw-not-shown"));

    let up = RabbitMqDestination::new(RabbitMqConfig::new(URL, &topo.exchange, "{stream}")).unwrap();
    up.deliver(&e).await.expect("delivers once the broker is reachable");
    let d = topo.read(1).await.remove(0);
    assert_eq!(d.properties.message_id().clone().unwrap().as_str(), e.id.to_string());
    topo.cleanup().await;
}

#[tokio::test]
async fn wrong_credentials_are_permanent_and_hidden() {
    let mut config = RabbitMqConfig::new("amqp://guest:wrong-pw-123@127.0.0.1:5672/%2f", "x", "k");
    config.timeout = Some(Duration::from_secs(5));
    let dest = RabbitMqDestination::new(config).unwrap();
    let err = assert_permanent(dest.deliver(&entry("s", 0, "T")).await);
    assert!(!err.message.contains("wrong-pw-123"), "{}", err.message);
}

#[test]
fn invalid_configs_are_rejected() {
    assert!(RabbitMqDestination::new(RabbitMqConfig::new(URL, "x", "a.{bogus}")).is_err());
    assert!(RabbitMqDestination::new(RabbitMqConfig::new("nats://127.0.0.1", "x", "a")).is_err());
    let toml_like = serde_json::json!({"url": URL, "exchange": "x", "routing_key": "a", "routingkey": "typo"});
    assert!(serde_json::from_value::<RabbitMqConfig>(toml_like).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retryable_and_the_same_destination_reconnects() {
    let topo = Topology::new(Some("#")).await;
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let mut config = RabbitMqConfig::new(
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port()),
        &topo.exchange,
        "{stream}",
    );
    config.timeout = Some(Duration::from_secs(2));
    let dest = RabbitMqDestination::new(config).unwrap();
    let before = entry("order-1", 0, "T");
    dest.deliver(&before).await.expect("delivers before the outage");

    proxy.down().await;
    let during = entry("order-1", 1, "T");
    assert_retryable(dest.deliver(&during).await, Some("guest:guest"));

    proxy.up().await;
    deliver_until_ok(&dest, &during, Duration::from_secs(30)).await;
    let ids: Vec<String> = topo
        .read(2)
        .await
        .iter()
        .map(|d| d.properties.message_id().clone().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![before.id.to_string(), during.id.to_string()]);
    topo.cleanup().await;
}
