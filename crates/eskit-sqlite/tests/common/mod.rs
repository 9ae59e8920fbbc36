//! Helpers shared by the SQLite backend tests.
#![allow(dead_code)]

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

/// An event of type `t` with a JSON payload.
pub fn ev(t: &str, payload: serde_json::Value) -> EventData {
    EventData::json(t, &payload).expect("event")
}
