//! Flows (bidirectional 5-tuples per session), filtered, sorted and keyset-paged.

use axum::Json;
use axum::extract::State;

use crate::input::Query;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use crate::cursor;
use crate::endpoints::{self, Endpoint, Named, ServiceName};
use crate::error::{ApiError, ErrorBody};
use crate::filter::{FLOWS, FilterParams, Narrowed};
use crate::routes::{PageParams, ensure_session_known};
use crate::state::AppState;

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Flow {
    pub session: String,
    pub flow_key: String,
    pub transport: Option<String>,
    pub l7: Option<String>,
    pub l7_name: Option<String>,
    /// The endpoint that sent the first packet seen.
    pub src: Option<String>,
    pub src_port: Option<i32>,
    pub dst: Option<String>,
    pub dst_port: Option<i32>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub packets: i64,
    pub bytes: i64,
    /// Packets and bytes from `src` to `dst`, and back.
    pub packets_sent: i64,
    pub bytes_sent: i64,
    pub packets_received: i64,
    pub bytes_received: i64,
    pub tcp_flags: i16,
    /// A `q` expression that selects this flow's packets in `/packets`.
    pub packets_filter: String,
    /// Who `src` was when the flow began (see the packets' `src_endpoint`).
    #[sqlx(skip)]
    pub src_endpoint: Option<Endpoint>,
    /// Who `dst` was when the flow began.
    #[sqlx(skip)]
    pub dst_endpoint: Option<Endpoint>,
    /// The Service `dst`:`dst_port` was a backend of when the flow began (Kubernetes'
    /// EndpointSlices). A session keeps an exchange through a Service whose backends it captures
    /// where it enters the backend, so `dst` is the serving pod and this names the Service the
    /// client called (or whose backend it called straight: the node's translation is not stored).
    #[sqlx(skip)]
    pub dst_service: Option<ServiceName>,
}

/// Both ends as they were when the flow began.
impl Named for Flow {
    fn ends(&self) -> (&str, Option<&str>, Option<&str>, DateTime<Utc>) {
        (&self.session, self.src.as_deref(), self.dst.as_deref(), self.first_seen)
    }

    fn name(&mut self, src: Option<Endpoint>, dst: Option<Endpoint>) {
        (self.src_endpoint, self.dst_endpoint) = (src, dst);
    }
}

#[derive(Serialize, ToSchema)]
pub struct FlowPage {
    pub items: Vec<Flow>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SortParams {
    /// `last_seen` (default), `bytes` or `packets`; always descending.
    #[param(value_type = Option<Sort>, inline)]
    pub sort: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    LastSeen,
    Bytes,
    Packets,
}

impl Sort {
    fn expression(self) -> &'static str {
        match self {
            Self::LastSeen => "last_seen",
            Self::Bytes => "(bytes_ab + bytes_ba)",
            Self::Packets => "(packets_ab + packets_ba)",
        }
    }
}

/// The last row of a page: its sort value (microseconds for `last_seen`), session and key.
#[derive(Serialize, Deserialize)]
struct FlowCursor {
    sort: Sort,
    value: i64,
    session: String,
    flow_key: String,
}

const SELECT: &str = "SELECT session, flow_key, transport, l7, l7_name, \
    host(CASE WHEN initiator = 'a' THEN a_addr ELSE b_addr END) AS src, \
    CASE WHEN initiator = 'a' THEN a_port ELSE b_port END AS src_port, \
    host(CASE WHEN initiator = 'a' THEN b_addr ELSE a_addr END) AS dst, \
    CASE WHEN initiator = 'a' THEN b_port ELSE a_port END AS dst_port, \
    first_seen, last_seen, packets_ab + packets_ba AS packets, bytes_ab + bytes_ba AS bytes, \
    CASE WHEN initiator = 'a' THEN packets_ab ELSE packets_ba END AS packets_sent, \
    CASE WHEN initiator = 'a' THEN bytes_ab ELSE bytes_ba END AS bytes_sent, \
    CASE WHEN initiator = 'a' THEN packets_ba ELSE packets_ab END AS packets_received, \
    CASE WHEN initiator = 'a' THEN bytes_ba ELSE bytes_ab END AS bytes_received, \
    tcp_flags, '' AS packets_filter FROM flows WHERE true";

/// Flows matching the filters (the time range selects flows active in it).
#[utoipa::path(get, path = "/api/v1/flows", operation_id = "listFlows", tag = "flows",
    params(FilterParams, SortParams, PageParams),
    responses((status = 200, body = FlowPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    filter: Narrowed,
    Query(sort): Query<SortParams>,
    Query(page): Query<PageParams>,
) -> Result<Json<FlowPage>, ApiError> {
    let limit = page.limit(state.max_page_size)?;
    let sort = match sort.sort.as_deref() {
        None | Some("last_seen") => Sort::LastSeen,
        Some("bytes") => Sort::Bytes,
        Some("packets") => Sort::Packets,
        Some(other) => {
            return Err(ApiError::bad(
                "sort",
                format!("{other:?}: use last_seen, bytes or packets"),
            ));
        }
    };
    let after: Option<FlowCursor> = page.cursor.as_deref().map(cursor::decode).transpose()?;
    if after.as_ref().is_some_and(|c| c.sort != sort) {
        return Err(ApiError::bad("cursor", "this cursor belongs to another sort order"));
    }
    let mut query = QueryBuilder::<Postgres>::new(SELECT);
    filter.push_sql(&mut query, &FLOWS);
    if let Some(after) = after {
        query.push(format_args!(" AND ({}, session, flow_key) < (", sort.expression()));
        if sort == Sort::LastSeen {
            let at = DateTime::<Utc>::from_timestamp_micros(after.value)
                .ok_or_else(|| ApiError::bad("cursor", "not a cursor this API returned"))?;
            query.push_bind(at);
        } else {
            query.push_bind(after.value);
        }
        query
            .push(", ")
            .push_bind(after.session)
            .push(", ")
            .push_bind(after.flow_key)
            .push(")");
    }
    query
        .push(format_args!(
            " ORDER BY {} DESC, session DESC, flow_key DESC LIMIT ",
            sort.expression()
        ))
        .push_bind(limit + 1);
    let mut items: Vec<Flow> = query.build_query_as().fetch_all(&state.pool).await?;
    // Only an empty page can mean an unknown session; checking then saves a round trip per page.
    if let (true, Some(session)) = (items.is_empty(), &filter.session) {
        ensure_session_known(&state.pool, session).await?;
    }
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|flow| {
            let value = match sort {
                Sort::LastSeen => flow.last_seen.timestamp_micros(),
                Sort::Bytes => flow.bytes,
                Sort::Packets => flow.packets,
            };
            cursor::encode(&FlowCursor {
                sort,
                value,
                session: flow.session.clone(),
                flow_key: flow.flow_key.clone(),
            })
        })
    } else {
        None
    };
    for flow in &mut items {
        flow.packets_filter = packets_filter(flow);
    }
    endpoints::name_ends(&state.pool, &mut items).await?;
    let served: Vec<_> = items
        .iter()
        .map(|flow| (flow.dst.as_deref(), flow.dst_port, flow.first_seen))
        .collect();
    let served = endpoints::services_served(&state.pool, &served).await?;
    for (flow, service) in items.iter_mut().zip(served) {
        flow.dst_service = service;
    }
    Ok(Json(FlowPage { items, next_cursor }))
}

fn packets_filter(flow: &Flow) -> String {
    let mut parts = Vec::new();
    if let Some(transport) = &flow.transport {
        parts.push(transport.clone());
    }
    for (address, port) in [(&flow.src, flow.src_port), (&flow.dst, flow.dst_port)] {
        if let Some(address) = address {
            parts.push(format!("host {address}"));
        }
        if let Some(port) = port {
            parts.push(format!("port {port}"));
        }
    }
    parts.join(" and ")
}
