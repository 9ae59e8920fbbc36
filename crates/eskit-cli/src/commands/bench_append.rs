//! Append throughput: eskit appends (single-event transactions, and batches) beside
//! plain-SQL inserts of the same rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eskit::{EventData, ExpectedVersion};
use tokio::task::JoinSet;

use super::bench_raw::{RawDb, RawRow, Table};
use crate::error::{CliError, CliResult};
use crate::store::{OpenStore, PendingAppend};

/// How long or how much a timed phase runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many events (entries).
    Count(u64),
    /// For this long.
    Time(Duration),
}

impl Budget {
    /// Whether a phase that did `done` units since `started` may do `next` more.
    pub fn allows(self, done: u64, next: u64, started: Instant) -> bool {
        match self {
            Budget::Count(n) => done + next <= n,
            Budget::Time(d) => started.elapsed() < d,
        }
    }
}

/// A measured rate.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Rate {
    /// Units done.
    pub count: u64,
    /// Seconds taken.
    pub seconds: f64,
}

impl Rate {
    /// Units per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The payload every bench event carries (about 200 bytes).
pub fn payload(n: u64) -> String {
    format!(
        "{{\"n\":{n},\"customer\":\"c-{}\",\"items\":[{{\"sku\":\"sku-1\",\"qty\":2,\"price\":1999}},{{\"sku\":\"sku-2\",\"qty\":1,\"price\":4999}}],\"note\":\"the quick brown fox jumps over the lazy dog\"}}",
        n % 997
    )
}

/// What one append phase writes.
#[derive(Debug, Clone)]
pub struct AppendPlan {
    /// Stream id prefix (it picks the route).
    pub prefix: &'static str,
    /// Streams to spread over.
    pub streams: u64,
    /// Events per transaction.
    pub batch: u64,
    /// Concurrent writers.
    pub writers: u64,
    /// How much.
    pub budget: Budget,
}

/// Runs `work(writer, index_of_first, count)` from `writers` tasks until the budget is
/// spent; each call handles `batch` units. Returns the units done and the time taken.
async fn drive<F, Fut>(plan: &AppendPlan, work: F) -> CliResult<Rate>
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = CliResult> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..plan.writers.max(1) {
        let (work, next, budget, batch) = (work.clone(), next.clone(), plan.budget, plan.batch.max(1));
        tasks.spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if !budget.allows(first, batch, started) {
                    return Ok::<_, CliError>(());
                }
                work(first, batch).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| CliError::Failed(format!("bench writer failed: {e}")))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let issued = next.load(Ordering::Relaxed);
    let writers = plan.writers.max(1);
    // Each writer drew one batch it did not run.
    let count = match plan.budget {
        Budget::Count(n) => n - n % plan.batch.max(1),
        Budget::Time(_) => issued.saturating_sub(writers * plan.batch.max(1)),
    };
    Ok(Rate { count, seconds })
}

/// eskit appends: each transaction appends `batch` events to one stream (one route
/// entry per event).
pub async fn eskit_appends(store: &OpenStore, plan: &AppendPlan) -> CliResult<Rate> {
    let store = store.clone();
    let (prefix, streams) = (plan.prefix, plan.streams.max(1));
    drive(plan, move |first, n| {
        let store = store.clone();
        async move {
            let stream = format!("{prefix}{}", (first / n) % streams);
            let events = (first..first + n)
                .map(|i| EventData::from_json_str("BenchEvent", &payload(i)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::Failed(format!("bench payload: {e}")))?;
            store
                .append_batch(vec![PendingAppend {
                    stream,
                    expected: ExpectedVersion::Any,
                    events,
                }])
                .await
                .map_err(|e| CliError::store("bench append")(e.error))?;
            Ok(())
        }
    })
    .await
}

/// Plain-SQL inserts of the same rows (event + outbox row per event) in transactions of
/// the same size, into `table`: the plain tables, or eskit's own (with the stream's
/// version; see [`super::bench_schema`]).
pub async fn raw_appends(raw: &RawDb, table: Table, plan: &AppendPlan, partitions: u32) -> CliResult<Rate> {
    let raw = raw.clone();
    let (prefix, streams) = (plan.prefix, plan.streams.max(1));
    drive(plan, move |first, n| {
        let raw = raw.clone();
        async move {
            let stream = format!("raw-{prefix}{}", (first / n) % streams);
            let rows: Vec<RawRow> = (first..first + n)
                .map(|i| RawRow::new(stream.clone(), payload(i), partitions))
                .collect();
            match table {
                Table::Plain => raw.insert(&rows).await,
                Table::Eskit => super::bench_schema::insert(&raw, &rows, partitions).await,
            }
        }
    })
    .await
}

/// Appends `n` events untimed (setup), in batches of 100 over `streams` streams.
pub async fn prefill(store: &OpenStore, prefix: &'static str, n: u64, streams: u64) -> CliResult {
    let plan = AppendPlan {
        prefix,
        streams,
        batch: 100.min(n.max(1)),
        writers: 2,
        budget: Budget::Count(n),
    };
    eskit_appends(store, &plan).await?;
    let left = n % plan.batch;
    if left > 0 {
        let tail = AppendPlan {
            batch: left,
            writers: 1,
            budget: Budget::Count(left),
            ..plan
        };
        eskit_appends(store, &tail).await?;
    }
    Ok(())
}
