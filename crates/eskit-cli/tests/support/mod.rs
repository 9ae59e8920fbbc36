//! Shared by the admin tests: a SQLite store, a relay delivering to a closure destination
//! that fails on demand, and the admin service on 127.0.0.1:0, with HTTP helpers.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eskit::StoreOptions;
use eskit::{
    DeliveryError, Destinations, EventData, EventStore, ExpectedVersion, OutboxEntry, OutboxStore, Relay, RelayConfig,
    RelayHandle, RouteFilter,
};
use eskit_postgres::PgStore;
use eskit_sqlite::SqliteStore;
use eskit_testkit::wait_until;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::admin::{AdminOptions, AdminSection, AdminService, RetentionSection};

pub const TOKEN: &str = "test-admin-token-0123456789";
pub const WAIT: Duration = Duration::from_secs(20);

/// A destination that rejects every entry (permanently, with the entry's `error`
/// payload field as the message) while `fail` is set, and records what it accepts.
#[derive(Clone, Default)]
pub struct Switch {
    pub fail: Arc<AtomicBool>,
    pub accepted: Arc<Mutex<Vec<Uuid>>>,
}

impl Switch {
    pub fn failing() -> Self {
        let s = Self::default();
        s.fail.store(true, Ordering::SeqCst);
        s
    }

    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    pub fn accepted(&self, id: Uuid) -> bool {
        self.accepted.lock().unwrap().contains(&id)
    }

    pub fn destinations(&self, name: &str) -> Destinations {
        let this = self.clone();
        let mut d = Destinations::new();
        d.insert(name, move |entry: OutboxEntry| {
            let this = this.clone();
            async move {
                if this.fail.load(Ordering::SeqCst) {
                    let payload: Value = serde_json::from_str(entry.payload.get()).unwrap_or_default();
                    let message = payload["error"].as_str().unwrap_or("HTTP 422: rejected").to_string();
                    return Err(DeliveryError::permanent(message));
                }
                this.accepted.lock().unwrap().push(entry.id);
                Ok(())
            }
        });
        d
    }
}

pub struct Fixture {
    pub destination: String,
    /// The outbox (SQLite, or PostgreSQL with `Setup::postgres`).
    pub store: Arc<dyn OutboxStore>,
    /// The same store's event side.
    pub events: Arc<dyn EventStore>,
    /// The PostgreSQL store, whose schema `stop` drops.
    pub pg: Option<PgStore>,
    pub relay: Option<RelayHandle>,
    pub admin: Option<AdminService>,
    pub base: String,
    pub http: reqwest::Client,
    pub switch: Switch,
    pub _dir: tempfile::TempDir,
}

pub struct Setup {
    pub with_relay: bool,
    pub admin: AdminSection,
    pub retention: RetentionSection,
    pub owner: String,
    /// PostgreSQL (a fresh schema) instead of a SQLite file.
    pub postgres: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            with_relay: true,
            admin: AdminSection {
                bind: Some("127.0.0.1:0".parse().unwrap()),
                token: Some(TOKEN.into()),
                sample_interval: Duration::from_millis(100),
                ..AdminSection::default()
            },
            retention: RetentionSection::default(),
            owner: format!("relay-{}", Uuid::new_v4().simple()),
            postgres: false,
        }
    }
}

impl Fixture {
    /// Each test names its own destination: metrics are process-wide.
    pub async fn start(destination: &str, setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::default()
            .with_outbox(destination, RouteFilter::all())
            .partitions(4);
        let (outbox, events, pg): (Arc<dyn OutboxStore>, Arc<dyn EventStore>, _) = if setup.postgres {
            let url = std::env::var("ESKIT_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
            let store = PgStore::builder(url)
                .schema(format!("t_admin_{}", Uuid::new_v4().simple()))
                .max_connections(5)
                .options(options)
                .open()
                .await
                .unwrap();
            (Arc::new(store.clone()), Arc::new(store.clone()), Some(store))
        } else {
            let url = format!("sqlite://{}", dir.path().join("admin.db").display());
            let store = SqliteStore::builder(url).options(options).open().await.unwrap();
            (Arc::new(store.clone()), Arc::new(store), None)
        };
        let switch = Switch::failing();
        let relay = setup.with_relay.then(|| {
            let config = RelayConfig::default()
                .owner(setup.owner.clone())
                .poll_interval(Duration::from_millis(50))
                .rescan_interval(Duration::from_millis(100))
                .lease_ttl(Duration::from_secs(3));
            Relay::new(outbox.clone(), switch.destinations(destination))
                .config(config)
                .start()
        });
        let mut options = AdminOptions::new(setup.admin, setup.retention, outbox.clone());
        options.token_env = None;
        options.destinations = vec![destination.to_string()];
        options.owner = setup.owner;
        options.circuits = relay.as_ref().map(|r| r.circuits());
        let admin = AdminService::start(options).await.unwrap();
        let base = format!("http://{}", admin.local_addr().unwrap());
        Self {
            destination: destination.to_string(),
            store: outbox,
            events,
            pg,
            relay,
            admin: Some(admin),
            base,
            http: reqwest::Client::new(),
            switch,
            _dir: dir,
        }
    }

    pub async fn append(&self, stream: &str, payload: Value) -> Uuid {
        let event = EventData::json("OrderPlaced", &payload).unwrap();
        self.events
            .append(stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
        // The entry id of a routed event is derived from the event id and destination.
        let entries = self
            .store
            .list_entries(&eskit::EntryFilter {
                destination: Some(self.destination.clone()),
                state: None,
                stream_id: Some(stream.into()),
                after_seq: None,
                limit: Some(1000),
            })
            .await
            .unwrap();
        entries.last().unwrap().id
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, Some(TOKEN), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(TOKEN), Some(body)).await
    }

    pub async fn dead_ids(&self, query: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/api/dlq?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn state_of(&self, stream: &str, id: Uuid) -> Option<String> {
        let (_, body) = self
            .get(&format!(
                "/api/entries?destination={}&stream={stream}",
                self.destination
            ))
            .await;
        body["entries"]
            .as_array()?
            .iter()
            .find(|e| e["id"] == id.to_string())
            .map(|e| e["state"].as_str().unwrap().to_string())
    }

    pub async fn wait_state(&self, stream: &str, id: Uuid, state: &str) {
        let ok = wait_until(WAIT, || async {
            self.state_of(stream, id).await.as_deref() == Some(state)
        })
        .await;
        assert!(
            ok,
            "entry {id} never became {state}: {:?}",
            self.state_of(stream, id).await
        );
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(a) = self.admin.take() {
            a.stop().await;
        }
        if let Some(r) = self.relay.take() {
            r.shutdown().await;
        }
        if let Some(pg) = self.pg.take() {
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", pg.schema().quoted());
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pg.pool()).await.ok();
        }
    }
}
