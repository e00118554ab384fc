//! A targeted session end to end (issue #20 item 1): pods on a kwok node of the test control
//! plane (kwok gives them addresses), the real operator resolving `spec.target` into the
//! session's targets ConfigMap, and the real sniffer on a test veth, as that node's sniffer,
//! watching the ConfigMap and narrowing its kernel filter. Traffic from exactly those addresses is
//! offered: only the selected pods' packets are stored; a pod that starts matching is captured
//! (the time from its Ready to its first packet captured and stored is reported); a deleted pod
//! stops being captured; nothing captured is lost across the swaps.
//!
//! `TRAWL_TARGETS_PODS=50 TRAWL_BENCH_OUT=<file>` turns the pick-up into a measurement over that
//! many pods (`bench/targets.sh`).
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p e2e --test targets`

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{Pipeline, PipelineOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use testkit::batches::{CLIENT, SERVER};
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::process::{Service, free_port, workspace_binary};
use testkit::{frames, wait_until};

const DEADLINE: Duration = Duration::from_secs(90);
const NODE: &str = "kwok-node-0";
const SERVER_ADDRESS: (Ipv4Addr, u16) = (Ipv4Addr::new(192, 0, 2, 80), 8080);

async fn create_pod(namespace: &TestNamespace, name: &str, app: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "main", "image": "registry.invalid/fake:1"}],
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(namespace.client.clone(), &namespace.name)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

/// The pod's address once it is Ready, and when the test saw it Ready (polled every 10 ms).
async fn ready_address(namespace: &TestNamespace, name: &str) -> (Ipv4Addr, chrono::DateTime<chrono::Utc>, Instant) {
    let pods: Api<Pod> = Api::namespaced(namespace.client.clone(), &namespace.name);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(pod) = pods.get(name).await
            && let Some(status) = pod.status
            && let Some(address) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
            && status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            return (address, chrono::Utc::now(), Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} was not Ready within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn from(address: Ipv4Addr, port: u16, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            frames::udp_ports(
                CLIENT,
                SERVER,
                (address, port),
                SERVER_ADDRESS,
                format!("{i}").as_bytes(),
            )
        })
        .collect()
}

async fn stored_from(
    pool: &sqlx::PgPool,
    session: &str,
    address: Ipv4Addr,
) -> (i64, Option<chrono::DateTime<chrono::Utc>>) {
    sqlx::query_as("SELECT count(*), min(ts) FROM packets WHERE session = $1 AND src = $2::inet")
        .bind(session)
        .bind(address.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn only_selected_pods_are_captured_and_new_ones_are_picked_up() {
    service::logging::init();
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let shop = control_plane.namespace().await;
    create_pod(&shop, "checkout-a", "checkout").await;
    create_pod(&shop, "cart", "cart").await;
    let (a, _, _) = ready_address(&shop, "checkout-a").await;
    let (cart, _, _) = ready_address(&shop, "cart").await;

    let mut pipeline = Pipeline::start(PipelineOptions {
        filter: "udp".into(),
        node: NODE.into(),
        sniffer_args: vec![
            "--targets-configmap".into(),
            format!("{0}/{0}-checkout-targets", shop.name),
        ],
        sniffer_env: vec![("KUBECONFIG".into(), control_plane.kubeconfig.display().to_string())],
        ..Default::default()
    })
    .await;
    let mut operator = Command::new(workspace_binary("operator", "trawl-operator"));
    operator
        .env("KUBECONFIG", &control_plane.kubeconfig)
        .args([
            "--amqp-url",
            &pipeline.broker.amqp_url(),
            "--watch-namespace",
            &shop.name,
        ])
        .args(["--namespace", &shop.name])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    let _operator = Service::start("trawl-operator", operator);
    let session = json!({
        "apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession",
        "metadata": {"name": "checkout", "namespace": shop.name},
        "spec": {
            "target": {"podSelector": {"matchLabels": {"app": "checkout"}}},
            "filter": "udp",
            "parsers": {"autoscaler": "none", "minReplicas": 0, "maxReplicas": 1, "shards": 1}
        }
    });
    let mut apply = shop.kubectl();
    let mut child = apply.args(["apply", "-f", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), session.to_string().as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply");
    let metrics_port = pipeline.sniffer_port();
    let sniffer_targets = move || async move {
        testkit::metrics::scrape(metrics_port).and_then(|text| testkit::metrics::value(&text, "trawl_sniffer_targets"))
    };
    wait_until("the sniffer to target checkout-a", DEADLINE, || async {
        (sniffer_targets().await? == 1).then_some(())
    })
    .await;

    let mut frames = from(a, 40000, 10);
    frames.extend(from(cart, 40001, 10));
    pipeline.offer_frames(&frames, 1_000);
    let pool = sqlx::PgPool::connect(&pipeline.database.url()).await.unwrap();
    wait_until("checkout-a's packets stored", DEADLINE, || async {
        (stored_from(&pool, &pipeline.session, a).await.0 == 10).then_some(())
    })
    .await;

    // New pods that match: each captured soon after it is Ready, without a restart.
    let count: usize = std::env::var("TRAWL_TARGETS_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut latencies = Vec::new();
    for index in 0..count {
        let name = format!("checkout-new-{index}");
        create_pod(&shop, &name, "checkout").await;
        let (address, ready_at, ready_instant) = ready_address(&shop, &name).await;
        // Probe from the pod's address every 5 ms until a packet of it is stored.
        let probe = pipeline
            .network
            .send_frames_in_background(from(address, 41000, 4_000), 200);
        let (_, first) = wait_until(&format!("{name}'s first packet stored"), DEADLINE, || async {
            let (stored, first) = stored_from(&pool, &pipeline.session, address).await;
            (stored > 0).then_some((stored, first))
        })
        .await;
        let stored_after = ready_instant.elapsed();
        let captured_after = (first.unwrap() - ready_at).to_std().unwrap_or_default();
        kill(probe);
        latencies.push((captured_after, stored_after));
    }
    for (captured, stored) in &latencies {
        eprintln!("pod Ready -> first packet captured {captured:?}, stored {stored:?}");
    }
    if let Ok(out) = std::env::var("TRAWL_BENCH_OUT") {
        let lines: Vec<String> = latencies
            .iter()
            .map(|(captured, stored)| format!("{} {}\n", captured.as_secs_f64(), stored.as_secs_f64()))
            .collect();
        std::fs::write(out, lines.concat()).unwrap();
    }

    // A deleted pod stops being captured: once the sniffer's targets shrink, its packets are
    // filtered in the kernel.
    let before = sniffer_targets().await.unwrap();
    Api::<Pod>::namespaced(shop.client.clone(), &shop.name)
        .delete("checkout-a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_until("the sniffer to drop checkout-a", DEADLINE, || async {
        (sniffer_targets().await? == before - 1).then_some(())
    })
    .await;
    let configmap = Api::<ConfigMap>::namespaced(shop.client.clone(), &shop.name)
        .get(&format!("{}-checkout-targets", shop.name))
        .await
        .unwrap();
    let targets = configmap.data.unwrap_or_default().remove(NODE).unwrap_or_default();
    assert!(!targets.lines().any(|line| line == a.to_string()), "{targets}");
    pipeline.offer_frames(&from(a, 40002, 10), 1_000);
    pipeline.stop_sniffer();
    let accounting = pipeline.settle().await;
    accounting.assert_captured_balanced();
    assert_eq!(
        stored_from(&pool, &pipeline.session, a).await.0,
        10,
        "checkout-a after its deletion"
    );
    assert_eq!(
        stored_from(&pool, &pipeline.session, cart).await.0,
        0,
        "cart was never selected"
    );
}

fn kill(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}
