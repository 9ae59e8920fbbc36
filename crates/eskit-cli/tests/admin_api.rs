//! Admin API tests: the real admin service (router, sampler, retention) on
//! 127.0.0.1:0 over a real SQLite store, with a real relay delivering to a closure
//! destination that fails on demand; driven over HTTP with reqwest.

#[allow(dead_code, unused_imports)]
#[path = "../src/admin/mod.rs"]
mod admin;
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use admin::config::AuthMode;
use admin::{AdminOptions, AdminSection, AdminService, RetentionSection};
use eskit::OutboxStore;
use eskit_sqlite::SqliteStore;
use eskit_testkit::wait_until;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Fixture, Setup, TOKEN, WAIT};

#[tokio::test]
async fn api_requires_the_bearer_token() {
    let f = Fixture::start("auth-hooks", Setup::default()).await;
    let get = reqwest::Method::GET;
    for (token, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong-token-wrong-token-wrong"), StatusCode::UNAUTHORIZED),
        (Some(""), StatusCode::UNAUTHORIZED),
        (Some(&TOKEN[..TOKEN.len() - 1]), StatusCode::UNAUTHORIZED),
        (Some(TOKEN), StatusCode::OK),
    ] {
        for path in ["/api/status", "/api/entries", "/api/dlq"] {
            let (status, body) = f.request(get.clone(), path, token, None).await;
            assert_eq!(status, expected, "{path} with {token:?}: {body}");
        }
    }
    // Mutating endpoints and unknown API paths too.
    let (status, _) = f
        .request(
            reqwest::Method::POST,
            "/api/dlq/replay",
            None,
            Some(json!({"destination": "auth-hooks"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f
        .request(
            reqwest::Method::POST,
            "/api/purge",
            Some("nope"),
            Some(json!({"older_than": "1d"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f.request(get.clone(), "/api/nothing-here", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f.get("/api/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A Basic header with the token as password is not a bearer token.
    let res = f
        .http
        .get(format!("{}/api/status", f.base))
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"eskit\"");

    // The open endpoints.
    let (status, body) = f.request(get.clone(), "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let res = f.http.get(&f.base).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("'sha256-")
    );
    assert!(res.text().await.unwrap().contains("Dead-letter queue"));
    f.stop().await;
}

#[tokio::test]
async fn dead_entry_is_listed_filtered_replayed_and_delivered() {
    let f = Fixture::start("flow-hooks", Setup::default()).await;
    dead_entry_flow(f, "flow-hooks").await;
}

#[tokio::test]
async fn dead_entry_flow_on_postgres() {
    let setup = Setup {
        postgres: true,
        ..Setup::default()
    };
    let f = Fixture::start("pg-flow-hooks", setup).await;
    dead_entry_flow(f, "pg-flow-hooks").await;
}

/// Dead entry → listed and filtered → status → replayed → delivered → metrics.
async fn dead_entry_flow(f: Fixture, name: &str) {
    let id = f
        .append("order-1", json!({"error": "HTTP 422: <b>bad</b> payload"}))
        .await;
    f.wait_state("order-1", id, "dead").await;

    let (status, body) = f.get(&format!("/api/dlq?destination={name}")).await;
    assert_eq!(status, StatusCode::OK);
    let entry = &body["entries"][0];
    assert_eq!(entry["id"], id.to_string());
    assert_eq!(entry["attempts"], 1);
    assert_eq!(entry["last_error"], "HTTP 422: <b>bad</b> payload");
    assert_eq!(entry["stream_id"], "order-1");
    assert!(entry["dead_at"].is_string());
    assert_eq!(body["next_after_seq"], Value::Null);

    // Filters: error text (case-insensitive), time range, destination.
    let dead_at = entry["dead_at"].as_str().unwrap().to_string();
    let enc = |s: &str| s.replace(':', "%3A").replace('+', "%2B");
    assert_eq!(
        f.dead_ids("error=%3CB%3EBAD%3C%2Fb%3E%20PAYLOAD").await,
        vec![id.to_string()]
    );
    assert!(f.dead_ids("error=timeout").await.is_empty());
    assert_eq!(
        f.dead_ids(&format!("dead_from={}", enc(&dead_at))).await,
        vec![id.to_string()]
    );
    assert!(
        f.dead_ids(&format!("dead_to={}", enc(&dead_at))).await.is_empty(),
        "dead_to is exclusive"
    );
    assert!(f.dead_ids("dead_from=2999-01-01T00:00:00Z").await.is_empty());
    assert!(f.dead_ids("destination=someone-else").await.is_empty());
    let (status, body) = f.get("/api/dlq?dead_from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("dead_from"), "{body}");

    // Status: one dead entry, nothing pending, circuit closed, leases held here.
    let ok = wait_until(WAIT, || async {
        let (_, body) = f.get("/api/status").await;
        let d = &body["destinations"][0];
        d["dead"] == 1 && d["partitions_owned"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert!(
        ok,
        "status never showed the dead entry and owned partitions: {:?}",
        f.get("/api/status").await
    );
    let (_, body) = f.get("/api/status").await;
    let d = &body["destinations"][0];
    assert_eq!(d["destination"], name);
    assert_eq!(d["pending"], 0);
    assert_eq!(d["circuit"], "closed");
    assert_eq!(d["disabled"], false);
    assert_eq!(d["configured"], true);

    // Replay it with the destination healthy again: it is delivered.
    f.switch.set_failing(false);
    let (status, body) = f.post("/api/dlq/replay", json!({"id": id, "destination": name})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"replayed": 1})));
    f.wait_state("order-1", id, "delivered").await;
    assert!(f.switch.accepted(id));
    let (_, body) = f.get(&format!("/api/entries?state=delivered&destination={name}")).await;
    let delivered = &body["entries"][0];
    assert_eq!(delivered["id"], id.to_string());
    assert_eq!(delivered["attempts"], 1, "a replay resets the attempts");
    assert!(f.dead_ids(&format!("destination={name}")).await.is_empty());

    // Replaying it again finds nothing.
    let (status, body) = f.post("/api/dlq/replay", json!({"id": id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // /metrics: every documented series, with the values of this story.
    let ok = wait_until(WAIT, || async {
        let m = f.metrics().await;
        m.contains(&format!("eskit_dead_entries{{destination=\"{name}\"}} 0"))
            && m.contains(&format!("eskit_pending_entries{{destination=\"{name}\"}} 0"))
            && m.contains(&format!("eskit_delivered_total{{destination=\"{name}\"}} 1"))
    })
    .await;
    let text = f.metrics().await;
    assert!(ok, "{text}");
    for name in [
        "eskit_delivered_total",
        "eskit_failed_attempts_total",
        "eskit_dead_total",
        "eskit_delivery_latency_seconds_bucket",
        "eskit_delivery_latency_seconds_count",
        "eskit_batch_record_seconds_bucket",
        "eskit_owned_partitions",
        "eskit_lease_takeovers_total",
        "eskit_circuit_state",
        "eskit_parked_streams",
        "eskit_in_flight",
        "eskit_pending_entries",
        "eskit_retrying_entries",
        "eskit_oldest_pending_age_seconds",
        "eskit_dead_entries",
        "eskit_destination_disabled",
        "eskit_database_up",
        "eskit_purged_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name}")) || text.contains(&format!("{name}{{")),
            "{name} missing:\n{text}"
        );
    }
    assert!(
        text.contains(&format!("eskit_failed_attempts_total{{destination=\"{name}\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("eskit_dead_total{{destination=\"{name}\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("eskit_pending_entries{{destination=\"{name}\"}} 0")),
        "{text}"
    );
    assert!(text.contains("eskit_database_up 1"), "{text}");
    assert!(text.contains("# HELP eskit_delivered_total"), "{text}");
    f.stop().await;
}

#[tokio::test]
async fn replay_and_discard_by_filter_and_destination() {
    let f = Fixture::start("bulk-hooks", Setup::default()).await;
    let timeout = f.append("a", json!({"error": "timeout after 5s"})).await;
    let reject1 = f.append("b", json!({"error": "HTTP 400: rejected"})).await;
    let reject2 = f.append("c", json!({"error": "HTTP 400: rejected"})).await;
    for (s, id) in [("a", timeout), ("b", reject1), ("c", reject2)] {
        f.wait_state(s, id, "dead").await;
    }

    // Bad requests change nothing.
    for body in [
        json!({}),
        json!({"id": timeout, "error": "x"}),
        json!({"destination": ""}),
        json!({"dead_from": "not a time"}),
        json!({"everything": true}),
    ] {
        let (status, answer) = f.post("/api/dlq/replay", body.clone()).await;
        assert!(status.is_client_error(), "{body} → {status} {answer}");
    }
    let res = f
        .http
        .post(format!("{}/api/dlq/discard", f.base))
        .bearer_auth(TOKEN)
        .body("{")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    assert_eq!(f.dead_ids("").await.len(), 3);

    // Replay by a filter: only the timeout; it is delivered.
    f.switch.set_failing(false);
    let (status, body) = f
        .post(
            "/api/dlq/replay",
            json!({"error": "TIMEOUT", "destination": "bulk-hooks"}),
        )
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"replayed": 1})));
    f.wait_state("a", timeout, "delivered").await;

    // Discard one by id, then the rest by destination.
    let (status, body) = f.post("/api/dlq/discard", json!({"id": reject1})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"discarded": 1})));
    let (status, body) = f.post("/api/dlq/discard", json!({"id": reject1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = f.post("/api/dlq/discard", json!({"destination": "bulk-hooks"})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"discarded": 1})));
    assert!(f.dead_ids("").await.is_empty());
    assert_eq!(f.state_of("c", reject2).await, None, "discarded entries are deleted");
    assert!(!f.switch.accepted(reject1) && !f.switch.accepted(reject2));

    // Replay all of a destination.
    f.switch.set_failing(true);
    let d1 = f.append("d", json!({})).await;
    let d2 = f.append("e", json!({})).await;
    f.wait_state("d", d1, "dead").await;
    f.wait_state("e", d2, "dead").await;
    f.switch.set_failing(false);
    let (status, body) = f.post("/api/dlq/replay", json!({"destination": "bulk-hooks"})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"replayed": 2})));
    f.wait_state("d", d1, "delivered").await;
    f.wait_state("e", d2, "delivered").await;
    f.stop().await;
}

#[tokio::test]
async fn entries_page_with_after_seq_and_validate_their_query() {
    let f = Fixture::start("page-hooks", Setup::default()).await;
    f.switch.set_failing(false);
    let mut ids = HashSet::new();
    for i in 0..5 {
        ids.insert(f.append(&format!("s{i}"), json!({"n": i})).await.to_string());
    }
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let q = after.map(|a| format!("&after_seq={a}")).unwrap_or_default();
        let (status, body) = f.get(&format!("/api/entries?destination=page-hooks&limit=2{q}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["entries"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match body["next_after_seq"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);

    let (_, body) = f.get("/api/entries?stream=s3").await;
    assert_eq!(body["entries"].as_array().unwrap().len(), 1);
    for bad in ["limit=0", "limit=100000", "state=lost", "after_seq=x", "colour=blue"] {
        let (status, body) = f.get(&format!("/api/entries?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    f.stop().await;
}

#[tokio::test]
async fn purge_keeps_dead_entries_and_destinations_can_be_disabled_and_enabled() {
    let f = Fixture::start("purge-hooks", Setup::default()).await;
    let dead = f.append("x", json!({})).await;
    f.wait_state("x", dead, "dead").await;
    f.switch.set_failing(false);
    let delivered = f.append("y", json!({})).await;
    f.wait_state("y", delivered, "delivered").await;

    let (status, body) = f.post("/api/purge", json!({"older_than": "1h"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["purged"], 0, "nothing was delivered an hour ago");
    for bad in [
        json!({"older_than": "soon"}),
        json!({}),
        json!({"older_than": "1d", "x": 1}),
    ] {
        let (status, body) = f.post("/api/purge", bad.clone()).await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
    }
    let (status, body) = f.post("/api/purge", json!({"older_than": "0s"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["purged"], 1);
    assert_eq!(f.state_of("y", delivered).await, None);
    assert_eq!(
        f.state_of("x", dead).await.as_deref(),
        Some("dead"),
        "dead entries are never purged"
    );

    // Disable through the API (entries then stay pending), enable again (delivered).
    let (status, body) = f
        .post(
            "/api/destinations/purge-hooks/disable",
            json!({"reason": "maintenance <window>"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = f.post("/api/destinations/no-such-hooks/disable", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, body) = f.get("/api/status").await;
    assert_eq!(body["destinations"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["destinations"][0]["disabled"], true);
    assert_eq!(body["destinations"][0]["disabled_reason"], "maintenance <window>");
    // Once the relay has seen the switch, a new entry waits.
    let ok = wait_until(WAIT, || async {
        f.metrics()
            .await
            .contains("eskit_destination_disabled{destination=\"purge-hooks\"} 1")
    })
    .await;
    assert!(ok);
    let waiting = f.append("z", json!({})).await;
    let (status, body) = f.post("/api/destinations/purge-hooks/enable", json!({})).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({"destination": "purge-hooks", "enabled": true}))
    );
    f.wait_state("z", waiting, "delivered").await;
    let (_, body) = f.post("/api/destinations/purge-hooks/enable", json!({})).await;
    assert_eq!(body["enabled"], false, "it was not disabled any more");
    let (_, body) = f.get("/api/status").await;
    assert_eq!(body["destinations"][0]["disabled"], false);
    f.stop().await;
}

#[tokio::test]
async fn retention_zero_deletes_delivered_entries_but_never_dead_ones() {
    let setup = Setup {
        retention: RetentionSection {
            delivered: Duration::ZERO,
            interval: Some(Duration::from_millis(50)),
        },
        ..Setup::default()
    };
    let f = Fixture::start("retention-hooks", setup).await;
    let dead = f.append("r1", json!({})).await;
    f.wait_state("r1", dead, "dead").await;
    f.switch.set_failing(false);
    let gone = f.append("r2", json!({})).await;
    let ok = wait_until(WAIT, || async {
        f.switch.accepted(gone) && f.state_of("r2", gone).await.is_none()
    })
    .await;
    assert!(
        ok,
        "the delivered entry was not purged: {:?}",
        f.state_of("r2", gone).await
    );
    assert_eq!(f.state_of("r1", dead).await.as_deref(), Some("dead"));
    let ok = wait_until(WAIT, || async { f.metrics().await.contains("eskit_purged_total ") }).await;
    assert!(ok, "{}", f.metrics().await);
    f.stop().await;
}

#[tokio::test]
async fn readyz_needs_the_database_and_a_lease() {
    // With a relay: ready once it holds its leases.
    let f = Fixture::start("ready-hooks", Setup::default()).await;
    let ok = wait_until(WAIT, || async {
        let (status, _) = f.request(reqwest::Method::GET, "/readyz", None, None).await;
        status == StatusCode::OK
    })
    .await;
    assert!(ok, "{:?}", f.request(reqwest::Method::GET, "/readyz", None, None).await);
    f.stop().await;

    // Without a relay, every partition leased by someone else: not ready.
    let f = Fixture::start(
        "busy-hooks",
        Setup {
            with_relay: false,
            ..Setup::default()
        },
    )
    .await;
    let (status, body) = f.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "free partitions can be obtained: {body}");
    for p in 0..f.store.partitions() {
        let lease = f
            .store
            .try_acquire_lease("busy-hooks", p, "another-relay", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(lease.is_some());
    }
    let (status, body) = f.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["leases"][0]["held_by_others"], 4);
    f.stop().await;
}

#[tokio::test]
async fn auth_configuration_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::builder(format!("sqlite://{}", dir.path().join("a.db").display()))
        .destination("d")
        .open()
        .await
        .unwrap();
    let outbox: Arc<dyn OutboxStore> = Arc::new(store);
    let start = |admin: AdminSection, env: Option<&str>| {
        let mut options = AdminOptions::new(admin, RetentionSection::default(), outbox.clone());
        options.token_env = env.map(str::to_string);
        AdminService::start(options)
    };
    let loopback = AdminSection {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        ..AdminSection::default()
    };

    // No auth is refused on a non-loopback bind, and the error names the key.
    let open = AdminSection {
        bind: Some("0.0.0.0:0".parse().unwrap()),
        auth: AuthMode::NoneOnLoopback,
        ..AdminSection::default()
    };
    let err = start(open, None).await.unwrap_err().to_string();
    assert!(err.contains("admin.auth"), "{err}");

    // A short token is refused without being echoed.
    let short = AdminSection {
        token: Some("hunter2".into()),
        ..loopback.clone()
    };
    let err = start(short, None).await.unwrap_err().to_string();
    assert!(err.contains("admin.token") && !err.contains("hunter2"), "{err}");

    // The environment wins over the file.
    let both = AdminSection {
        token: Some("file-token-file-token-file".into()),
        ..loopback.clone()
    };
    let service = start(both, Some("env-token-env-token-env-token")).await.unwrap();
    let base = format!("http://{}", service.local_addr().unwrap());
    let http = reqwest::Client::new();
    let status = |token: &'static str| {
        let req = http.get(format!("{base}/api/status")).bearer_auth(token);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(status("env-token-env-token-env-token").await, StatusCode::OK);
    assert_eq!(status("file-token-file-token-file").await, StatusCode::UNAUTHORIZED);
    service.stop().await;

    // No token configured: the API refuses everything and says why.
    let service = start(loopback.clone(), None).await.unwrap();
    let res = reqwest::get(format!("http://{}/api/status", service.local_addr().unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains("no admin token is configured"));
    service.stop().await;

    // Explicit opt-out on loopback: no token needed.
    let none = AdminSection {
        auth: AuthMode::NoneOnLoopback,
        ..loopback.clone()
    };
    let service = start(none, None).await.unwrap();
    let res = reqwest::get(format!("http://{}/api/status", service.local_addr().unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    service.stop().await;

    // An address that is set must be free.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = AdminSection {
        bind: Some(taken.local_addr().unwrap()),
        ..loopback.clone()
    };
    let err = start(busy, None).await.unwrap_err().to_string();
    assert!(err.contains("admin.bind"), "{err}");

    // Disabled: nothing listens.
    let off = AdminSection {
        enabled: false,
        ..loopback
    };
    let service = start(off, None).await.unwrap();
    assert_eq!(service.local_addr(), None);
    service.stop().await;
}
