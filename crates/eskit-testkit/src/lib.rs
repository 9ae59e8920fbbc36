//! eskit's conformance suite (written once, run against every backend), loopback
//! receivers with fault injection, fault-injecting in-process sinks and the delivery
//! checker.
//!
//! - [`suite`] and [`conformance_tests!`]: the tests every backend must pass, through
//!   its [`Harness`].
//! - [`receiver`]: a real loopback HTTP webhook receiver that verifies Standard
//!   Webhooks signatures and injects faults (used by tests and by `eskit demo`).
//! - [`sinks`]: in-process [`eskit::Destination`]s with scripted and random faults.
//! - [`chaos`]: the crash-loop checker (writers, relay processes killed at seeded
//!   moments, a faulty sink, then the delivery checks).
//! - [`checker`]: compares committed entries with observed deliveries: lost,
//!   phantoms, per-stream order violations, duplicates.
#![warn(missing_docs)]

pub mod chaos;
pub mod checker;
pub mod harness;
pub mod memory;
pub mod receiver;
pub mod sinks;
pub mod suite;
pub mod wait;

pub use checker::{Checker, Report};
pub use harness::Harness;
pub use receiver::{FaultPlan, Receiver, ReceiverConfig};
pub use sinks::{Fault, RecordingSink};
pub use wait::wait_until;
