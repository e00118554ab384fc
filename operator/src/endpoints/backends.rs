//! Which Service each pod address and port serves, over time (`0018_service_backends.sql`), from
//! the cluster's EndpointSlices: the API names a flow's Service by it, since a session keeps an
//! exchange through a Service where it enters the backend pod (with the pods' addresses, not the
//! Service's; see the sniffer's `points`).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use sqlx::PgPool;

use super::persist;

/// What one EndpointSlice says its Service's backends are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceBackends {
    pub namespace: String,
    pub slice: String,
    pub service: String,
    /// Address and port of each endpoint that is ready (or still serving while it terminates).
    pub served: BTreeSet<SocketAddr>,
    /// When the slice was created, by the API server's clock (as the pods' start times are).
    pub created: Option<DateTime<Utc>>,
}

/// The backends `slice` lists (None for a slice of no Service, which a controller other than
/// Kubernetes' may write).
pub fn of_slice(slice: &EndpointSlice) -> Option<SliceBackends> {
    let service = slice.labels().get("kubernetes.io/service-name")?.clone();
    let ports: Vec<u16> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|port| u16::try_from(port.port?).ok())
        .filter(|port| *port != 0)
        .collect();
    let served = slice
        .endpoints
        .iter()
        .flatten()
        .filter(|endpoint| {
            let conditions = endpoint.conditions.as_ref();
            // Unset means ready (the API's documented default).
            conditions.and_then(|c| c.ready) != Some(false) || conditions.and_then(|c| c.serving) == Some(true)
        })
        .flat_map(|endpoint| endpoint.addresses.iter().filter_map(|address| address.parse().ok()))
        .flat_map(|address| ports.iter().map(move |port| SocketAddr::new(address, *port)))
        .collect();
    let created = slice
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|Time(at)| DateTime::from_timestamp(at.as_second(), at.subsec_nanosecond().max(0) as u32));
    Some(SliceBackends {
        namespace: slice.namespace().unwrap_or_default(),
        slice: slice.name_any(),
        service,
        served,
        created,
    })
}

/// Records what the slice lists now: rows it no longer lists end, new ones begin. A new row
/// begins when its pod began holding the address (the endpoint history's row, from the pod's
/// start time) or the slice was created, whichever is later: times by the API server's clock, as
/// the rest of the history's and the packets' are, not the moment this operator heard of it
/// (which is later after an operator restart, and by the database's clock).
pub async fn record(pool: &PgPool, backends: &SliceBackends) -> Result<(), sqlx::Error> {
    let addresses: Vec<String> = backends.served.iter().map(|served| served.ip().to_string()).collect();
    let ports: Vec<i32> = backends.served.iter().map(|served| i32::from(served.port())).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE service_backends SET until = greatest(since, now()) \
         WHERE namespace = $1 AND slice = $2 AND until IS NULL AND (service <> $3 OR NOT EXISTS ( \
             SELECT FROM unnest($4::inet[], $5::int[]) AS listed(address, port) \
             WHERE listed.address = service_backends.address AND listed.port = service_backends.port))",
    )
    .bind(&backends.namespace)
    .bind(&backends.slice)
    .bind(&backends.service)
    .bind(&addresses)
    .bind(&ports)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO service_backends (address, port, namespace, service, slice, since) \
         SELECT listed.address, listed.port, $1, $3, $2, coalesce(greatest( \
             (SELECT max(e.since) FROM endpoint_history e \
              WHERE e.address = listed.address AND e.kind = 'pod' AND e.until IS NULL), $6), now()) \
         FROM unnest($4::inet[], $5::int[]) AS listed(address, port) \
         ON CONFLICT (namespace, slice, address, port) WHERE until IS NULL DO NOTHING",
    )
    .bind(&backends.namespace)
    .bind(&backends.slice)
    .bind(&backends.service)
    .bind(&addresses)
    .bind(&ports)
    .bind(backends.created)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Ends the open rows of slices not in `listed` (namespace, name): all of a deleted slice's, and
/// after a full list those of slices that went while nobody watched.
pub async fn end_unlisted(pool: &PgPool, listed: &[(String, String)]) -> Result<u64, sqlx::Error> {
    let namespaces: Vec<&str> = listed.iter().map(|(namespace, _)| namespace.as_str()).collect();
    let names: Vec<&str> = listed.iter().map(|(_, name)| name.as_str()).collect();
    let ended = sqlx::query(
        "UPDATE service_backends SET until = greatest(since, now()) WHERE until IS NULL AND NOT EXISTS ( \
             SELECT FROM unnest($1::text[], $2::text[]) AS listed(namespace, slice) \
             WHERE listed.namespace = service_backends.namespace AND listed.slice = service_backends.slice)",
    )
    .bind(&namespaces)
    .bind(&names)
    .execute(pool)
    .await?;
    Ok(ended.rows_affected())
}

/// Ends the open rows of one deleted slice.
async fn end_slice(pool: &PgPool, namespace: &str, slice: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE service_backends SET until = greatest(since, now()) \
         WHERE namespace = $1 AND slice = $2 AND until IS NULL",
    )
    .bind(namespace)
    .bind(slice)
    .execute(pool)
    .await?;
    Ok(())
}

/// Watches every EndpointSlice until the process ends (watch errors are retried with kube's
/// backoff, database errors until they pass).
pub async fn watch(client: Client, pool: &PgPool) {
    let api: Api<EndpointSlice> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Vec<(String, String)> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(slice)) => {
                listed.push((slice.namespace().unwrap_or_default(), slice.name_any()));
                if let Some(backends) = of_slice(&slice) {
                    persist("backends", || record(pool, &backends)).await;
                }
            }
            Ok(Event::InitDone) => {
                let ended = persist("backends resync", || end_unlisted(pool, &listed)).await;
                tracing::info!(
                    listed = listed.len(),
                    ended,
                    "service backends in step with the cluster"
                );
            }
            Ok(Event::Apply(slice)) => match of_slice(&slice) {
                Some(backends) => persist("backends", || record(pool, &backends)).await,
                None => {
                    let (namespace, name) = (slice.namespace().unwrap_or_default(), slice.name_any());
                    persist("backends", || end_slice(pool, &namespace, &name)).await
                }
            },
            Ok(Event::Delete(slice)) => {
                let (namespace, name) = (slice.namespace().unwrap_or_default(), slice.name_any());
                persist("backends", || end_slice(pool, &namespace, &name)).await;
            }
            Err(error) => tracing::warn!(%error, "EndpointSlice watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_slice_lists_each_ready_or_serving_endpoint_on_each_port() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abcde", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.0.5"]},
                {"addresses": ["10.244.1.5"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.244.2.5"], "conditions": {"ready": false}},
            ],
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}],
        }))
        .unwrap();
        let backends = of_slice(&slice).unwrap();
        assert_eq!(
            (backends.service.as_str(), backends.slice.as_str()),
            ("web", "web-abcde")
        );
        let served: Vec<String> = backends.served.iter().map(ToString::to_string).collect();
        assert_eq!(
            served,
            [
                "10.244.0.5:8080",
                "10.244.0.5:9090",
                "10.244.1.5:8080",
                "10.244.1.5:9090"
            ]
        );
    }

    #[test]
    fn a_slice_of_no_service_lists_nothing() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "custom", "namespace": "shop"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"]}],
        }))
        .unwrap();
        assert_eq!(of_slice(&slice), None);
    }
}
