//! Options every backend's store takes: routes, partitions, limits, known destinations.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::route::{RouteFilter, Routes};

/// What a store needs to know beyond its connection. Backend builders wrap this.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Routes that turn appended events into outbox entries.
    pub routes: Routes,
    /// Destinations explicit outbox messages may name (route destinations are included
    /// automatically). Any other name is [`Error::UnknownDestination`].
    pub destinations: BTreeSet<String>,
    /// Number of partitions entries are spread over (default 16). Relays share work by
    /// partition; keep it fixed for a database.
    pub partitions: u32,
    /// Input limits.
    pub limits: Limits,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            routes: Routes::default(),
            destinations: BTreeSet::new(),
            partitions: 16,
            limits: Limits::default(),
        }
    }
}

impl StoreOptions {
    /// Every appended event matching `filter` gets an outbox entry for `destination`,
    /// in the same transaction.
    pub fn with_outbox(mut self, destination: impl Into<String>, filter: RouteFilter) -> Self {
        let destination = destination.into();
        self.destinations.insert(destination.clone());
        self.routes.add(destination, filter);
        self
    }

    /// Declares a destination for explicit outbox messages (without a route).
    pub fn destination(mut self, name: impl Into<String>) -> Self {
        self.destinations.insert(name.into());
        self
    }

    /// Sets the partition count.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Sets the input limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the payload cap in bytes.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_payload_bytes = bytes;
        self
    }

    /// Fails with [`Error::UnknownDestination`] unless `name` is a known destination.
    pub fn check_destination(&self, name: &str) -> Result<()> {
        if self.destinations.contains(name) {
            Ok(())
        } else {
            Err(Error::UnknownDestination(name.to_string()))
        }
    }
}

/// Adds the [`StoreOptions`] setters to a backend's store builder, so every backend offers
/// the same ones with the same meaning. Use inside `impl YourBuilder { ... }`; the builder
/// needs a field `options: StoreOptions`.
#[macro_export]
macro_rules! store_options_setters {
    () => {
        /// Every appended event matching `filter` gets an outbox entry for `destination`,
        /// in the same transaction. See [`StoreOptions::with_outbox`]($crate::StoreOptions::with_outbox).
        pub fn with_outbox(mut self, destination: impl Into<String>, filter: $crate::RouteFilter) -> Self {
            self.options = self.options.with_outbox(destination, filter);
            self
        }

        /// Declares a destination for explicit outbox messages. See
        /// [`StoreOptions::destination`]($crate::StoreOptions::destination).
        pub fn destination(mut self, name: impl Into<String>) -> Self {
            self.options = self.options.destination(name);
            self
        }

        /// Number of partitions entries are spread over (default 16). Fixed for a
        /// database: the backend records it and refuses another count later.
        pub fn partitions(mut self, partitions: u32) -> Self {
            self.options = self.options.partitions(partitions);
            self
        }

        /// Payload (and metadata) cap in bytes (default 1 MiB).
        pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
            self.options = self.options.max_payload_bytes(bytes);
            self
        }

        /// Input limits.
        pub fn limits(mut self, limits: $crate::Limits) -> Self {
            self.options = self.options.limits(limits);
            self
        }

        /// Replaces all store options at once.
        pub fn options(mut self, options: $crate::StoreOptions) -> Self {
            self.options = options;
            self
        }
    };
}
