//! `examples/capture.yaml` is a session a user would apply: it must deserialise into the Rust
//! type and pass the CRD's CEL rules; broken variants must fail them with the intended message.
//! (The API server enforces the same rules: see the control-plane tests.)

use crds::CaptureSession;
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn example() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/capture.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn schema() -> Value {
    let crd = serde_json::to_value(CaptureSession::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The messages of the CEL rules that `object` breaks (after the schema's defaults are applied).
fn cel_failures(object: &Value) -> Vec<String> {
    match kube_cel::Validator::new().validate_with_defaults(&schema(), object, None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn example_deserialises_into_the_rust_type() {
    let session: CaptureSession = serde_json::from_value(example()).unwrap();
    assert_eq!(
        session.spec.filter.as_deref(),
        Some("tcp port 443 or tcp port 80 or udp port 53")
    );
    assert_eq!(session.spec.parsers.max_replicas, 5);
    assert!(!session.spec.store_payload);
}

#[test]
fn example_passes_the_cel_rules() {
    assert_eq!(cel_failures(&example()), Vec::<String>::new());
}

#[test]
fn min_replicas_above_max_replicas_is_rejected() {
    let mut object = example();
    object["spec"]["parsers"] = json!({"minReplicas": 4, "maxReplicas": 2});
    assert_eq!(
        cel_failures(&object),
        ["parsers.minReplicas must be less than or equal to parsers.maxReplicas"]
    );
}

#[test]
fn defaults_keep_the_replica_rule_satisfied() {
    let mut object = example();
    object["spec"]["parsers"] = json!({"maxReplicas": 3});
    assert_eq!(cel_failures(&object), Vec::<String>::new());
}

#[test]
fn more_parsers_than_shards_is_rejected_and_the_default_shards_fit_the_default_parsers() {
    let mut object = example();
    object["spec"]["parsers"] = json!({"maxReplicas": 12});
    assert_eq!(
        cel_failures(&object),
        [
            "parsers.maxReplicas must not exceed parsers.shards: each parser consumes whole shards, so parsers beyond the shard count would idle"
        ]
    );
    object["spec"]["parsers"] = json!({"maxReplicas": 12, "shards": 16});
    assert_eq!(cel_failures(&object), Vec::<String>::new());
    object["spec"]["parsers"] = json!({});
    assert_eq!(cel_failures(&object), Vec::<String>::new());
}

#[test]
fn malformed_duration_is_rejected() {
    let mut object = example();
    object["spec"]["duration"] = json!("ten minutes");
    assert!(
        cel_failures(&object).contains(&"duration must be a Go duration such as 90s, 10m or 1h30m".to_owned()),
        "{:?}",
        cel_failures(&object)
    );
}

#[test]
fn malformed_retention_is_rejected() {
    let mut object = example();
    object["spec"]["retention"] = json!("1 day");
    assert!(
        cel_failures(&object).contains(&"retention must be a Go duration such as 24h or 168h".to_owned()),
        "{:?}",
        cel_failures(&object)
    );
}

#[test]
fn zero_duration_is_rejected() {
    let mut object = example();
    object["spec"]["duration"] = json!("0s");
    assert_eq!(cel_failures(&object), ["duration must be greater than zero"]);
}

#[test]
fn a_name_longer_than_a_label_value_is_rejected() {
    let mut session = example();
    session["metadata"]["name"] = json!("a".repeat(63));
    assert!(cel_failures(&session).is_empty(), "63 characters fit");
    session["metadata"]["name"] = json!("a".repeat(64));
    assert_eq!(
        cel_failures(&session),
        ["a session's name must be at most 63 characters: it is a label value on the session's pods"]
    );
}
