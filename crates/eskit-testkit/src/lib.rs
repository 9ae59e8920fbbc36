//! eskit's conformance suite (written once, run against every backend), loopback
//! receivers with fault injection, and the delivery checker.

pub mod harness;

pub use harness::Harness;
