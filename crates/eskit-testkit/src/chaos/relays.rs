//! Relay child processes: started, killed with SIGKILL, restarted, stopped with SIGTERM.

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::process::{Child, Command};

use super::ChaosError;

/// How long a relay gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Builds the command that runs one relay process.
pub trait RelayLauncher: Send + Sync {
    /// A command running one relay process (e.g. `eskit relay --config …`) that
    /// delivers to the webhook sink at `sink_url`. Its output is redirected by the
    /// harness.
    fn command(&self, sink_url: &str) -> std::io::Result<std::process::Command>;
}

struct Slot {
    child: Option<Child>,
    pid: Option<u32>,
    log: Option<PathBuf>,
}

/// A relay that exited without being told to.
#[derive(Debug, Clone)]
pub(crate) struct Exit {
    /// When the harness noticed.
    pub at: OffsetDateTime,
    /// Slot, pid, status and the last line the relay logged.
    pub text: String,
}

/// The relay processes of a run, by slot.
pub(crate) struct Relays {
    launcher: Arc<dyn RelayLauncher>,
    sink_url: String,
    slots: Vec<Slot>,
    log_dir: PathBuf,
    spawned: u64,
    /// Relays that exited without being told to.
    pub unexpected_exits: Vec<Exit>,
}

impl Relays {
    /// `n` slots, none running yet.
    pub fn new(launcher: Arc<dyn RelayLauncher>, n: usize, log_dir: PathBuf) -> Self {
        Self {
            launcher,
            sink_url: String::new(),
            slots: (0..n)
                .map(|_| Slot {
                    child: None,
                    pid: None,
                    log: None,
                })
                .collect(),
            log_dir,
            spawned: 0,
            unexpected_exits: Vec::new(),
        }
    }

    /// Starts every slot, delivering to `sink_url`.
    pub fn start_all(&mut self, sink_url: &str) -> Result<(), ChaosError> {
        self.sink_url = sink_url.to_string();
        for slot in 0..self.slots.len() {
            self.spawn(slot)?;
        }
        Ok(())
    }

    /// Starts the relay of one slot.
    pub fn spawn(&mut self, slot: usize) -> Result<(), ChaosError> {
        self.spawned += 1;
        let log = self.log_dir.join(format!("relay-{slot}-{}.log", self.spawned));
        let io = |context: String| move |source| ChaosError::Io { context, source };
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io(format!("opening {}", log.display())))?;
        let mut command = self
            .launcher
            .command(&self.sink_url)
            .map_err(io("building the relay command".into()))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("starting a relay process".into()))?;
        self.slots[slot].pid = child.id();
        self.slots[slot].child = Some(child);
        self.slots[slot].log = Some(log);
        Ok(())
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The process id of a slot's relay.
    pub fn pid(&self, slot: usize) -> Option<u32> {
        self.slots[slot].pid
    }

    /// Restarts relays that exited on their own, and notes them.
    pub fn check_alive(&mut self) -> Result<(), ChaosError> {
        for slot in 0..self.slots.len() {
            let exited = match self.slots[slot].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            };
            if let Some(status) = exited {
                let last = self.slots[slot]
                    .log
                    .as_ref()
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .and_then(|text| text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string))
                    .unwrap_or_default();
                self.unexpected_exits.push(Exit {
                    at: OffsetDateTime::now_utc(),
                    text: format!(
                        "relay {slot} (pid {}) exited on its own ({status}): {last}",
                        self.slots[slot].pid.unwrap_or(0)
                    ),
                });
                self.spawn(slot)?;
            }
        }
        Ok(())
    }

    /// SIGKILLs a slot's relay and waits until it is gone; returns its pid.
    pub async fn kill(&mut self, slot: usize) -> Option<u32> {
        let pid = self.slots[slot].pid.take();
        if let Some(mut child) = self.slots[slot].child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        pid
    }

    /// SIGTERMs every relay and waits for them to finish (SIGKILL after a grace period).
    pub async fn stop_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(pid) = slot.pid.take() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
            }
        }
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take()
                && tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}
