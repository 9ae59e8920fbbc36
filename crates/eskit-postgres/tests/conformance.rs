//! The backend-agnostic conformance suite (`eskit-testkit`) run against PostgreSQL.

mod common;

use std::sync::{Arc, Mutex};

use common::TestSchema;
use eskit::StoreOptions;
use eskit_postgres::{PgStore, PgTransaction};
use eskit_testkit::Harness;

/// Every `open` is a fresh schema (`t_<uuid>`, dropped when the harness, i.e. the test,
/// ends); `reopen` is a second store with its own pool on the same schema, as another
/// process would have. The application's table lives in a schema of its own.
struct PgHarness {
    app: TestSchema,
    schemas: Mutex<Vec<TestSchema>>,
}

impl PgHarness {
    async fn new() -> Self {
        let app = TestSchema::new();
        let mut conn = app.connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".app_rows (key text PRIMARY KEY)",
            app.name
        )))
        .execute(&mut conn)
        .await
        .expect("create the application's table");
        Self {
            app,
            schemas: Mutex::new(Vec::new()),
        }
    }

    fn app_table(&self) -> String {
        format!("\"{}\".app_rows", self.app.name)
    }
}

#[async_trait::async_trait]
impl Harness for PgHarness {
    type Store = PgStore;

    async fn open(&self, options: StoreOptions) -> Arc<PgStore> {
        let schema = TestSchema::new();
        let store = schema.open(options).await;
        self.schemas.lock().expect("schemas").push(schema);
        Arc::new(store)
    }

    async fn reopen(&self, store: &PgStore, options: StoreOptions) -> Arc<PgStore> {
        let store = PgStore::builder(common::url())
            .schema(store.schema().as_str())
            .max_connections(5)
            .options(options)
            .open()
            .await
            .expect("reopen PostgreSQL store");
        Arc::new(store)
    }

    async fn app_write(&self, tx: &mut PgTransaction, key: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (key) VALUES ($1)",
            self.app_table()
        )))
        .bind(key)
        .execute(tx.conn())
        .await
        .expect("app write");
    }

    async fn app_row_exists(&self, store: &PgStore, key: &str) -> bool {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE key = $1)",
            self.app_table()
        )))
        .bind(key)
        .fetch_one(store.pool())
        .await
        .expect("read the application's table")
    }
}

eskit_testkit::conformance_tests!(PgHarness::new().await);
