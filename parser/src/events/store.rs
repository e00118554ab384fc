//! Writes a group's L7 events in its transaction: new rows with ids taken up front (so that
//! unanswered requests can be found again by id), and the answers to requests stored before.

use sqlx::PgConnection;

use super::{Events, Http2Event, Http2Parts, Late};

/// Row ids given to the group's DNS and HTTP events, in order.
pub struct EventIds {
    pub dns: Vec<i64>,
    pub http: Vec<i64>,
    pub http2: Vec<i64>,
}

fn micros(ns: u64) -> i64 {
    (ns / 1_000) as i64
}

/// Text lists travel as one newline-joined string each: `unnest` cannot take arrays of arrays of
/// different lengths.
fn joined(list: &[String]) -> String {
    list.join("\n")
}

pub async fn write(tx: &mut PgConnection, session: &str, events: &Events) -> Result<EventIds, sqlx::Error> {
    let wanted = (events.dns.len() + events.http.len() + events.http2.events.len()) as i64;
    let mut ids: Vec<i64> = if wanted > 0 {
        sqlx::query_scalar("SELECT nextval('events_id_seq') FROM generate_series(1, $1)")
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await?
    } else {
        Vec::new()
    };
    let http2_ids = ids.split_off(events.dns.len() + events.http.len());
    let http_ids = ids.split_off(events.dns.len());
    let dns_ids = ids;

    if !events.dns.is_empty() {
        let e = &events.dns;
        sqlx::query(
            "INSERT INTO dns_events (id, session, ts, transport, client, client_port, server, server_port, transaction, \
               query, query_type, rcode, answers, rtt_ms) \
             SELECT id, $1, 'epoch'::timestamptz + interval '1 microsecond' * ts, transport, client::inet, client_port, server::inet, server_port, transaction, \
               query, query_type, rcode, CASE WHEN rcode IS NULL THEN NULL ELSE string_to_array(answers, E'\\n') END, rtt \
             FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::integer[], $7::text[], $8::integer[], \
               $9::integer[], $10::text[], $11::text[], $12::text[], $13::text[], $14::float8[]) \
               AS u(id, ts, transport, client, client_port, server, server_port, transaction, query, query_type, rcode, answers, rtt)",
        )
        .bind(session)
        .bind(&dns_ids)
        .bind(e.iter().map(|d| micros(d.ts_ns)).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.transport).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.endpoints.client.to_string()).collect::<Vec<_>>())
        .bind(e.iter().map(|d| i32::from(d.endpoints.client_port)).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.endpoints.server.to_string()).collect::<Vec<_>>())
        .bind(e.iter().map(|d| i32::from(d.endpoints.server_port)).collect::<Vec<_>>())
        .bind(e.iter().map(|d| i32::from(d.transaction)).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.query.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.query_type.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.answer.as_ref().map(|a| a.rcode.clone())).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.answer.as_ref().map(|a| joined(&a.answers)).unwrap_or_default()).collect::<Vec<_>>())
        .bind(e.iter().map(|d| d.answer.as_ref().and_then(|a| a.rtt_ms)).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    if !events.http.is_empty() {
        let e = &events.http;
        sqlx::query(
            "INSERT INTO http_events (id, session, ts, transport, client, client_port, server, server_port, method, host, \
               path, user_agent, status, latency_ms) \
             SELECT id, $1, 'epoch'::timestamptz + interval '1 microsecond' * ts, transport, client::inet, client_port, \
               server::inet, server_port, method, host, path, user_agent, status, latency \
             FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::integer[], $7::text[], $8::integer[], \
               $9::text[], $10::text[], $11::text[], $12::text[], $13::integer[], $14::float8[]) \
               AS u(id, ts, transport, client, client_port, server, server_port, method, host, path, user_agent, status, latency)",
        )
        .bind(session)
        .bind(&http_ids)
        .bind(e.iter().map(|h| micros(h.ts_ns)).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.transport).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.endpoints.client.to_string()).collect::<Vec<_>>())
        .bind(e.iter().map(|h| i32::from(h.endpoints.client_port)).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.endpoints.server.to_string()).collect::<Vec<_>>())
        .bind(e.iter().map(|h| i32::from(h.endpoints.server_port)).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.method.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.host.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.path.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.user_agent.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.answer.as_ref().map(|a| i32::from(a.status))).collect::<Vec<_>>())
        .bind(e.iter().map(|h| h.answer.as_ref().and_then(|a| a.latency_ms)).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    if !events.tls.is_empty() {
        let e = &events.tls;
        sqlx::query(
            "INSERT INTO tls_events (session, ts, client, client_port, server, server_port, sni, alpn, version, ja4, transport) \
             SELECT $1, 'epoch'::timestamptz + interval '1 microsecond' * ts, client::inet, client_port, server::inet, server_port, sni, \
               CASE WHEN alpn = '' THEN '{}'::text[] ELSE string_to_array(alpn, E'\\n') END, version, ja4, transport \
             FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[], $6::integer[], $7::text[], $8::text[], \
               $9::text[], $10::text[], $11::text[]) AS u(ts, client, client_port, server, server_port, sni, alpn, version, ja4, transport)",
        )
        .bind(session)
        .bind(e.iter().map(|t| micros(t.ts_ns)).collect::<Vec<_>>())
        .bind(e.iter().map(|t| t.endpoints.client.to_string()).collect::<Vec<_>>())
        .bind(e.iter().map(|t| i32::from(t.endpoints.client_port)).collect::<Vec<_>>())
        .bind(e.iter().map(|t| t.endpoints.server.to_string()).collect::<Vec<_>>())
        .bind(e.iter().map(|t| i32::from(t.endpoints.server_port)).collect::<Vec<_>>())
        .bind(e.iter().map(|t| t.sni.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|t| joined(&t.alpn)).collect::<Vec<_>>())
        .bind(e.iter().map(|t| t.version.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|t| t.ja4.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|t| t.transport).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    insert_http2(tx, session, &events.http2.events, &http2_ids).await?;
    answer_dns(tx, session, &events.late_dns).await?;
    answer_http(tx, session, &events.late_http).await?;
    answer_http2(tx, session, &events.http2.late).await?;
    Ok(EventIds {
        dns: dns_ids,
        http: http_ids,
        http2: http2_ids,
    })
}

/// The request's time leads each update to its day partition.
async fn answer_dns(tx: &mut PgConnection, session: &str, late: &[Late<super::DnsAnswer>]) -> Result<(), sqlx::Error> {
    if late.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE dns_events d SET rcode = u.rcode, answers = string_to_array(u.answers, E'\\n'), rtt_ms = u.rtt \
         FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::float8[]) AS u(id, ts, rcode, answers, rtt) \
         WHERE d.session = $1 AND d.id = u.id AND d.ts = 'epoch'::timestamptz + interval '1 microsecond' * u.ts",
    )
    .bind(session)
    .bind(late.iter().map(|l| l.id).collect::<Vec<_>>())
    .bind(late.iter().map(|l| micros(l.request_ns)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.rcode.clone()).collect::<Vec<_>>())
    .bind(late.iter().map(|l| joined(&l.answer.answers)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.rtt_ms).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn answer_http(
    tx: &mut PgConnection,
    session: &str,
    late: &[Late<super::HttpAnswer>],
) -> Result<(), sqlx::Error> {
    if late.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE http_events h SET status = u.status, latency_ms = u.latency \
         FROM unnest($2::bigint[], $3::bigint[], $4::integer[], $5::float8[]) AS u(id, ts, status, latency) \
         WHERE h.session = $1 AND h.id = u.id AND h.ts = 'epoch'::timestamptz + interval '1 microsecond' * u.ts",
    )
    .bind(session)
    .bind(late.iter().map(|l| l.id).collect::<Vec<_>>())
    .bind(late.iter().map(|l| micros(l.request_ns)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| i32::from(l.answer.status)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.latency_ms).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn insert_http2(tx: &mut PgConnection, session: &str, e: &[Http2Event], ids: &[i64]) -> Result<(), sqlx::Error> {
    if e.is_empty() {
        return Ok(());
    }
    let int8 = |value: Option<u64>| value.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    sqlx::query(
        "INSERT INTO http_events (id, session, ts, transport, client, client_port, server, server_port, method, host, \
           path, user_agent, status, latency_ms, protocol, stream_id, content_type, request_bytes, response_bytes, \
           request_messages, response_messages, grpc_status, grpc_message, reset, unresolved_fields, scheme) \
         SELECT id, $1, 'epoch'::timestamptz + interval '1 microsecond' * ts, 'tcp', client::inet, client_port, \
           server::inet, server_port, method, host, path, user_agent, status, latency, protocol, stream_id, \
           content_type, request_bytes, response_bytes, request_messages, response_messages, grpc_status, \
           grpc_message, reset, unresolved, scheme \
         FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::integer[], $6::text[], $7::integer[], $8::text[], \
           $9::text[], $10::text[], $11::text[], $12::integer[], $13::float8[], $14::text[], $15::bigint[], \
           $16::text[], $17::bigint[], $18::bigint[], $19::integer[], $20::integer[], $21::integer[], $22::text[], \
           $23::text[], $24::integer[], $25::text[]) \
           AS u(id, ts, client, client_port, server, server_port, method, host, path, user_agent, status, latency, \
             protocol, stream_id, content_type, request_bytes, response_bytes, request_messages, response_messages, \
             grpc_status, grpc_message, reset, unresolved, scheme)",
    )
    .bind(session)
    .bind(ids)
    .bind(e.iter().map(|h| micros(h.ts_ns)).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.endpoints.client.to_string()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| i32::from(h.endpoints.client_port)).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.endpoints.server.to_string()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| i32::from(h.endpoints.server_port)).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.method.clone()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.authority.clone()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.path.clone()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.user_agent.clone()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.parts.status.map(i32::from)).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.parts.latency_ms).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.parts.protocol()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| i64::from(h.stream)).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.parts.content_type.clone()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| int8(h.parts.request_bytes)).collect::<Vec<_>>())
    .bind(e.iter().map(|h| int8(h.parts.response_bytes)).collect::<Vec<_>>())
    .bind(
        e.iter()
            .map(|h| h.parts.request_messages.map(saturating_i32))
            .collect::<Vec<_>>(),
    )
    .bind(
        e.iter()
            .map(|h| h.parts.response_messages.map(saturating_i32))
            .collect::<Vec<_>>(),
    )
    .bind(
        e.iter()
            .map(|h| h.parts.grpc_status.map(saturating_i32))
            .collect::<Vec<_>>(),
    )
    .bind(e.iter().map(|h| h.parts.grpc_message.clone()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.parts.reset.clone()).collect::<Vec<_>>())
    .bind(e.iter().map(|h| saturating_i32(h.parts.unresolved)).collect::<Vec<_>>())
    .bind(e.iter().map(|h| h.scheme.clone()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn saturating_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// What later frames of a stream add to its row: only the columns they know.
async fn answer_http2(tx: &mut PgConnection, session: &str, late: &[Late<Http2Parts>]) -> Result<(), sqlx::Error> {
    if late.is_empty() {
        return Ok(());
    }
    let int8 = |value: Option<u64>| value.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    sqlx::query(
        "UPDATE http_events h SET \
           protocol = CASE WHEN u.grpc THEN 'grpc' ELSE h.protocol END, \
           content_type = COALESCE(h.content_type, u.content_type), \
           status = COALESCE(u.status, h.status), latency_ms = COALESCE(u.latency, h.latency_ms), \
           request_bytes = COALESCE(u.request_bytes, h.request_bytes), \
           response_bytes = COALESCE(u.response_bytes, h.response_bytes), \
           request_messages = COALESCE(u.request_messages, h.request_messages), \
           response_messages = COALESCE(u.response_messages, h.response_messages), \
           grpc_status = COALESCE(u.grpc_status, h.grpc_status), grpc_message = COALESCE(u.grpc_message, h.grpc_message), \
           reset = COALESCE(u.reset, h.reset), unresolved_fields = h.unresolved_fields + u.unresolved \
         FROM unnest($2::bigint[], $3::bigint[], $4::bool[], $5::text[], $6::integer[], $7::float8[], $8::bigint[], \
           $9::bigint[], $10::integer[], $11::integer[], $12::integer[], $13::text[], $14::text[], $15::integer[]) \
           AS u(id, ts, grpc, content_type, status, latency, request_bytes, response_bytes, request_messages, \
             response_messages, grpc_status, grpc_message, reset, unresolved) \
         WHERE h.session = $1 AND h.id = u.id AND h.ts = 'epoch'::timestamptz + interval '1 microsecond' * u.ts",
    )
    .bind(session)
    .bind(late.iter().map(|l| l.id).collect::<Vec<_>>())
    .bind(late.iter().map(|l| micros(l.request_ns)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.grpc).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.content_type.clone()).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.status.map(i32::from)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.latency_ms).collect::<Vec<_>>())
    .bind(late.iter().map(|l| int8(l.answer.request_bytes)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| int8(l.answer.response_bytes)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.request_messages.map(saturating_i32)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.response_messages.map(saturating_i32)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.grpc_status.map(saturating_i32)).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.grpc_message.clone()).collect::<Vec<_>>())
    .bind(late.iter().map(|l| l.answer.reset.clone()).collect::<Vec<_>>())
    .bind(late.iter().map(|l| saturating_i32(l.answer.unresolved)).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
