//! The service map (issue #20): who talked to whom, by workload rather than by address, from the
//! flows in the time range, each end named as it was when its flow began (endpoint history,
//! else the DNS name the session's captured answers gave it, else the bare address), with the
//! HTTP and DNS errors of the same pairs from the L7 events.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::ToSchema;

use crate::endpoints::{self, Endpoint, Lookup};
use crate::error::{ApiError, ErrorBody};
use crate::filter::{FLOWS, FilterParams, Narrowed};
use crate::routes::ensure_session_known;
use crate::state::AppState;

/// Most edges a map returns (the heaviest by bytes).
const MAX_EDGES: usize = 500;
/// Address pairs read from each table at most (the largest by bytes or errors first): a map over
/// a long time without `since` would otherwise read every flow into memory.
const MAX_PAIRS: i64 = 50_000;

#[derive(Serialize, ToSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MapNode {
    /// `namespace/workload`, `namespace/pod`, `namespace/service/name`, `node/name`, the DNS
    /// name, or the address: what the UI shows.
    pub id: String,
    /// `workload`, `pod`, `service`, `node`, `dns` or `address`.
    pub kind: String,
    pub namespace: Option<String>,
    /// Deployment, StatefulSet, ... for a workload.
    pub workload_kind: Option<String>,
}

#[derive(Serialize, ToSchema, Debug, Default)]
pub struct MapEdge {
    /// The initiator's node id.
    pub from: String,
    pub to: String,
    pub flows: i64,
    pub packets: i64,
    pub bytes: i64,
    /// L7 protocols seen on the edge's flows.
    pub l7: Vec<String>,
    /// HTTP responses with status 500 or above (and gRPC calls that failed on the server's side:
    /// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), and DNS answers
    /// other than NOERROR.
    pub http_errors: i64,
    pub dns_errors: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceMap {
    pub nodes: Vec<MapNode>,
    /// Heaviest first, at most 500.
    pub edges: Vec<MapEdge>,
}

/// One aggregated row: a session's address pair, flows that began at one time (or, with no flows,
/// the errors of its events).
#[derive(sqlx::FromRow)]
struct Pair {
    session: String,
    src: String,
    dst: String,
    at: DateTime<Utc>,
    l7: Option<String>,
    flows: i64,
    packets: i64,
    bytes: i64,
    http_errors: i64,
    dns_errors: i64,
}

/// Edges between workloads (and Services, nodes, DNS names, addresses) in the filtered flows.
#[utoipa::path(get, path = "/api/v1/service-map", operation_id = "getServiceMap", tag = "flows",
    params(FilterParams),
    responses((status = 200, body = ServiceMap), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, filter: Narrowed) -> Result<Json<ServiceMap>, ApiError> {
    if let Some(session) = &filter.session {
        ensure_session_known(&state.pool, session).await?;
    }
    // Flows by address pair and start, each end named as it was when its flow began; then the
    // errors of the events between the same addresses, in the same session and time range.
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "SELECT session, host({src}) AS src, host({dst}) AS dst, first_seen AS at, l7, count(*) AS flows, \
             sum(packets_ab + packets_ba)::bigint AS packets, sum(bytes_ab + bytes_ba)::bigint AS bytes, \
             0::bigint AS http_errors, 0::bigint AS dns_errors \
         FROM flows WHERE {src} IS NOT NULL AND {dst} IS NOT NULL",
        src = FLOWS.src,
        dst = FLOWS.dst
    ));
    filter.push_sql(&mut query, &FLOWS);
    query
        .push(" GROUP BY 1, 2, 3, 4, 5 ORDER BY 8 DESC LIMIT ")
        .push_bind(MAX_PAIRS);
    let mut pairs: Vec<Pair> = query.build_query_as().fetch_all(&state.pool).await?;
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT session, host(client) AS src, host(server) AS dst, max(ts) AS at, NULL::text AS l7, \
             0::bigint AS flows, 0::bigint AS packets, 0::bigint AS bytes, \
             count(*) FILTER (WHERE http) AS http_errors, count(*) FILTER (WHERE NOT http) AS dns_errors \
         FROM (SELECT session, client, server, ts, true AS http FROM http_events \
               WHERE status >= 500 OR grpc_status IN (2, 4, 12, 13, 14, 15) \
               UNION ALL SELECT session, client, server, ts, false FROM dns_events \
                   WHERE rcode IS NOT NULL AND rcode <> 'NOERROR') AS errors WHERE true",
    );
    if let Some(session) = &filter.session {
        query.push(" AND session = ").push_bind(session.clone());
    }
    if let Some(sessions) = &filter.sessions {
        query.push(" AND session = ANY(").push_bind(sessions.clone()).push(")");
    }
    if let Some(since) = filter.since {
        query.push(" AND ts >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" AND ts < ").push_bind(until);
    }
    query
        .push(" GROUP BY 1, 2, 3 ORDER BY count(*) DESC LIMIT ")
        .push_bind(MAX_PAIRS);
    pairs.extend(query.build_query_as::<Pair>().fetch_all(&state.pool).await?);
    Ok(Json(map(&state.pool, pairs).await?))
}

/// Names the pairs' ends and adds the pairs up into edges between names.
async fn map(pool: &sqlx::PgPool, pairs: Vec<Pair>) -> Result<ServiceMap, sqlx::Error> {
    let lookups: Vec<Lookup<'_>> = pairs
        .iter()
        .flat_map(|pair| {
            [&pair.src, &pair.dst].map(|address| Lookup {
                session: &pair.session,
                address,
                at: pair.at,
            })
        })
        .collect();
    let names = endpoints::name(pool, &lookups).await?;
    drop(lookups);
    let mut nodes: BTreeMap<String, MapNode> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String), MapEdge> = BTreeMap::new();
    for (pair, ends) in pairs.iter().zip(names.chunks(2)) {
        let from = node(&pair.src, ends[0].as_ref());
        let to = node(&pair.dst, ends[1].as_ref());
        let edge = edges
            .entry((from.id.clone(), to.id.clone()))
            .or_insert_with(|| MapEdge {
                from: from.id.clone(),
                to: to.id.clone(),
                ..Default::default()
            });
        edge.flows += pair.flows;
        edge.packets += pair.packets;
        edge.bytes += pair.bytes;
        edge.http_errors += pair.http_errors;
        edge.dns_errors += pair.dns_errors;
        if let Some(l7) = &pair.l7
            && !edge.l7.contains(l7)
        {
            edge.l7.push(l7.clone());
            edge.l7.sort();
        }
        nodes.entry(from.id.clone()).or_insert(from);
        nodes.entry(to.id.clone()).or_insert(to);
    }
    let mut edges: Vec<MapEdge> = edges.into_values().collect();
    edges.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to)))
    });
    edges.truncate(MAX_EDGES);
    nodes.retain(|id, _| edges.iter().any(|edge| &edge.from == id || &edge.to == id));
    Ok(ServiceMap {
        nodes: nodes.into_values().collect(),
        edges,
    })
}

/// The map node an address stands for: its workload when it has one, else its pod, Service,
/// node or DNS name, else the address itself.
pub(crate) fn node(address: &str, endpoint: Option<&Endpoint>) -> MapNode {
    let Some(endpoint) = endpoint else {
        return MapNode {
            id: address.to_owned(),
            kind: "address".into(),
            namespace: None,
            workload_kind: None,
        };
    };
    let qualified = |name: &str| match &endpoint.namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    };
    match &endpoint.workload {
        Some(workload) => MapNode {
            id: qualified(workload),
            kind: "workload".into(),
            namespace: endpoint.namespace.clone(),
            workload_kind: endpoint.workload_kind.clone(),
        },
        None => MapNode {
            // A Service is often named like the workload behind it: its own node all the same.
            id: match endpoint.kind.as_str() {
                "service" => qualified(&format!("service/{}", endpoint.name)),
                "node" => format!("node/{}", endpoint.name),
                _ => qualified(&endpoint.name),
            },
            kind: endpoint.kind.clone(),
            namespace: endpoint.namespace.clone(),
            workload_kind: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(kind: &str, name: &str, workload: Option<&str>) -> Endpoint {
        Endpoint {
            kind: kind.into(),
            namespace: (kind != "dns").then(|| "shop".into()),
            name: name.into(),
            workload_kind: workload.map(|_| "Deployment".into()),
            workload: workload.map(Into::into),
            node: None,
        }
    }

    #[test]
    fn nodes_are_workloads_first_then_names_then_addresses() {
        let pod = endpoint("pod", "checkout-7d9f-x2", Some("checkout"));
        assert_eq!(node("10.244.1.7", Some(&pod)).id, "shop/checkout");
        assert_eq!(node("10.244.1.7", Some(&pod)).kind, "workload");
        let bare = endpoint("pod", "debug", None);
        assert_eq!(node("10.244.1.8", Some(&bare)).id, "shop/debug");
        assert_eq!(node("10.244.1.8", Some(&bare)).kind, "pod");
        let external = endpoint("dns", "api.example.org", None);
        assert_eq!(node("203.0.113.9", Some(&external)).id, "api.example.org");
        assert_eq!(node("203.0.113.9", None).kind, "address");
        let service = endpoint("service", "checkout", None);
        assert_eq!(node("10.96.0.20", Some(&service)).id, "shop/service/checkout");
    }
}
