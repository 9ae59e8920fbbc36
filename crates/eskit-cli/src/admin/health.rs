//! `/healthz` (the process answers) and `/readyz` (the database answers and this relay
//! holds or can obtain leases for every destination).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::state::AdminState;

/// How long `/readyz` waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Leases of one destination, as `/readyz` sees them.
#[derive(Debug, Serialize)]
struct LeaseCheck {
    destination: String,
    /// Partitions this relay holds.
    held: u32,
    /// Partitions held by other live relays.
    held_by_others: u32,
    /// Partitions in all.
    partitions: u32,
    /// Whether this relay holds a lease or could take one.
    ok: bool,
}

/// `GET /readyz`: 200 when a cheap query answers within [`READY_TIMEOUT`] and, for
/// every destination, this relay holds a lease or some partition is not held by
/// another live relay; 503 with the reason otherwise.
pub async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, check(&state)).await {
        Err(_) => not_ready(format!("database did not answer within {READY_TIMEOUT:?}"), Vec::new()),
        Ok(Err(err)) => not_ready(format!("database: {err}"), Vec::new()),
        Ok(Ok(leases)) if leases.iter().all(|l| l.ok) => (
            StatusCode::OK,
            Json(serde_json::json!({ "ready": true, "database": "ok", "leases": leases })),
        )
            .into_response(),
        Ok(Ok(leases)) => not_ready(
            "every partition of a destination is leased by other relays".into(),
            leases,
        ),
    }
}

fn not_ready(reason: String, leases: Vec<LeaseCheck>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "ready": false, "reason": reason, "leases": leases })),
    )
        .into_response()
}

async fn check(state: &AdminState) -> Result<Vec<LeaseCheck>, eskit::Error> {
    // The cheapest query of the interface: a small table.
    state.store.disabled_destinations().await?;
    let partitions = state.store.partitions();
    let mut checks = Vec::with_capacity(state.destinations.len());
    for d in &state.destinations {
        let leases = state.store.list_leases(d).await?;
        let held = leases.iter().filter(|l| l.live && l.owner == state.owner).count() as u32;
        let held_by_others = leases.iter().filter(|l| l.live && l.owner != state.owner).count() as u32;
        checks.push(LeaseCheck {
            destination: d.clone(),
            held,
            held_by_others,
            partitions,
            ok: held > 0 || held_by_others < partitions,
        });
    }
    Ok(checks)
}
