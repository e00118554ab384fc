//! CaptureSessions as the operator mirrors them into PostgreSQL, with live packet counts.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use crate::input::Path;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Session {
    pub namespace: String,
    pub name: String,
    /// `namespace/name`: the value of the `session` filter.
    pub key: String,
    pub uid: String,
    /// Pending, Capturing, Suspended, Draining, Completed or Failed.
    pub phase: Option<String>,
    pub ready: bool,
    /// The Ready condition's message.
    pub message: Option<String>,
    /// kstatus conditions, as on the CaptureSession.
    #[schema(value_type = Vec<Condition>)]
    pub conditions: serde_json::Value,
    #[schema(value_type = Option<SnifferCounts>)]
    pub sniffers: serde_json::Value,
    #[schema(value_type = Option<ParserCounts>)]
    pub parsers: serde_json::Value,
    /// Batches waiting in the session's queue.
    pub backlog: Option<i64>,
    pub packets: PacketCounts,
    /// The CaptureSession's spec.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    pub start_time: Option<String>,
    pub completion_time: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set once the CaptureSession is deleted; its data stays until the retention passes.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A condition of the CaptureSession's status, as the operator writes it (the document's shape
/// for the stored JSON, which is passed through).
#[derive(Serialize, ToSchema)]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled`, `Storing`, `Targeted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    #[serde(rename = "lastTransitionTime")]
    pub last_transition_time: Option<String>,
}

/// Sniffer pods wanted and ready.
#[derive(Serialize, ToSchema)]
pub struct SnifferCounts {
    pub desired: i32,
    pub ready: i32,
}

/// Parser replicas running and wanted by the autoscaler.
#[derive(Serialize, ToSchema)]
pub struct ParserCounts {
    pub replicas: i32,
    #[serde(rename = "desiredReplicas")]
    pub desired_replicas: i32,
}

/// Captured = stored + deduplicated + dropped + still on the way.
#[derive(Serialize, ToSchema)]
pub struct PacketCounts {
    pub captured: i64,
    pub dropped: i64,
    pub dropped_by_reason: BTreeMap<String, i64>,
    pub stored: i64,
    /// Copies of a packet the node's sniffer had already captured on another interface.
    pub deduplicated: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<Session>,
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    bool,
    Option<String>,
    serde_json::Value,
    serde_json::Value,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const SELECT: &str = "SELECT namespace, name, uid, phase, ready, message, spec, status, created_at, updated_at, deleted_at \
                      FROM sessions";

async fn view(state: &AppState, row: Row) -> Result<Session, ApiError> {
    let (namespace, name, uid, phase, ready, message, spec, status, created_at, updated_at, deleted_at) = row;
    let key = database::session_key(&namespace, &name);
    let counts = database::packet_counts(&state.pool, &key, Some(&created_at.to_rfc3339())).await?;
    let text = |field: &str| status.get(field).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Session {
        conditions: status
            .get("conditions")
            .cloned()
            .unwrap_or_else(|| serde_json::json!([])),
        sniffers: status.get("sniffers").cloned().unwrap_or_default(),
        parsers: status.get("parsers").cloned().unwrap_or_default(),
        backlog: status.get("backlog").and_then(|v| v.as_i64()),
        start_time: text("startTime"),
        completion_time: text("completionTime"),
        packets: PacketCounts {
            captured: counts.captured,
            dropped: counts.dropped,
            dropped_by_reason: counts.dropped_by_reason,
            stored: counts.stored,
            deduplicated: counts.deduplicated,
        },
        namespace,
        name,
        key,
        uid,
        phase,
        ready,
        message,
        spec,
        created_at,
        updated_at,
        deleted_at,
    })
}

/// Every session the operator has mirrored, deleted ones included (until their data expires).
#[utoipa::path(get, path = "/api/v1/sessions", operation_id = "listSessions", tag = "sessions",
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<SessionList>, ApiError> {
    let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(SELECT);
    query.push(" WHERE true");
    if let crate::auth::Visible::Sessions(visible) = caller.visible(&state.pool).await? {
        query
            .push(" AND namespace || '/' || name = ANY(")
            .push_bind(visible)
            .push(")");
    }
    query.push(" ORDER BY namespace, name");
    let rows: Vec<Row> = query.build_query_as().fetch_all(&state.pool).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(view(&state, row).await?);
    }
    Ok(Json(SessionList { items }))
}

/// One session.
#[utoipa::path(get, path = "/api/v1/sessions/{namespace}/{name}", operation_id = "getSession", tag = "sessions",
    params(("namespace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Session>, ApiError> {
    caller.require_in(&namespace, crate::auth::Scope::Read).await?;
    let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(SELECT);
    query
        .push(" WHERE namespace = ")
        .push_bind(&namespace)
        .push(" AND name = ")
        .push_bind(&name);
    let row: Option<Row> = query.build_query_as().fetch_optional(&state.pool).await?;
    let row = row.ok_or_else(|| ApiError::NotFound(format!("session {namespace}/{name} is not known")))?;
    Ok(Json(view(&state, row).await?))
}
