//! Desired child objects of a session, as pure functions of (session, operator settings): no
//! client here, so every builder is unit-tested from fixtures. Only `apply` talks to the API.
//!
//! Built as k8s-openapi's typed structs, so that a misspelt field does not compile (serde would
//! drop an unknown key of a JSON literal without a word). KEDA's ScaledObject has no Rust type
//! and stays JSON; a test checks it against the fields KEDA's CRD declares.

use std::collections::BTreeMap;

use crds::{Autoscaler, CaptureSession, TrafficMetrics};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, SecurityContext, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde_json::json;

use crate::{names, targets};

/// What the builders need from the operator's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sniffer_image: String,
    pub parser_image: String,
    /// RabbitMQ URL as the pods reach it.
    pub pod_amqp_url: String,
    /// PostgreSQL URL as the parsers reach it.
    pub pod_database_url: Option<String>,
    pub privileged_sniffers: bool,
}

/// The parsers' metrics and health port.
const PARSER_PORT: i32 = 9091;

fn owner_reference(session: &CaptureSession) -> OwnerReference {
    session
        .controller_owner_ref(&())
        .expect("a stored session has a name and uid")
}

/// Name, namespace, labels and the owner reference every child carries.
fn child_metadata(session: &CaptureSession, name: String, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: session.metadata.namespace.clone(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner_reference(session)]),
        ..Default::default()
    }
}

fn env(pairs: &[(&str, String)]) -> Vec<EnvVar> {
    pairs
        .iter()
        .map(|(name, value)| EnvVar {
            name: (*name).to_owned(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect()
}

/// Keys of the session's credentials Secret.
pub const AMQP_URL_KEY: &str = "amqp-url";
pub const DATABASE_URL_KEY: &str = "database-url";

/// An environment variable read from the session's credentials Secret.
fn credential(session: &CaptureSession, variable: &str, key: &str) -> EnvVar {
    EnvVar {
        name: variable.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names::credentials_name(session),
                key: key.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: i32, period_seconds: i32) -> Option<Probe> {
    Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        ..Default::default()
    })
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> Option<ResourceRequirements> {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Quantity((*value).to_owned())))
            .collect::<BTreeMap<_, _>>()
    };
    Some(ResourceRequirements {
        requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
        limits: Some(quantities(&[("memory", memory_limit)])),
        ..Default::default()
    })
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    }
}

fn pod_template(labels: &BTreeMap<String, String>, spec: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

/// The URLs the session's pods connect with, in a Secret of the session's own namespace: so that
/// passwords never appear in a DaemonSet or Deployment (readable by anyone who may list
/// workloads), and so that sessions work in any namespace without copying Secrets by hand.
pub fn credentials_secret(session: &CaptureSession, settings: &Settings) -> Secret {
    let mut data = BTreeMap::from([(AMQP_URL_KEY.to_owned(), settings.pod_amqp_url.clone())]);
    if let Some(url) = &settings.pod_database_url {
        data.insert(DATABASE_URL_KEY.to_owned(), url.clone());
    }
    let mut labels = names::labels(session, "credentials");
    labels.remove("app.kubernetes.io/component");
    Secret {
        metadata: child_metadata(session, names::credentials_name(session), &labels),
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.into_iter()
                .map(|(key, value)| (key, k8s_openapi::ByteString(value.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Sniffers' metrics and health ports come from this range.
pub const SNIFFER_PORTS: std::ops::Range<i32> = 20_000..30_000;

/// Where a session's sniffer port search starts: derived from the uid (FNV-1a), so that sessions
/// spread over the range.
pub fn preferred_sniffer_port(session: &CaptureSession) -> i32 {
    let uid = session.metadata.uid.as_deref().unwrap_or_default();
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    SNIFFER_PORTS.start + (hash % SNIFFER_PORTS.len() as u64) as i32
}

/// The first port from `preferred` on (wrapping around the range) that no other session's sniffers
/// use. Sniffers share the node's network namespace and the scheduler treats a host-network
/// container port as a host port, so two sessions on one port would leave one Pending.
pub fn free_sniffer_port(preferred: i32, taken: &std::collections::BTreeSet<i32>) -> Option<i32> {
    let width = SNIFFER_PORTS.len() as i32;
    (0..width)
        .map(|step| SNIFFER_PORTS.start + (preferred - SNIFFER_PORTS.start + step).rem_euclid(width))
        .find(|port| !taken.contains(port))
}

/// The sniffer DaemonSet: host network, NET_RAW + NET_ADMIN (or privileged when configured), the
/// session's node selector and tolerations, its capture settings as `TRAWL_*` variables.
pub fn sniffer_daemonset(session: &CaptureSession, settings: &Settings, queue: &str, port: i32) -> DaemonSet {
    let spec = &session.spec;
    let labels = names::labels(session, "sniffer");
    let namespace = session.metadata.namespace.clone().unwrap_or_default();
    let security = if settings.privileged_sniffers {
        SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }
    } else {
        SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_RAW".into(), "NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }
    };
    let targeted = spec.target.is_some();
    let mut node_selector = spec.node_selector.clone();
    let mut variables = Vec::new();
    if targeted {
        node_selector.insert(targets::node_label(session), "true".into());
        variables = env(&[(
            "TRAWL_TARGETS_CONFIGMAP",
            format!("{namespace}/{}", names::targets_name(session)),
        )]);
    }
    variables.extend(env(&[
        ("TRAWL_SESSION", format!("{namespace}/{}", names::session_name(session))),
        ("TRAWL_LISTEN", format!("0.0.0.0:{port}")),
        ("TRAWL_ROUTING_KEY", queue.to_owned()),
        ("TRAWL_SHARDS", session.shards().to_string()),
        ("TRAWL_SNAPLEN", spec.snaplen.to_string()),
        ("TRAWL_FILTER", spec.filter.clone().unwrap_or_default()),
        ("TRAWL_INTERFACES", spec.interfaces.join(",")),
    ]));
    variables.push(EnvVar {
        name: "TRAWL_NODE".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    variables.push(credential(session, "TRAWL_AMQP_URL", AMQP_URL_KEY));
    let container = Container {
        name: "sniffer".into(),
        image: Some(settings.sniffer_image.clone()),
        env: Some(variables),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: port,
            ..Default::default()
        }]),
        readiness_probe: http_probe("/readyz", port, 5),
        liveness_probe: http_probe("/healthz", port, 10),
        resources: resources("100m", "128Mi", "512Mi"),
        security_context: Some(security),
        ..Default::default()
    };
    DaemonSet {
        metadata: child_metadata(session, names::sniffer_name(session), &labels),
        spec: DaemonSetSpec {
            selector: selector(&labels),
            template: pod_template(
                &labels,
                PodSpec {
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    node_selector: Some(node_selector),
                    tolerations: Some(spec.tolerations.clone()),
                    // Only a targeted session's sniffers talk to the API server (to watch their
                    // targets); the others get no token.
                    service_account_name: targeted.then(|| names::targets_name(session)),
                    automount_service_account_token: Some(targeted),
                    // Time for the final flush: confirms of the batches in flight and the totals.
                    termination_grace_period_seconds: Some(30),
                    containers: vec![container],
                    ..Default::default()
                },
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The targets ConfigMap: per node (the key), the addresses its sniffer captures, one per line.
/// Watched by the sniffers through the API, not mounted: a mounted ConfigMap reaches a running
/// pod only at the kubelet's next sync (a minute or more), and a new pod must be captured within
/// seconds of getting its address.
pub fn targets_configmap(session: &CaptureSession, by_node: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: child_metadata(
            session,
            names::targets_name(session),
            &names::labels(session, "sniffer"),
        ),
        data: Some(by_node),
        ..Default::default()
    }
}

/// The sniffers' identity: a ServiceAccount that may read the session's targets ConfigMap and
/// nothing else (a Role limited to that one name).
pub fn sniffer_access(session: &CaptureSession) -> (ServiceAccount, Role, RoleBinding) {
    let name = names::targets_name(session);
    let labels = names::labels(session, "sniffer");
    let account = ServiceAccount {
        metadata: child_metadata(session, name.clone(), &labels),
        ..Default::default()
    };
    let role = Role {
        metadata: child_metadata(session, name.clone(), &labels),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![name.clone()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: child_metadata(session, name.clone(), &labels),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: session.metadata.namespace.clone(),
            ..Default::default()
        }]),
    };
    (account, role, binding)
}

/// The parser Deployment. `replicas` is set only when no autoscaler owns the count (`autoscaler:
/// none`); otherwise it is left out so that server-side apply never fights the autoscaler.
pub fn parser_deployment(session: &CaptureSession, settings: &Settings, queue: &str) -> Deployment {
    let spec = &session.spec;
    let labels = names::labels(session, "parser");
    let namespace = session.metadata.namespace.clone().unwrap_or_default();
    let mut variables = env(&[
        ("TRAWL_SESSION", format!("{namespace}/{}", names::session_name(session))),
        ("TRAWL_QUEUE", queue.to_owned()),
        ("TRAWL_SHARDS", session.shards().to_string()),
        ("TRAWL_STORE_PAYLOAD", spec.store_payload.to_string()),
        ("TRAWL_RETENTION", spec.retention.clone()),
    ]);
    if let Some(metrics) = &spec.metrics {
        variables.extend(env(&[("TRAWL_TRAFFIC_METRICS", traffic_metrics_setting(metrics))]));
    }
    variables.push(credential(session, "TRAWL_AMQP_URL", AMQP_URL_KEY));
    variables.push(credential(session, "TRAWL_DATABASE_URL", DATABASE_URL_KEY));
    let container = Container {
        name: "parser".into(),
        image: Some(settings.parser_image.clone()),
        env: Some(variables),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: PARSER_PORT,
            ..Default::default()
        }]),
        readiness_probe: http_probe("/readyz", PARSER_PORT, 5),
        liveness_probe: http_probe("/healthz", PARSER_PORT, 10),
        resources: resources("250m", "256Mi", "1Gi"),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut template = pod_template(
        &labels,
        PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![container],
            ..Default::default()
        },
    );
    // Prometheus without the Prometheus Operator finds the parsers (and their traffic metrics) by
    // these; the chart's PodMonitor finds them by their labels.
    template.metadata.get_or_insert_default().annotations = Some(BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), PARSER_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]));
    Deployment {
        metadata: child_metadata(session, names::parser_name(session), &labels),
        spec: DeploymentSpec {
            replicas: (spec.parsers.autoscaler == Autoscaler::None).then_some(spec.parsers.min_replicas),
            selector: selector(&labels),
            template,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `spec.metrics` as the parser's `--traffic-metrics` reads it.
fn traffic_metrics_setting(metrics: &TrafficMetrics) -> String {
    format!(
        "source={},destination={},max-edges={}",
        metrics.source_context.as_str(),
        metrics.destination_context.as_str(),
        metrics.max_edges
    )
}

/// The KEDA ScaledObject that scales the parser Deployment on the queues' length (`autoscaler: keda`).
/// KEDA reads the broker URL from the parsers' own `TRAWL_AMQP_URL`. A trigger per shard queue,
/// each aiming at its share of `targetBacklog`: the HPA follows the busiest trigger, which for
/// evenly hashed flows asks for about what the total backlog over `targetBacklog` would.
pub fn parser_scaled_object(session: &CaptureSession, queue: &str) -> serde_json::Value {
    let parsers = &session.spec.parsers;
    let shards = session.shards();
    let share = (parsers.target_backlog / i64::from(shards)).max(1);
    let triggers: Vec<serde_json::Value> = (0..shards)
        .map(|shard| {
            json!({
                "type": "rabbitmq",
                "metadata": {
                    "queueName": queues::shard_queue(queue, shard),
                    "mode": "QueueLength",
                    "value": share.to_string(),
                    "hostFromEnv": "TRAWL_AMQP_URL",
                },
            })
        })
        .collect();
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": child_metadata(session, names::parser_name(session), &names::labels(session, "parser")),
        "spec": {
            "scaleTargetRef": {"name": names::parser_name(session)},
            "minReplicaCount": parsers.min_replicas,
            "maxReplicaCount": parsers.max_replicas,
            "pollingInterval": 5,
            "triggers": triggers,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            sniffer_image: "sniffer:1".into(),
            parser_image: "parser:1".into(),
            pod_amqp_url: "amqp://rabbitmq:5672/%2f".into(),
            pod_database_url: Some("postgres://trawl:secret@postgresql/trawl".into()),
            privileged_sniffers: false,
        }
    }

    /// The example a user applies, as the API server would return it (name, namespace, uid set).
    fn fixture() -> CaptureSession {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/capture.yaml")).unwrap();
        let mut session: CaptureSession = serde_yaml::from_str(&text).unwrap();
        session.metadata.namespace = Some("team-a".into());
        session.metadata.uid = Some("0123456789abcdef".into());
        session
    }

    #[test]
    fn sniffers_run_on_the_host_network_with_capture_capabilities_only() {
        let daemonset = sniffer_daemonset(&fixture(), &settings(), "q", 20_001);
        let pod = daemonset.spec.template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.node_selector.unwrap()["trawl.dev/pool"], "capture");
        assert_eq!(pod.tolerations.unwrap().len(), 1);
        let container = &pod.containers[0];
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.privileged, None);
        assert_eq!(
            security.capabilities.as_ref().unwrap().add.as_deref(),
            Some(&["NET_RAW".into(), "NET_ADMIN".into()][..])
        );
        let variable = |name: &str| {
            container
                .env
                .as_ref()
                .unwrap()
                .iter()
                .find(|v| v.name == name)
                .unwrap()
                .clone()
        };
        assert_eq!(
            variable("TRAWL_FILTER").value.as_deref(),
            Some("tcp port 443 or tcp port 80 or udp port 53")
        );
        assert_eq!(variable("TRAWL_SESSION").value.as_deref(), Some("team-a/web-and-dns"));
        assert_eq!(variable("TRAWL_SNAPLEN").value.as_deref(), Some("1024"));
        assert_eq!(variable("TRAWL_SHARDS").value.as_deref(), Some("10"));
        assert!(variable("TRAWL_NODE").value_from.is_some());
        assert_eq!(
            container
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
    }

    #[test]
    fn each_session_gets_a_port_no_other_session_uses() {
        let (mut a, mut b) = (fixture(), fixture());
        a.metadata.uid = Some("2f1c6c4e-6d43-4c3b-9a4f-0d5d3c7c1a01".into());
        b.metadata.uid = Some("8a7b1f0e-2c9d-4e5f-8a1b-3c4d5e6f7a02".into());
        assert_ne!(preferred_sniffer_port(&a), preferred_sniffer_port(&b));
        assert!(SNIFFER_PORTS.contains(&preferred_sniffer_port(&a)));
        let none = std::collections::BTreeSet::new();
        assert_eq!(free_sniffer_port(24_205, &none), Some(24_205));
        let taken: std::collections::BTreeSet<i32> = [24_205, 24_206].into();
        assert_eq!(free_sniffer_port(24_205, &taken), Some(24_207), "the next free one");
        let top: std::collections::BTreeSet<i32> = [29_999].into();
        assert_eq!(free_sniffer_port(29_999, &top), Some(20_000), "wraps around");
        let all: std::collections::BTreeSet<i32> = SNIFFER_PORTS.collect();
        assert_eq!(free_sniffer_port(25_000, &all), None);

        let port = 24_321;
        let container = &sniffer_daemonset(&a, &settings(), "q", port)
            .spec
            .template
            .spec
            .unwrap()
            .containers[0];
        let listen = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "TRAWL_LISTEN")
            .unwrap();
        assert_eq!(listen.value, Some(format!("0.0.0.0:{port}")));
        assert_eq!(container.ports.as_ref().unwrap()[0].container_port, port);
    }

    #[test]
    fn keda_scales_the_parsers_on_the_queue_length() {
        let session = fixture();
        let scaled = parser_scaled_object(&session, "trawl.team-a.web-and-dns.01234567");
        assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "web-and-dns-parser");
        assert_eq!(
            (
                scaled["spec"]["minReplicaCount"].as_i64(),
                scaled["spec"]["maxReplicaCount"].as_i64()
            ),
            (Some(1), Some(5))
        );
        // One trigger per shard queue (the example has the default 10 shards), each aiming at
        // its tenth of the target backlog of 100.
        let triggers = scaled["spec"]["triggers"].as_array().unwrap();
        assert_eq!(triggers.len(), 10);
        let trigger = &triggers[0];
        assert_eq!(trigger["type"], "rabbitmq");
        assert_eq!(trigger["metadata"]["queueName"], "trawl.team-a.web-and-dns.01234567");
        assert_eq!(trigger["metadata"]["mode"], "QueueLength");
        assert_eq!(trigger["metadata"]["value"], "10");
        assert_eq!(
            triggers[9]["metadata"]["queueName"],
            "trawl.team-a.web-and-dns.01234567.shard-9"
        );
    }

    #[test]
    fn privileged_sniffers_only_when_configured() {
        let daemonset = sniffer_daemonset(
            &fixture(),
            &Settings {
                privileged_sniffers: true,
                ..settings()
            },
            "q",
            20_001,
        );
        let container = &daemonset.spec.template.spec.unwrap().containers[0];
        assert_eq!(container.security_context.as_ref().unwrap().privileged, Some(true));
    }

    #[test]
    fn children_are_owned_by_the_session_and_selected_by_its_labels() {
        let session = fixture();
        let deployment = parser_deployment(&session, &settings(), "q");
        let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CaptureSession", "0123456789abcdef", Some(true))
        );
        let selector = deployment.spec.selector.match_labels.clone().unwrap();
        assert_eq!(selector["trawl.dev/session"], "web-and-dns");
        assert_eq!(selector["app.kubernetes.io/component"], "parser");
    }

    #[test]
    fn replicas_are_left_to_the_autoscaler_unless_there_is_none() {
        let mut session = fixture();
        assert_eq!(parser_deployment(&session, &settings(), "q").spec.replicas, None);
        session.spec.parsers.autoscaler = Autoscaler::None;
        session.spec.parsers.min_replicas = 3;
        assert_eq!(parser_deployment(&session, &settings(), "q").spec.replicas, Some(3));
    }

    #[test]
    fn parsers_get_the_urls_from_the_session_secret_and_run_restricted() {
        let deployment = parser_deployment(&fixture(), &settings(), "trawl.team-a.web-and-dns.01234567");
        let pod = deployment.spec.template.spec.unwrap();
        let container = &pod.containers[0];
        let database = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "TRAWL_DATABASE_URL")
            .unwrap();
        let secret = database.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("web-and-dns-credentials", DATABASE_URL_KEY)
        );
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let queue = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "TRAWL_QUEUE")
            .unwrap();
        assert_eq!(queue.value.as_deref(), Some("trawl.team-a.web-and-dns.01234567"));
    }

    #[test]
    fn parsers_export_traffic_metrics_only_when_the_session_asks_and_are_found_by_annotations() {
        let variable = |session: &CaptureSession| {
            let deployment = parser_deployment(session, &settings(), "q");
            let annotations = deployment
                .spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .clone()
                .unwrap();
            assert_eq!(annotations["prometheus.io/port"], PARSER_PORT.to_string());
            let pod = deployment.spec.template.spec.unwrap();
            pod.containers[0]
                .env
                .as_ref()
                .unwrap()
                .iter()
                .find(|v| v.name == "TRAWL_TRAFFIC_METRICS")
                .and_then(|v| v.value.clone())
        };
        let mut session = fixture();
        assert_eq!(variable(&session), None);
        session.spec.metrics = Some(serde_yaml::from_str("{sourceContext: pod, maxEdges: 50}").unwrap());
        assert_eq!(
            variable(&session).as_deref(),
            Some("source=pod,destination=workload,max-edges=50")
        );
    }

    #[test]
    fn urls_with_passwords_live_only_in_the_session_secret() {
        let session = fixture();
        let secret = credentials_secret(&session, &settings());
        assert_eq!(secret.metadata.name.as_deref(), Some("web-and-dns-credentials"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(secret.metadata.owner_references.unwrap()[0].uid, "0123456789abcdef");
        let data = secret.data.unwrap();
        assert_eq!(data[DATABASE_URL_KEY].0, b"postgres://trawl:secret@postgresql/trawl");
        assert_eq!(data[AMQP_URL_KEY].0, b"amqp://rabbitmq:5672/%2f");
        let children = [
            serde_json::to_string(&sniffer_daemonset(&session, &settings(), "q", 20_001)).unwrap(),
            serde_json::to_string(&parser_deployment(&session, &settings(), "q")).unwrap(),
        ];
        for child in children {
            assert!(!child.contains("amqp://") && !child.contains("postgres://"), "{child}");
            assert!(child.contains(r#""name":"TRAWL_AMQP_URL","valueFrom""#), "{child}");
        }
    }

    /// KEDA's ScaledObject as its CRD declares it (keda.sh/v1alpha1, from KEDA's ScaledObject
    /// specification): the fields each level may have, and the rabbitmq trigger's metadata keys,
    /// whose values the CRD types as strings.
    #[test]
    fn the_scaled_object_has_only_fields_keda_declares() {
        use serde_json::Value;
        let scaled = parser_scaled_object(&fixture(), "q");
        let keys = |value: &Value| -> Vec<String> { value.as_object().unwrap().keys().cloned().collect() };
        let within = |value: &Value, allowed: &[&str], at: &str| {
            for key in keys(value) {
                assert!(
                    allowed.contains(&key.as_str()),
                    "{at}.{key} is not a field of a ScaledObject"
                );
            }
        };
        within(&scaled, &["apiVersion", "kind", "metadata", "spec"], "");
        let spec = &scaled["spec"];
        within(
            spec,
            &[
                "scaleTargetRef",
                "pollingInterval",
                "cooldownPeriod",
                "initialCooldownPeriod",
                "idleReplicaCount",
                "minReplicaCount",
                "maxReplicaCount",
                "fallback",
                "advanced",
                "triggers",
            ],
            "spec",
        );
        within(
            &spec["scaleTargetRef"],
            &["apiVersion", "kind", "name", "envSourceContainerName"],
            "spec.scaleTargetRef",
        );
        assert!(
            spec["scaleTargetRef"]["name"].is_string(),
            "scaleTargetRef.name is required"
        );
        for key in ["pollingInterval", "minReplicaCount", "maxReplicaCount"] {
            assert!(spec[key].is_i64(), "spec.{key} is an integer");
        }
        let triggers = spec["triggers"].as_array().expect("spec.triggers is required");
        for trigger in triggers {
            within(
                trigger,
                &[
                    "type",
                    "name",
                    "metadata",
                    "authenticationRef",
                    "metricType",
                    "useCachedMetrics",
                ],
                "spec.triggers[]",
            );
            assert_eq!(trigger["type"], "rabbitmq");
            let metadata = &trigger["metadata"];
            within(
                metadata,
                &[
                    "host",
                    "hostFromEnv",
                    "protocol",
                    "queueName",
                    "mode",
                    "value",
                    "activationValue",
                    "vhostName",
                    "usernameFromEnv",
                    "passwordFromEnv",
                    "unsafeSsl",
                ],
                "spec.triggers[].metadata",
            );
            for (key, value) in metadata.as_object().unwrap() {
                assert!(
                    value.is_string(),
                    "trigger metadata {key} must be a string, not {value}"
                );
            }
        }
        let metadata = serde_json::from_value::<ObjectMeta>(scaled["metadata"].clone()).unwrap();
        assert_eq!(metadata.owner_references.unwrap()[0].kind, "CaptureSession");
    }
}
