//! The relay through the real webhook destination to a real loopback HTTP receiver.

use std::collections::HashMap;
use std::time::Duration;

use eskit::{EntryState, EventStore, ExpectedVersion, RouteFilter, StoreOptions};
use eskit_destinations::webhook::{WebhookConfig, WebhookDestination};
use serde_json::json;

use super::support::{entries_of, ev, relay_config, report, settle, start_relay};
use crate::Harness;
use crate::receiver::{Answer, FaultPlan, Receiver, ReceiverConfig, SignatureCheck};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// 200 events over 20 streams plus a stream the receiver rejects with 400, delivered
/// by the webhook destination to a loopback receiver that verifies signatures and
/// injects 503s, 429s with `Retry-After` and timeouts: every entry is delivered
/// (signed, with the right envelope) or, for the rejected stream, dead-lettered; no
/// loss, no phantom, no per-stream reordering.
pub async fn webhook_relay_in_order_under_faults<H: Harness>(h: &H) {
    let receiver = Receiver::start(
        ReceiverConfig::new().secret(SECRET).faults(
            FaultPlan::new(21)
                .server_errors(0.15)
                .too_many_requests(0.05, Some(Duration::from_secs(1)))
                .timeouts(0.03, Duration::from_secs(60))
                .failing_stream("order-poison", 400),
        ),
    )
    .await
    .expect("start the receiver");
    let webhook = WebhookDestination::new(
        WebhookConfig::new(receiver.url(), SECRET)
            .timeout(Duration::from_millis(500))
            .allow_cidr("127.0.0.0/8".parse().expect("cidr")),
    )
    .expect("webhook destination");
    let store = h
        .open(
            StoreOptions::default()
                .with_outbox("hook", RouteFilter::all())
                .partitions(4),
        )
        .await;
    let relay = start_relay(&store, "hook", webhook, relay_config("relay-a"));
    super::relay::append_streams(std::slice::from_ref(&store), "order-", 20, 10, 4).await;
    store
        .append(
            "order-poison",
            ExpectedVersion::NoStream,
            vec![ev("Step", 0), ev("Step", 1), ev("Step", 2)],
        )
        .await
        .expect("append");
    settle(&*store, "hook", "webhook").await;
    relay.shutdown().await;

    let report = report(&*store, "hook", receiver.observed()).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.committed, report.delivered, report.dead),
        (203, 200, 3),
        "{report}"
    );
    let counts = receiver.counts();
    assert_eq!(counts.bad_signatures, 0, "every request is signed: {counts:?}");
    assert!(counts.rejected > 3, "faults were injected: {counts:?}");

    let entries: HashMap<_, _> = entries_of(&*store, "hook")
        .await
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    for d in receiver.deliveries() {
        assert_eq!(d.signature, SignatureCheck::Valid, "{d:?}");
        let body = d.body.as_ref().expect("the envelope parses");
        let entry = entries.get(&body.id).expect("a committed entry");
        assert_eq!(
            d.webhook_id.as_deref(),
            Some(body.id.to_string().as_str()),
            "webhook-id is the entry id"
        );
        assert_eq!(body.stream, entry.stream_id);
        assert_eq!(body.event_type, entry.event_type);
        let n = entry.stream_version.expect("route entry") - 1;
        assert_eq!(body.payload, json!({ "n": n }));
        assert!(
            body.created_at().is_some(),
            "created_at is RFC 3339: {:?}",
            body.created_at
        );
        if body.stream == "order-poison" {
            assert_eq!(d.answer, Answer::FailingStream(400));
            assert_eq!(entry.state, EntryState::Dead);
            assert_eq!(entry.attempts, 1, "a 400 dead-letters at once");
        }
    }
    receiver.shutdown().await;
}
