//! The committed `crds/capturesession.yaml` must be what the Rust types generate.

#[test]
fn committed_crd_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/capturesession.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == crds::crd_yaml(),
        "crds/capturesession.yaml is out of date: run `cargo run -p crds --bin crdgen > crds/capturesession.yaml`"
    );
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    let crd: serde_json::Value = serde_yaml::from_str(&crds::crd_yaml()).unwrap();
    let conditions =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
}
