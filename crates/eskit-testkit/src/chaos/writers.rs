//! Writer tasks: append events over many streams, each append in its own transaction,
//! and record for every append whether it certainly committed (`ok`), certainly did
//! not (`failed`: the error came before the commit), or cannot be known (`unknown`: the
//! commit itself failed, e.g. while the database restarted).
//!
//! Every stream belongs to one writer, which appends with `ExpectedVersion::Exact` and
//! knows the version each event gets; the payload carries it (`{"w", "v"}`), so a
//! receiver can tell stream versions apart. After an `unknown` append the writer reads
//! the stream's version before touching it again, which settles whether it committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use eskit::{Error, EventData, ExpectedVersion, StoreTransaction, TransactionalStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

/// The event type every chaos event has.
pub const EVENT_TYPE: &str = "ChaosEvent";
/// Most events in one append.
const MAX_BATCH: u64 = 3;
/// Longest pause after a failed append.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How long a writer tries to settle an unknown append before giving up.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(120);
/// Distinct error messages kept per writer.
const MAX_ERROR_KINDS: usize = 20;

/// What became of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Committed.
    Ok,
    /// Not committed (failed before the commit).
    Failed,
    /// The commit failed: committed or not, as the database decided.
    Unknown,
}

/// One append as a writer saw it.
#[derive(Debug, Clone, Serialize)]
pub struct AppendRecord {
    /// The writer.
    pub writer: usize,
    /// The stream.
    pub stream: String,
    /// The version the first event gets if the append commits.
    pub first_version: u64,
    /// The event ids, in order.
    pub event_ids: Vec<Uuid>,
    /// What the writer saw.
    pub outcome: Outcome,
    /// For an `unknown` append: whether reading the stream version afterwards showed it
    /// committed (`None`: not settled).
    pub resolved_committed: Option<bool>,
    /// Milliseconds since the chaos phase started.
    pub at_ms: u64,
}

/// What one writer did.
#[derive(Debug, Default)]
pub struct WriterTally {
    /// Every append.
    pub records: Vec<AppendRecord>,
    /// Versions that did not match what the writer knew (each one a violation).
    pub anomalies: Vec<String>,
    /// Error messages seen (first [`MAX_ERROR_KINDS`] kinds), with counts.
    pub errors: BTreeMap<String, u64>,
}

/// What a writer needs.
pub(crate) struct Writer<S> {
    pub store: Arc<S>,
    pub index: usize,
    pub streams: Vec<String>,
    pub quota: u64,
    pub seed: u64,
    pub window: Duration,
    pub started: Instant,
}

impl<S: TransactionalStore> Writer<S> {
    /// Appends `quota` events (counting `ok` and `unknown` appends), paced to end with
    /// the chaos window.
    pub async fn run(self) -> WriterTally {
        let mut tally = WriterTally::default();
        if self.streams.is_empty() || self.quota == 0 {
            return tally;
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut versions: HashMap<String, u64> = self.streams.iter().map(|s| (s.clone(), 0)).collect();
        // Stream -> index of its unsettled `unknown` record.
        let mut unsettled: HashMap<String, usize> = HashMap::new();
        let mut done = 0u64;
        let mut failures = 0u32;
        while done < self.quota {
            let due = self.started + self.window.mul_f64(done as f64 / self.quota as f64);
            tokio::time::sleep_until(due).await;
            let stream = self.streams[rng.random_range(0..self.streams.len())].clone();
            if let Some(i) = unsettled.remove(&stream) {
                self.settle(&mut tally, i, &mut versions).await;
            }
            let version = versions[&stream];
            let n = rng.random_range(1..=MAX_BATCH).min(self.quota - done);
            let events: Vec<EventData> = (0..n)
                .map(|k| {
                    let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
                    EventData::json(EVENT_TYPE, &json!({"w": self.index, "v": version + 1 + k})).map(|e| e.with_id(id))
                })
                .collect::<Result<_, _>>()
                .unwrap_or_default();
            let at_ms = self.started.elapsed().as_millis() as u64;
            let (outcome, error) = match append(&*self.store, &stream, version, events.clone()).await {
                Ok(()) => (Outcome::Ok, None),
                Err((outcome, error)) => (outcome, Some(error)),
            };
            if let Some(error) = &error {
                if let Error::WrongExpectedVersion { actual, .. } = error {
                    tally.anomalies.push(format!(
                        "stream {stream}: expected version {version}, the store has {actual:?}"
                    ));
                    versions.insert(stream.clone(), actual.unwrap_or(0));
                }
                let kind = error_kind(error);
                if tally.errors.len() < MAX_ERROR_KINDS || tally.errors.contains_key(&kind) {
                    *tally.errors.entry(kind).or_default() += 1;
                }
            }
            match outcome {
                Outcome::Ok => {
                    versions.insert(stream.clone(), version + n);
                    done += n;
                    failures = 0;
                }
                Outcome::Unknown => {
                    unsettled.insert(stream.clone(), tally.records.len());
                    done += n;
                }
                Outcome::Failed => {}
            }
            tally.records.push(AppendRecord {
                writer: self.index,
                stream,
                first_version: version + 1,
                event_ids: events.iter().map(|e| e.id).collect(),
                outcome,
                resolved_committed: None,
                at_ms,
            });
            if outcome != Outcome::Ok {
                failures += 1;
                let backoff = Duration::from_millis(10u64.saturating_mul(1 << failures.min(6))).min(MAX_BACKOFF);
                tokio::time::sleep(backoff).await;
            }
        }
        let left: Vec<usize> = unsettled.into_values().collect();
        for i in left {
            self.settle(&mut tally, i, &mut versions).await;
        }
        tally
    }

    /// Reads the stream version to learn whether the `unknown` append `i` committed.
    async fn settle(&self, tally: &mut WriterTally, i: usize, versions: &mut HashMap<String, u64>) {
        let record = &tally.records[i];
        let stream = record.stream.clone();
        let before = record.first_version - 1;
        let after = before + record.event_ids.len() as u64;
        let deadline = Instant::now() + RESOLVE_DEADLINE;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.store.stream_version(&stream).await {
                Ok(actual) => {
                    let actual = actual.unwrap_or(0);
                    let committed = if actual == after {
                        Some(true)
                    } else if actual == before {
                        Some(false)
                    } else {
                        tally.anomalies.push(format!(
                            "stream {stream}: after an unknown append of versions {}..={after} the store has version {actual}",
                            before + 1
                        ));
                        None
                    };
                    tally.records[i].resolved_committed = committed;
                    versions.insert(stream, actual);
                    return;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tally.anomalies.push(format!(
                        "stream {stream}: could not read its version to settle an unknown append: {e}"
                    ));
                    return;
                }
            }
        }
    }
}

/// One append in its own transaction. The error says whether it certainly did not
/// commit (`Failed`) or may have (`Unknown`).
async fn append<S: TransactionalStore>(
    store: &S,
    stream: &str,
    version: u64,
    events: Vec<EventData>,
) -> Result<(), (Outcome, Error)> {
    let mut tx = store.begin().await.map_err(|e| (Outcome::Failed, e))?;
    if let Err(e) = tx.append(stream, ExpectedVersion::Exact(version), events).await {
        let _ = tx.rollback().await;
        return Err((Outcome::Failed, e));
    }
    tx.commit().await.map_err(|e| (Outcome::Unknown, e))
}

/// A short, stable description of an error (without ids or versions).
fn error_kind(error: &Error) -> String {
    match error {
        Error::WrongExpectedVersion { .. } => "wrong expected version".into(),
        Error::Database { context, source } => {
            let text = source.to_string();
            let short: String = text.chars().take(80).collect();
            format!("database error during {context}: {short}")
        }
        other => {
            let text = other.to_string();
            text.chars().take(100).collect()
        }
    }
}
