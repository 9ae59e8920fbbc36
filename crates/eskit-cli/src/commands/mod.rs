//! One module per command.

pub mod append;
pub mod chaos;
pub mod chaos_report;
pub mod demo;
pub mod outbox;
pub mod read;
pub mod relay;
