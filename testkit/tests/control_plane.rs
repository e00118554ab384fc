//! Proof that the test control plane is a real Kubernetes: CRDs with CEL, controllers,
//! the scheduler, kwok nodes, garbage collection and RBAC all behave as in a cluster.
//!
//! Run: `cargo test -p testkit --test control_plane` (after `bash hack/control-plane/build.sh`)

use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::{Api, Client, Resource};
use serde_json::json;
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::{repo_root, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

fn run(mut command: std::process::Command) -> Output {
    command.output().expect("run command")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn session_api(namespace: &TestNamespace) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("trawl.dev", "v1alpha1", "CaptureSession");
    Api::namespaced_with(namespace.client.clone(), &namespace.name, &ApiResource::from_gvk(&gvk))
}

#[tokio::test]
async fn example_session_applies_and_prints_its_columns() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;

    let mut apply = namespace.kubectl();
    apply
        .args(["apply", "-f"])
        .arg(repo_root().join("examples/capture.yaml"));
    let output = run(apply);
    assert!(output.status.success(), "kubectl apply: {}", text(&output.stderr));

    let mut get = namespace.kubectl();
    get.args(["get", "cap"]);
    let output = run(get);
    assert!(output.status.success(), "kubectl get cap: {}", text(&output.stderr));
    let header = text(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(header, "NAME PHASE READY SNIFFERS PARSERS BACKLOG PACKETS AGE");
    assert!(text(&output.stdout).contains("web-and-dns"));
}

#[tokio::test]
async fn invalid_session_is_rejected_with_the_cel_message() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;

    let mut session: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("examples/capture.yaml")).unwrap()).unwrap();
    session["spec"]["parsers"] = json!({"minReplicas": 5, "maxReplicas": 2});
    let mut apply = namespace.kubectl();
    apply
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&session).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success(), "an invalid session was accepted");
    assert!(
        text(&output.stderr).contains("parsers.minReplicas must be less than or equal to parsers.maxReplicas"),
        "unexpected error: {}",
        text(&output.stderr)
    );

    session["spec"]["parsers"] = json!({"minReplicas": 1, "maxReplicas": 2});
    session["spec"]["snaplen"] = json!(10);
    let object: DynamicObject = serde_json::from_value(session).unwrap();
    let error = session_api(&namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("spec.snaplen"), "unexpected error: {error}");

    // Traffic metrics: contexts from a closed set, a bounded number of edges.
    for (metrics, field) in [
        (json!({"sourceContext": "team"}), "spec.metrics.sourceContext"),
        (json!({"maxEdges": 0}), "spec.metrics.maxEdges"),
    ] {
        let mut session = object.clone();
        session.data["spec"]["snaplen"] = json!(1024);
        session.data["spec"]["metrics"] = metrics;
        let error = session_api(&namespace)
            .create(&PostParams::default(), &session)
            .await
            .unwrap_err();
        assert!(error.to_string().contains(field), "unexpected error: {error}");
    }
}

#[tokio::test]
async fn shards_bound_the_parsers_and_cannot_change_during_a_session() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;
    let sessions = session_api(&namespace);
    let mut session: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("examples/capture.yaml")).unwrap()).unwrap();
    session["metadata"]["name"] = json!("sharded");

    session["spec"]["parsers"] = json!({"maxReplicas": 8, "shards": 4});
    let object: DynamicObject = serde_json::from_value(session.clone()).unwrap();
    let error = sessions.create(&PostParams::default(), &object).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("parsers.maxReplicas must not exceed parsers.shards"),
        "unexpected error: {error}"
    );

    session["spec"]["parsers"] = json!({"maxReplicas": 4, "shards": 4});
    let object: DynamicObject = serde_json::from_value(session).unwrap();
    sessions.create(&PostParams::default(), &object).await.unwrap();
    // A merge patch the API server must refuse with `message`.
    let refused = |patch: serde_json::Value, message: &'static str| {
        let sessions = sessions.clone();
        async move {
            let error = sessions
                .patch(
                    "sharded",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap_err();
            assert!(error.to_string().contains(message), "unexpected error: {error}");
        }
    };
    refused(
        json!({"spec": {"parsers": {"maxReplicas": 4, "shards": 6}}}),
        "parsers.shards cannot change during a session",
    )
    .await;
    let unchanged = sessions.get("sharded").await.unwrap();
    assert_eq!(unchanged.data["spec"]["parsers"]["shards"], 4);
    // Likewise the queues' type (issue #35): a declared queue's type is RabbitMQ's to keep.
    assert_eq!(unchanged.data["spec"]["queue"]["type"], "classic", "the default");
    refused(
        json!({"spec": {"queue": {"type": "quorum"}}}),
        "queue.type cannot change during a session",
    )
    .await;
}

fn labels(app: &str) -> std::collections::BTreeMap<String, String> {
    [("app".to_owned(), app.to_owned())].into()
}

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{"name": "main", "image": "registry.invalid/fake:1"}],
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
        }
    })
}

#[tokio::test]
async fn deployment_becomes_ready_on_kwok_nodes() {
    let namespace = ControlPlane::shared().namespace().await;
    let deployments: Api<Deployment> = Api::namespaced(namespace.client.clone(), &namespace.name);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels("web")}, "template": pod_template("web")}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    wait_until("3 ready replicas", DEADLINE, || async {
        let status = deployments.get("web").await.ok()?.status?;
        (status.ready_replicas == Some(3)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn daemonset_runs_one_pod_per_matching_node() {
    let namespace = ControlPlane::shared().namespace().await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(namespace.client.clone(), &namespace.name);
    let mut template = pod_template("sniffer");
    template["spec"]["nodeSelector"] = json!({"trawl.dev/pool": "capture"});
    let daemonset: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "sniffer"},
        "spec": {"selector": {"matchLabels": labels("sniffer")}, "template": template}
    }))
    .unwrap();
    daemonsets.create(&PostParams::default(), &daemonset).await.unwrap();
    wait_until("2 ready sniffer pods", DEADLINE, || async {
        let status = daemonsets.get("sniffer").await.ok()?.status?;
        (status.desired_number_scheduled == 2 && status.number_ready == 2).then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(namespace.client.clone(), &namespace.name);
    let mut nodes: Vec<String> = pods
        .list(&ListParams::default().labels("app=sniffer"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|pod| pod.spec.unwrap().node_name.unwrap_or_default())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["kwok-node-0", "kwok-node-1"]);
}

#[tokio::test]
async fn deleting_an_owner_collects_its_children() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;

    let sessions = session_api(&namespace);
    let session: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession",
        "metadata": {"name": "owner"}, "spec": {}
    }))
    .unwrap();
    let session = sessions.create(&PostParams::default(), &session).await.unwrap();

    let config_maps: Api<ConfigMap> = Api::namespaced(namespace.client.clone(), &namespace.name);
    let owner_reference = json!({
        "apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession",
        "name": "owner", "uid": session.meta().uid.clone().unwrap(), "controller": true
    });
    let child: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "child", "ownerReferences": [owner_reference]}
    }))
    .unwrap();
    config_maps.create(&PostParams::default(), &child).await.unwrap();

    sessions.delete("owner", &DeleteParams::background()).await.unwrap();
    wait_until("the owned ConfigMap to be garbage-collected", DEADLINE, || async {
        matches!(config_maps.get_opt("child").await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn service_account_tokens_are_authorized_by_rbac() {
    let control_plane = ControlPlane::shared();
    let namespace = control_plane.namespace().await;
    let (client, ns) = (namespace.client.clone(), namespace.name.as_str());

    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("reader".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let role = Role {
        metadata: ObjectMeta {
            name: Some("configmap-reader".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("reader".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "configmap-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let mut create_token = namespace.kubectl();
    create_token.args(["create", "token", "reader", "--duration", "10m"]);
    let output = run(create_token);
    assert!(
        output.status.success(),
        "kubectl create token: {}",
        text(&output.stderr)
    );
    let token = text(&output.stdout).trim().to_owned();

    let reader = client_with_token(control_plane, token).await;
    Api::<ConfigMap>::namespaced(reader.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("the Role allows listing configmaps");
    let forbidden = Api::<Secret>::namespaced(reader, ns)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        forbidden.to_string().contains("forbidden"),
        "expected a 403, got: {forbidden}"
    );
}

/// A client that authenticates with `token` instead of the admin's certificate.
async fn client_with_token(control_plane: &ControlPlane, token: String) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&control_plane.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::try_from(config).unwrap()
}
