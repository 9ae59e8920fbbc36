//! The backend-agnostic conformance suite (`eskit-testkit`) run against SQLite.

use std::sync::{Arc, Mutex};

use eskit::StoreOptions;
use eskit_sqlite::{SqliteStore, SqliteTransaction};
use eskit_testkit::Harness;
use tempfile::TempDir;

/// Every `open` is a fresh database file in its own temporary directory (removed when
/// the harness, i.e. the test, ends); `reopen` is a second store with its own pool on
/// the same file, as another process would have.
struct SqliteHarness {
    dirs: Mutex<Vec<TempDir>>,
}

impl SqliteHarness {
    fn new() -> Self {
        Self {
            dirs: Mutex::new(Vec::new()),
        }
    }
}

/// The file behind a store, as SQLite reports it.
async fn database_file(store: &SqliteStore) -> String {
    sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
        .fetch_one(store.pool())
        .await
        .expect("database file")
}

#[async_trait::async_trait]
impl Harness for SqliteHarness {
    type Store = SqliteStore;

    async fn open(&self, options: StoreOptions) -> Arc<SqliteStore> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("eskit.db");
        self.dirs.lock().expect("dirs").push(dir);
        let store = SqliteStore::builder(path.to_string_lossy().into_owned())
            .options(options)
            .open()
            .await
            .expect("open SQLite store");
        Arc::new(store)
    }

    async fn reopen(&self, store: &SqliteStore, options: StoreOptions) -> Arc<SqliteStore> {
        let path = database_file(store).await;
        let store = SqliteStore::builder(path)
            .options(options)
            .open()
            .await
            .expect("reopen SQLite store");
        Arc::new(store)
    }

    async fn app_write(&self, tx: &mut SqliteTransaction, key: &str) {
        sqlx::query("CREATE TABLE IF NOT EXISTS app_rows (key TEXT PRIMARY KEY)")
            .execute(tx.conn())
            .await
            .expect("create app table");
        sqlx::query("INSERT INTO app_rows (key) VALUES (?1)")
            .bind(key)
            .execute(tx.conn())
            .await
            .expect("app write");
    }

    async fn app_row_exists(&self, store: &SqliteStore, key: &str) -> bool {
        let table: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'app_rows'")
                .fetch_optional(store.pool())
                .await
                .expect("look up app table");
        if table.is_none() {
            return false;
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app_rows WHERE key = ?1")
            .bind(key)
            .fetch_one(store.pool())
            .await
            .expect("read app table");
        n > 0
    }
}

eskit_testkit::conformance_tests!(SqliteHarness::new());
