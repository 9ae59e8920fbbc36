//! Helpers shared by the PostgreSQL tests: an isolated schema per test, a recording
//! destination, relay options with short timings, and polling with a deadline.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eskit::{
    DeliveryError, Destination, Destinations, EntryFilter, OutboxEntry, OutboxStore, Relay, RelayConfig, RelayHandle,
    RetryPolicy, RouteFilter, StoreOptions,
};
use eskit_postgres::{PgStore, PgStoreBuilder};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The test server (override with `ESKIT_TEST_PG_URL`).
pub fn url() -> String {
    std::env::var("ESKIT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A schema of its own for one test (`t_<uuid>`), dropped (best effort) when the guard
/// goes out of scope, also after a panic.
pub struct TestSchema {
    pub name: String,
}

impl TestSchema {
    pub fn new() -> Self {
        init_tracing();
        Self {
            name: format!("t_{}", Uuid::new_v4().simple()),
        }
    }

    /// A builder on this schema with small pools.
    pub fn builder(&self) -> PgStoreBuilder {
        PgStore::builder(url()).schema(&self.name).max_connections(5)
    }

    /// A store on this schema with the given options.
    pub async fn open(&self, options: StoreOptions) -> PgStore {
        self.builder().options(options).open().await.expect("open store")
    }

    /// A plain connection (as another session would have).
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&url()).await.expect("connect")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A thread of its own: this may run inside (or after) the test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url()).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Options with one route `hook` for every event.
pub fn hook_options(partitions: u32) -> StoreOptions {
    StoreOptions::default()
        .with_outbox("hook", RouteFilter::all())
        .partitions(partitions)
}

/// One attempt a [`Sink`] saw.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: Uuid,
    pub stream_id: String,
    pub seq: i64,
    pub stream_version: Option<u64>,
    pub event_type: String,
    pub success: bool,
}

#[derive(Default)]
struct SinkState {
    attempts: Vec<Attempt>,
    fail_rate: f64,
    failing_streams: HashSet<String>,
}

/// An in-process destination that records every attempt and fails on command.
#[derive(Clone, Default)]
pub struct Sink {
    state: Arc<Mutex<SinkState>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Sink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails a share of attempts (retryable).
    pub fn with_fail_rate(self, rate: f64) -> Self {
        self.state.lock().unwrap().fail_rate = rate;
        self
    }

    /// Every attempt for this stream fails (retryable) until cleared.
    pub fn fail_stream(&self, stream: &str) {
        self.state.lock().unwrap().failing_streams.insert(stream.to_string());
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.state.lock().unwrap().attempts.clone()
    }

    /// Ids accepted at least once, in the order of their first acceptance.
    pub fn delivered(&self) -> Vec<Uuid> {
        let mut seen = HashSet::new();
        self.attempts()
            .into_iter()
            .filter(|a| a.success && seen.insert(a.id))
            .map(|a| a.id)
            .collect()
    }

    pub fn delivered_set(&self) -> HashSet<Uuid> {
        self.delivered().into_iter().collect()
    }

    /// Waits until `ids` were all delivered, or `within` passes.
    pub async fn wait_delivered(&self, ids: &[Uuid], within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let done = self.delivered_set();
            if ids.iter().all(|id| done.contains(id)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let done = self.delivered_set();
                return ids.iter().all(|id| done.contains(id));
            }
        }
    }

    /// First deliveries per stream, in arrival order.
    pub fn first_deliveries_by_stream(&self) -> HashMap<String, Vec<Attempt>> {
        let mut seen = HashSet::new();
        let mut out: HashMap<String, Vec<Attempt>> = HashMap::new();
        for a in self.attempts() {
            if a.success && seen.insert(a.id) {
                out.entry(a.stream_id.clone()).or_default().push(a);
            }
        }
        out
    }
}

#[async_trait::async_trait]
impl Destination for Sink {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let fail = {
            let state = self.state.lock().unwrap();
            state.failing_streams.contains(&entry.stream_id)
                || (state.fail_rate > 0.0 && rand::random::<f64>() < state.fail_rate)
        };
        // A little real asynchrony, like a network call.
        tokio::task::yield_now().await;
        self.state.lock().unwrap().attempts.push(Attempt {
            id: entry.id,
            stream_id: entry.stream_id.clone(),
            seq: entry.seq,
            stream_version: entry.stream_version,
            event_type: entry.event_type.clone(),
            success: !fail,
        });
        self.changed.notify_waiters();
        if fail {
            Err(DeliveryError::retryable("sink: injected failure"))
        } else {
            Ok(())
        }
    }
}

/// Relay options with short timings and fast retries.
pub fn relay_config(owner: &str) -> RelayConfig {
    RelayConfig::default()
        .owner(owner)
        .batch_size(100)
        .concurrency(16)
        .poll_interval(Duration::from_millis(50))
        .lease_ttl(Duration::from_secs(2))
        .rescan_interval(Duration::from_millis(200))
        .shutdown_grace(Duration::from_secs(5))
        .retry(
            RetryPolicy::default()
                .initial(Duration::from_millis(5))
                .max(Duration::from_millis(50))
                .jitter(0.2)
                .max_attempts(1000),
        )
}

/// Starts a relay over `store` delivering `hook` to `sink`.
pub fn start_relay(store: &PgStore, sink: &Sink, config: RelayConfig) -> RelayHandle {
    let mut destinations = Destinations::new();
    destinations.insert("hook", sink.clone());
    let store: Arc<dyn OutboxStore> = Arc::new(store.clone());
    Relay::new(store, destinations).config(config).start()
}

/// Every entry of a destination, oldest first.
pub async fn all_entries(store: &PgStore, destination: &str) -> Vec<OutboxEntry> {
    let mut out = Vec::new();
    let mut filter = EntryFilter {
        destination: Some(destination.to_string()),
        limit: Some(1000),
        ..EntryFilter::default()
    };
    loop {
        let page = store.list_entries(&filter).await.expect("list entries");
        let n = page.len();
        if let Some(last) = page.last() {
            filter.after_seq = Some(last.seq);
        }
        out.extend(page);
        if n < 1000 {
            return out;
        }
    }
}

/// Polls `check` every 10 ms until it holds or `within` passes.
pub async fn wait_until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
