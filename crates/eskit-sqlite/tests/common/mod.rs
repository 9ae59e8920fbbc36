//! Helpers shared by the SQLite backend tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use eskit::{EventData, StoreOptions};
use eskit_sqlite::SqliteStore;
use tempfile::TempDir;

/// A store on a fresh temporary file; keep the `TempDir` alive for the test.
pub async fn open(options: StoreOptions) -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("eskit.db");
    let store = SqliteStore::builder(path.to_string_lossy().into_owned())
        .options(options)
        .open()
        .await
        .expect("open store");
    (store, dir)
}

/// A second store (own pool) on the same file as the first.
pub async fn reopen(dir: &TempDir, options: StoreOptions) -> SqliteStore {
    let path = dir.path().join("eskit.db");
    SqliteStore::builder(format!("sqlite://{}", path.display()))
        .options(options)
        .open()
        .await
        .expect("reopen store")
}

/// An event of type `t` with a JSON payload.
pub fn ev(t: &str, payload: serde_json::Value) -> EventData {
    EventData::json(t, &payload).expect("event")
}

/// Polls `check` every 10 ms until it is true or `within` has passed.
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
