//! # eskit-postgres
//!
//! The PostgreSQL backend of [`eskit`]: events, streams and the transactional
//! outbox in one schema (default `eskit`; embedded migrations tracked in
//! `<schema>.eskit_migrations`), LISTEN/NOTIFY wakeups for the relay, and the
//! application's own `sqlx::Transaction<Postgres>` accepted everywhere.
//!
//! ```no_run
//! # async fn demo() -> eskit::Result<()> {
//! use eskit::{EventData, EventStore, ExpectedVersion, OutboxMessage, RouteFilter, StoreTransaction};
//! use eskit_postgres::PgStore;
//!
//! let store = PgStore::builder("postgres://postgres@127.0.0.1/app")
//!     .schema("eskit")
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
//! sqlx::query("INSERT INTO orders (id) VALUES ('order-1')")
//!     .execute(tx.conn())
//!     .await
//!     .map_err(|e| eskit::Error::database("app write", e))?;
//! tx.commit().await?;
//!
//! // Or inside the application's own sqlx transaction.
//! let mut own = store.pool().begin().await.map_err(|e| eskit::Error::database("begin", e))?;
//! store.append_in(&mut own, "order-2", ExpectedVersion::Any, vec![EventData::json("OrderPlaced", &1)?]).await?;
//! own.commit().await.map_err(|e| eskit::Error::database("commit", e))?;
//! # Ok(()) }
//! ```
//!
//! All SQL lives in `src/sql.rs` (templates filled in with the schema once, at open)
//! and `migrations/`; every decision (ordering, retries, leases, dead-lettering) is made
//! by the core relay engine. See `docs/postgres.md` for how the three PostgreSQL outbox
//! traps (skips, stalls, xid order) are avoided.
#![warn(missing_docs)]

mod append;
mod ident;
mod listener;
mod outbox;
mod rows;
mod sql;
mod store;
mod transaction;

pub use ident::SchemaName;
pub use store::{DEFAULT_SCHEMA, PgStore, PgStoreBuilder};
pub use transaction::PgTransaction;
