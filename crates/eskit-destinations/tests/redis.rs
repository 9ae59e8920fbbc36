//! Redis Streams destination against the real server on 127.0.0.1:6379. Each test
//! uses its own key prefix and deletes its keys.

mod broker_common;

use std::sync::Arc;
use std::time::Duration;

use eskit::{Destination, OutboxEntry};
use eskit_destinations::{BodyFormat, RedisConfig, RedisDestination};
use redis::aio::MultiplexedConnection;

use broker_common::*;

const URL: &str = "redis://127.0.0.1:6379";

type Range = Vec<(String, Vec<Vec<u8>>)>;

async fn conn() -> MultiplexedConnection {
    redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis on 6379")
}

async fn xrange(c: &mut MultiplexedConnection, key: &str) -> Range {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(c)
        .await
        .expect("XRANGE")
}

async fn del(c: &mut MultiplexedConnection, keys: &[String]) {
    let _: i64 = redis::cmd("DEL").arg(keys).query_async(c).await.expect("DEL");
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf-8 field")
}

/// The exact field list of an entry's stream record.
fn check_fields(fields: &[Vec<u8>], e: &OutboxEntry, body: BodyFormat) {
    let names: Vec<&str> = fields.iter().step_by(2).map(|f| text(f)).collect();
    let mut want = vec!["id", "stream", "type", "created_at", "payload"];
    if e.metadata.is_some() {
        want.push("traceparent");
    }
    assert_eq!(names, want);
    let value = |name: &str| {
        let i = names.iter().position(|n| *n == name).unwrap();
        fields[2 * i + 1].clone()
    };
    assert_eq!(text(&value("id")), e.id.to_string());
    assert_eq!(text(&value("stream")), e.stream_id);
    assert_eq!(text(&value("type")), e.event_type);
    let created = expected_headers(e)
        .into_iter()
        .find(|(n, _)| *n == "eskit-created-at")
        .unwrap()
        .1;
    assert_eq!(text(&value("created_at")), created);
    match body {
        BodyFormat::Envelope => check_envelope(&value("payload"), e),
        BodyFormat::Payload => assert_eq!(value("payload"), e.payload.get().as_bytes()),
    }
    if e.metadata.is_some() {
        assert_eq!(text(&value("traceparent")), TRACEPARENT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_stream_in_order_with_all_fields_and_exact_bytes() {
    let prefix = format!("eskit-test:{}", unique());
    let dest = Arc::new(RedisDestination::new(RedisConfig::new(URL, format!("{prefix}:{{stream}}"))).unwrap());
    let by_stream = entries(&["order-1", "order.2 x", "customer-7"], 8);
    deliver_like_relay(dest.clone(), &by_stream).await;

    let mut c = conn().await;
    let mut keys = Vec::new();
    for (stream, expected) in &by_stream {
        // Redis keys are binary-safe: the stream id is used verbatim.
        let key = format!("{prefix}:{stream}");
        assert_eq!(dest.stream_for(&expected[0]), key);
        let records = xrange(&mut c, &key).await;
        assert_eq!(records.len(), expected.len(), "{key}");
        for ((_, fields), e) in records.iter().zip(expected) {
            check_fields(fields, e, BodyFormat::Envelope);
        }
        keys.push(key);
    }
    del(&mut c, &keys).await;
}

#[tokio::test]
async fn body_payload_and_type_template() {
    let prefix = format!("eskit-test:{}", unique());
    let mut config = RedisConfig::new(URL, format!("{prefix}:{{type}}"));
    config.body = BodyFormat::Payload;
    let dest = RedisDestination::new(config).unwrap();
    let e = entry("s", 2, "Order.Placed");
    dest.deliver(&e).await.expect("deliver");
    let mut c = conn().await;
    let key = format!("{prefix}:Order.Placed");
    let records = xrange(&mut c, &key).await;
    assert_eq!(records.len(), 1);
    check_fields(&records[0].1, &e, BodyFormat::Payload);
    del(&mut c, &[key]).await;
}

#[tokio::test]
async fn maxlen_trims_approximately() {
    let key = format!("eskit-test:{}:trim", unique());
    let mut config = RedisConfig::new(URL, &key);
    config.maxlen = Some(10);
    let dest = RedisDestination::new(config).unwrap();
    let total = 350;
    let mut last = None;
    for n in 0..total {
        let e = entry("s", n, "T");
        dest.deliver(&e).await.expect("deliver");
        last = Some(e);
    }
    let mut c = conn().await;
    let len: usize = redis::cmd("XLEN").arg(&key).query_async(&mut c).await.unwrap();
    assert!(
        len >= 10 && len < total,
        "XLEN {len} after {total} appends with MAXLEN ~ 10"
    );
    let records = xrange(&mut c, &key).await;
    let newest = &records.last().unwrap().1;
    assert_eq!(
        text(&newest[1]),
        last.unwrap().id.to_string(),
        "the newest entry is kept"
    );
    del(&mut c, &[key]).await;
}

#[tokio::test]
async fn a_key_of_the_wrong_type_is_a_permanent_error() {
    let key = format!("eskit-test:{}:string", unique());
    let mut c = conn().await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("not a stream")
        .query_async(&mut c)
        .await
        .unwrap();
    let dest = RedisDestination::new(RedisConfig::new(URL, &key)).unwrap();
    let err = assert_permanent(dest.deliver(&entry("s", 0, "T")).await);
    assert!(err.message.contains("WRONGTYPE"), "{}", err.message);
    del(&mut c, &[key]).await;
}

#[tokio::test]
async fn broker_down_is_retryable_then_a_new_destination_delivers() {
    let key = format!("eskit-test:{}:down", unique());
    let mut down = RedisConfig::new(format!("redis://:pw-not-shown@127.0.0.1:{}", closed_port()), &key);
    down.timeout = Some(Duration::from_secs(2));
    let down = RedisDestination::new(down).unwrap();
    let e = entry("s", 0, "T");
    let err = assert_retryable(down.deliver(&e).await, Some("pw-not-shown"));
    assert!(err.message.contains(":***@127.0.0.1"), "{}", err.message);
    assert_retryable(down.deliver(&e).await, Some("pw-not-shown"));
    assert!(!format!("{down:?}").contains("pw-not-shown"));

    let up = RedisDestination::new(RedisConfig::new(URL, &key)).unwrap();
    up.deliver(&e).await.expect("delivers once the server is reachable");
    let mut c = conn().await;
    let records = xrange(&mut c, &key).await;
    assert_eq!(records.len(), 1);
    check_fields(&records[0].1, &e, BodyFormat::Envelope);
    del(&mut c, &[key]).await;
}

#[test]
fn invalid_configs_are_rejected() {
    assert!(RedisDestination::new(RedisConfig::new(URL, "a:{bogus}")).is_err());
    assert!(RedisDestination::new(RedisConfig::new("amqp://127.0.0.1", "a")).is_err());
    let toml_like = serde_json::json!({"url": URL, "stream": "a", "max_len": 3});
    assert!(serde_json::from_value::<RedisConfig>(toml_like).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retryable_and_the_same_destination_reconnects() {
    let key = format!("eskit-test:{}:outage", unique());
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut config = RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.port()), &key);
    config.timeout = Some(Duration::from_secs(2));
    let dest = RedisDestination::new(config).unwrap();
    let before = entry("order-1", 0, "T");
    dest.deliver(&before).await.expect("delivers before the outage");

    proxy.down().await;
    let during = entry("order-1", 1, "T");
    assert_retryable(dest.deliver(&during).await, None);

    proxy.up().await;
    deliver_until_ok(&dest, &during, Duration::from_secs(30)).await;
    let mut c = conn().await;
    let records = xrange(&mut c, &key).await;
    let ids: Vec<&str> = records.iter().map(|(_, f)| text(&f[1])).collect();
    assert_eq!(ids, vec![before.id.to_string(), during.id.to_string()]);
    del(&mut c, &[key]).await;
}
