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
use crate::filter::{FilterParams, Narrowed, PACKETS};
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
/// How long a chunk may wait for the client to take it. The export holds a pooled connection and
/// a statement without a timeout while it runs; a client that stops reading loses the export
/// rather than keeping them.
const SLOW_READER: std::time::Duration = std::time::Duration::from_secs(30);

/// The export's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Classic pcap: what tcpdump writes by default.
    Pcap,
    /// pcapng with a Name Resolution Block first, naming every address in the export by what it
    /// was (pod, Service, node, or the session's DNS answers), so that Wireshark and tshark show
    /// the names Trawl shows.
    Pcapng,
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `pcap` (default) or `pcapng` (with name resolution records).
    #[param(example = "pcapng")]
    pub format: Option<String>,
}

impl ExportParams {
    fn format(&self) -> Result<Format, ApiError> {
        match self.format.as_deref().map(str::trim) {
            None | Some("" | "pcap") => Ok(Format::Pcap),
            Some("pcapng") => Ok(Format::Pcapng),
            Some(other) => Err(ApiError::bad("format", format!("{other:?} is neither pcap nor pcapng"))),
        }
    }
}

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

/// A pcapng block: type, total length, body padded to 32 bits, total length again.
fn push_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let padded = body.len().next_multiple_of(4);
    let total = (12 + padded) as u32;
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
    out.extend_from_slice(&total.to_le_bytes());
}

/// Section Header Block and one Ethernet interface with microsecond timestamps (the default
/// resolution, so no options).
fn pcapng_header() -> Vec<u8> {
    let mut out = Vec::new();
    let mut section = Vec::new();
    section.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    section.extend_from_slice(&1u16.to_le_bytes());
    section.extend_from_slice(&0u16.to_le_bytes());
    section.extend_from_slice(&(-1i64).to_le_bytes()); // section length not given
    push_block(&mut out, 0x0a0d_0d0a, &section);
    let mut interface = Vec::new();
    interface.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_le_bytes());
    interface.extend_from_slice(&0u16.to_le_bytes());
    interface.extend_from_slice(&SNAPLEN.to_le_bytes());
    push_block(&mut out, 1, &interface);
    out
}

/// A Name Resolution Block: one IPv4 or IPv6 record per named address, then the end record.
fn push_names(out: &mut Vec<u8>, names: &[(std::net::IpAddr, String)]) {
    if names.is_empty() {
        return;
    }
    let mut body = Vec::new();
    for (address, name) in names {
        let (record_type, octets): (u16, Vec<u8>) = match address {
            std::net::IpAddr::V4(v4) => (1, v4.octets().to_vec()),
            std::net::IpAddr::V6(v6) => (2, v6.octets().to_vec()),
        };
        let value_len = octets.len() + name.len() + 1;
        body.extend_from_slice(&record_type.to_le_bytes());
        body.extend_from_slice(&(value_len as u16).to_le_bytes());
        body.extend_from_slice(&octets);
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.resize(body.len() + value_len.next_multiple_of(4) - value_len, 0);
    }
    body.extend_from_slice(&[0, 0, 0, 0]); // nrb_record_end
    push_block(out, 4, &body);
}

/// An Enhanced Packet Block on interface 0.
fn push_enhanced(out: &mut Vec<u8>, micros: i64, original_len: i32, data: &[u8]) {
    let mut body = Vec::with_capacity(20 + data.len());
    let micros = micros.max(0) as u64;
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&((micros >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(micros as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&(original_len.max(data.len() as i32) as u32).to_le_bytes());
    body.extend_from_slice(data);
    push_block(out, 6, &body);
}

/// A host name for an address as Trawl names it: `pod.namespace`, `service.namespace.svc`, the
/// node's name, or the DNS name.
fn host_name(endpoint: &crate::endpoints::Endpoint) -> String {
    match (endpoint.kind.as_str(), &endpoint.namespace) {
        ("pod", Some(namespace)) => format!("{}.{namespace}", endpoint.name),
        ("service", Some(namespace)) => format!("{}.{namespace}.svc", endpoint.name),
        _ => endpoint.name.clone(),
    }
}

/// Every address of the export, named as it was at its last packet in the export (one name per
/// address: a pcapng name record has no time).
async fn export_names(pool: &sqlx::PgPool, filter: &Narrowed) -> Result<Vec<(std::net::IpAddr, String)>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT host(address), max(ts) FROM (SELECT src AS address, ts FROM packets WHERE src IS NOT NULL",
    );
    filter.push_sql(&mut query, &PACKETS);
    query.push(" UNION ALL SELECT dst, ts FROM packets WHERE dst IS NOT NULL");
    filter.push_sql(&mut query, &PACKETS);
    query.push(") AS ends GROUP BY 1 ORDER BY 1");
    let addresses = query
        .build_query_as::<(String, chrono::DateTime<chrono::Utc>)>()
        .fetch_all(pool)
        .await?;
    let session = filter.session.as_deref().unwrap_or("");
    let lookups: Vec<crate::endpoints::Lookup<'_>> = addresses
        .iter()
        .map(|(address, at)| crate::endpoints::Lookup {
            session,
            address,
            at: *at,
        })
        .collect();
    let names = crate::endpoints::name(pool, &lookups).await?;
    Ok(addresses
        .iter()
        .zip(names)
        .filter_map(|((address, _), endpoint)| Some((address.parse().ok()?, host_name(&endpoint?))))
        .collect())
}

/// Streams the matching packets' records, oldest first: the index rows say which packets and in
/// what order, their segments give the bytes (a few recent segments are kept decoded, since
/// packets of one batch mostly follow each other). Returns early if the client goes away.
async fn write_packets(
    pool: &sqlx::PgPool,
    filter: &Narrowed,
    format: Format,
    sender: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let mut chunk = match format {
        Format::Pcap => file_header(),
        Format::Pcapng => {
            let mut header = pcapng_header();
            push_names(&mut header, &export_names(pool, filter).await?);
            header
        }
    };
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
    // Segments removed by retention between the two reads: asked for once, not once per row.
    let mut gone: std::collections::HashSet<i64> = std::collections::HashSet::new();
    while let Some((id, micros, original_len)) = rows.try_next().await? {
        let (segment_id, position) = segments::locate(id);
        if gone.contains(&segment_id) {
            continue;
        }
        if !segments.iter().any(|(id, _)| *id == segment_id) {
            let Some(segment) = Segment::fetch(pool, segment_id).await? else {
                gone.insert(segment_id);
                continue;
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
        match format {
            Format::Pcap => push_record(&mut chunk, micros, original_len, data),
            Format::Pcapng => push_enhanced(&mut chunk, micros, original_len, data),
        }
        if chunk.len() >= CHUNK && !handed_over(sender, std::mem::take(&mut chunk)).await {
            return Ok(()); // the client went away or stopped reading
        }
    }
    handed_over(sender, chunk).await;
    Ok(())
}

/// Whether the client took the chunk within [`SLOW_READER`].
async fn handed_over(sender: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, chunk: Vec<u8>) -> bool {
    match tokio::time::timeout(SLOW_READER, sender.send(Ok(chunk.into()))).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            tracing::warn!(waited = ?SLOW_READER, "pcap export abandoned: the client stopped reading");
            false
        }
    }
}

/// The session's packets matching the filters, oldest first, as a pcap file (Wireshark, tshark),
/// or as pcapng with the addresses' names (`format=pcapng`).
#[utoipa::path(get, path = "/api/v1/sessions/{namespace}/{name}/pcap", operation_id = "exportPcap", tag = "sessions",
    params(("namespace" = String, Path), ("name" = String, Path), FilterParams, ExportParams),
    responses((status = 200, content_type = "application/vnd.tcpdump.pcap", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
    Query(filters): Query<FilterParams>,
    Query(export): Query<ExportParams>,
) -> Result<Response, ApiError> {
    // The path names the session; the shared `session` filter is not documented for this route.
    let filter = Narrowed::for_session(caller.clone(), &filters, &namespace, &name).await?;
    caller.require_in(&namespace, Scope::Pcap).await?;
    let format = export.format()?;
    let session = database::session_key(&namespace, &name);
    ensure_session_known(&state.pool, &session).await?;
    // The file carries every kept byte: for a session that keeps payload, exporting is reading it.
    let keeps_payload: Option<bool> = sqlx::query_scalar(
        "SELECT coalesce((spec->>'storePayload')::boolean, false) FROM sessions WHERE namespace = $1 AND name = $2",
    )
    .bind(&namespace)
    .bind(&name)
    .fetch_optional(&state.pool)
    .await?;
    if keeps_payload != Some(false) {
        caller.require_in(&namespace, Scope::Payload).await?;
    }
    let pass = state.limits.exports.enter(&caller.name)?;
    audit(
        &caller,
        "export-pcap",
        &format!("{session} {}", filters.q.as_deref().unwrap_or("")),
    );

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let pool = state.pool.clone();
    tokio::spawn(async move {
        let _pass = pass;
        if let Err(error) = write_packets(&pool, &filter, format, &sender).await {
            tracing::error!(%error, "pcap export failed midway");
            let _ = sender.send(Err(std::io::Error::other(error))).await;
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let (extension, content_type) = match format {
        Format::Pcap => ("pcap", "application/vnd.tcpdump.pcap"),
        Format::Pcapng => ("pcapng", "application/x-pcapng"),
    };
    let filename = format!("attachment; filename=\"{namespace}-{name}.{extension}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response())
}
