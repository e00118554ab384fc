//! `spec.target`: which pods a session captures, resolved from the cluster's pods, namespaces and
//! nodes as pure functions, and what that means per node (the addresses its sniffer narrows its
//! kernel filter to).
//!
//! Addresses rather than the pods' veths: a kernel filter on the host's interfaces keeps one
//! capture ring per interface running across changes (a swap of the filter program loses nothing,
//! see the sniffer's `--targets-file`), works whatever the CNI names its interfaces, and also sees
//! pod traffic on the node's uplink (overlays aside, which carry the inner addresses anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use crds::{CaptureSession, Requirement, Selector, SelectorOperator, Target, TargetCounts};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// The label a node carries while it hosts a pod a session targets; the sniffer DaemonSet selects
/// it, so that the pod template never changes as pods come and go (a template change would
/// restart every sniffer and lose what their rings hold).
pub fn node_label(session: &CaptureSession) -> String {
    format!("capture.trawl.dev/{}", session.uid().unwrap_or_default())
}

/// Whether `labels` satisfy `selector`, as the API server's label selectors do: every
/// `matchLabels` pair present, and every requirement held (`NotIn` and `DoesNotExist` also hold
/// when the key is absent).
pub fn matches(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
        && selector
            .match_expressions
            .iter()
            .all(|requirement| holds(requirement, labels.get(&requirement.key)))
}

fn holds(requirement: &Requirement, value: Option<&String>) -> bool {
    match requirement.operator {
        SelectorOperator::In => value.is_some_and(|value| requirement.values.contains(value)),
        SelectorOperator::NotIn => value.is_none_or(|value| !requirement.values.contains(value)),
        SelectorOperator::Exists => value.is_some(),
        SelectorOperator::DoesNotExist => value.is_none(),
    }
}

/// The selector in the API server's `labelSelector` syntax (for `kubectl get -l` and for the test
/// that holds `matches` to the API server's own semantics).
pub fn selector_string(selector: &Selector) -> String {
    let labels = selector
        .match_labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"));
    let requirements = selector.match_expressions.iter().map(|r| {
        let values = r.values.join(",");
        match r.operator {
            SelectorOperator::In => format!("{} in ({values})", r.key),
            SelectorOperator::NotIn => format!("{} notin ({values})", r.key),
            SelectorOperator::Exists => r.key.clone(),
            SelectorOperator::DoesNotExist => format!("!{}", r.key),
        }
    });
    labels.chain(requirements).collect::<Vec<_>>().join(",")
}

/// Label keys and values the API server would refuse in a selector, named, so that the session
/// can say what is wrong instead of silently matching nothing.
pub fn invalid_labels(target: &Target) -> Option<String> {
    let selectors = [
        ("namespaceSelector", &target.namespace_selector),
        ("podSelector", &target.pod_selector),
    ];
    for (field, selector) in selectors {
        let Some(selector) = selector else { continue };
        let keys = selector
            .match_labels
            .keys()
            .chain(selector.match_expressions.iter().map(|r| &r.key));
        for key in keys {
            if !valid_key(key) {
                return Some(format!("target.{field}: {key:?} is not a valid label key"));
            }
        }
        let values = selector
            .match_labels
            .values()
            .chain(selector.match_expressions.iter().flat_map(|r| &r.values));
        for value in values {
            if !valid_value(value) {
                return Some(format!("target.{field}: {value:?} is not a valid label value"));
            }
        }
    }
    None
}

/// `[prefix/]name`: a DNS subdomain prefix and a name of up to 63 characters.
fn valid_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|prefix| {
        !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && valid_value(name)
}

/// Up to 63 characters of `[A-Za-z0-9_.-]`, starting and ending alphanumeric; empty is allowed.
fn valid_value(value: &str) -> bool {
    let edge = |b: Option<u8>| b.is_none_or(|b| b.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && edge(value.bytes().next())
        && edge(value.bytes().last())
}

/// Addresses one node's sniffer can filter on: libpcap compiles about 3.5 classic BPF
/// instructions per IPv4 address and the kernel takes at most 4096 (`bash bench/targets.sh`).
/// Past it the sniffer keeps its previous filter, so the session must say so.
pub const MAX_ADDRESSES_PER_NODE: usize = 1000;

/// What a session's target resolved to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    /// Per node that hosts a targeted pod (and matches the session's nodeSelector): the pods'
    /// addresses.
    pub addresses: BTreeMap<String, BTreeSet<IpAddr>>,
    pub pods: usize,
    /// Selected host-network pods, `namespace/name`, not captured.
    pub host_network: Vec<String>,
    /// ClusterIPs and ports of Services whose every backend is a captured pod: the sniffers keep
    /// such an exchange at the backend's end, where both directions carry the pods' addresses
    /// (the client's end sees the Service's).
    pub services: BTreeSet<SocketAddr>,
    /// Those Services' backends: a pod's address and the port it serves the Service on.
    pub backends: BTreeSet<SocketAddr>,
}

/// The ConfigMap keys of [`Resolved::services`] and [`Resolved::backends`] (`address:port`
/// lines); node names cannot start with a dot.
pub const SERVICES_KEY: &str = ".services";
pub const BACKENDS_KEY: &str = ".backends";

impl Resolved {
    pub fn counts(&self) -> TargetCounts {
        TargetCounts {
            pods: self.pods as i32,
            nodes: self.addresses.len() as i32,
            host_network_pods: self.host_network.len() as i32,
        }
    }

    /// Nodes with more targeted addresses than their sniffer's kernel filter can hold.
    pub fn overfull_nodes(&self) -> Vec<(&str, usize)> {
        self.addresses
            .iter()
            .filter(|(_, addresses)| addresses.len() > MAX_ADDRESSES_PER_NODE)
            .map(|(node, addresses)| (node.as_str(), addresses.len()))
            .collect()
    }

    /// The ConfigMap data the sniffers read: per node, one address per line (and the Services
    /// and their backends under [`SERVICES_KEY`] and [`BACKENDS_KEY`]).
    pub fn by_node(&self) -> BTreeMap<String, String> {
        fn lines<T: std::fmt::Display>(items: &BTreeSet<T>) -> String {
            items.iter().map(|item| format!("{item}\n")).collect()
        }
        let services = [
            (SERVICES_KEY, lines(&self.services)),
            (BACKENDS_KEY, lines(&self.backends)),
        ]
        .into_iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(key, lines)| (key.to_owned(), lines));
        self.addresses
            .iter()
            .map(|(node, addresses)| (node.clone(), lines(addresses)))
            .chain(services)
            .collect()
    }

    /// Fills [`Resolved::services`] and [`Resolved::backends`]: the Services (with a selector)
    /// all of whose running backends are captured pods.
    pub fn add_services(&mut self, services: &[impl AsRef<Service>], pods: &[impl AsRef<Pod>]) {
        let captured: BTreeSet<IpAddr> = self.addresses.values().flatten().copied().collect();
        for service in services.iter().map(AsRef::as_ref) {
            let Some(spec) = &service.spec else { continue };
            let Some(selector) = spec.selector.as_ref().filter(|selector| !selector.is_empty()) else {
                continue;
            };
            let namespace = service.namespace().unwrap_or_default();
            let backends: Vec<&Pod> = pods
                .iter()
                .map(AsRef::as_ref)
                .filter(|pod| pod.namespace().as_deref() == Some(namespace.as_str()) && running(pod))
                .filter(|pod| selector.iter().all(|(key, value)| pod.labels().get(key) == Some(value)))
                .collect();
            if backends.is_empty()
                || !backends.iter().all(|backend| {
                    let held = addresses(backend);
                    !held.is_empty() && held.is_subset(&captured)
                })
            {
                continue;
            }
            let cluster_ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(&spec.cluster_ip)
                .filter_map(|ip| ip.parse().ok())
                .collect();
            for port in spec.ports.iter().flatten() {
                let Ok(number) = u16::try_from(port.port) else { continue };
                self.services
                    .extend(cluster_ips.iter().map(|ip| SocketAddr::new(*ip, number)));
                for backend in &backends {
                    let Some(served) = target_port(port, backend) else {
                        continue;
                    };
                    self.backends
                        .extend(addresses(backend).into_iter().map(|ip| SocketAddr::new(ip, served)));
                }
            }
        }
    }
}

/// The port `pod` serves a Service's `port` on: its targetPort, by number or by the name of one
/// of the pod's container ports (a pod without that name is not a backend for it), else the
/// Service's port itself.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<u16> {
    let number = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(number)) => *number,
        Some(IntOrString::String(name)) => {
            pod.spec
                .iter()
                .flat_map(|spec| spec.containers.iter().chain(spec.init_containers.iter().flatten()))
                .flat_map(|container| container.ports.iter().flatten())
                .find(|container_port| container_port.name.as_deref() == Some(name))?
                .container_port
        }
    };
    u16::try_from(number).ok()
}

/// What a node-wide session captures: every pod of every namespace on its nodes.
pub fn every_pod() -> Target {
    Target {
        namespace_selector: Some(Selector::default()),
        ..Target::default()
    }
}

/// The pods `target` selects for `session`, grouped by node. Pods without a node or an address
/// yet, and finished pods, are not (yet) captured; the next pod event brings them in.
pub fn resolve(
    session: &CaptureSession,
    target: &Target,
    pods: &[impl AsRef<Pod>],
    namespaces: &[impl AsRef<Namespace>],
    nodes: &[impl AsRef<Node>],
) -> Resolved {
    let own_namespace = session.namespace().unwrap_or_default();
    let selected_namespaces: BTreeSet<String> = match &target.namespace_selector {
        None => BTreeSet::from([own_namespace]),
        Some(selector) => namespaces
            .iter()
            .map(AsRef::as_ref)
            .filter(|namespace| matches(selector, namespace.labels()))
            .map(ResourceExt::name_any)
            .collect(),
    };
    let capturable_nodes: BTreeSet<String> = nodes
        .iter()
        .map(AsRef::as_ref)
        .filter(|node| {
            session
                .spec
                .node_selector
                .iter()
                .all(|(key, value)| node.labels().get(key) == Some(value))
        })
        .map(ResourceExt::name_any)
        .collect();
    let every_pod = Selector::default();
    let pod_selector = target.pod_selector.as_ref().unwrap_or(&every_pod);
    let mut resolved = Resolved::default();
    for pod in pods.iter().map(AsRef::as_ref) {
        let namespace = pod.namespace().unwrap_or_default();
        if !selected_namespaces.contains(&namespace) || !matches(pod_selector, pod.labels()) {
            continue;
        }
        let Some(spec) = &pod.spec else { continue };
        if !running(pod) {
            continue;
        }
        if spec.host_network == Some(true) {
            resolved.host_network.push(format!("{namespace}/{}", pod.name_any()));
            continue;
        }
        let Some(node) = spec.node_name.as_ref().filter(|node| capturable_nodes.contains(*node)) else {
            continue;
        };
        let addresses = addresses(pod);
        if addresses.is_empty() {
            continue;
        }
        resolved.pods += 1;
        resolved.addresses.entry(node.clone()).or_default().extend(addresses);
    }
    resolved.host_network.sort();
    resolved
}

/// A pod that has (or will have) traffic: not finished, not being deleted.
fn running(pod: &Pod) -> bool {
    let finished = pod
        .status
        .as_ref()
        .is_some_and(|status| matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")));
    pod.status.is_some() && !finished && pod.metadata.deletion_timestamp.is_none()
}

/// A pod's addresses (none before the kubelet reports them).
fn addresses(pod: &Pod) -> BTreeSet<IpAddr> {
    let Some(status) = &pod.status else {
        return BTreeSet::new();
    };
    status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .chain(status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn selector(value: serde_json::Value) -> Selector {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn requirements_hold_as_the_api_servers_do_also_for_absent_keys() {
        let app = labels(&[("app", "checkout"), ("tier", "web")]);
        let bare = labels(&[]);
        let cases = [
            (json!({}), true, true),
            (json!({"matchLabels": {"app": "checkout"}}), true, false),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["checkout", "cart"]}]}),
                true,
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["checkout"]}]}),
                false,
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
                true,
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
                false,
                true,
            ),
            (
                json!({"matchLabels": {"app": "checkout"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}),
                true,
                false,
            ),
        ];
        for (value, on_app, on_bare) in cases {
            let selector = selector(value.clone());
            assert_eq!(matches(&selector, &app), on_app, "{value} on app");
            assert_eq!(matches(&selector, &bare), on_bare, "{value} on no labels");
        }
    }

    #[test]
    fn selectors_print_in_the_api_servers_syntax() {
        let selector = selector(json!({
            "matchLabels": {"app": "checkout"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }));
        assert_eq!(
            selector_string(&selector),
            "app=checkout,tier in (web,api),env notin (dev),team,!canary"
        );
    }

    #[test]
    fn label_syntax_errors_are_named() {
        let target: Target =
            serde_json::from_value(json!({"podSelector": {"matchLabels": {"app": "bad value"}}})).unwrap();
        assert_eq!(
            invalid_labels(&target).as_deref(),
            Some(r#"target.podSelector: "bad value" is not a valid label value"#)
        );
        let target: Target =
            serde_json::from_value(json!({"namespaceSelector": {"matchLabels": {"-x/app": "a"}}})).unwrap();
        assert!(invalid_labels(&target).unwrap().contains("label key"));
        let target: Target =
            serde_json::from_value(json!({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "x", "k": ""}}}))
                .unwrap();
        assert_eq!(invalid_labels(&target), None);
    }

    fn running_pod(namespace: &str, name: &str, labels: serde_json::Value, ip: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [], "nodeName": "node-a"},
            "status": {"phase": "Running", "podIP": ip}
        }))
        .unwrap()
    }

    fn service(namespace: &str, name: &str, selector: serde_json::Value, ip: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector, "clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 80}]}
        }))
        .unwrap()
    }

    #[test]
    fn services_count_as_captured_only_when_every_backend_is() {
        let pods = [
            running_pod("shop", "web-1", json!({"app": "web"}), "10.244.0.5"),
            running_pod("shop", "web-2", json!({"app": "web"}), "10.244.1.5"),
            running_pod("shop", "db", json!({"app": "db"}), "10.244.0.6"),
            running_pod("other", "web", json!({"app": "web"}), "10.244.2.9"),
        ];
        let mut resolved = Resolved::default();
        resolved.addresses.insert(
            "node-a".into(),
            BTreeSet::from(["10.244.0.5".parse().unwrap(), "10.244.1.5".parse().unwrap()]),
        );
        let services = [
            service("shop", "web", json!({"app": "web"}), "10.96.0.10"),
            service("shop", "db", json!({"app": "db"}), "10.96.0.11"),
            service("shop", "nothing", json!({"app": "none"}), "10.96.0.12"),
            service("shop", "headless", json!({"app": "web"}), "None"),
        ];
        resolved.add_services(&services.map(std::sync::Arc::new), &pods.map(std::sync::Arc::new));
        assert_eq!(resolved.services, BTreeSet::from(["10.96.0.10:80".parse().unwrap()]));
        assert_eq!(resolved.by_node()[SERVICES_KEY], "10.96.0.10:80\n");
        assert_eq!(resolved.by_node()[BACKENDS_KEY], "10.244.0.5:80\n10.244.1.5:80\n");
    }

    #[test]
    fn backends_serve_on_the_target_port_by_number_or_by_the_containers_port_name() {
        let mut pod = running_pod("shop", "web-1", json!({"app": "web"}), "10.244.0.5");
        pod.spec.as_mut().unwrap().containers = vec![
            serde_json::from_value(json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]})).unwrap(),
        ];
        let mut service = service("shop", "web", json!({"app": "web"}), "10.96.0.10");
        service.spec.as_mut().unwrap().ports = Some(vec![
            serde_json::from_value(json!({"name": "http", "port": 80, "targetPort": "http"})).unwrap(),
            serde_json::from_value(json!({"name": "admin", "port": 9000, "targetPort": 9090})).unwrap(),
            serde_json::from_value(json!({"name": "gone", "port": 7000, "targetPort": "no-such-port"})).unwrap(),
        ]);
        let mut resolved = Resolved::default();
        resolved
            .addresses
            .insert("node-a".into(), BTreeSet::from(["10.244.0.5".parse().unwrap()]));
        resolved.add_services(&[std::sync::Arc::new(service)], &[std::sync::Arc::new(pod)]);
        let backends: Vec<String> = resolved.backends.iter().map(ToString::to_string).collect();
        assert_eq!(backends, ["10.244.0.5:8080", "10.244.0.5:9090"]);
        assert_eq!(resolved.services.len(), 3, "{:?}", resolved.services);
    }
}
