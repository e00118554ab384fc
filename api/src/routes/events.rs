//! L7 events: DNS transactions, HTTP exchanges and TLS ClientHellos, newest first, with the same
//! filters as packets (`src`/`dst` are the client and the server) and keyset paging.

use axum::Json;
use axum::extract::State;

use crate::input::Query;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Postgres, QueryBuilder};
use utoipa::ToSchema;

use crate::cursor;
use crate::error::{ApiError, ErrorBody};
use crate::filter::{Columns, FilterParams, Narrowed};
use crate::routes::{PageParams, ensure_session_known};
use crate::state::AppState;

/// What the filters look at in an event table: the client is the source, the server the destination.
const fn columns(transport: &'static str, l7: &'static str) -> Columns {
    Columns {
        session: "session",
        src: "client",
        dst: "server",
        src_port: "client_port",
        dst_port: "server_port",
        transport,
        l7,
        tunnel: None,
        first_time: "ts",
        last_time: "ts",
    }
}
const DNS: Columns = columns("transport", "'dns'");
const HTTP: Columns = columns("transport", "protocol");
const TLS: Columns = columns("transport", "'tls'");

const ENDPOINTS: &str = "id, session, ts, host(client) AS client, client_port, host(server) AS server, server_port";

/// What every event has: where it is in the session, when, and both ends (the client asked).
#[derive(Serialize, ToSchema, FromRow)]
pub struct EventEndpoints {
    pub id: i64,
    pub session: String,
    /// When the exchange began (its answer's time if the beginning was not seen).
    pub ts: DateTime<Utc>,
    pub client: String,
    pub client_port: i32,
    pub server: String,
    pub server_port: i32,
}

/// One DNS query and its response.
#[derive(Serialize, ToSchema, FromRow)]
pub struct DnsEvent {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub ends: EventEndpoints,
    /// `udp` or `tcp`.
    pub transport: String,
    pub transaction: i32,
    pub query: Option<String>,
    /// Record type asked for (`A`, `AAAA`, `PTR`, ...).
    pub query_type: Option<String>,
    /// `NOERROR`, `NXDOMAIN`, ...; absent until a response was seen.
    pub rcode: Option<String>,
    /// Answers as dig prints them (`A 10.0.0.5`).
    pub answers: Option<Vec<String>>,
    /// From the query to its response, when both were seen.
    pub rtt_ms: Option<f64>,
}

/// One HTTP request and its response: an HTTP/1.x request, or an HTTP/2 stream (gRPC's calls
/// among them).
#[derive(Serialize, ToSchema, FromRow)]
pub struct HttpEvent {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub ends: EventEndpoints,
    /// `http` (HTTP/1.x), `http2` or `grpc`.
    pub protocol: String,
    /// `tcp`, or `udp` for SSDP.
    pub transport: String,
    pub method: Option<String>,
    /// HTTP/2's `:scheme` (`http` in cleartext, `https` through a proxy); absent for HTTP/1.x.
    pub scheme: Option<String>,
    /// The Host header, or HTTP/2's `:authority`.
    pub host: Option<String>,
    pub path: Option<String>,
    pub user_agent: Option<String>,
    /// Absent until a response was seen.
    pub status: Option<i32>,
    /// From the request to the response's status line or headers.
    pub latency_ms: Option<f64>,
    /// The HTTP/2 stream.
    pub stream_id: Option<i64>,
    pub content_type: Option<String>,
    /// HTTP/2: DATA payload bytes each way, once that side ended its stream.
    pub request_bytes: Option<i64>,
    pub response_bytes: Option<i64>,
    /// gRPC: the service and method, from the path (`helloworld.Greeter`, `SayHello`).
    #[sqlx(skip)]
    pub grpc_service: Option<String>,
    #[sqlx(skip)]
    pub grpc_method: Option<String>,
    /// gRPC: messages each way.
    pub request_messages: Option<i32>,
    pub response_messages: Option<i32>,
    /// gRPC's status code from the trailers (0 is OK) and its message.
    pub grpc_status: Option<i32>,
    pub grpc_message: Option<String>,
    /// RST_STREAM's error code, when the stream was reset (`CANCEL`, ...).
    pub reset: Option<String>,
    /// Header fields that pointed at header-table entries the capture never saw (it joined the
    /// connection later): their values are unknown.
    pub unresolved_fields: i32,
}

impl HttpEvent {
    /// gRPC's path is `/package.Service/Method`.
    fn name_grpc_call(&mut self) {
        if self.protocol != "grpc" {
            return;
        }
        if let Some((service, method)) = self.path.as_deref().and_then(|p| p.strip_prefix('/')?.split_once('/')) {
            self.grpc_service = Some(service.to_owned());
            self.grpc_method = Some(method.to_owned());
        }
    }

    /// What a caller without `payload` sees: the path without its query, no header values.
    fn without_payload(&mut self) {
        if let Some(path) = &mut self.path
            && let Some(query) = path.find('?')
        {
            path.truncate(query);
        }
        self.user_agent = None;
        self.grpc_message = None;
    }
}

/// One TLS ClientHello.
#[derive(Serialize, ToSchema, FromRow)]
pub struct TlsEvent {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub ends: EventEndpoints,
    /// `tcp`, or `quic` for a ClientHello read from a QUIC Initial packet.
    pub transport: String,
    /// Server name indication.
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The highest version offered.
    pub version: Option<String>,
    /// JA4 fingerprint (absent when the hello was cut short).
    pub ja4: Option<String>,
}

/// A page of events, newest first.
#[derive(Serialize, ToSchema)]
pub struct EventPage<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

async fn page<T>(
    state: &AppState,
    filter: &Narrowed,
    page: &PageParams,
    select: &str,
    columns: &Columns,
) -> Result<EventPage<T>, ApiError>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin + Event,
{
    let limit = page.limit(state.max_page_size)?;
    let before: Option<i64> = page.cursor.as_deref().map(cursor::decode).transpose()?;
    let mut query = QueryBuilder::<Postgres>::new(select);
    query.push(" WHERE true");
    filter.push_sql(&mut query, columns);
    if let Some(before) = before {
        query.push(" AND id < ").push_bind(before);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(limit + 1);
    let mut items: Vec<T> = query.build_query_as().fetch_all(&state.pool).await?;
    if let (true, Some(session)) = (items.is_empty(), &filter.session) {
        ensure_session_known(&state.pool, session).await?;
    }
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|event| cursor::encode(&event.ends().id))
    } else {
        None
    };
    Ok(EventPage { items, next_cursor })
}

pub trait Event {
    fn ends(&self) -> &EventEndpoints;
}

macro_rules! event {
    ($($t:ty),*) => { $(impl Event for $t { fn ends(&self) -> &EventEndpoints { &self.ends } })* };
}
event!(DnsEvent, HttpEvent, TlsEvent);

/// DNS transactions: each query with its response code, answers and round-trip time.
#[utoipa::path(get, path = "/api/v1/events/dns", operation_id = "listDnsEvents", tag = "events",
    params(FilterParams, PageParams),
    responses((status = 200, body = EventPage<DnsEvent>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn dns(
    State(state): State<AppState>,
    filter: Narrowed,
    Query(paging): Query<PageParams>,
) -> Result<Json<EventPage<DnsEvent>>, ApiError> {
    let select = format!(
        "SELECT {ENDPOINTS}, transport, transaction, query, query_type, rcode, answers, rtt_ms FROM dns_events"
    );
    Ok(Json(page(&state, &filter, &paging, &select, &DNS).await?))
}

/// HTTP exchanges: each HTTP/1.x request or HTTP/2 stream (gRPC calls among them) with its
/// response status and latency; `protocol http2` or `protocol grpc` narrows to one.
#[utoipa::path(get, path = "/api/v1/events/http", operation_id = "listHttpEvents", tag = "events",
    params(FilterParams, PageParams),
    responses((status = 200, body = EventPage<HttpEvent>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn http(
    State(state): State<AppState>,
    filter: Narrowed,
    Query(paging): Query<PageParams>,
) -> Result<Json<EventPage<HttpEvent>>, ApiError> {
    let select = format!(
        "SELECT {ENDPOINTS}, protocol, transport, method, scheme, host, path, user_agent, status, latency_ms, stream_id, \
         content_type, request_bytes, response_bytes, request_messages, response_messages, grpc_status, grpc_message, \
         reset, unresolved_fields FROM http_events"
    );
    let mut events: EventPage<HttpEvent> = page(&state, &filter, &paging, &select, &HTTP).await?;
    // The payload rule (see `Caller::payload_namespaces`): query strings and header values need `payload`.
    let payload = filter
        .caller
        .payload_namespaces(events.items.iter().map(|event| event.ends.session.as_str()))
        .await?;
    for event in &mut events.items {
        event.name_grpc_call();
        let namespace = event
            .ends
            .session
            .split_once('/')
            .map_or("", |(namespace, _)| namespace);
        if !payload.contains(namespace) {
            event.without_payload();
        }
    }
    Ok(Json(events))
}

/// TLS ClientHellos: server name, ALPN, offered version and JA4 fingerprint.
#[utoipa::path(get, path = "/api/v1/events/tls", operation_id = "listTlsEvents", tag = "events",
    params(FilterParams, PageParams),
    responses((status = 200, body = EventPage<TlsEvent>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tls(
    State(state): State<AppState>,
    filter: Narrowed,
    Query(paging): Query<PageParams>,
) -> Result<Json<EventPage<TlsEvent>>, ApiError> {
    let select = format!("SELECT {ENDPOINTS}, transport, sni, alpn, version, ja4 FROM tls_events");
    Ok(Json(page(&state, &filter, &paging, &select, &TLS).await?))
}
