//! What a backend provides to run the conformance suite.

use std::sync::Arc;

use eskit::{OutboxStore, StoreOptions, TransactionalStore};

/// A backend under test. Each call to [`Harness::open`] returns a store isolated from
/// every other (its own SQLite file, its own PostgreSQL schema), so tests run in parallel.
#[async_trait::async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The store type.
    type Store: TransactionalStore + OutboxStore;

    /// A fresh, empty, isolated store with these options.
    async fn open(&self, options: StoreOptions) -> Arc<Self::Store>;

    /// A second handle on the same database as `store` (its own pool), as another
    /// process would have: used for several-relays tests.
    async fn reopen(&self, store: &Self::Store, options: StoreOptions) -> Arc<Self::Store>;

    /// The application's own write inside `tx`: inserts `key` into an application table
    /// (created on first use) through the transaction's connection.
    async fn app_write(&self, tx: &mut <Self::Store as TransactionalStore>::Transaction, key: &str);

    /// Whether the application's table holds `key` (read outside any transaction).
    async fn app_row_exists(&self, store: &Self::Store, key: &str) -> bool;
}
