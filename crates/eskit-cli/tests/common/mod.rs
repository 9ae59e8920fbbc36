//! Running the real `eskit` binary in an isolated directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A webhook secret used by tests (the Standard Webhooks example secret).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The part of [`SECRET`] that must never appear in any output.
pub const SECRET_BODY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A temp directory with an `eskit.toml` and helpers to run the binary in it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

/// What a run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics unless the run exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the run failed with `code` and printed exactly one `error: ` line.
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// stdout as JSON lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

impl Sandbox {
    /// A fresh directory whose `eskit.toml` holds `config`.
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("eskit.toml"), config).expect("write config");
        Sandbox { dir }
    }

    /// A fresh directory with a SQLite database and no routes.
    pub fn sqlite() -> Self {
        Self::new("database = \"sqlite://events.db\"\n")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write file");
        path
    }

    /// The binary, run in the sandbox, with no `ESKIT_*` variable inherited.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eskit"));
        cmd.current_dir(self.dir.path()).args(args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESKIT_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("RUST_LOG").env("TMPDIR", self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run eskit"))
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run eskit"))
    }

    /// Starts a long-running command (e.g. `relay`); its output is collected as it comes.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eskit");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), stdout.clone()),
            collect(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Daemon {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Number of events `read --all` returns.
    pub fn event_count(&self) -> usize {
        self.run(&["read", "--all"]).ok().json_lines().len()
    }

    /// Polls `outbox status --json` until `done` holds for the row of `destination`.
    pub fn wait_status(
        &self,
        destination: &str,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let run = self.run(&["outbox", "status", "--json"]).ok();
            let rows: serde_json::Value = serde_json::from_str(&run.stdout).expect("status JSON");
            let row = rows
                .as_array()
                .and_then(|a| a.iter().find(|r| r["destination"] == destination))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            if done(&row) {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "status never reached the expected state: {row}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn collect(source: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            let mut text = into.lock().unwrap_or_else(|p| p.into_inner());
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// A running `eskit` process whose output is being collected.
pub struct Daemon {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Daemon {
    /// Waits until stderr contains `needle` (panics after `within`, or if the process exits).
    pub fn wait_for_stderr(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.stderr.lock().unwrap_or_else(|p| p.into_inner()).contains(needle) {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "eskit exited ({status}) before printing {needle:?}:\n{}",
                    self.stderr.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
            assert!(Instant::now() < deadline, "eskit never printed {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM, waits for the process, and returns everything it printed.
    pub fn terminate(mut self) -> Run {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("eskit did not stop within 60s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let take = |m: &Arc<Mutex<String>>| std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner()));
        Run {
            code: status.code(),
            stdout: take(&self.stdout),
            stderr: take(&self.stderr),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test must not leave a relay running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
