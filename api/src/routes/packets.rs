//! Stored packets: a filtered, keyset-paged list (newest first) and one packet's layers and bytes.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;

use crate::input::{Path, Query};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use utoipa::ToSchema;

use crate::auth::{Caller, Scope, audit};
use crate::cursor;
use crate::endpoints::{self, Endpoint, Named};
use crate::error::{ApiError, ErrorBody};
use crate::filter::{FilterParams, Narrowed, PACKETS};
use crate::routes::{PageParams, ensure_session_known};
use crate::segments::{self, Segment};
use crate::state::AppState;

/// One packet, as the list shows it.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub struct Packet {
    pub id: i64,
    pub session: String,
    pub ts: DateTime<Utc>,
    pub node: String,
    pub interface: String,
    /// Length on the wire.
    pub original_len: i32,
    /// Bytes captured (at most the session's snaplen).
    pub captured_len: i32,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub src_port: Option<i32>,
    pub dst_port: Option<i32>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `arp`, or `ip-N`.
    pub transport: Option<String>,
    /// `dns`, `http` or `tls` when recognised.
    pub l7: Option<String>,
    /// The DNS name, HTTP host or TLS SNI.
    pub l7_name: Option<String>,
    pub tcp_flags: Option<i16>,
    pub vlan: Option<i32>,
    /// What could not be parsed, if anything.
    pub malformed: Option<String>,
    /// The stored bytes include the payload (the session's `storePayload`).
    pub payload_kept: bool,
    /// The tunnel the packet came through (`vxlan`, `geneve`, `gre`, `ipip`): the addresses,
    /// ports and protocols above are what it carried.
    pub tunnel: Option<String>,
    /// The VXLAN or Geneve network identifier, or the GRE key.
    pub tunnel_id: Option<i64>,
    /// The tunnel's own addresses (the nodes').
    pub outer_src: Option<String>,
    pub outer_dst: Option<String>,
    /// A one-line summary in the manner of Wireshark's Info column, dissected from the stored
    /// bytes (without payload, it describes the transport header).
    pub info: String,
    /// Who the source was at the packet's time (pod, Service, node, or the name a captured DNS
    /// answer gave it); null when unknown.
    pub src_endpoint: Option<Endpoint>,
    /// Who the destination was, likewise.
    pub dst_endpoint: Option<Endpoint>,
}

impl Named for Packet {
    fn ends(&self) -> (&str, Option<&str>, Option<&str>, DateTime<Utc>) {
        (&self.session, self.src.as_deref(), self.dst.as_deref(), self.ts)
    }

    fn name(&mut self, src: Option<Endpoint>, dst: Option<Endpoint>) {
        (self.src_endpoint, self.dst_endpoint) = (src, dst);
    }
}

/// By position in [`PACKET_COLUMNS`], not by name: a page decodes 1800 fields, and looking each
/// up by name cost a tenth of the API's CPU under load (perf during `bench/api.sh`).
impl<'r> sqlx::FromRow<'r, PgRow> for Packet {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            session: row.try_get(1)?,
            ts: row.try_get(2)?,
            node: row.try_get(3)?,
            interface: row.try_get(4)?,
            original_len: row.try_get(5)?,
            captured_len: row.try_get(6)?,
            src: row.try_get(7)?,
            dst: row.try_get(8)?,
            src_port: row.try_get(9)?,
            dst_port: row.try_get(10)?,
            transport: row.try_get(11)?,
            l7: row.try_get(12)?,
            l7_name: row.try_get(13)?,
            tcp_flags: row.try_get(14)?,
            vlan: row.try_get(15)?,
            malformed: row.try_get(16)?,
            payload_kept: row.try_get(17)?,
            tunnel: row.try_get(18)?,
            tunnel_id: row.try_get(19)?,
            outer_src: row.try_get(20)?,
            outer_dst: row.try_get(21)?,
            info: String::new(),
            src_endpoint: None,
            dst_endpoint: None,
        })
    }
}

/// Fills in the packets' Info lines from their stored bytes: the segments the packets come from
/// (a page mostly comes from one or two), read in one query.
pub async fn describe(pool: &sqlx::PgPool, caller: &Caller, packets: &mut [Packet]) -> Result<(), ApiError> {
    let payload = payload_namespaces(caller, packets).await?;
    let mut segment_ids: Vec<i64> = packets.iter().map(|p| segments::locate(p.id).0).collect();
    segment_ids.sort_unstable();
    segment_ids.dedup();
    for (segment_id, segment) in Segment::fetch_many(pool, &segment_ids).await? {
        for packet in packets.iter_mut() {
            let (of, position) = segments::locate(packet.id);
            if of == segment_id
                && let Some(frame) = segment.frame(position)
            {
                packet.info = info_line(packet, frame, &payload);
            }
        }
    }
    Ok(())
}

/// The namespaces whose kept payload the caller may see, among those of `packets` that kept it.
async fn payload_namespaces(caller: &Caller, packets: &[Packet]) -> Result<BTreeSet<String>, ApiError> {
    caller
        .payload_namespaces(packets.iter().filter(|p| p.payload_kept).map(|p| p.session.as_str()))
        .await
}

/// A packet's Info line under the payload rule: from the whole frame for a caller who may see the
/// session's payload (or when none was kept), else from the frame's headers alone.
fn info_line(packet: &Packet, frame: &[u8], payload: &BTreeSet<String>) -> String {
    let dissection = dissect::dissect(frame);
    let namespace = packet.session.split_once('/').map_or("", |(namespace, _)| namespace);
    if packet.payload_kept && !payload.contains(namespace) {
        let headers = frame.get(..dissection.headers_len).unwrap_or(frame);
        return dissect::info(&dissect::dissect(headers));
    }
    dissect::info(&dissection)
}

/// A page's row: the packet, and on the first row of each segment the page touches, that
/// segment's records (for the Info lines), so a page is one round trip.
struct PageRow {
    packet: Packet,
    segment: Option<Vec<u8>>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for PageRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let mut packet = Packet::from_row(row)?;
        packet.src_endpoint = endpoints::from_columns(row, PACKET_COLUMN_COUNT + 1)?;
        packet.dst_endpoint = endpoints::from_columns(row, PACKET_COLUMN_COUNT + 1 + endpoints::COLUMNS)?;
        Ok(Self {
            packet,
            segment: row.try_get(PACKET_COLUMN_COUNT)?,
        })
    }
}

/// Fills in the Info lines of a page from the segments that came with its rows (the rows of one
/// segment are adjacent: ids are the segment's id and a position in it).
fn describe_page(rows: Vec<PageRow>, payload: &BTreeSet<String>) -> Vec<Packet> {
    let mut segment: Option<(i64, Vec<u8>, Vec<std::ops::Range<usize>>)> = None;
    rows.into_iter()
        .map(
            |PageRow {
                 mut packet,
                 segment: records,
             }| {
                let (segment_id, position) = segments::locate(packet.id);
                if let Some(records) = records {
                    let frames = segments::frames(&records);
                    segment = Some((segment_id, records, frames));
                }
                if let Some((id, records, frames)) = &segment
                    && *id == segment_id
                    && let Some(range) = frames.get(position)
                {
                    packet.info = info_line(&packet, &records[range.clone()], payload);
                }
                packet
            },
        )
        .collect()
}

/// How many columns [`PACKET_COLUMNS`] names: what a page's query selects after them starts here.
const PACKET_COLUMN_COUNT: usize = 22;
pub const PACKET_COLUMNS: &str = "id, session, ts, node, interface, original_len, captured_len, host(src) AS src, \
     host(dst) AS dst, src_port, dst_port, transport, l7, l7_name, tcp_flags, vlan, malformed, payload_kept, tunnel, \
     tunnel_id, host(outer_src) AS outer_src, host(outer_dst) AS outer_dst";

#[derive(Serialize, ToSchema)]
pub struct PacketPage {
    /// Newest first.
    pub items: Vec<Packet>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Packets matching the filters, newest first.
#[utoipa::path(get, path = "/api/v1/packets", operation_id = "listPackets", tag = "packets",
    params(FilterParams, PageParams),
    responses((status = 200, body = PacketPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    filter: Narrowed,
    Query(page): Query<PageParams>,
) -> Result<Json<PacketPage>, ApiError> {
    let limit = page.limit(state.max_page_size)?;
    let before: Option<i64> = page.cursor.as_deref().map(cursor::decode).transpose()?;
    let mut query =
        QueryBuilder::<Postgres>::new(format!("WITH page AS (SELECT {PACKET_COLUMNS} FROM packets WHERE true"));
    filter.push_sql(&mut query, &PACKETS);
    if let Some(before) = before {
        query.push(" AND id < ").push_bind(before);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(limit + 1);
    // The subquery runs once per segment: CASE evaluates it only on a segment's first row. Both
    // ends are named in the same statement (one round trip per page, as its bare SQL).
    query.push(format_args!(
        ") SELECT page.*, CASE WHEN id >> 20 IS DISTINCT FROM lag(id >> 20) OVER (ORDER BY id DESC) \
         THEN (SELECT records FROM segments WHERE segments.id = page.id >> 20 LIMIT 1) END AS segment, \
         {src}, {dst} FROM page {src_join} {dst_join} ORDER BY id DESC",
        src = endpoints::select("src_name"),
        dst = endpoints::select("dst_name"),
        src_join = endpoints::join("src_name", "page.session", "page.src::inet", "page.ts"),
        dst_join = endpoints::join("dst_name", "page.session", "page.dst::inet", "page.ts"),
    ));
    let rows: Vec<PageRow> = query.build_query_as().fetch_all(&state.pool).await?;
    let payload = filter
        .caller
        .payload_namespaces(
            rows.iter()
                .filter(|row| row.packet.payload_kept)
                .map(|row| row.packet.session.as_str()),
        )
        .await?;
    let mut items = describe_page(rows, &payload);
    // Only an empty page can mean an unknown session; checking then saves a round trip per page.
    if let (true, Some(session)) = (items.is_empty(), &filter.session) {
        ensure_session_known(&state.pool, session).await?;
    }
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|p| cursor::encode(&p.id))
    } else {
        None
    };
    Ok(Json(PacketPage { items, next_cursor }))
}

/// One packet with every dissected layer.
#[derive(Serialize, ToSchema)]
pub struct PacketDetail {
    #[serde(flatten)]
    pub packet: Packet,
    /// Layers outermost first, each with its fields, dissected from the stored bytes (so a packet
    /// stored without payload shows no application layer here; `l7` and `l7_name` still tell
    /// what it was at capture).
    #[schema(value_type = Vec<Object>)]
    pub layers: serde_json::Value,
    /// The stored bytes as hex: headers only, or the whole frame when the payload is kept
    /// (then the `payload` scope is needed).
    pub data_hex: String,
}

/// One packet: its layers and stored bytes.
#[utoipa::path(get, path = "/api/v1/packets/{id}", operation_id = "getPacket", tag = "packets",
    params(("id" = i64, Path, description = "Packet id")),
    responses((status = 200, body = PacketDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PacketDetail>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad("id", format!("{id:?} is not a packet id")))?;
    let not_stored = || ApiError::NotFound(format!("packet {id} is not stored"));
    let (segment_id, position) = segments::locate(id);
    let segment = Segment::fetch(&state.pool, segment_id).await?.ok_or_else(not_stored)?;
    // Access first, before any decoding; a packet the caller may not see is answered like one
    // that does not exist, so ids cannot probe which namespaces hold what.
    let namespace = segment
        .session
        .split_once('/')
        .map_or("", |(namespace, _)| namespace)
        .to_owned();
    caller
        .require_in(&namespace, Scope::Read)
        .await
        .map_err(|error| match error {
            ApiError::Denied(_) => not_stored(),
            other => other,
        })?;
    // The segment's session and time range lead the lookup to one index entry in one partition.
    let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {PACKET_COLUMNS} FROM packets WHERE session = "));
    query
        .push_bind(&segment.session)
        .push(" AND id = ")
        .push_bind(id)
        .push(" AND ts BETWEEN ")
        .push_bind(segment.first_ts)
        .push(" AND ")
        .push_bind(segment.last_ts);
    let mut packet: Packet = query
        .build_query_as()
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(not_stored)?;
    if packet.payload_kept {
        caller.require_in(&namespace, Scope::Payload).await?;
        audit(&caller, "view-payload", &format!("packet {id} of {}", packet.session));
    }
    let frame = segment.frame(position).ok_or_else(not_stored)?;
    let dissection = dissect::dissect(frame);
    packet.info = dissect::info(&dissection);
    endpoints::name_ends(&state.pool, std::slice::from_mut(&mut packet)).await?;
    let layers = serde_json::to_value(dissection.layers).expect("layers serialise");
    Ok(Json(PacketDetail {
        layers,
        data_hex: frame.iter().map(|b| format!("{b:02x}")).collect(),
        packet,
    }))
}

#[cfg(test)]
mod column_count {
    #[test]
    fn the_count_is_the_columns_named() {
        assert_eq!(super::PACKET_COLUMNS.split(',').count(), super::PACKET_COLUMN_COUNT);
    }
}
