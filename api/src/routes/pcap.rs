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
use crate::follow::Follower;
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
    /// `pcap` (default) or `pcapng` (with name resolution records, an interface per node and
    /// interface, and each packet's id).
    #[param(example = "pcapng")]
    pub format: Option<String>,
    /// Live: instead of what is stored, the packets stored from now on (or after `after`), as
    /// they are stored, until the session completes or the client goes away
    /// (`... | wireshark -k -i -`).
    pub follow: Option<bool>,
    /// With `follow`: resume after this packet id (a pcapng packet's `epb_packetid`); 0 starts
    /// from the session's first packet.
    #[param(minimum = 0)]
    pub after: Option<i64>,
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

/// The Section Header Block.
fn pcapng_header() -> Vec<u8> {
    let mut out = Vec::new();
    let mut section = Vec::new();
    section.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    section.extend_from_slice(&1u16.to_le_bytes());
    section.extend_from_slice(&0u16.to_le_bytes());
    section.extend_from_slice(&(-1i64).to_le_bytes()); // section length not given
    push_block(&mut out, 0x0a0d_0d0a, &section);
    out
}

/// A pcapng option: code, length, value padded to 32 bits.
fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + value.len().next_multiple_of(4) - value.len(), 0);
}

/// An Interface Description Block for an Ethernet interface of a node, named `node/interface`
/// (`if_name`), with microsecond timestamps (the default resolution).
fn push_interface(out: &mut Vec<u8>, node: &str, interface: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&SNAPLEN.to_le_bytes());
    let name: String = format!("{node}/{interface}").chars().take(1024).collect();
    push_option(&mut body, 2, name.as_bytes()); // if_name
    push_option(&mut body, 0, &[]); // opt_endofopt
    push_block(out, 1, &body);
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

/// An Enhanced Packet Block on `interface`, carrying the packet's id (`epb_packetid`), which a
/// live export resumes after.
fn push_enhanced(out: &mut Vec<u8>, interface: u32, row: &Row, data: &[u8]) {
    let mut body = Vec::with_capacity(40 + data.len());
    let micros = row.micros.max(0) as u64;
    body.extend_from_slice(&interface.to_le_bytes());
    body.extend_from_slice(&((micros >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(micros as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&(row.original_len.max(data.len() as i32) as u32).to_le_bytes());
    body.extend_from_slice(data);
    body.resize(body.len().next_multiple_of(4), 0);
    push_option(&mut body, 5, &(row.id as u64).to_le_bytes()); // epb_packetid
    push_option(&mut body, 0, &[]);
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

/// One row of the packets index, as the export reads it.
#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    micros: i64,
    original_len: i32,
    node: String,
    interface: String,
}

const ROW_COLUMNS: &str = "SELECT id, (extract(epoch FROM ts) * 1000000)::bigint AS micros, original_len, node, interface FROM packets WHERE true";

/// Turns index rows into records: their segments give the bytes (a few recent segments are kept
/// decoded, since packets of one batch mostly follow each other), and in pcapng each node's
/// interface gets its Interface Description Block before its first packet.
struct Writer {
    format: Format,
    chunk: Vec<u8>,
    interfaces: std::collections::HashMap<(String, String), u32>,
    segments: VecDeque<(i64, Segment)>,
    /// Segments removed by retention between the two reads: asked for once, not once per row.
    gone: std::collections::HashSet<i64>,
}

impl Writer {
    fn new(format: Format, names: &[(std::net::IpAddr, String)]) -> Self {
        let chunk = match format {
            Format::Pcap => file_header(),
            Format::Pcapng => {
                let mut header = pcapng_header();
                push_names(&mut header, names);
                header
            }
        };
        Self {
            format,
            chunk,
            interfaces: std::collections::HashMap::new(),
            segments: VecDeque::new(),
            gone: std::collections::HashSet::new(),
        }
    }

    async fn add(&mut self, pool: &sqlx::PgPool, row: &Row) -> Result<(), sqlx::Error> {
        let (segment_id, position) = segments::locate(row.id);
        if self.gone.contains(&segment_id) {
            return Ok(());
        }
        if !self.segments.iter().any(|(id, _)| *id == segment_id) {
            let Some(segment) = Segment::fetch(pool, segment_id).await? else {
                self.gone.insert(segment_id);
                return Ok(());
            };
            if self.segments.len() == SEGMENTS_KEPT {
                self.segments.pop_back();
            }
            self.segments.push_front((segment_id, segment));
        }
        let segment = &self
            .segments
            .iter()
            .find(|(id, _)| *id == segment_id)
            .expect("just fetched")
            .1;
        let Some(data) = segment.frame(position) else {
            return Ok(());
        };
        match self.format {
            Format::Pcap => push_record(&mut self.chunk, row.micros, row.original_len, data),
            Format::Pcapng => {
                let key = (row.node.clone(), row.interface.clone());
                let next = self.interfaces.len() as u32;
                let interface = match self.interfaces.get(&key) {
                    Some(&index) => index,
                    None => {
                        push_interface(&mut self.chunk, &row.node, &row.interface);
                        self.interfaces.insert(key, next);
                        next
                    }
                };
                push_enhanced(&mut self.chunk, interface, row, data);
            }
        }
        Ok(())
    }
}

/// Streams the matching packets' records, oldest first. Returns early if the client goes away.
async fn write_packets(
    pool: &sqlx::PgPool,
    filter: &Narrowed,
    format: Format,
    sender: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let names = match format {
        Format::Pcap => Vec::new(),
        Format::Pcapng => export_names(pool, filter).await?,
    };
    let mut writer = Writer::new(format, &names);
    let mut query = QueryBuilder::<Postgres>::new(ROW_COLUMNS);
    filter.push_sql(&mut query, &PACKETS);
    query.push(" ORDER BY ts, id");
    // One statement streams the whole export, however long it takes: exempt from the timeout.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
    let mut rows = query.build_query_as::<Row>().fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
        writer.add(pool, &row).await?;
        if writer.chunk.len() >= CHUNK && !handed_over(sender, std::mem::take(&mut writer.chunk)).await {
            return Ok(()); // the client went away or stopped reading
        }
    }
    handed_over(sender, writer.chunk).await;
    Ok(())
}

/// How often a live export looks for new packets.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// Rows a live export reads per query.
const FOLLOW_BATCH: i64 = 5_000;

/// Whether the session's capture is over and its queue drained (or the session was deleted). A
/// session the operator never recorded (a sniffer run by hand) has no end: it is followed until
/// the client leaves.
async fn session_over(pool: &sqlx::PgPool, session: &str) -> Result<bool, sqlx::Error> {
    let (namespace, name) = session.split_once('/').unwrap_or((session, ""));
    let over: Option<bool> = sqlx::query_scalar(
        "SELECT phase = 'Completed' OR deleted_at IS NOT NULL FROM sessions WHERE namespace = $1 AND name = $2",
    )
    .bind(namespace)
    .bind(name)
    .fetch_optional(pool)
    .await?
    .flatten();
    Ok(over.unwrap_or(false))
}

/// Streams the packets stored after `floor` as they are stored, in id order, until the session
/// is over (then once more after [`crate::follow::LOOK_BACK`], for late commits), the caller's
/// access is gone, or the client goes away.
async fn follow_packets(
    pool: &sqlx::PgPool,
    filter: &Narrowed,
    format: Format,
    floor: i64,
    sender: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let session = filter.session.clone().unwrap_or_default();
    let namespace = session
        .split_once('/')
        .map_or("", |(namespace, _)| namespace)
        .to_owned();
    let names = match format {
        Format::Pcap => Vec::new(),
        Format::Pcapng => export_names(pool, filter).await?,
    };
    let mut writer = Writer::new(format, &names);
    let mut follower = Follower::new(floor);
    let mut checked = std::time::Instant::now();
    let mut over_since: Option<std::time::Instant> = None;
    loop {
        if checked.elapsed() >= crate::auth::kubernetes::TTL {
            checked = std::time::Instant::now();
            if let Err(error) = filter.caller.recheck(&namespace).await {
                tracing::info!(caller = %filter.caller.name, %error, "ending a live export: access is gone");
                break;
            }
        }
        let mut query = QueryBuilder::<Postgres>::new(ROW_COLUMNS);
        follower.push_undelivered(&mut query);
        filter.push_sql(&mut query, &PACKETS);
        query.push(" ORDER BY id LIMIT ").push_bind(FOLLOW_BATCH);
        let rows: Vec<Row> = query.build_query_as().fetch_all(pool).await?;
        for row in &rows {
            writer.add(pool, row).await?;
        }
        follower.delivered(rows.iter().map(|row| row.id));
        // Sent as soon as there is anything: a live reader wants packets, not full chunks.
        if !writer.chunk.is_empty() && !handed_over(sender, std::mem::take(&mut writer.chunk)).await {
            return Ok(());
        }
        if rows.len() as i64 == FOLLOW_BATCH {
            continue;
        }
        match over_since {
            Some(since) if since.elapsed() >= crate::follow::LOOK_BACK => break,
            Some(_) => {}
            None if session_over(pool, &session).await? => over_since = Some(std::time::Instant::now()),
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = sender.closed() => return Ok(()),
        }
    }
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
    let follow = export.follow.unwrap_or(false);
    if export.after.is_some() && !follow {
        return Err(ApiError::bad(
            "after",
            "resumes a live export: give it with follow=true",
        ));
    }
    if export.after.is_some_and(|after| after < 0) {
        return Err(ApiError::bad("after", "a packet id is 0 or more"));
    }
    // A live export lasts like a stream and counts as one.
    let pass = if follow {
        state.limits.streams.enter(&caller.name)?
    } else {
        state.limits.exports.enter(&caller.name)?
    };
    audit(
        &caller,
        if follow { "follow-pcap" } else { "export-pcap" },
        &format!("{session} {}", filters.q.as_deref().unwrap_or("")),
    );
    let floor = match export.after {
        Some(after) => after,
        None if follow => {
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM packets WHERE session = $1")
                .bind(&session)
                .fetch_one(&state.pool)
                .await?
        }
        None => 0,
    };

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let pool = state.pool.clone();
    tokio::spawn(async move {
        let _pass = pass;
        let written = if follow {
            follow_packets(&pool, &filter, format, floor, &sender).await
        } else {
            write_packets(&pool, &filter, format, &sender).await
        };
        if let Err(error) = written {
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
