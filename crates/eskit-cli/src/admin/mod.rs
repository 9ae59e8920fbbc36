//! The operations layer of `eskit relay`: `/metrics`, `/healthz`, `/readyz`, the admin
//! JSON API under `/api/`, the DLQ web page at `/`, the metrics sampler and the
//! retention purge. See `docs/operations.md` for every endpoint, metric and key.

pub mod api;
pub mod auth;
pub mod config;
pub mod health;
pub mod metrics;
pub mod page;
pub mod retention;
pub mod service;
pub mod state;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};

pub use config::{AdminSection, RetentionSection};
pub use service::{AdminError, AdminOptions, AdminService};
pub use state::AdminState;

/// The admin router: `/`, `/healthz`, `/readyz`, `/metrics` (open) and `/api/*`
/// (behind the bearer token unless auth is disabled).
pub fn router(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route("/status", get(api::status))
        .route("/entries", get(api::entries))
        .route("/dlq", get(api::dlq))
        .route("/dlq/replay", post(api::replay))
        .route("/dlq/discard", post(api::discard))
        .route("/purge", post(api::purge))
        .route("/destinations/{name}/enable", post(api::enable))
        .route("/destinations/{name}/disable", post(api::disable))
        .fallback(api::not_found)
        .layer(middleware::map_response(no_store))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .nest("/api", api)
        .with_state(state)
}

/// API answers are never cached.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
