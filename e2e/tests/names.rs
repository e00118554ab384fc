//! Endpoints named by what they were (issue #20): Deployments in two namespaces on the test
//! control plane's kwok nodes (kwok gives their pods addresses), a Service, the operator's endpoint
//! recorder writing their history, traffic between exactly those addresses offered on a test veth
//! through the real sniffer and parser, and the API naming both ends, filtering by name and drawing
//! the service map. An address reused by a pod of another workload is named by time.
//!
//! Run (as root, after `bash hack/services.sh`): `cargo test -p e2e --test names`

use std::net::Ipv4Addr;
use std::time::Duration;

use e2e::{Pipeline, PipelineOptions, TrawlApi};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use operator::endpoints::{Recorder, history, identity};
use serde_json::{Value, json};
use testkit::batches::{CLIENT, SERVER};
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::{frames, wait_until};

const DEADLINE: Duration = Duration::from_secs(90);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

async fn deploy(namespace: &TestNamespace, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(namespace.client.clone(), &namespace.name);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "main", "image": "registry.invalid/fake:1"}],
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
                }
            }
        }
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
}

/// The address kwok gave the Deployment's pod.
async fn pod_address(namespace: &TestNamespace, app: &str) -> Ipv4Addr {
    let pods: Api<Pod> = Api::namespaced(namespace.client.clone(), &namespace.name);
    wait_until(&format!("an address for {app}'s pod"), DEADLINE, || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .ok()?;
        list.items.first()?.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
    })
    .await
}

fn udp(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16), payload: &[u8], count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| frames::udp_ports(CLIENT, SERVER, from, to, payload))
        .collect()
}

#[tokio::test]
async fn packets_are_named_filtered_and_mapped_by_what_their_addresses_were() {
    service::logging::init();
    let control_plane = ControlPlane::shared();
    let (shop, bank) = (control_plane.namespace().await, control_plane.namespace().await);
    deploy(&shop, "checkout").await;
    deploy(&bank, "ledger").await;
    let services: Api<Service> = Api::namespaced(bank.client.clone(), &bank.name);
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "ledger"},
        "spec": {"selector": {"app": "ledger"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    let cluster_ip: Ipv4Addr = services
        .create(&PostParams::default(), &service)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap()
        .parse()
        .unwrap();
    let checkout = pod_address(&shop, "checkout").await;
    let ledger = pod_address(&bank, "ledger").await;

    let mut pipeline = Pipeline::start(PipelineOptions {
        filter: "udp".into(),
        ..Default::default()
    })
    .await;
    let pool = sqlx::PgPool::connect(&pipeline.database.url()).await.unwrap();
    let recorder = Recorder::new(control_plane.client().await, pool.clone());
    tokio::spawn(async move { recorder.run().await });
    wait_until("the recorder to hold both pods and the Service", DEADLINE, || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM endpoint_history WHERE until IS NULL AND kind <> 'node' \
             AND address = ANY($1::inet[])",
        )
        .bind([checkout, ledger, cluster_ip].map(|a| a.to_string()).to_vec())
        .fetch_one(&pool)
        .await
        .ok()?;
        (open == 3).then_some(())
    })
    .await;
    wait_until(
        "the recorder to hold ledger's pod as the Service's backend",
        DEADLINE,
        || async {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM service_backends WHERE until IS NULL AND address = $1::inet AND port = 8080 \
             AND service = 'ledger'",
            )
            .bind(ledger.to_string())
            .fetch_one(&pool)
            .await
            .ok()?;
            (open == 1).then_some(())
        },
    )
    .await;

    let dns_server = (Ipv4Addr::new(10, 96, 0, 10), 53);
    let mut frames = udp((checkout, 40000), (ledger, 8080), b"debit", 10);
    frames.extend(udp((checkout, 40001), (cluster_ip, 80), b"via the service", 5));
    frames.extend(udp(
        (checkout, 40053),
        dns_server,
        &frames::dns_query(7, "api.example.org"),
        1,
    ));
    frames.extend(udp(
        dns_server,
        (checkout, 40053),
        &frames::dns_response(7, "api.example.org", Some(EXTERNAL.octets())),
        1,
    ));
    frames.extend(udp((checkout, 40002), (EXTERNAL, 443), b"out", 3));
    pipeline.offer_frames(&frames, 1_000);
    wait_until("the first 20 packets stored", DEADLINE, || async {
        (pipeline.stored().await >= 20).then_some(())
    })
    .await;

    // kwok does not hand a freed address to the next pod, so the reuse is recorded as the
    // recorder would record it: checkout's pod goes away, and a pod of another workload holds
    // its address from now on.
    let deployments: Api<Deployment> = Api::namespaced(shop.client.clone(), &shop.name);
    deployments
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    wait_until("checkout's address to be released", DEADLINE, || async {
        // kwok's nodes share 10.0.0.1, which kwok may also give a pod: count the pod's row only.
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM endpoint_history WHERE until IS NULL AND kind = 'pod' AND address = $1::inet",
        )
        .bind(checkout.to_string())
        .fetch_one(&pool)
        .await
        .ok()?;
        (open == 0).then_some(())
    })
    .await;
    let reused = identity::Held {
        address: checkout.into(),
        identity: identity::Identity {
            kind: "pod",
            namespace: Some(bank.name.clone()),
            name: "intruder-1".into(),
            workload: Some(identity::Workload {
                kind: "Deployment".into(),
                name: "intruder".into(),
            }),
            node: None,
        },
        since: chrono::Utc::now(),
    };
    history::hold(&pool, &reused).await.unwrap();
    pipeline.offer_frames(&udp((checkout, 40003), (ledger, 8080), b"later", 4), 1_000);
    pipeline.stop_sniffer();
    pipeline.settle().await.assert_balanced();

    let api = TrawlApi::start(&pipeline.database.url(), &pipeline.session).await;

    // Both ends named; the filter by workload finds checkout's packets on either side, and only
    // those from before its address changed hands.
    let of_checkout = api.packets(&[("workload", "checkout")]);
    assert_eq!(of_checkout.len(), 20, "{of_checkout:#?}");
    let to_ledger = api.packets(&[("q", "src workload checkout and dst workload ledger")]);
    assert_eq!(to_ledger.len(), 10);
    for packet in &to_ledger {
        assert_eq!(packet["src_endpoint"]["namespace"], shop.name.as_str());
        assert_eq!(packet["src_endpoint"]["workload_kind"], "Deployment");
        assert_eq!(packet["dst_endpoint"]["kind"], "pod");
        assert_eq!(packet["dst_endpoint"]["workload"], "ledger");
    }
    let after_reuse = api.packets(&[("workload", &format!("{}/intruder", bank.name))]);
    assert_eq!(
        after_reuse.len(),
        4,
        "the reused address is the intruder's only after the reuse"
    );
    assert!(after_reuse.iter().all(|p| p["src_endpoint"]["name"] == "intruder-1"));
    // The Service's packets: those to its address, and those its backend served on its target
    // port (a session keeps a Service's exchange where it enters the backend).
    let via_service = api.packets(&[("service", &format!("{}/ledger", bank.name))]);
    assert_eq!(via_service.len(), 5 + 10 + 4, "{via_service:#?}");
    let to_address = via_service
        .iter()
        .filter(|p| p["dst_endpoint"]["kind"] == "service")
        .count();
    assert_eq!(to_address, 5);
    assert!(
        via_service
            .iter()
            .filter(|p| p["dst_endpoint"]["kind"] == "pod")
            .all(|p| p["dst_endpoint"]["workload"] == "ledger" && p["dst_port"] == 8080)
    );
    let (status, flows) = api.get("/api/v1/flows", &[("q", "dst port 8080")]);
    assert_eq!(status, 200);
    let flows = flows["items"].as_array().expect("flows");
    assert_eq!(flows.len(), 2, "checkout's and the intruder's: {flows:#?}");
    for flow in flows {
        assert_eq!(
            flow["dst_service"],
            json!({"namespace": bank.name, "name": "ledger"}),
            "the flow names the Service its server served: {flow:#}"
        );
    }
    let (_, other) = api.get("/api/v1/flows", &[("q", "dst port 80")]);
    assert!(
        other["items"]
            .as_array()
            .expect("flows")
            .iter()
            .all(|flow| flow["dst_service"].is_null()),
        "a Service's own address serves nothing: {other:#}"
    );

    // Top talkers by workload: the reused address's packets split by who held it when.
    let (status, stats) = api.get("/api/v1/stats", &[]);
    assert_eq!(status, 200);
    let sent_by = |name: String| {
        stats["top_workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|count| count["name"] == name.as_str())
            .map(|count| count["packets"].as_i64().unwrap())
    };
    assert_eq!(sent_by(format!("{}/checkout", shop.name)), Some(19), "{stats:#}");
    assert_eq!(sent_by(format!("{}/intruder", bank.name)), Some(4), "{stats:#}");
    let external = api.packets(&[("q", &format!("dst host {EXTERNAL}"))]);
    assert_eq!(external.len(), 3);
    for packet in &external {
        assert_eq!(packet["dst_endpoint"]["kind"], "dns", "named by the captured answer");
        assert_eq!(packet["dst_endpoint"]["name"], "api.example.org");
    }
    assert_eq!(api.packets(&[("namespace", &bank.name)]).len(), 10 + 5 + 4);
    let (status, _) = api.get("/api/v1/packets", &[("workload", "Not_A_Name")]);
    assert_eq!(status, 400, "a malformed name is a 400");

    // The service map: workload to workload, to the Service, and to the external name, with what
    // was sent on each edge.
    let (status, map) = api.get("/api/v1/service-map", &[]);
    assert_eq!(status, 200);
    let edge = |from: &str, to: &str| -> Value {
        map["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from && e["to"] == to)
            .cloned()
            .unwrap_or_else(|| panic!("no edge {from} -> {to} in {map:#}"))
    };
    let (shop_checkout, bank_ledger) = (format!("{}/checkout", shop.name), format!("{}/ledger", bank.name));
    assert_eq!(edge(&shop_checkout, &bank_ledger)["packets"], 10);
    assert_eq!(edge(&format!("{}/intruder", bank.name), &bank_ledger)["packets"], 4);
    assert_eq!(edge(&shop_checkout, "api.example.org")["packets"], 3);
    let service_node = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "service")
        .cloned()
        .expect("the Service is a node of its own");
    assert_eq!(service_node["id"], format!("{}/service/ledger", bank.name));
    assert_eq!(edge(&shop_checkout, service_node["id"].as_str().unwrap())["packets"], 5);

    // The pcapng export names every address in a Name Resolution Block, which tshark reads (the
    // external resolver off: no DNS query leaves the machine). One name per address: the reused
    // address carries its last holder's.
    let (namespace, name) = api.session.split_once('/').unwrap();
    let mut response = ureq::get(&format!(
        "http://127.0.0.1:{}/api/v1/sessions/{namespace}/{name}/pcap",
        api.port
    ))
    .query("format", "pcapng")
    .call()
    .unwrap();
    let file = std::env::temp_dir().join(format!("trawl-names-{}.pcapng", testkit::unique_suffix()));
    std::fs::write(
        &file,
        response.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap(),
    )
    .unwrap();
    let output = std::process::Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-N",
            "n",
            "-o",
            "nameres.use_external_name_resolver:FALSE",
        ])
        .args(["-T", "fields", "-e", "ip.src_host", "-e", "ip.dst_host"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let names: std::collections::BTreeSet<&str> = text.split_whitespace().collect();
    assert_eq!(text.lines().count(), 24, "{text}");
    for expected in [
        format!("ledger.{}.svc", bank.name),
        "api.example.org".to_owned(),
        format!("intruder-1.{}", bank.name),
    ] {
        assert!(names.contains(expected.as_str()), "{expected} not in {names:?}");
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("ledger-") && n.ends_with(&format!(".{}", bank.name))),
        "the ledger pod by name: {names:?}"
    );
}
