//! New packets of a session as Server-Sent Events, resumable with `Last-Event-ID` (ids followed
//! as [`crate::follow`] does).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;

use crate::input::Query;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::filter::{FilterParams, Narrowed, PACKETS};
use crate::follow::Follower;
use crate::routes::ensure_session_known;
use crate::routes::packets::{PACKET_COLUMNS, Packet};
use crate::state::AppState;

const POLL: Duration = Duration::from_millis(500);
const BATCH: i64 = 500;
/// How often a running stream asks again whether its caller may still read the session (a
/// revoked RoleBinding, an expired or deleted token): as often as the auth cache forgets answers.
const RECHECK: Duration = crate::auth::kubernetes::TTL;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResumeParams {
    /// Resume after this packet id (for clients that cannot send the `Last-Event-ID` header).
    #[param(min_length = 1)]
    pub last_event_id: Option<String>,
    /// Bearer token, for browsers' EventSource, which cannot send headers.
    #[param(min_length = 1)]
    pub access_token: Option<String>,
}

/// Packets stored from now on (or after `Last-Event-ID`) that match the filters, as `packet`
/// events whose id is the packet id. `session` is required.
#[utoipa::path(get, path = "/api/v1/stream", operation_id = "streamPackets", tag = "packets",
    params(FilterParams, ResumeParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this packet id; EventSource sends it when it reconnects")),
    responses((status = 200, content_type = "text/event-stream", description = "`packet` events with a Packet as data"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    filter: Narrowed,
    headers: HeaderMap,
    Query(resume): Query<ResumeParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let caller = filter.caller.clone();
    let session = filter
        .session
        .clone()
        .ok_or_else(|| ApiError::bad("session", "the stream needs a session (namespace/name)"))?;
    ensure_session_known(&state.pool, &session).await?;
    let pass = state.limits.streams.enter(&caller.name)?;
    let namespace = session
        .split_once('/')
        .map_or("", |(namespace, _)| namespace)
        .to_owned();
    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(resume.last_event_id);
    let floor = match resume_from {
        Some(id) => id
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad("last_event_id", format!("{id:?} is not a packet id")))?,
        None => {
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM packets WHERE session = $1")
                .bind(&session)
                .fetch_one(&state.pool)
                .await?
        }
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(BATCH as usize);
    let mut shutdown = state.shutdown.clone();
    let pool = state.pool.clone();
    tokio::spawn(async move {
        let _pass = pass;
        let mut follower = Follower::new(floor);
        let mut checked = Instant::now();
        loop {
            if checked.elapsed() >= RECHECK {
                checked = Instant::now();
                if let Err(error) = caller.recheck(&namespace).await {
                    tracing::info!(caller = %caller.name, %error, "ending a live stream: access is gone");
                    let end = Event::default().event("end").data(error.to_string());
                    let _ = sender.send(Ok(end)).await;
                    return;
                }
            }
            match poll(&mut follower, &pool, &filter).await {
                Ok(packets) => {
                    for packet in packets {
                        let event = Event::default()
                            .event("packet")
                            .id(packet.id.to_string())
                            .json_data(&packet)
                            .expect("a packet serialises");
                        if sender.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "stream poll failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = sender.closed() => return,
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()))
}

/// One poll: the undelivered packets matching the filters, described and named.
async fn poll(follower: &mut Follower, pool: &sqlx::PgPool, filter: &Narrowed) -> Result<Vec<Packet>, ApiError> {
    let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {PACKET_COLUMNS} FROM packets WHERE true"));
    follower.push_undelivered(&mut query);
    filter.push_sql(&mut query, &PACKETS);
    query.push(" ORDER BY id LIMIT ").push_bind(BATCH);
    let mut packets: Vec<Packet> = query.build_query_as().fetch_all(pool).await?;
    crate::routes::packets::describe(pool, &filter.caller, &mut packets).await?;
    crate::endpoints::name_ends(pool, &mut packets).await?;
    follower.delivered(packets.iter().map(|p| p.id));
    Ok(packets)
}
