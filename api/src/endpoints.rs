//! Names for addresses (issue #20): what an address was at a packet's time, from the endpoint
//! history the operator records (`0011_endpoint_history.sql`), or else the name the session's
//! own captured DNS answers gave it shortly before (as Wireshark's resolved addresses do). The
//! API names whole pages at once: one statement for the history, one for DNS (answers of the hour
//! before).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// Who an address was.
#[derive(Serialize, ToSchema, Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Endpoint {
    /// `pod`, `service` (a ClusterIP), `node` (a node's address, also its host-network pods'), or
    /// `dns` (named by a DNS answer captured in the session).
    pub kind: String,
    pub namespace: Option<String>,
    /// The pod's, Service's or node's name, or the DNS name.
    pub name: String,
    /// Deployment, StatefulSet, DaemonSet, Job, CronJob, or the pod's other owner.
    pub workload_kind: Option<String>,
    pub workload: Option<String>,
    pub node: Option<String>,
}

/// A Service, by namespace and name.
#[derive(Serialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

/// The Service each address and port served at its time, in order (None where it served none,
/// or the address or port is unknown), from the EndpointSlices the operator records
/// (`0018_service_backends.sql`). One statement for the whole list.
pub async fn services_served(
    pool: &PgPool,
    lookups: &[(Option<&str>, Option<i32>, DateTime<Utc>)],
) -> Result<Vec<Option<ServiceName>>, sqlx::Error> {
    let mut served = vec![None; lookups.len()];
    let asked: Vec<(usize, &str, i32, DateTime<Utc>)> = lookups
        .iter()
        .enumerate()
        .filter_map(|(slot, (address, port, at))| Some((slot, (*address)?, (*port)?, *at)))
        .collect();
    if asked.is_empty() {
        return Ok(served);
    }
    let found: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT q.i, b.namespace, b.service \
         FROM unnest($1::inet[], $2::int[], $3::timestamptz[]) WITH ORDINALITY AS q(address, port, at, i) \
         CROSS JOIN LATERAL (SELECT namespace, service FROM service_backends b \
             WHERE b.address = q.address AND b.port = q.port AND b.since <= q.at \
               AND (b.until IS NULL OR b.until > q.at) \
             ORDER BY b.since DESC, b.namespace, b.service LIMIT 1) b",
    )
    .bind(asked.iter().map(|(_, address, _, _)| *address).collect::<Vec<_>>())
    .bind(asked.iter().map(|(_, _, port, _)| *port).collect::<Vec<_>>())
    .bind(asked.iter().map(|(_, _, _, at)| *at).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    for (i, namespace, name) in found {
        if let Some((slot, ..)) = usize::try_from(i - 1).ok().and_then(|i| asked.get(i)) {
            served[*slot] = Some(ServiceName { namespace, name });
        }
    }
    Ok(served)
}

/// Columns [`select`] adds for one end.
pub const COLUMNS: usize = 6;

/// The columns of the end joined as `alias` by [`join`]: kind, namespace, name, workload kind,
/// workload, node (all NULL when unknown).
pub fn select(alias: &str) -> String {
    format!("{alias}.kind, {alias}.namespace, {alias}.name, {alias}.workload_kind, {alias}.workload, {alias}.node")
}

/// A LATERAL join naming `address` (an inet SQL expression) of `session` at `at` as `alias`: the
/// endpoint history, else the DNS name the session's captured answers gave it in the hour before
/// — the same answer as [`name`], inside the caller's own statement.
pub fn join(alias: &str, session: &str, address: &str, at: &str) -> String {
    format!(
        "LEFT JOIN LATERAL (\
             SELECT kind, namespace, name, workload_kind, workload, node FROM trawl_endpoint_at({address}, {at}) \
             UNION ALL \
             (SELECT 'dns', NULL, rtrim(query, '.'), NULL, NULL, NULL FROM dns_events d \
              WHERE d.session = {session} AND d.ts <= {at} AND d.ts > {at} - interval '1 hour' \
                AND d.query IS NOT NULL \
                AND d.answers && ARRAY['A ' || host({address}), 'AAAA ' || host({address})] \
              ORDER BY d.ts DESC LIMIT 1) \
             LIMIT 1) {alias} ON true"
    )
}

/// The end [`select`] put at `first` (None when its kind is NULL).
pub fn from_columns(row: &sqlx::postgres::PgRow, first: usize) -> Result<Option<Endpoint>, sqlx::Error> {
    use sqlx::Row;
    let Some(kind) = row.try_get::<Option<String>, _>(first)? else {
        return Ok(None);
    };
    Ok(Some(Endpoint {
        kind,
        namespace: row.try_get(first + 1)?,
        name: row.try_get(first + 2)?,
        workload_kind: row.try_get(first + 3)?,
        workload: row.try_get(first + 4)?,
        node: row.try_get(first + 5)?,
    }))
}

/// A row with two ends to name: packets, flows.
pub trait Named {
    /// Session, source and destination address, and the time to name them at.
    fn ends(&self) -> (&str, Option<&str>, Option<&str>, DateTime<Utc>);
    fn name(&mut self, src: Option<Endpoint>, dst: Option<Endpoint>);
}

/// Names both ends of every row, in two statements for the whole list.
pub async fn name_ends<T: Named>(pool: &PgPool, rows: &mut [T]) -> Result<(), sqlx::Error> {
    let lookups: Vec<Lookup<'_>> = rows
        .iter()
        .flat_map(|row| {
            let (session, src, dst, at) = row.ends();
            [src, dst].map(|address| Lookup {
                session,
                address: address.unwrap_or(""),
                at,
            })
        })
        .collect();
    let mut names = name(pool, &lookups).await?.into_iter();
    drop(lookups);
    for row in rows.iter_mut() {
        let (src, dst) = (names.next().flatten(), names.next().flatten());
        row.name(src, dst);
    }
    Ok(())
}

/// One address to name: the packet's (or flow's) session, the address and the time.
pub struct Lookup<'a> {
    pub session: &'a str,
    pub address: &'a str,
    pub at: DateTime<Utc>,
}

/// Names each lookup (None where neither the history nor DNS knows the address), in order.
pub async fn name(pool: &PgPool, lookups: &[Lookup<'_>]) -> Result<Vec<Option<Endpoint>>, sqlx::Error> {
    let mut names: Vec<Option<Endpoint>> = vec![None; lookups.len()];
    if lookups.is_empty() {
        return Ok(names);
    }
    // Each distinct address and time once: an address is named by who held it at that time.
    let mut keys: Vec<(&str, &str, DateTime<Utc>)> = lookups
        .iter()
        .filter(|lookup| !lookup.address.is_empty())
        .map(|lookup| (lookup.session, lookup.address, lookup.at))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let addresses: Vec<&str> = keys.iter().map(|(_, address, _)| *address).collect();
    let times: Vec<DateTime<Utc>> = keys.iter().map(|(_, _, at)| *at).collect();
    let known: Vec<(i64, Endpoint)> = sqlx::query_as::<
        _,
        (
            i64,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        ),
    >(
        "SELECT q.i, e.kind, e.namespace, e.name, e.workload_kind, e.workload, e.node \
         FROM unnest($1::inet[], $2::timestamptz[]) WITH ORDINALITY AS q(address, at, i) \
         CROSS JOIN LATERAL trawl_endpoint_at(q.address, q.at) e",
    )
    .bind(&addresses)
    .bind(&times)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(i, kind, namespace, name, workload_kind, workload, node)| {
        (
            i,
            Endpoint {
                kind,
                namespace,
                name,
                workload_kind,
                workload,
                node,
            },
        )
    })
    .collect();
    let mut by_key: HashMap<(&str, &str, DateTime<Utc>), Endpoint> = HashMap::new();
    for (i, endpoint) in known {
        by_key.insert(keys[(i - 1) as usize], endpoint);
    }
    // The rest by the session's DNS answers: each address once, by the answers before the latest
    // time it is asked for.
    let mut unnamed: HashMap<(&str, &str), DateTime<Utc>> = HashMap::new();
    for key in keys.iter().filter(|key| !by_key.contains_key(*key)) {
        let at = unnamed.entry((key.0, key.1)).or_insert(key.2);
        *at = (*at).max(key.2);
    }
    let unnamed: Vec<((&str, &str), DateTime<Utc>)> = unnamed.into_iter().collect();
    let mut by_dns: HashMap<(&str, &str), Endpoint> = HashMap::new();
    if !unnamed.is_empty() {
        let resolved: Vec<(i64, String)> = sqlx::query_as(
            "SELECT q.i, d.query FROM unnest($1::text[], $2::inet[], $3::timestamptz[]) WITH ORDINALITY AS q(session, address, at, i) \
             CROSS JOIN LATERAL ( \
                 SELECT query FROM dns_events d \
                 WHERE d.session = q.session AND d.ts <= q.at AND d.ts > q.at - interval '1 hour' \
                   AND d.query IS NOT NULL \
                   AND d.answers && ARRAY['A ' || host(q.address), 'AAAA ' || host(q.address)] \
                 ORDER BY d.ts DESC LIMIT 1) d",
        )
        .bind(unnamed.iter().map(|((session, _), _)| *session).collect::<Vec<_>>())
        .bind(unnamed.iter().map(|((_, address), _)| *address).collect::<Vec<_>>())
        .bind(unnamed.iter().map(|(_, at)| *at).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
        for (i, query) in resolved {
            by_dns.insert(
                unnamed[(i - 1) as usize].0,
                Endpoint {
                    kind: "dns".into(),
                    namespace: None,
                    name: query.trim_end_matches('.').to_owned(),
                    workload_kind: None,
                    workload: None,
                    node: None,
                },
            );
        }
    }
    for (slot, lookup) in names.iter_mut().zip(lookups) {
        *slot = by_key
            .get(&(lookup.session, lookup.address, lookup.at))
            .or_else(|| by_dns.get(&(lookup.session, lookup.address)))
            .cloned();
    }
    Ok(names)
}
