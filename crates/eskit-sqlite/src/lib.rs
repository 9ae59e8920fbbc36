//! # eskit-sqlite
//!
//! The embedded default backend of [eskit]: events, streams and the transactional
//! outbox in one SQLite file (WAL, `BEGIN IMMEDIATE` writers, a busy timeout, embedded
//! migrations tracked in `eskit_migrations`).
//!
//! ```no_run
//! # async fn demo() -> eskit::Result<()> {
//! use eskit::{EventData, EventStore, ExpectedVersion, OutboxMessage, RouteFilter};
//! use eskit_sqlite::SqliteStore;
//!
//! let store = SqliteStore::builder("sqlite://eskit.db")
//!     .with_outbox("hook", RouteFilter::all())
//!     .destination("emails")
//!     .open()
//!     .await?;
//!
//! // One transaction: events, an explicit message and the application's own SQL.
//! let mut tx = store.begin().await?;
//! tx.append("order-1", ExpectedVersion::NoStream, vec![EventData::json("OrderPlaced", &serde_json::json!({"total": 42}))?])
//!     .await?;
//! tx.write_outbox(OutboxMessage::json("emails", "order-1", "SendEmail", &serde_json::json!({"to": "a@example.com"}))?)
//!     .await?;
//! sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")
//!     .execute(tx.conn())
//!     .await
//!     .map_err(|e| eskit::Error::database("app write", e))?;
//! tx.commit().await?;
//!
//! // Outside a transaction.
//! store.append("order-2", ExpectedVersion::Any, vec![EventData::json("OrderPlaced", &1)?]).await?;
//! # Ok(()) }
//! ```
//!
//! All SQL lives in [`sql`] and `migrations/`; every decision (ordering, retries,
//! leases, dead-lettering) is made by the core relay engine.
#![warn(missing_docs)]

mod append;
mod outbox;
mod rows;
pub mod sql;
mod store;
mod transaction;

pub use store::{SqliteStore, SqliteStoreBuilder};
pub use transaction::SqliteTransaction;
