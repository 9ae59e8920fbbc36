//! One module per command.

pub mod append;
pub mod demo;
pub mod outbox;
pub mod read;
pub mod relay;
