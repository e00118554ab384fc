//! The sniffer DaemonSet (its host port comes from `crate::ports`).

use crds::CaptureSession;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, SecurityContext,
};

use super::{AMQP_URL_KEY, PodConfig, child_metadata, credential, env, http_probe, pod_template, resources, selector};
use crate::{names, targets};

/// The sniffer DaemonSet: host network, NET_RAW + NET_ADMIN (or privileged when configured), the
/// session's node selector and tolerations, its capture config as `TRAWL_*` variables.
pub fn sniffer_daemonset(session: &CaptureSession, config: &PodConfig, queue: &str, port: i32) -> DaemonSet {
    let spec = &session.spec;
    let labels = names::labels(session, "sniffer");
    let namespace = session.metadata.namespace.clone().unwrap_or_default();
    let security = if config.privileged_sniffers {
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
    let pods = format!("{}/{}", config.namespace, names::targets_name(session));
    // Every sniffer reads the addresses of the pods the session captures, on every node; a
    // targeted session's also narrow their capture to their own node's.
    let mut variables = if targeted {
        node_selector.insert(targets::node_label(session), "true".into());
        env(&[("TRAWL_TARGETS_CONFIGMAP", pods)])
    } else {
        env(&[("TRAWL_PODS_CONFIGMAP", pods)])
    };
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
        image: Some(config.sniffer_image.clone()),
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
        metadata: child_metadata(&config.namespace, names::sniffer_name(session), &labels),
        spec: DaemonSetSpec {
            selector: selector(&labels),
            template: pod_template(
                &labels,
                PodSpec {
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    node_selector: Some(node_selector),
                    tolerations: Some(spec.tolerations.clone()),
                    // The one thing sniffers ask the API server: their session's pods
                    // ConfigMap, which this account may read and nothing else.
                    service_account_name: Some(names::targets_name(session)),
                    automount_service_account_token: Some(true),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{pod_config, session};

    #[test]
    fn sniffers_run_on_the_host_network_with_capture_capabilities_only() {
        let daemonset = sniffer_daemonset(&session(), &pod_config(), "q", 20_001);
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
    fn the_sniffers_listen_on_the_sessions_port() {
        let port = 24_321;
        let container = &sniffer_daemonset(&session(), &pod_config(), "q", port)
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
    fn privileged_sniffers_only_when_configured() {
        let daemonset = sniffer_daemonset(
            &session(),
            &PodConfig {
                privileged_sniffers: true,
                ..pod_config()
            },
            "q",
            20_001,
        );
        let container = &daemonset.spec.template.spec.unwrap().containers[0];
        assert_eq!(container.security_context.as_ref().unwrap().privileged, Some(true));
    }
}
