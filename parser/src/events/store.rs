//! Writes a group's L7 events in its transaction: new rows with ids taken up front (so that
//! unanswered requests can be found again by id), and the answers to requests stored before.

use sqlx::PgConnection;

use super::{Events, Late};

/// Row ids given to the group's DNS and HTTP events, in order.
pub struct EventIds {
    pub dns: Vec<i64>,
    pub http: Vec<i64>,
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
    let wanted = (events.dns.len() + events.http.len()) as i64;
    let mut ids: Vec<i64> = if wanted > 0 {
        sqlx::query_scalar("SELECT nextval('events_id_seq') FROM generate_series(1, $1)")
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await?
    } else {
        Vec::new()
    };
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
            "INSERT INTO tls_events (session, ts, client, client_port, server, server_port, sni, alpn, version, ja4) \
             SELECT $1, 'epoch'::timestamptz + interval '1 microsecond' * ts, client::inet, client_port, server::inet, server_port, sni, \
               CASE WHEN alpn = '' THEN '{}'::text[] ELSE string_to_array(alpn, E'\\n') END, version, ja4 \
             FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[], $6::integer[], $7::text[], $8::text[], \
               $9::text[], $10::text[]) AS u(ts, client, client_port, server, server_port, sni, alpn, version, ja4)",
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
        .execute(&mut *tx)
        .await?;
    }
    answer_dns(tx, session, &events.late_dns).await?;
    answer_http(tx, session, &events.late_http).await?;
    Ok(EventIds {
        dns: dns_ids,
        http: http_ids,
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
