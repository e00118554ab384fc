//! The parser Deployment.

use std::collections::BTreeMap;

use crds::{Autoscaler, CaptureSession, TrafficMetrics};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

use super::{
    AMQP_URL_KEY, DATABASE_URL_KEY, PARSER_PORT, PodConfig, child_metadata, credential, env, http_probe, pod_template,
    resources, selector,
};
use crate::names;

/// The parser Deployment. `replicas` is set only when no autoscaler owns the count (`autoscaler:
/// none`); otherwise it is left out so that server-side apply never fights the autoscaler.
pub fn parser_deployment(session: &CaptureSession, config: &PodConfig, queue: &str) -> Deployment {
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
        image: Some(config.parser_image.clone()),
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
        metadata: child_metadata(&config.namespace, names::parser_name(session), &labels),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{pod_config, session};

    #[test]
    fn children_live_in_the_operators_namespace_and_are_selected_by_the_sessions_labels() {
        let session = session();
        let deployment = parser_deployment(&session, &pod_config(), "q");
        assert_eq!(deployment.metadata.namespace.as_deref(), Some("trawl-system"));
        assert_eq!(deployment.metadata.owner_references, None, "no owner across namespaces");
        let selector = deployment.spec.selector.match_labels.clone().unwrap();
        assert_eq!(selector["trawl.dev/session"], "web-and-dns");
        assert_eq!(selector["trawl.dev/session-namespace"], "team-a");
        assert_eq!(selector["trawl.dev/session-uid"], "0123456789abcdef");
        assert_eq!(selector["app.kubernetes.io/component"], "parser");
    }

    #[test]
    fn replicas_are_left_to_the_autoscaler_unless_there_is_none() {
        let mut session = session();
        assert_eq!(parser_deployment(&session, &pod_config(), "q").spec.replicas, None);
        session.spec.parsers.autoscaler = Autoscaler::None;
        session.spec.parsers.min_replicas = 3;
        assert_eq!(parser_deployment(&session, &pod_config(), "q").spec.replicas, Some(3));
    }

    #[test]
    fn parsers_get_the_urls_from_the_session_secret_and_run_restricted() {
        let deployment = parser_deployment(&session(), &pod_config(), "trawl.team-a.web-and-dns.01234567");
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
            ("team-a-web-and-dns-credentials", DATABASE_URL_KEY)
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
            let deployment = parser_deployment(session, &pod_config(), "q");
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
        let mut session = session();
        assert_eq!(variable(&session), None);
        session.spec.metrics = Some(serde_yaml::from_str("{sourceContext: pod, maxEdges: 50}").unwrap());
        assert_eq!(
            variable(&session).as_deref(),
            Some("source=pod,destination=workload,max-edges=50")
        );
    }
}
