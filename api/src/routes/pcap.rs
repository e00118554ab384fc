//! A session's packets as a pcap file, streamed straight from the database: records are written as
//! they are read, through a small bounded channel, so an export of any size holds little memory.

use axum::body::{Body, Bytes};
use axum::extract::State;

use crate::input::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;

use futures::TryStreamExt;
use sqlx::{Postgres, QueryBuilder};

use crate::auth::{Caller, Scope, audit};
use crate::error::{ApiError, ErrorBody};
use crate::filter::{Filter, FilterParams, PACKETS};
use crate::routes::ensure_session_known;
use crate::segments::{self, Segment};
use crate::state::AppState;

/// pcap's link type for Ethernet frames.
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 262_144;
/// Rows are gathered into chunks of about this size before they are sent.
const CHUNK: usize = 64 * 1024;
/// Decoded segments kept while exporting: enough for the batches of several nodes interleaving.
const SEGMENTS_KEPT: usize = 16;

fn file_header() -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // microsecond timestamps
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    out
}

fn push_record(out: &mut Vec<u8>, micros: i64, original_len: i32, data: &[u8]) {
    out.extend_from_slice(&((micros.div_euclid(1_000_000)) as u32).to_le_bytes());
    out.extend_from_slice(&((micros.rem_euclid(1_000_000)) as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(original_len.max(data.len() as i32) as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// Streams the matching packets' records, oldest first: the index rows say which packets and in
/// what order, their segments give the bytes (a few recent segments are kept decoded, since
/// packets of one batch mostly follow each other). Returns early if the client goes away.
async fn write_packets(
    pool: &sqlx::PgPool,
    filter: &Filter,
    sender: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT id, (extract(epoch FROM ts) * 1000000)::bigint, original_len FROM packets WHERE true",
    );
    filter.push_sql(&mut query, &PACKETS);
    query.push(" ORDER BY ts, id");
    // One statement streams the whole export, however long it takes: exempt from the timeout.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
    let mut rows = query.build_query_as::<(i64, i64, i32)>().fetch(&mut *tx);
    let mut segments: VecDeque<(i64, Segment)> = VecDeque::new();
    let mut chunk = file_header();
    while let Some((id, micros, original_len)) = rows.try_next().await? {
        let (segment_id, position) = segments::locate(id);
        if !segments.iter().any(|(id, _)| *id == segment_id) {
            let Some(segment) = Segment::fetch(pool, segment_id).await? else {
                continue; // expired between the two reads
            };
            if segments.len() == SEGMENTS_KEPT {
                segments.pop_back();
            }
            segments.push_front((segment_id, segment));
        }
        let segment = &segments
            .iter()
            .find(|(id, _)| *id == segment_id)
            .expect("just fetched")
            .1;
        let Some(data) = segment.frame(position) else {
            continue;
        };
        push_record(&mut chunk, micros, original_len, data);
        if chunk.len() >= CHUNK && sender.send(Ok(std::mem::take(&mut chunk).into())).await.is_err() {
            return Ok(()); // the client went away
        }
    }
    let _ = sender.send(Ok(chunk.into())).await;
    Ok(())
}

/// The session's packets matching the filters, oldest first, as a pcap file (Wireshark, tshark).
#[utoipa::path(get, path = "/api/v1/sessions/{namespace}/{name}/pcap", operation_id = "exportPcap", tag = "sessions",
    params(("namespace" = String, Path), ("name" = String, Path), FilterParams),
    responses((status = 200, content_type = "application/vnd.tcpdump.pcap", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
    Query(filters): Query<FilterParams>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Pcap)?;
    let mut filter = filters.check()?;
    let session = database::session_key(&namespace, &name);
    // The path names the session; the shared `session` filter is not documented for this route.
    if filter.session.as_ref().is_some_and(|given| *given != session) {
        return Err(ApiError::bad("session", "the path already names the session"));
    }
    ensure_session_known(&state.pool, &session).await?;
    filter.session = Some(session.clone());
    audit(
        &caller,
        "export-pcap",
        &format!("{session} {}", filters.q.as_deref().unwrap_or("")),
    );

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let pool = state.pool.clone();
    tokio::spawn(async move {
        if let Err(error) = write_packets(&pool, &filter, &sender).await {
            tracing::error!(%error, "pcap export failed midway");
            let _ = sender.send(Err(std::io::Error::other(error))).await;
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let filename = format!("attachment; filename=\"{namespace}-{name}.pcap\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response())
}
