//! Metric names recorded through the `metrics` facade (the CLI installs an exporter).

/// Counter: entries delivered, by destination.
pub const DELIVERED: &str = "eskit_delivered_total";
/// Counter: failed delivery attempts, by destination.
pub const FAILED: &str = "eskit_failed_attempts_total";
/// Counter: entries moved to the dead-letter queue, by destination.
pub const DEAD: &str = "eskit_dead_total";
/// Histogram: seconds from commit to successful delivery, by destination.
pub const LATENCY: &str = "eskit_delivery_latency_seconds";
/// Histogram: seconds to record a batch's results, by destination.
pub const BATCH_DURATION: &str = "eskit_batch_record_seconds";
/// Gauge: partitions this relay owns, by destination.
pub const OWNED_PARTITIONS: &str = "eskit_owned_partitions";
/// Counter: leases taken over from another (expired) owner, by destination.
pub const LEASE_TAKEOVERS: &str = "eskit_lease_takeovers_total";
/// Gauge: circuit state by destination (0 closed, 1 open, 2 half-open).
pub const CIRCUIT_STATE: &str = "eskit_circuit_state";
/// Gauge: streams parked behind a failing head, by destination.
pub const PARKED_STREAMS: &str = "eskit_parked_streams";
/// Gauge: deliveries in flight (started, not yet finished), by destination.
pub const IN_FLIGHT: &str = "eskit_in_flight";

/// The handles a partition worker records through, resolved once per worker (not per
/// entry: looking a labelled metric up allocates and hashes its key).
pub(crate) struct WorkerMetrics {
    pub delivered: ::metrics::Counter,
    pub failed: ::metrics::Counter,
    pub dead: ::metrics::Counter,
    pub latency: ::metrics::Histogram,
    pub batch_duration: ::metrics::Histogram,
    pub in_flight: ::metrics::Gauge,
}

impl WorkerMetrics {
    /// The handles for `destination`.
    pub(crate) fn new(destination: &str) -> Self {
        let label = || ("destination", destination.to_string());
        Self {
            delivered: ::metrics::counter!(DELIVERED, &[label()]),
            failed: ::metrics::counter!(FAILED, &[label()]),
            dead: ::metrics::counter!(DEAD, &[label()]),
            latency: ::metrics::histogram!(LATENCY, &[label()]),
            batch_duration: ::metrics::histogram!(BATCH_DURATION, &[label()]),
            in_flight: ::metrics::gauge!(IN_FLIGHT, &[label()]),
        }
    }
}

/// Adds `delta` to a gauge now and subtracts it again when dropped, so the gauge stays
/// right when a delivery is abandoned or a worker stops.
pub(crate) struct GaugeGuard {
    gauge: ::metrics::Gauge,
    value: f64,
}

impl GaugeGuard {
    /// A guard over `name` for `destination`, starting at 0.
    pub(crate) fn new(name: &'static str, destination: &str) -> Self {
        Self::of(::metrics::gauge!(name, "destination" => destination.to_string()))
    }

    /// A guard over an already resolved gauge, starting at 0.
    pub(crate) fn of(gauge: ::metrics::Gauge) -> Self {
        Self { gauge, value: 0.0 }
    }

    /// Moves this guard's contribution to `value`.
    pub(crate) fn set(&mut self, value: f64) {
        if value != self.value {
            self.gauge.increment(value - self.value);
            self.value = value;
        }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.set(0.0);
    }
}
