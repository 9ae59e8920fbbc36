//! The JSON API under `/api/` (every route behind [`super::auth::require_token`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eskit::{DeadFilter, DeadSelector, DestinationStatus, EntryFilter, EntryState, OutboxEntry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};
use uuid::Uuid;

use super::state::AdminState;

/// Default page size of the list endpoints.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size of the list endpoints.
pub const MAX_LIMIT: u32 = 1000;

/// An error answer: a status and `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<eskit::Error> for ApiError {
    fn from(err: eskit::Error) -> Self {
        let status = match &err {
            eskit::Error::Validation(_) => StatusCode::BAD_REQUEST,
            eskit::Error::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            warn!(error = %one_line(&err), "admin API: store error");
        }
        Self::new(status, one_line(&err))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> Self {
        Self::bad_request(err.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(err: JsonRejection) -> Self {
        Self::new(err.status(), err.body_text())
    }
}

/// An error and its causes on one line.
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line.replace(['\n', '\r'], " ")
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn parse_time(key: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|e| ApiError::bad_request(format!("{key}: {v:?} is not an RFC 3339 time ({e})")))
        })
        .transpose()
}

fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiError::bad_request(format!(
            "limit: {n} is not between 1 and {MAX_LIMIT}"
        ))),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// The answer of `GET /api/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// When it was read.
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// This relay's lease owner id.
    pub owner: String,
    /// One row per destination, sorted by name.
    pub destinations: Vec<DestinationView>,
}

/// One destination in `GET /api/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DestinationView {
    /// Counts and oldest pending age.
    #[serde(flatten)]
    pub status: DestinationStatus,
    /// Whether this relay is configured to deliver to it.
    pub configured: bool,
    /// Whether it is disabled (by a `410 Gone` or an operator).
    pub disabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// Since when it is disabled.
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_since: Option<OffsetDateTime>,
    /// Circuit state in this relay: `closed`, `open`, `half-open` (none when this
    /// process does not deliver to it).
    pub circuit: Option<String>,
    /// Partitions whose lease this relay holds.
    pub partitions_owned: u32,
    /// Partitions with a live lease (any relay).
    pub partitions_leased: u32,
    /// Partitions in all.
    pub partitions: u32,
}

/// `GET /api/status`: counts per destination, oldest pending age, disabled reason,
/// circuit state and leases.
pub async fn status(State(state): State<Arc<AdminState>>) -> ApiResult<StatusResponse> {
    Ok(Json(read_status(&state).await?))
}

/// Reads the status of every destination that has entries or is configured.
pub async fn read_status(state: &AdminState) -> Result<StatusResponse, eskit::Error> {
    let mut rows: BTreeMap<String, DestinationStatus> = state
        .destinations
        .iter()
        .map(|d| {
            let row = DestinationStatus {
                destination: d.clone(),
                ..DestinationStatus::default()
            };
            (d.clone(), row)
        })
        .collect();
    for s in state.store.status().await? {
        rows.insert(s.destination.clone(), s);
    }
    let disabled: BTreeMap<String, _> = state
        .store
        .disabled_destinations()
        .await?
        .into_iter()
        .map(|d| (d.destination.clone(), d))
        .collect();
    let partitions = state.store.partitions();
    let mut destinations = Vec::with_capacity(rows.len());
    for (name, status) in rows {
        let leases = state.store.list_leases(&name).await?;
        let off = disabled.get(&name);
        destinations.push(DestinationView {
            configured: state.destinations.contains(&name),
            disabled: off.is_some(),
            disabled_reason: off.map(|d| d.reason.clone()),
            disabled_since: off.map(|d| d.since),
            circuit: state.circuits.as_ref().and_then(|c| c.state(&name)).map(str::to_string),
            partitions_owned: leases.iter().filter(|l| l.live && l.owner == state.owner).count() as u32,
            partitions_leased: leases.iter().filter(|l| l.live).count() as u32,
            partitions,
            status,
        });
    }
    Ok(StatusResponse {
        generated_at: OffsetDateTime::now_utc(),
        owner: state.owner.clone(),
        destinations,
    })
}

/// A page of entries.
#[derive(Debug, Serialize, Deserialize)]
pub struct EntriesPage {
    /// The entries, oldest first.
    pub entries: Vec<OutboxEntry>,
    /// Pass as `after_seq` for the next page (`null` on the last page).
    pub next_after_seq: Option<i64>,
}

impl EntriesPage {
    fn new(entries: Vec<OutboxEntry>, limit: u32) -> Self {
        let next_after_seq = (entries.len() as u32 >= limit)
            .then(|| entries.last().map(|e| e.seq))
            .flatten();
        Self {
            entries,
            next_after_seq,
        }
    }
}

/// Query of `GET /api/entries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    destination: Option<String>,
    state: Option<String>,
    stream: Option<String>,
    after_seq: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/entries?destination=&state=&stream=&after_seq=&limit=`.
pub async fn entries(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<EntriesQuery>, QueryRejection>,
) -> ApiResult<EntriesPage> {
    let Query(q) = query?;
    let limit = check_limit(q.limit)?;
    let entry_state = match non_empty(q.state) {
        None => None,
        Some(s) => Some(
            EntryState::parse(&s)
                .ok_or_else(|| ApiError::bad_request(format!("state: {s:?} is not one of pending, delivered, dead")))?,
        ),
    };
    let filter = EntryFilter {
        destination: non_empty(q.destination),
        state: entry_state,
        stream_id: non_empty(q.stream),
        after_seq: q.after_seq,
        limit: Some(limit),
    };
    let entries = state.store.list_entries(&filter).await?;
    Ok(Json(EntriesPage::new(entries, limit)))
}

/// Query of `GET /api/dlq`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqQuery {
    destination: Option<String>,
    dead_from: Option<String>,
    dead_to: Option<String>,
    error: Option<String>,
    after_seq: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/dlq?destination=&dead_from=&dead_to=&error=&after_seq=&limit=`.
pub async fn dlq(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<DlqQuery>, QueryRejection>,
) -> ApiResult<EntriesPage> {
    let Query(q) = query?;
    let limit = check_limit(q.limit)?;
    let filter = DeadFilter {
        destination: non_empty(q.destination),
        dead_from: parse_time("dead_from", q.dead_from.as_deref())?,
        dead_to: parse_time("dead_to", q.dead_to.as_deref())?,
        error_contains: non_empty(q.error),
        after_seq: q.after_seq,
        limit: Some(limit),
    };
    let entries = state.store.list_dead(&filter).await?;
    Ok(Json(EntriesPage::new(entries, limit)))
}

/// Body of `POST /api/dlq/replay` and `POST /api/dlq/discard`: one entry (`id`, with
/// an optional `destination` it must belong to), every dead entry of a `destination`,
/// or a filter (`dead_from`, `dead_to`, `error`, optionally with `destination`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadRequest {
    id: Option<Uuid>,
    destination: Option<String>,
    dead_from: Option<String>,
    dead_to: Option<String>,
    error: Option<String>,
}

/// What a replay or discard touches.
enum Target {
    One(DeadSelector),
    Matching(DeadFilter),
}

impl DeadRequest {
    fn target(self) -> Result<Target, ApiError> {
        let destination = non_empty(self.destination);
        let filter = DeadFilter {
            destination: destination.clone(),
            dead_from: parse_time("dead_from", self.dead_from.as_deref())?,
            dead_to: parse_time("dead_to", self.dead_to.as_deref())?,
            error_contains: non_empty(self.error),
            after_seq: None,
            limit: None,
        };
        let filtered = filter.dead_from.is_some() || filter.dead_to.is_some() || filter.error_contains.is_some();
        match (self.id, filtered) {
            (Some(_), true) => Err(ApiError::bad_request(
                "id selects one entry: it cannot be combined with dead_from, dead_to or error",
            )),
            (Some(id), false) => Ok(Target::One(DeadSelector {
                id: Some(id),
                destination,
            })),
            (None, _) if filtered || destination.is_some() => Ok(Target::Matching(filter)),
            (None, _) => Err(ApiError::bad_request(
                "say which dead entries: id, destination, or a filter (dead_from, dead_to, error)",
            )),
        }
    }
}

/// Which operation.
#[derive(Clone, Copy)]
enum DeadAction {
    Replay,
    Discard,
}

impl DeadAction {
    fn past(self) -> &'static str {
        match self {
            DeadAction::Replay => "replayed",
            DeadAction::Discard => "discarded",
        }
    }
}

async fn change_dead(state: &AdminState, body: DeadRequest, action: DeadAction) -> Result<Response, ApiError> {
    let target = body.target()?;
    let (n, described) = match &target {
        Target::One(selector) => {
            let n = match action {
                DeadAction::Replay => state.store.replay_dead(selector).await?,
                DeadAction::Discard => state.store.discard_dead(selector).await?,
            };
            (n, format!("{selector:?}"))
        }
        Target::Matching(filter) => {
            let n = match action {
                DeadAction::Replay => state.store.replay_dead_matching(filter).await?,
                DeadAction::Discard => state.store.discard_dead_matching(filter).await?,
            };
            (n, format!("{filter:?}"))
        }
    };
    info!(action = action.past(), count = n, selector = %described, "admin API: dead-letter queue changed");
    if let Target::One(selector) = &target
        && n == 0
    {
        let id = selector.id.map(|i| i.to_string()).unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            match &selector.destination {
                Some(d) => format!("no dead entry {id} of destination {d:?}"),
                None => format!("no dead entry {id}"),
            },
        ));
    }
    Ok(Json(json!({ action.past(): n })).into_response())
}

/// `POST /api/dlq/replay`: moves dead entries back to pending (attempts reset, due now).
pub async fn replay(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<DeadRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    change_dead(&state, body, DeadAction::Replay).await
}

/// `POST /api/dlq/discard`: deletes dead entries.
pub async fn discard(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<DeadRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    change_dead(&state, body, DeadAction::Discard).await
}

/// Body of `POST /api/purge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Age such as `1d`, `12h`, `30m`.
    older_than: String,
}

/// `POST /api/purge` `{"older_than": "1d"}`: deletes delivered entries delivered longer
/// ago than that. Dead and pending entries are never touched.
pub async fn purge(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<PurgeRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let age: Duration = humantime::parse_duration(body.older_than.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "older_than: {:?} is not a duration ({e}); e.g. 1d, 12h, 30m",
            body.older_than
        ))
    })?;
    let age = time::Duration::try_from(age).map_err(|_| ApiError::bad_request("older_than: too large"))?;
    let before = OffsetDateTime::now_utc()
        .checked_sub(age)
        .ok_or_else(|| ApiError::bad_request("older_than: too large"))?;
    let purged = state.store.purge_delivered(before).await?;
    info!(purged, before = %before.format(&Rfc3339).unwrap_or_default(), "admin API: delivered entries purged");
    Ok(Json(json!({ "purged": purged, "before": before.format(&Rfc3339).unwrap_or_default() })).into_response())
}

/// `POST /api/destinations/{name}/enable`: re-enables a disabled destination.
/// `{"enabled": false}` when it was not disabled.
pub async fn enable(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let enabled = state.store.enable_destination(&name).await?;
    info!(destination = %name, was_disabled = enabled, "admin API: destination enabled");
    Ok(Json(json!({ "destination": name, "enabled": enabled })).into_response())
}

/// Body of `POST /api/destinations/{name}/disable`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// Why (shown in the status).
    reason: Option<String>,
}

/// `POST /api/destinations/{name}/disable` `{"reason": "…"}`: stops delivery to a
/// destination (its entries stay pending) until it is enabled again.
pub async fn disable(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Result<Json<DisableRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let known = state.destinations.contains(&name) || state.store.destinations().await?.contains(&name);
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown destination {name:?}: not configured and without entries"),
        ));
    }
    let reason = non_empty(body.reason).unwrap_or_else(|| "disabled by an operator".into());
    state.store.disable_destination(&name, &reason).await?;
    info!(destination = %name, reason = %reason, "admin API: destination disabled");
    Ok(Json(json!({ "destination": name, "disabled": true, "reason": reason })).into_response())
}

/// Any other `/api/…` path.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see docs/operations.md")
}
