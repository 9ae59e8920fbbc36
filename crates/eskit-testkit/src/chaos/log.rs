//! The delivery log: every request a sink receives, one JSON line each, written to disk
//! while the run goes on (`deliveries.jsonl` in the work directory).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::ChaosError;
use crate::receiver::{Answer, Delivery, Receiver};

/// How long one wait for new requests lasts before the log is flushed anyway.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// One line of the delivery log.
#[derive(Debug, Serialize)]
struct Line {
    /// Which sink (1: faulty, during the chaos; 2: healed).
    sink: u8,
    /// Arrival, nanoseconds since the Unix epoch.
    at_ns: i128,
    /// Entry id (`webhook-id`).
    id: Option<Uuid>,
    /// Stream.
    stream: Option<String>,
    /// Stream version (from the payload).
    version: Option<u64>,
    /// Attempt number for this id at this sink.
    attempt: u32,
    /// HTTP status answered (`null`: left hanging).
    status: Option<u16>,
}

/// The stream version a chaos event carries in its payload (`{"v": n}`).
pub(crate) fn version_of(d: &Delivery) -> Option<u64> {
    d.body
        .as_ref()
        .and_then(|b| b.payload.get("v"))
        .and_then(|v| v.as_u64())
}

fn line(sink: u8, d: &Delivery) -> Line {
    Line {
        sink,
        at_ns: d.received_at.unix_timestamp_nanos(),
        id: d.entry_id(),
        stream: d.body.as_ref().map(|b| b.stream.clone()),
        version: version_of(d),
        attempt: d.attempt,
        status: match d.answer {
            Answer::Timeout => None,
            other => other.status(),
        },
    }
}

/// The log file, shared by the followers of every sink.
#[derive(Clone)]
pub(crate) struct DeliveryLog {
    file: Arc<Mutex<BufWriter<File>>>,
}

impl DeliveryLog {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> Result<Self, ChaosError> {
        let file = File::create(path).map_err(|source| ChaosError::Io {
            context: format!("creating {}", path.display()),
            source,
        })?;
        Ok(Self {
            file: Arc::new(Mutex::new(BufWriter::new(file))),
        })
    }

    fn write(&self, lines: &[Line]) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        for l in lines {
            if let Ok(text) = serde_json::to_string(l) {
                let _ = writeln!(file, "{text}");
            }
        }
        let _ = file.flush();
    }

    /// Writes every request `receiver` gets until `stop` is cancelled (and then what
    /// is left). Run it as a task.
    pub async fn follow(self, receiver: Arc<Receiver>, sink: u8, stop: CancellationToken) {
        let mut seen = 0usize;
        loop {
            let stopping = stop.is_cancelled();
            let mut lines = Vec::new();
            let wait = if stopping { Duration::ZERO } else { FOLLOW_EVERY };
            tokio::select! {
                _ = receiver.wait_for(wait, |all| {
                    lines.extend(all[seen.min(all.len())..].iter().map(|d| line(sink, d)));
                    seen = all.len();
                    !lines.is_empty()
                }) => {}
                _ = stop.cancelled(), if !stopping => {}
            }
            self.write(&lines);
            if stopping {
                return;
            }
        }
    }
}
