//! One module per command.

pub mod append;
pub mod bench;
pub mod bench_append;
pub mod bench_raw;
pub mod bench_relay;
pub mod bench_report;
pub mod bench_schema;
pub mod chaos;
pub mod chaos_report;
pub mod demo;
pub mod outbox;
pub mod read;
pub mod relay;
