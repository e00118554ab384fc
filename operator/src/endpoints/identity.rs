//! What a cluster object says its addresses are: pure functions from Pods, Services and Nodes to
//! the identities the endpoint history records (no API calls here; owners come from a lookup).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

/// Who an address belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub workload: Option<Workload>,
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

/// An address held by an identity since a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub address: IpAddr,
    pub identity: Identity,
    pub since: DateTime<Utc>,
}

/// The controller that owns an object, if any.
pub fn controller(owners: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    owners?.iter().find(|owner| owner.controller == Some(true))
}

/// The addresses a pod holds: none for a host-network pod (its address is its node's, recorded
/// as the node) or a pod that finished (its address is free again). `workload` is the pod's
/// workload as resolved through its owners.
pub fn pod_addresses(pod: &Pod, workload: Option<Workload>) -> Vec<Held> {
    let (Some(spec), Some(status)) = (&pod.spec, &pod.status) else {
        return Vec::new();
    };
    if spec.host_network == Some(true) || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Vec::new();
    }
    let mut addresses: Vec<&str> = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str()).collect();
    if addresses.is_empty()
        && let Some(ip) = status.pod_ip.as_deref()
    {
        addresses.push(ip);
    }
    let since = when(status.start_time.as_ref().or(pod.metadata.creation_timestamp.as_ref()));
    let identity = Identity {
        kind: "pod",
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        workload,
        node: spec.node_name.clone(),
    };
    held(addresses, identity, since)
}

/// A Service's ClusterIPs (a headless Service has none: its names resolve to the pods').
pub fn service_addresses(service: &Service) -> Vec<Held> {
    let Some(spec) = &service.spec else { return Vec::new() };
    let mut addresses: Vec<&str> = spec.cluster_ips.iter().flatten().map(String::as_str).collect();
    if addresses.is_empty()
        && let Some(ip) = spec.cluster_ip.as_deref()
    {
        addresses.push(ip);
    }
    let identity = Identity {
        kind: "service",
        namespace: service.metadata.namespace.clone(),
        name: service.metadata.name.clone().unwrap_or_default(),
        workload: None,
        node: None,
    };
    let since = when(service.metadata.creation_timestamp.as_ref());
    held(addresses, identity, since)
}

/// A node's internal and external addresses.
pub fn node_addresses(node: &Node) -> Vec<Held> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let addresses: Vec<&str> = node
        .status
        .iter()
        .flat_map(|status| status.addresses.iter().flatten())
        .filter(|address| matches!(address.type_.as_str(), "InternalIP" | "ExternalIP"))
        .map(|address| address.address.as_str())
        .collect();
    let identity = Identity {
        kind: "node",
        namespace: None,
        name: name.clone(),
        workload: None,
        node: Some(name),
    };
    let since = when(node.metadata.creation_timestamp.as_ref());
    held(addresses, identity, since)
}

/// A Kubernetes time as the database's (now, when the object does not say).
fn when(time: Option<&Time>) -> DateTime<Utc> {
    time.and_then(|Time(at)| DateTime::from_timestamp(at.as_second(), at.subsec_nanosecond().max(0) as u32))
        .unwrap_or_else(Utc::now)
}

fn held(addresses: Vec<&str>, identity: Identity, since: DateTime<Utc>) -> Vec<Held> {
    let mut held: Vec<Held> = addresses
        .into_iter()
        .filter_map(|text| text.parse().ok())
        .map(|address| Held {
            address,
            identity: identity.clone(),
            since,
        })
        .collect();
    held.dedup_by_key(|h| h.address);
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus, PodIP, PodSpec, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ips: &[&str], host_network: bool, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("checkout-7d9f-abcde".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                host_network: Some(host_network),
                node_name: Some("node-1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ips.first().map(|ip| ip.to_string()),
                pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
                start_time: Some(Time("2026-11-28T10:00:00Z".parse().unwrap())),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_running_pod_holds_each_of_its_addresses_with_its_workload() {
        let workload = Workload {
            kind: "Deployment".into(),
            name: "checkout".into(),
        };
        let held = pod_addresses(
            &pod(&["10.244.1.17", "fd00::17"], false, "Running"),
            Some(workload.clone()),
        );
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].address, "10.244.1.17".parse::<IpAddr>().unwrap());
        assert_eq!(held[1].address, "fd00::17".parse::<IpAddr>().unwrap());
        assert_eq!(held[0].identity.workload, Some(workload));
        assert_eq!(held[0].identity.node.as_deref(), Some("node-1"));
        assert_eq!(held[0].since.to_rfc3339(), "2026-11-28T10:00:00+00:00");
    }

    #[test]
    fn host_network_and_finished_pods_hold_no_address_of_their_own() {
        assert!(pod_addresses(&pod(&["192.168.0.5"], true, "Running"), None).is_empty());
        assert!(pod_addresses(&pod(&["10.244.1.17"], false, "Succeeded"), None).is_empty());
        assert!(pod_addresses(&pod(&[], false, "Pending"), None).is_empty());
    }

    #[test]
    fn services_hold_their_cluster_ips_and_headless_ones_none() {
        let service = |ips: &[&str]| Service {
            metadata: ObjectMeta {
                name: Some("checkout".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: ips.first().map(|ip| ip.to_string()),
                cluster_ips: Some(ips.iter().map(|ip| ip.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let held = service_addresses(&service(&["10.96.0.10"]));
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].identity.kind, "service");
        assert!(service_addresses(&service(&["None"])).is_empty());
    }

    #[test]
    fn nodes_hold_their_internal_and_external_addresses() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: "192.168.0.5".into(),
                    },
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: "node-1".into(),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let held = node_addresses(&node);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].identity.name, "node-1");
    }
}
