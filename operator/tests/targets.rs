//! `spec.target` on the test control plane (issue #20): the selector semantics held to the API
//! server's own, contradictory targets rejected by the API server, and a targeted session run by
//! the real operator: sniffers placed only on nodes that host a selected pod (kwok gives the pods
//! their addresses), per-node addresses in the targets ConfigMap, a new matching pod picked up, a
//! deleted one dropped, host-network pods reported, and the node labels gone with the session.
//!
//! Run (after `bash hack/services.sh` and `bash hack/control-plane/build.sh`):
//! `cargo test -p operator --test targets`

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use operator::targets;
use serde_json::{Value, json};
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::process::{Service, StdinText, free_port};
use testkit::rabbitmq::TestVhost;
use testkit::wait_until;

const DEADLINE: Duration = Duration::from_secs(90);

fn pod(name: &str, labels: Value, node: Option<&str>, host_network: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "hostNetwork": host_network,
            "containers": [{"name": "main", "image": "registry.invalid/fake:1"}],
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
        }
    }))
    .unwrap()
}

async fn create_pod(namespace: &TestNamespace, pod: &Pod) {
    Api::<Pod>::namespaced(namespace.client.clone(), &namespace.name)
        .create(&PostParams::default(), pod)
        .await
        .unwrap();
}

#[tokio::test]
async fn selectors_match_exactly_what_the_api_server_selects() {
    let control_plane = ControlPlane::shared();
    let namespace = control_plane.namespace().await;
    let labelled = [
        json!({"app": "checkout", "tier": "web"}),
        json!({"app": "checkout", "tier": "db", "canary": "true"}),
        json!({"app": "cart", "tier": "web", "env": "dev"}),
        json!({"app": "cart", "env": "prod"}),
        json!({"tier": "web"}),
        json!({}),
    ];
    for (index, labels) in labelled.iter().enumerate() {
        create_pod(&namespace, &pod(&format!("p{index}"), labels.clone(), None, false)).await;
    }
    let pods: Api<Pod> = Api::namespaced(namespace.client.clone(), &namespace.name);
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    let selectors = [
        json!({}),
        json!({"matchLabels": {"app": "checkout"}}),
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["checkout", "cart"]}]}),
        json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["checkout"]}]}),
        json!({"matchExpressions": [{"key": "env", "operator": "Exists"}]}),
        json!({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}),
        json!({"matchLabels": {"tier": "web"}, "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod", "dev"]}]}),
        json!({"matchExpressions": [{"key": "app", "operator": "Exists"}, {"key": "tier", "operator": "NotIn", "values": ["db"]}]}),
    ];
    for value in selectors {
        let selector: crds::Selector = serde_json::from_value(value.clone()).unwrap();
        let query = targets::selector_string(&selector);
        let server: BTreeSet<String> = pods
            .list(&ListParams::default().labels(&query))
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        let ours: BTreeSet<String> = all
            .iter()
            .filter(|p| targets::matches(&selector, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(ours, server, "{value} (labelSelector {query:?})");
    }
}

#[tokio::test]
async fn contradictory_targets_are_rejected_with_a_message() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;
    let cases = [
        (json!({}), "target needs a namespaceSelector, a podSelector or both"),
        (
            json!({"podSelector": {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}}),
            "contradicts matchLabels",
        ),
        (
            json!({"podSelector": {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}}),
            "contradicts matchLabels",
        ),
        (
            json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": []}]}}),
            "In and NotIn need at least one value",
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["x"]}]}}),
            "Exists and DoesNotExist take none",
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "team", "operator": "Equals", "values": ["x"]}]}}),
            "Unsupported value: \"Equals\"",
        ),
    ];
    for (target, message) in cases {
        let session = json!({
            "apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession",
            "metadata": {"name": "contradictory", "namespace": namespace.name},
            "spec": {"target": target}
        });
        let output = namespace
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin_text(&session.to_string());
        assert!(!output.status.success(), "{target} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{target}: {stderr}");
    }
}

/// Per node, the addresses in the session's targets ConfigMap.
async fn configmap_targets(namespace: &TestNamespace, session: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let configmap = Api::<ConfigMap>::namespaced(namespace.client.clone(), &namespace.name)
        .get_opt(&format!("{}-{session}-targets", namespace.name))
        .await
        .ok()??;
    Some(
        configmap
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(node, text)| (node, text.lines().map(str::to_owned).collect()))
            .collect(),
    )
}

async fn pod_ip(namespace: &TestNamespace, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(namespace.client.clone(), &namespace.name);
    wait_until(&format!("an address for pod {name}"), DEADLINE, || async {
        pods.get(name).await.ok()?.status?.pod_ip
    })
    .await
}

async fn labelled_nodes(namespace: &TestNamespace, label: &str) -> BTreeSet<String> {
    Api::<Node>::all(namespace.client.clone())
        .list(&ListParams::default().labels(label))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|node| node.metadata.name.unwrap())
        .collect()
}

/// The real operator, watching sessions in `namespace` (and the whole cluster's pods).
fn start_operator(control_plane: &ControlPlane, namespace: &TestNamespace) -> (Service, TestVhost) {
    let vhost = TestVhost::create();
    let metrics_port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_trawl-operator"));
    command
        .env("KUBECONFIG", &control_plane.kubeconfig)
        .args(["--amqp-url", &vhost.amqp_url, "--watch-namespace", &namespace.name])
        .args(["--namespace", &namespace.name])
        .args(["--listen", &format!("127.0.0.1:{metrics_port}")]);
    (Service::start("trawl-operator", command), vhost)
}

#[tokio::test]
async fn a_node_wide_sessions_sniffers_learn_every_pod_on_its_nodes() {
    // The sniffers keep a packet where it leaves a captured pod and skip its other copies, on
    // every node: they need the addresses of all the pods the session captures.
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let (shop, other) = (control_plane.namespace().await, control_plane.namespace().await);
    let _operator = start_operator(control_plane, &shop);
    create_pod(&shop, &pod("web", json!({"app": "web"}), Some("kwok-node-0"), false)).await;
    create_pod(&other, &pod("db", json!({}), Some("kwok-node-0"), false)).await;
    create_pod(&shop, &pod("elsewhere", json!({}), Some("kwok-node-1"), false)).await;
    let (web, db) = (pod_ip(&shop, "web").await, pod_ip(&other, "db").await);
    let elsewhere = pod_ip(&shop, "elsewhere").await;

    let session = json!({
        "apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession",
        "metadata": {"name": "node-wide", "namespace": shop.name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "kwok-node-0"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "parsers": {"autoscaler": "none", "minReplicas": 0, "maxReplicas": 1, "shards": 1}
        }
    });
    let applied = shop
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin_text(&session.to_string());
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let listed = wait_until(
        "the pods ConfigMap to hold both pods of kwok-node-0",
        DEADLINE,
        || async {
            let listed = configmap_targets(&shop, "node-wide").await?;
            let node = listed.get("kwok-node-0")?;
            (node.contains(&web) && node.contains(&db)).then_some(listed)
        },
    )
    .await;
    assert!(
        listed.keys().all(|node| node == "kwok-node-0"),
        "only the session's nodes: {listed:?}"
    );
    assert!(!listed["kwok-node-0"].contains(&elsewhere));
    let daemonsets: Api<DaemonSet> = Api::namespaced(shop.client.clone(), &shop.name);
    let daemonset = wait_until("the sniffer DaemonSet", DEADLINE, || async {
        daemonsets.get(&format!("{}-node-wide-sniffer", shop.name)).await.ok()
    })
    .await;
    let pod_spec = daemonset.spec.template.spec.unwrap();
    let variables = pod_spec.containers[0].env.clone().unwrap();
    let pods_configmap = variables.iter().find(|v| v.name == "TRAWL_PODS_CONFIGMAP").unwrap();
    assert_eq!(
        pods_configmap.value.as_deref(),
        Some(format!("{0}/{0}-node-wide-targets", shop.name).as_str())
    );
    assert!(
        variables.iter().all(|v| v.name != "TRAWL_TARGETS_CONFIGMAP"),
        "no narrowing"
    );
    assert_eq!(
        pod_spec.service_account_name.as_deref(),
        Some(format!("{}-node-wide-targets", shop.name).as_str())
    );
}

#[tokio::test]
async fn a_targeted_session_places_sniffers_where_its_pods_run_and_follows_them() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let (shop, other) = (control_plane.namespace().await, control_plane.namespace().await);
    let _operator = start_operator(control_plane, &shop);

    // Selected: app=checkout in the session's namespace. Not: another app, and checkout in
    // another namespace. kwok-node-2 hosts only unselected pods.
    let checkout = json!({"app": "checkout"});
    create_pod(&shop, &pod("checkout-a", checkout.clone(), Some("kwok-node-0"), false)).await;
    create_pod(&shop, &pod("checkout-b", checkout.clone(), Some("kwok-node-0"), false)).await;
    create_pod(&shop, &pod("cart", json!({"app": "cart"}), Some("kwok-node-1"), false)).await;
    create_pod(
        &other,
        &pod("checkout-elsewhere", checkout.clone(), Some("kwok-node-2"), false),
    )
    .await;
    let (a, b) = (pod_ip(&shop, "checkout-a").await, pod_ip(&shop, "checkout-b").await);

    let session = json!({
        "apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession",
        "metadata": {"name": "checkout", "namespace": shop.name},
        "spec": {
            "target": {"podSelector": {"matchLabels": {"app": "checkout"}}},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "parsers": {"autoscaler": "none", "minReplicas": 0, "maxReplicas": 1, "shards": 1}
        }
    });
    let applied = shop
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin_text(&session.to_string());
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let sessions: Api<crds::CaptureSession> = Api::namespaced(shop.client.clone(), &shop.name);
    let uid = wait_until("the session's uid", DEADLINE, || async {
        sessions.get("checkout").await.ok()?.metadata.uid
    })
    .await;
    let label = format!("capture.trawl.dev/{uid}");

    let expected = BTreeMap::from([("kwok-node-0".to_owned(), BTreeSet::from([a.clone(), b.clone()]))]);
    wait_until("the targets ConfigMap to hold both checkout pods", DEADLINE, || async {
        (configmap_targets(&shop, "checkout").await? == expected).then_some(())
    })
    .await;
    assert_eq!(
        labelled_nodes(&shop, &label).await,
        BTreeSet::from(["kwok-node-0".to_owned()])
    );
    let daemonsets: Api<DaemonSet> = Api::namespaced(shop.client.clone(), &shop.name);
    wait_until("one sniffer, on the node with the pods", DEADLINE, || async {
        let status = daemonsets
            .get(&format!("{}-checkout-sniffer", shop.name))
            .await
            .ok()?
            .status?;
        (status.desired_number_scheduled == 1 && status.number_ready == 1).then_some(())
    })
    .await;
    let status = wait_until("status.targets", DEADLINE, || async {
        let status = sessions.get("checkout").await.ok()?.status?;
        (status.targets.as_ref()?.pods == 2).then_some(status)
    })
    .await;
    assert_eq!(status.targets.unwrap().nodes, 1);
    let targeted = status.conditions.iter().find(|c| c.type_ == "Targeted").unwrap();
    assert_eq!(
        (targeted.status.as_str(), targeted.reason.as_str()),
        ("True", "PodsTargeted")
    );

    // A new matching pod on another node: its address reaches the ConfigMap and a sniffer
    // starts there; the first node's sniffer pod is the same one (no restart).
    let first_sniffer = sniffer_pods(&shop).await;
    create_pod(&shop, &pod("checkout-c", checkout.clone(), Some("kwok-node-1"), false)).await;
    let c = pod_ip(&shop, "checkout-c").await;
    let addressed = Instant::now();
    wait_until("checkout-c in the ConfigMap", DEADLINE, || async {
        let targets = configmap_targets(&shop, "checkout").await?;
        targets.get("kwok-node-1")?.contains(&c).then_some(())
    })
    .await;
    eprintln!(
        "checkout-c reached the targets ConfigMap {:?} after kwok gave it an address",
        addressed.elapsed()
    );
    wait_until("a second sniffer, on kwok-node-1", DEADLINE, || async {
        let status = daemonsets
            .get(&format!("{}-checkout-sniffer", shop.name))
            .await
            .ok()?
            .status?;
        (status.desired_number_scheduled == 2 && status.number_ready == 2).then_some(())
    })
    .await;
    let now_running = sniffer_pods(&shop).await;
    assert!(
        first_sniffer.iter().all(|pod| now_running.contains(pod)),
        "the first node's sniffer was replaced: {first_sniffer:?} -> {now_running:?}"
    );

    // A host-network pod is selected but reported instead of captured.
    create_pod(
        &shop,
        &pod("checkout-host", checkout.clone(), Some("kwok-node-2"), true),
    )
    .await;
    wait_until("the host-network pod reported", DEADLINE, || async {
        let status = sessions.get("checkout").await.ok()?.status?;
        let condition = status.conditions.iter().find(|c| c.type_ == "Targeted")?;
        (condition.reason == "HostNetworkPodsSkipped" && status.targets?.host_network_pods == 1)
            .then_some(condition.message.clone())
    })
    .await;

    // Both pods on kwok-node-0 go: the node loses its label and its sniffer.
    let pods: Api<Pod> = Api::namespaced(shop.client.clone(), &shop.name);
    for name in ["checkout-a", "checkout-b"] {
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    let expected = BTreeMap::from([("kwok-node-1".to_owned(), BTreeSet::from([c.clone()]))]);
    wait_until("the ConfigMap without the deleted pods", DEADLINE, || async {
        (configmap_targets(&shop, "checkout").await? == expected).then_some(())
    })
    .await;
    wait_until("kwok-node-0 unlabelled", DEADLINE, || async {
        (labelled_nodes(&shop, &label).await == BTreeSet::from(["kwok-node-1".to_owned()])).then_some(())
    })
    .await;

    // Deleting the session takes its label off every node.
    sessions.delete("checkout", &DeleteParams::default()).await.unwrap();
    wait_until("no node labelled for the deleted session", DEADLINE, || async {
        labelled_nodes(&shop, &label).await.is_empty().then_some(())
    })
    .await;
}

async fn sniffer_pods(namespace: &TestNamespace) -> Vec<String> {
    Api::<Pod>::namespaced(namespace.client.clone(), &namespace.name)
        .list(&ListParams::default().labels("app.kubernetes.io/component=sniffer"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .map(|pod| pod.metadata.name.unwrap())
        .collect()
}
