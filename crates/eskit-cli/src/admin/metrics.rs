//! `/metrics`: the Prometheus exporter (installed once per process) and the sampler
//! that turns the outbox status into gauges.
//!
//! The relay records its own counters, histograms and gauges through the `metrics`
//! facade (`eskit::relay::metrics`); this module adds the gauges read from the
//! database and registers every series at zero for each configured destination, so
//! they exist before the first event.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use eskit::relay::metrics as relay;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::api::read_status;
use super::retention::PURGED;
use super::state::AdminState;

/// Gauge: pending entries (including those waiting for a retry), by destination.
pub const PENDING: &str = "eskit_pending_entries";
/// Gauge: pending entries that failed at least once, by destination.
pub const RETRYING: &str = "eskit_retrying_entries";
/// Gauge: age in seconds of the oldest pending entry (0 when none), by destination.
pub const OLDEST_PENDING_AGE: &str = "eskit_oldest_pending_age_seconds";
/// Gauge: entries in the dead-letter queue, by destination.
pub const DEAD_ENTRIES: &str = "eskit_dead_entries";
/// Gauge: 1 when the destination is disabled (410 Gone or an operator), by destination.
pub const DISABLED: &str = "eskit_destination_disabled";
/// Gauge: 1 when the last status read succeeded, 0 when the database failed.
pub const DATABASE_UP: &str = "eskit_database_up";

/// Buckets of the delivery latency histogram (seconds, commit to success).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Buckets of the batch record histogram (seconds).
const BATCH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder (once; later
/// calls return the same handle). `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(relay::LATENCY.into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(relay::BATCH_DURATION.into()), BATCH_BUCKETS))
                .and_then(|b| b.install_recorder());
            match built {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(err) => {
                    warn!(error = %err, "Prometheus exporter not installed; /metrics is unavailable");
                    None
                }
            }
        })
        .clone()
}

/// HELP texts and units of every eskit metric.
fn describe() {
    describe_counter!(relay::DELIVERED, "Entries delivered, by destination.");
    describe_counter!(relay::FAILED, "Failed delivery attempts, by destination.");
    describe_counter!(relay::DEAD, "Entries moved to the dead-letter queue, by destination.");
    describe_histogram!(
        relay::LATENCY,
        Unit::Seconds,
        "Seconds from commit to successful delivery, by destination."
    );
    describe_histogram!(
        relay::BATCH_DURATION,
        Unit::Seconds,
        "Seconds to record a batch's delivery results, by destination."
    );
    describe_gauge!(relay::OWNED_PARTITIONS, "Partitions this relay owns, by destination.");
    describe_counter!(
        relay::LEASE_TAKEOVERS,
        "Partition leases taken over from another (expired) owner, by destination."
    );
    describe_gauge!(
        relay::CIRCUIT_STATE,
        "Circuit state: 0 closed, 1 open, 2 half-open, by destination."
    );
    describe_gauge!(
        relay::PARKED_STREAMS,
        "Streams parked behind a failing or not yet due head, by destination."
    );
    describe_gauge!(relay::IN_FLIGHT, "Deliveries in flight, by destination.");
    describe_gauge!(PENDING, "Pending entries (including retries), by destination.");
    describe_gauge!(RETRYING, "Pending entries that failed at least once, by destination.");
    describe_gauge!(
        OLDEST_PENDING_AGE,
        Unit::Seconds,
        "Age of the oldest pending entry (0 when none), by destination."
    );
    describe_gauge!(DEAD_ENTRIES, "Entries in the dead-letter queue, by destination.");
    describe_gauge!(
        DISABLED,
        "1 when the destination is disabled (410 Gone or an operator)."
    );
    describe_gauge!(DATABASE_UP, "1 when the last status read from the database succeeded.");
    describe_counter!(PURGED, "Delivered entries deleted by the retention purge.");
}

/// `GET /metrics`: Prometheus text format.
pub async fn render(State(state): State<Arc<AdminState>>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics exporter not installed\n").into_response(),
    }
}

/// Registers every per-destination series at zero, so dashboards and alerts see them
/// before the first event.
fn register(destination: &str) {
    let d = || destination.to_string();
    for name in [relay::DELIVERED, relay::FAILED, relay::DEAD, relay::LEASE_TAKEOVERS] {
        ::metrics::counter!(name, "destination" => d()).increment(0);
    }
    for name in [relay::PARKED_STREAMS, relay::IN_FLIGHT, relay::OWNED_PARTITIONS] {
        ::metrics::gauge!(name, "destination" => d()).increment(0.0);
    }
}

/// Reads the status once and sets the gauges.
pub async fn sample_once(state: &AdminState) {
    if let Some(handle) = &state.metrics {
        handle.run_upkeep();
    }
    let status = match read_status(state).await {
        Ok(s) => s,
        Err(err) => {
            warn!(error = %err, "metrics sampler: reading the outbox status failed");
            ::metrics::gauge!(DATABASE_UP).set(0.0);
            return;
        }
    };
    ::metrics::gauge!(DATABASE_UP).set(1.0);
    ::metrics::counter!(PURGED).increment(0);
    for row in status.destinations {
        let s = &row.status;
        let d = || s.destination.clone();
        if row.configured {
            register(&s.destination);
        }
        ::metrics::gauge!(PENDING, "destination" => d()).set(s.pending as f64);
        ::metrics::gauge!(RETRYING, "destination" => d()).set(s.retrying as f64);
        ::metrics::gauge!(OLDEST_PENDING_AGE, "destination" => d()).set(s.oldest_pending_age_secs.unwrap_or(0.0));
        ::metrics::gauge!(DEAD_ENTRIES, "destination" => d()).set(s.dead as f64);
        ::metrics::gauge!(DISABLED, "destination" => d()).set(if row.disabled { 1.0 } else { 0.0 });
        if let Some(circuit) = &row.circuit {
            let v = match circuit.as_str() {
                "open" => 1.0,
                "half-open" => 2.0,
                _ => 0.0,
            };
            ::metrics::gauge!(relay::CIRCUIT_STATE, "destination" => d()).set(v);
        }
    }
}

/// Samples every `interval` until `cancel`.
pub async fn run_sampler(state: Arc<AdminState>, interval: Duration, cancel: CancellationToken) {
    loop {
        sample_once(&state).await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
