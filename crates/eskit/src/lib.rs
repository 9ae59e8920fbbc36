//! # eskit
//!
//! An event store with a transactional outbox. Events, outbox entries and the
//! application's own writes commit in one database transaction; a [`Relay`] delivers
//! the entries to [`Destination`]s with retries, per-stream order and a dead-letter
//! queue. This crate is the backend-agnostic core; pick a backend crate
//! (`eskit-sqlite`, `eskit-postgres`) and destinations (`eskit-destinations`).
#![warn(missing_docs)]

pub mod backend;
pub mod clock;
pub mod destination;
pub mod error;
pub mod event;
pub mod limits;
pub mod options;
pub mod outbox;
pub mod relay;
pub mod retry;
pub mod route;

pub use backend::{
    BULK_BATCH, BulkBatch, DeadFilter, DeadSelector, DestinationStatus, DisabledDestination, EntryFilter, EntryOutcome,
    EntryResult, EventStore, Lease, LeaseInfo, OutboxStore, PendingQuery, StoreTransaction, TransactionalStore,
};
pub use destination::{DeliveryError, Destination, Destinations, FailureKind};
pub use error::{Error, Result, ValidationError};
pub use event::{AppendResult, EventData, ExpectedVersion, ReadDirection, RecordedEvent};
pub use limits::Limits;
pub use options::StoreOptions;
pub use outbox::{EntryState, NewOutboxEntry, OutboxEntry, OutboxMessage, partition_of, route_entry_id};
pub use relay::{BreakerConfig, Circuits, DestinationPolicy, Relay, RelayConfig, RelayHandle};
pub use retry::RetryPolicy;
pub use route::{Route, RouteFilter, Routes};

pub use serde_json::value::RawValue;
