//! KEDA's ScaledObject for the parsers (`autoscaler: keda`).

use crds::CaptureSession;
use serde_json::json;

use super::child_metadata;
use crate::names;

/// The KEDA ScaledObject that scales the parser Deployment on the queues' length (`autoscaler: keda`).
/// KEDA reads the broker URL from the parsers' own `TRAWL_AMQP_URL`. A trigger per shard queue,
/// each aiming at its share of `targetBacklog`: the HPA follows the busiest trigger, which for
/// evenly hashed flows asks for about what the total backlog over `targetBacklog` would.
pub fn parser_scaled_object(session: &CaptureSession, namespace: &str, queue: &str) -> serde_json::Value {
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
        "metadata": child_metadata(namespace, names::parser_name(session), &names::labels(session, "parser")),
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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use crate::build::fixture::session;

    #[test]
    fn keda_scales_the_parsers_on_the_queue_length() {
        let session = session();
        let scaled = parser_scaled_object(&session, "trawl-system", "trawl.team-a.web-and-dns.01234567");
        assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "team-a-web-and-dns-parser");
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

    /// KEDA's ScaledObject as its CRD declares it (keda.sh/v1alpha1, from KEDA's ScaledObject
    /// specification): the fields each level may have, and the rabbitmq trigger's metadata keys,
    /// whose values the CRD types as strings.
    #[test]
    fn the_scaled_object_has_only_fields_keda_declares() {
        use serde_json::Value;
        let scaled = parser_scaled_object(&session(), "trawl-system", "q");
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
        assert_eq!(metadata.namespace.as_deref(), Some("trawl-system"));
    }
}
