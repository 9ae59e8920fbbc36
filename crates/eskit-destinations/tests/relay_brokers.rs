//! End to end: events appended to a SQLite store are routed to three outbox
//! destinations (NATS JetStream, RabbitMQ, Redis Streams) and delivered by the real
//! core relay through a broker outage; every broker ends up with every entry, in
//! per-stream order, with the exact envelope bytes.

mod broker_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use eskit::{
    BreakerConfig, DestinationPolicy, Destinations, EntryFilter, EntryState, EventData, EventStore, ExpectedVersion,
    OutboxEntry, OutboxStore, Relay, RelayConfig, RetryPolicy, RouteFilter, StoreOptions,
};
use eskit_destinations::{
    NatsConfig, NatsDestination, RabbitMqConfig, RabbitMqDestination, RedisConfig, RedisDestination,
};
use eskit_sqlite::SqliteStore;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use broker_common::*;

const STREAMS: usize = 4;
const PER_STREAM: usize = 6;

async fn append_round(store: &SqliteStore, round: usize) {
    for s in 0..STREAMS {
        let payload = serde_json::json!({"stream": s, "round": round, "note": "é ✓"});
        store
            .append(
                &format!("order-{s}"),
                ExpectedVersion::Exact(round as u64),
                vec![EventData::json("OrderTicked", &payload).unwrap()],
            )
            .await
            .unwrap();
    }
}

async fn status(store: &SqliteStore) -> HashMap<String, (u64, u64, u64)> {
    store
        .status()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.destination, (s.pending, s.delivered, s.dead)))
        .collect()
}

/// Per stream, the distinct entry ids in order of first appearance.
fn first_seen(messages: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut seen = HashSet::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (stream, id) in messages {
        if seen.insert(id.clone()) {
            out.entry(stream.clone()).or_default().push(id.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_delivers_to_all_three_brokers_through_an_outage() {
    let id = unique();

    // Broker objects, each test-private.
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.expect("NATS");
    let js = jetstream::new(nats);
    let js_stream = format!("ESKIT_E2E_{id}");
    let subject_prefix = format!("eskit-e2e.{id}");
    js.create_stream(stream::Config {
        name: js_stream.clone(),
        subjects: vec![format!("{subject_prefix}.>")],
        storage: stream::StorageType::Memory,
        max_age: Duration::from_secs(900),
        ..Default::default()
    })
    .await
    .unwrap();
    let amqp = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let ch = amqp.create_channel().await.unwrap();
    let exchange = format!("eskit-e2e-x-{id}");
    let queue = format!("eskit-e2e-q-{id}");
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let redis_prefix = format!("eskit-e2e:{id}");

    // Destinations behind proxies, so the test can take "the brokers" down.
    let nats_proxy = Proxy::start("127.0.0.1:4222").await;
    let amqp_proxy = Proxy::start("127.0.0.1:5672").await;
    let redis_proxy = Proxy::start("127.0.0.1:6379").await;
    let mut nats_config = NatsConfig::new(
        format!("nats://127.0.0.1:{}", nats_proxy.port()),
        format!("{subject_prefix}.{{stream}}"),
    );
    nats_config.timeout = Some(Duration::from_secs(1));
    let mut amqp_config = RabbitMqConfig::new(
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp_proxy.port()),
        &exchange,
        "e2e.{stream}.{type}",
    );
    amqp_config.timeout = Some(Duration::from_secs(1));
    let mut redis_config = RedisConfig::new(
        format!("redis://127.0.0.1:{}", redis_proxy.port()),
        format!("{redis_prefix}:{{stream}}"),
    );
    redis_config.timeout = Some(Duration::from_secs(1));
    let mut destinations = Destinations::new();
    destinations.insert("nats", NatsDestination::new(nats_config).unwrap());
    destinations.insert("rabbitmq", RabbitMqDestination::new(amqp_config).unwrap());
    destinations.insert("redis", RedisDestination::new(redis_config).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::builder(dir.path().join("e2e.db").to_string_lossy().into_owned())
        .options(
            StoreOptions::default()
                .with_outbox("nats", RouteFilter::all())
                .with_outbox("rabbitmq", RouteFilter::all())
                .with_outbox("redis", RouteFilter::all())
                .partitions(4),
        )
        .open()
        .await
        .unwrap();
    let policy = DestinationPolicy::default().breaker(BreakerConfig {
        failure_threshold: 5,
        open_for: Duration::from_millis(200),
    });
    let relay = Relay::new(Arc::new(store.clone()), destinations)
        .policy("nats", policy.clone())
        .policy("rabbitmq", policy.clone())
        .policy("redis", policy)
        .config(
            RelayConfig::default()
                .poll_interval(Duration::from_millis(50))
                .rescan_interval(Duration::from_millis(200))
                .retry(
                    RetryPolicy::default()
                        .initial(Duration::from_millis(50))
                        .max(Duration::from_millis(300))
                        .max_attempts(10_000),
                ),
        )
        .start();

    // Half the events while the brokers are up.
    for round in 0..PER_STREAM / 2 {
        append_round(&store, round).await;
    }
    let half = (STREAMS * PER_STREAM / 2) as u64;
    eventually(Duration::from_secs(30), "first half delivered everywhere", || async {
        let s = status(&store).await;
        ["nats", "rabbitmq", "redis"]
            .iter()
            .all(|d| s.get(*d).is_some_and(|x| x.1 == half))
            .then_some(())
    })
    .await;

    // Outage: the rest is appended while every broker is unreachable; the relay
    // retries (nothing is dead-lettered) and delivers once they are back.
    nats_proxy.down().await;
    amqp_proxy.down().await;
    redis_proxy.down().await;
    for round in PER_STREAM / 2..PER_STREAM {
        append_round(&store, round).await;
    }
    eventually(
        Duration::from_secs(30),
        "failed attempts on every destination",
        || async {
            let s = store.status().await.unwrap();
            (s.len() == 3 && s.iter().all(|d| d.retrying > 0)).then_some(())
        },
    )
    .await;
    nats_proxy.up().await;
    amqp_proxy.up().await;
    redis_proxy.up().await;
    let total = (STREAMS * PER_STREAM) as u64;
    eventually(Duration::from_secs(60), "everything delivered everywhere", || async {
        let s = status(&store).await;
        ["nats", "rabbitmq", "redis"]
            .iter()
            .all(|d| s.get(*d) == Some(&(0, total, 0)))
            .then_some(())
    })
    .await;
    relay.shutdown().await;

    // What the store says was delivered, per destination and stream, in version order.
    let mut expected: HashMap<String, BTreeMap<String, Vec<OutboxEntry>>> = HashMap::new();
    for e in store
        .list_entries(&EntryFilter {
            limit: Some(1000),
            state: Some(EntryState::Delivered),
            ..EntryFilter::default()
        })
        .await
        .unwrap()
    {
        expected
            .entry(e.destination.clone())
            .or_default()
            .entry(e.stream_id.clone())
            .or_default()
            .push(e);
    }
    for streams in expected.values_mut() {
        for list in streams.values_mut() {
            list.sort_by_key(|e| e.stream_version);
        }
    }
    let check = |destination: &str, got: &[(String, String)], bodies: &HashMap<String, Vec<u8>>| {
        let want = &expected[destination];
        let order = first_seen(got);
        assert_eq!(order.len(), STREAMS, "{destination}");
        for (stream, entries) in want {
            let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
            assert_eq!(order[stream], ids, "{destination}: order of {stream}");
            for e in entries {
                check_envelope(&bodies[&e.id.to_string()], e);
            }
        }
    };

    // NATS: read the JetStream stream with a pull consumer.
    let s = js.get_stream(&js_stream).await.unwrap();
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = c.messages().await.unwrap();
    let (mut got, mut bodies) = (Vec::new(), HashMap::new());
    while bodies.len() < total as usize {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("NATS messages")
            .unwrap()
            .unwrap()
            .message;
        let headers = m.headers.as_ref().unwrap();
        let id = headers.get("eskit-entry-id").unwrap().as_str().to_string();
        got.push((headers.get("eskit-stream").unwrap().as_str().to_string(), id.clone()));
        bodies.insert(id, m.payload.to_vec());
    }
    check("nats", &got, &bodies);

    // RabbitMQ: consume the bound queue.
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "e2e".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (mut got, mut bodies) = (Vec::new(), HashMap::new());
    while bodies.len() < total as usize {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("RabbitMQ messages")
            .unwrap()
            .unwrap();
        let id = d.properties.message_id().clone().unwrap().to_string();
        let stream = d.routing_key.as_str().split('.').nth(1).unwrap().to_string();
        got.push((stream, id.clone()));
        bodies.insert(id, d.data);
    }
    check("rabbitmq", &got, &bodies);

    // Redis: XRANGE every stream key.
    let mut r = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (mut got, mut bodies) = (Vec::new(), HashMap::new());
    let mut keys = Vec::new();
    for s in 0..STREAMS {
        let key = format!("{redis_prefix}:order-{s}");
        let records: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut r)
            .await
            .unwrap();
        for (_, fields) in records {
            let id = String::from_utf8(fields[1].clone()).unwrap();
            got.push((format!("order-{s}"), id.clone()));
            bodies.insert(id, fields[9].clone());
        }
        keys.push(key);
    }
    check("redis", &got, &bodies);

    // Cleanup.
    let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut r).await.unwrap();
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    js.delete_stream(&js_stream).await.unwrap();
}
