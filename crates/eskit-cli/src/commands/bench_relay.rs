//! Relay throughput and latency: the eskit relay draining the outbox to a null
//! destination or a loopback webhook, beside a plain-SQL select-and-mark loop over a
//! plain table doing the same deliveries; commit → delivery latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eskit::{
    BreakerConfig, DeliveryError, Destination, DestinationPolicy, Destinations, EntryFilter, EntryState, EventData,
    ExpectedVersion, OutboxEntry, OutboxStore, RawValue, Relay, RelayConfig,
};
use eskit_destinations::webhook::{WebhookConfig, WebhookDestination};
use hdrhistogram::Histogram;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::bench_append::{Budget, Rate, payload};
use super::bench_raw::{QueuedRow, RawDb, Table};
use crate::error::{CliError, CliResult};
use crate::store::{OpenStore, PendingAppend};

/// Entries read per batch, by the relay and by the raw loop.
pub const BATCH: u32 = 200;
/// Deliveries at once per partition, by the relay and by the raw loop.
pub const CONCURRENCY: usize = 32;

/// Accepts everything at once.
pub struct NullDestination;

#[async_trait::async_trait]
impl Destination for NullDestination {
    async fn deliver(&self, _entry: &OutboxEntry) -> Result<(), DeliveryError> {
        Ok(())
    }
}

/// Counts deliveries of another destination.
struct Counted<D> {
    inner: D,
    delivered: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl<D: Destination> Destination for Counted<D> {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        self.inner.deliver(entry).await?;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A loopback HTTP server answering every request `204 No Content`.
pub struct Loopback {
    /// The URL to post to.
    pub url: String,
    stop: tokio_util::sync::CancellationToken,
}

impl Loopback {
    /// Binds 127.0.0.1:0 and serves.
    pub async fn start() -> CliResult<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(CliError::io("binding the loopback webhook"))?;
        let addr = listener
            .local_addr()
            .map_err(CliError::io("binding the loopback webhook"))?;
        let stop = tokio_util::sync::CancellationToken::new();
        let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Self {
            url: format!("http://{addr}/hook"),
            stop,
        })
    }

    /// A webhook destination posting here.
    pub fn destination(&self) -> CliResult<WebhookDestination> {
        let secret = format!(
            "whsec_{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
        );
        let cidr = "127.0.0.0/8"
            .parse()
            .map_err(|_| CliError::Failed("bad loopback CIDR".into()))?;
        WebhookDestination::new(
            WebhookConfig::new(self.url.clone(), secret)
                .timeout(Duration::from_secs(10))
                .allow_cidr(cidr),
        )
        .map_err(|e| CliError::Failed(format!("building the bench webhook: {}", crate::error::one_line(&e))))
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The relay options of the bench.
pub fn relay_config(poll_interval: Duration) -> RelayConfig {
    RelayConfig::default()
        .batch_size(BATCH)
        .concurrency(CONCURRENCY)
        .poll_interval(poll_interval)
        .lease_ttl(Duration::from_secs(10))
        .shutdown_grace(Duration::from_secs(5))
}

fn no_breaker() -> DestinationPolicy {
    DestinationPolicy::default().breaker(BreakerConfig {
        failure_threshold: u32::MAX,
        open_for: Duration::from_millis(10),
    })
}

/// Whether `destination` has no pending entry (through the pending index: `status()`
/// would count every row, which the bench must not measure).
async fn drained(outbox: &dyn OutboxStore, destination: &str) -> bool {
    let filter = EntryFilter {
        destination: Some(destination.to_string()),
        state: Some(EntryState::Pending),
        limit: Some(1),
        ..EntryFilter::default()
    };
    outbox.list_entries(&filter).await.is_ok_and(|e| e.is_empty())
}

/// Runs the relay on `destination` until `expected` entries are delivered and recorded
/// (or the time budget ends); returns the rate.
pub async fn drain(
    store: &OpenStore,
    name: &str,
    destination: Arc<dyn Destination>,
    delivered: Arc<AtomicU64>,
    expected: u64,
    budget: Budget,
) -> CliResult<Rate> {
    let outbox = store.outbox();
    let mut destinations = Destinations::new();
    destinations.insert_arc(name, destination);
    let started = Instant::now();
    let relay = Relay::new(outbox.clone(), destinations)
        .config(relay_config(Duration::from_millis(50)))
        .policy(name, no_breaker())
        .start();
    let deadline = match budget {
        Budget::Time(d) => started + d,
        Budget::Count(_) => started + Duration::from_secs(3600),
    };
    // Cheap polling of the destination's own counter, then one status check that the
    // results are recorded.
    loop {
        let done = delivered.load(Ordering::Relaxed);
        if done >= expected && drained(outbox.as_ref(), name).await {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        let wait = if done >= expected { 2 } else { 10 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    relay.shutdown().await;
    Ok(Rate {
        count: delivered.load(Ordering::Relaxed).min(expected),
        seconds,
    })
}

/// Drains to a null destination.
pub async fn drain_null(store: &OpenStore, name: &str, expected: u64, budget: Budget) -> CliResult<Rate> {
    let counter = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(Counted {
        inner: NullDestination,
        delivered: counter.clone(),
    });
    drain(store, name, counting, counter, expected, budget).await
}

/// Drains to the loopback webhook.
pub async fn drain_webhook(
    store: &OpenStore,
    name: &str,
    loopback: &Loopback,
    expected: u64,
    budget: Budget,
) -> CliResult<Rate> {
    let counter = Arc::new(AtomicU64::new(0));
    let webhook = Arc::new(Counted {
        inner: loopback.destination()?,
        delivered: counter.clone(),
    });
    drain(store, name, webhook, counter, expected, budget).await
}

/// The plain-SQL loop over `table`: per partition, select the oldest pending rows,
/// deliver them (`deliver`; nothing for the null case), mark them delivered in one
/// statement.
pub async fn raw_loop(
    raw: &RawDb,
    table: Table,
    partitions: u32,
    expected: u64,
    budget: Budget,
    deliver: Option<Arc<dyn Destination>>,
) -> CliResult<Rate> {
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for partition in 0..partitions {
        let (raw, done, deliver) = (raw.clone(), done.clone(), deliver.clone());
        tasks.spawn(async move {
            loop {
                if let Budget::Time(d) = budget
                    && started.elapsed() >= d
                {
                    return Ok::<_, CliError>(());
                }
                let rows = raw.fetch(table, partition, BATCH).await?;
                if rows.is_empty() {
                    return Ok(());
                }
                if let Some(destination) = &deliver {
                    // Concurrently across rows, as the relay does across streams.
                    let mut sending = JoinSet::new();
                    for chunk in rows.chunks(rows.len().div_ceil(CONCURRENCY)) {
                        let (destination, chunk) = (destination.clone(), chunk.to_vec());
                        sending.spawn(async move {
                            for row in chunk {
                                let entry = raw_entry(&row)?;
                                destination
                                    .deliver(&entry)
                                    .await
                                    .map_err(|e| CliError::Failed(format!("raw delivery: {e}")))?;
                            }
                            Ok::<_, CliError>(())
                        });
                    }
                    while let Some(r) = sending.join_next().await {
                        r.map_err(|e| CliError::Failed(format!("raw delivery: {e}")))??;
                    }
                }
                let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
                raw.mark(table, &seqs).await?;
                done.fetch_add(seqs.len() as u64, Ordering::Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| CliError::Failed(format!("raw loop failed: {e}")))??;
    }
    Ok(Rate {
        count: done.load(Ordering::Relaxed).min(expected),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// An entry as a destination takes it, from a raw queue row.
fn raw_entry(row: &QueuedRow) -> CliResult<OutboxEntry> {
    let now = OffsetDateTime::now_utc();
    let payload =
        RawValue::from_string(row.payload.clone()).map_err(|e| CliError::Failed(format!("raw queue payload: {e}")))?;
    Ok(OutboxEntry {
        seq: row.seq,
        id: Uuid::parse_str(&row.id).unwrap_or_else(|_| Uuid::nil()),
        destination: "raw".into(),
        stream_id: row.stream.clone(),
        partition: 0,
        event_type: row.event_type.clone(),
        payload,
        metadata: None,
        event_id: None,
        stream_version: None,
        state: EntryState::Pending,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        last_error: None,
        created_at: row.created_at,
        next_attempt_at: now,
        delivered_at: None,
        dead_at: None,
    })
}

/// Commit → delivery latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Records when each entry arrives.
#[derive(Default)]
struct Stopwatch {
    arrived: Mutex<HashMap<Uuid, Instant>>,
    count: AtomicU64,
}

#[async_trait::async_trait]
impl Destination for Stopwatch {
    async fn deliver(&self, entry: &OutboxEntry) -> Result<(), DeliveryError> {
        let now = Instant::now();
        self.arrived
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(entry.id)
            .or_insert(now);
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Appends single events at `rate` per second (each its own transaction, committed by
/// `writer`) while a relay on `relay_store` delivers them with wakeups on (poll interval
/// 1 s, so a quick delivery can only come from a wakeup); measures from the return of
/// each commit to the arrival at the destination.
pub async fn latency(
    writer: &OpenStore,
    relay_store: &OpenStore,
    name: &str,
    prefix: &'static str,
    events: u64,
    rate: u64,
) -> CliResult<Latency> {
    let watch = Arc::new(Stopwatch::default());
    let mut destinations = Destinations::new();
    destinations.insert_arc(name, watch.clone());
    let relay = Relay::new(relay_store.outbox(), destinations)
        .config(relay_config(Duration::from_secs(1)))
        .policy(name, no_breaker())
        .start();
    // Let the relay take every partition's lease first, so that no measured delivery
    // waits for one.
    let outbox = relay_store.outbox();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (outbox.list_leases(name).await)
        .map_err(CliError::store("latency: reading leases"))?
        .iter()
        .filter(|lease| lease.live)
        .count()
        < outbox.partitions() as usize
    {
        if Instant::now() >= deadline {
            return Err(CliError::Failed(
                "latency: the relay did not take its leases within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut committed: Vec<(Uuid, Instant)> = Vec::with_capacity(events as usize);
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    for i in 0..events {
        tokio::time::sleep_until((started + period.mul_f64(i as f64)).into()).await;
        let event = EventData::from_json_str("BenchEvent", &payload(i))
            .map_err(|e| CliError::Failed(format!("bench payload: {e}")))?;
        let entry_id = eskit::route_entry_id(event.id, name);
        writer
            .append_batch(vec![PendingAppend {
                stream: format!("{prefix}{}", i % 100),
                expected: ExpectedVersion::Any,
                events: vec![event],
            }])
            .await
            .map_err(|e| CliError::store("latency append")(e.error))?;
        committed.push((entry_id, Instant::now()));
    }
    let all_in = wait(Duration::from_secs(60), || {
        watch.count.load(Ordering::Relaxed) >= events
    })
    .await;
    relay.shutdown().await;
    if !all_in {
        return Err(CliError::Failed(format!(
            "latency: only {} of {events} entries arrived within 60 s",
            watch.count.load(Ordering::Relaxed)
        )));
    }
    let arrived = watch.arrived.lock().unwrap_or_else(|p| p.into_inner());
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| CliError::Failed(format!("histogram: {e}")))?;
    for (id, at) in &committed {
        if let Some(got) = arrived.get(id) {
            // A delivery may come before the writer saw its commit return: 0.
            let micros = got.saturating_duration_since(*at).as_micros() as u64;
            histogram.saturating_record(micros.max(1));
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(Latency {
        samples: histogram.len(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: histogram.max() as f64 / 1000.0,
    })
}

/// Polls `done` every 5 ms until it holds or `within` passes.
pub async fn wait(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
