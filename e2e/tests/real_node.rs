//! The Kubernetes path as a user walks it, on a real node: `helm install` the chart with the
//! images built from `images/Dockerfile`, `kubectl apply -f examples/capture.yaml`, traffic on
//! the node, and the packets read back through the API's Service. Every pod runs in a real
//! container (containerd + runc) on this machine, joined to the test control plane as
//! `trawl-node` by `hack/control-plane/node.sh`; the kwok nodes beside it are tainted.
//!
//! PostgreSQL and RabbitMQ are the host's (`hack/services.sh`), reached by pods through
//! forwarders on the node's bridge address: the chart's bundled ones need the public postgres
//! and rabbitmq images, which cannot be pulled here.
//!
//! Needs the images (`images/build.sh --prebuilt --local-bases`, which `hack/test.sh` runs
//! before this test) and root; `hack/test.sh` runs it with `--ignored`.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use testkit::control_plane::{ControlPlane, REAL_NODE, REAL_NODE_IP, SECOND_REAL_NODE};
use testkit::forward::Forward;
use testkit::netns::TestNetwork;
use testkit::pods::Outside;
use testkit::postgres::TestDatabase;
use testkit::rabbitmq::TestVhost;
use testkit::{frames, wait_until};

const REGISTRY: &str = "ghcr.io/trawl-dev";
const TAG: &str = "dev";
const SESSION: &str = "web-and-dns";
/// Pods start in seconds here, but the first start of each image unpacks it.
const DEADLINE: Duration = Duration::from_secs(180);

/// The test's own pods: servers, clients and the reference tcpdump (`images/test-pod.sh`).
const TEST_POD_IMAGE: &str = "trawl.local/test-pod:bookworm";

fn images() -> Vec<String> {
    ["operator", "sniffer", "parser", "api"]
        .iter()
        .map(|component| format!("{REGISTRY}/trawl-{component}:{TAG}"))
        .chain([TEST_POD_IMAGE.to_owned()])
        .collect()
}

fn check(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

struct Cluster {
    control_plane: &'static ControlPlane,
    namespace: String,
}

impl Cluster {
    /// The session's builtin autoscaler target: batches waiting per parser.
    fn set_target_backlog(&self, batches: u32) {
        let patch = serde_json::json!({"spec": {"parsers": {"targetBacklog": batches}}}).to_string();
        self.kubectl(&["patch", "cap", SESSION, "--type", "merge", "-p", &patch]);
    }

    fn kubectl(&self, args: &[&str]) -> String {
        String::from_utf8(self.kubectl_bytes(args)).expect("UTF-8 output")
    }

    fn kubectl_bytes(&self, args: &[&str]) -> Vec<u8> {
        let output = self
            .control_plane
            .kubectl()
            .args(["-n", &self.namespace])
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            output.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        use testkit::process::StdinText;
        let output = self
            .control_plane
            .kubectl()
            .args(["-n", &self.namespace])
            .args(args)
            .stdin_text(input);
        check(output, &format!("kubectl {}", args.join(" ")))
    }

    fn try_json(&self, args: &[&str]) -> Option<Value> {
        let output = self
            .control_plane
            .kubectl()
            .args(["-n", &self.namespace])
            .args(args)
            .args(["-o", "json"])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).ok())
            .flatten()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.kubectl(&[args, &["-o", "json"]].concat())).expect("kubectl's JSON")
    }

    /// Names of the running, ready pods with `selector`, and the nodes they run on.
    fn ready_pods(&self, selector: &str) -> Vec<(String, String)> {
        let Some(pods) = self.try_json(&["get", "pods", "-l", selector]) else {
            return Vec::new();
        };
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .filter(|pod| {
                pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .map(|pod| {
                (
                    pod["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                    pod["spec"]["nodeName"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn session_status(&self) -> Value {
        self.try_json(&["get", "cap", SESSION])
            .map(|session| session["status"].clone())
            .unwrap_or(Value::Null)
    }
}

/// The balance of the session's status: (captured, stored, dropped after capture). Captured counts
/// packets, not the copies of a packet the sniffer saw again on another interface (`deduplicated`,
/// neither stored nor lost); kernel drops are left out, the ring lost those before a sniffer
/// captured them.
fn counts(status: &Value) -> (u64, u64, u64) {
    let packets = &status["packets"];
    let n = |key: &str| packets[key].as_u64().unwrap_or(0);
    let kernel = packets["droppedByReason"]["kernel"].as_u64().unwrap_or(0);
    (n("captured") - n("deduplicated"), n("stored"), n("dropped") - kernel)
}

/// A GET as a user of the chart's default Kubernetes auth: `token` is a ServiceAccount's.
fn api_get(base: &str, token: &str, path: &str) -> Value {
    let mut response = ureq::get(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path} through the API's Service: {e}"));
    response.body_mut().read_json().expect("JSON from the API")
}

/// DNS queries, HTTP requests and TLS ClientHellos from the test namespace's end of the veth,
/// to the ports the example session's filter selects; `round` makes every name unique.
fn web_and_dns(network: &TestNetwork, round: u32, count: u32) -> Vec<Vec<u8>> {
    let (from, to) = (network.inner_mac, network.host_mac);
    (0..count)
        .map(|i| match i % 3 {
            0 => frames::udp(
                from,
                to,
                53,
                &frames::dns_query(i as u16, &format!("r{round}-{i}.shop.example")),
            ),
            1 => frames::tcp(
                from,
                to,
                80,
                0x18,
                &frames::http_get(&format!("web{round}.example"), "/"),
            ),
            _ => frames::tcp(
                from,
                to,
                443,
                0x18,
                &frames::tls_client_hello(&format!("tls{round}.example")),
            ),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, Docker with the images and a real node: hack/test.sh runs it"]
async fn helm_install_capture_and_read_back_on_a_real_node() {
    for image in images() {
        let present = Command::new(std::env::var("DOCKER").unwrap_or_else(|_| "docker".into()))
            .args(["image", "inspect", &image])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            present,
            "{image} is not built: run `images/build.sh --prebuilt --local-bases` and `images/test-pod.sh`"
        );
    }
    let control_plane = ControlPlane::with_real_nodes(&images());
    let database = TestDatabase::create().await;
    let vhost = TestVhost::create();
    let node_ip = IpAddr::V4(REAL_NODE_IP);
    let postgres = Forward::start(node_ip, SocketAddr::from(([127, 0, 0, 1], 5432))).await;
    let rabbitmq = Forward::start(node_ip, SocketAddr::from(([127, 0, 0, 1], 5672))).await;
    let database_url = format!("postgres://trawl:trawl@{}/{}", postgres.address, database.name);
    let broker_url = format!("amqp://guest:guest@{}/{}", rabbitmq.address, vhost.name);

    let namespace = format!("trawl-{}", testkit::unique_suffix());
    let cluster = Cluster {
        control_plane,
        namespace: namespace.clone(),
    };
    check(
        control_plane
            .kubectl()
            .args(["create", "namespace", &namespace])
            .output()
            .unwrap(),
        "create the namespace",
    );
    // Sniffers need hostNetwork and capabilities: the namespace is Pod Security `privileged`,
    // as the chart's README says.
    cluster.kubectl(&[
        "label",
        "namespace",
        &namespace,
        "pod-security.kubernetes.io/enforce=privileged",
    ]);
    let install = control_plane
        .helm()
        .args(["install", "trawl"])
        .arg(testkit::repo_root().join("charts/trawl"))
        .args(["-n", &namespace, "--wait", "--timeout", "5m"])
        .args([
            "--set",
            &format!("image.registry={REGISTRY},image.tag={TAG},image.pullPolicy=Never"),
        ])
        .args(["--set", "postgresql.enabled=false,rabbitmq.enabled=false"])
        .args(["--set", &format!("database.url={database_url},broker.url={broker_url}")])
        .args([
            "--set",
            "operator.replicas=1,operator.scaleInterval=2s,operator.scaleDownStabilization=10s",
        ])
        // The operator and the API on the first node: the test cuts the second one off and wants
        // the operator to say so (on the cut node it could not until Kubernetes evicted it).
        .args([
            "--set",
            &format!(
                "operator.nodeSelector.kubernetes\\.io/hostname={REAL_NODE},api.nodeSelector.kubernetes\\.io/hostname={REAL_NODE}"
            ),
        ])
        .output()
        .expect("run helm");
    check(install, "helm install");

    // --wait saw the operator and API Deployments available: their readiness probes pass on
    // the real kubelet. They run on the real node, as nothing tolerates the kwok nodes' taint.
    for component in ["operator", "api"] {
        let pods = cluster.ready_pods(&format!("app.kubernetes.io/component={component}"));
        assert!(!pods.is_empty(), "no ready {component} pod");
        assert!(
            pods.iter()
                .all(|(_, node)| [REAL_NODE, SECOND_REAL_NODE].contains(&node.as_str())),
            "{component}: {pods:?}"
        );
    }

    let network = TestNetwork::create();
    let example = testkit::repo_root().join("examples/capture.yaml");
    cluster.kubectl(&["apply", "-f", example.to_str().unwrap()]);
    wait_until("the session to be Ready", DEADLINE, || async {
        let status = cluster.session_status();
        status["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    })
    .await;
    let session_pods = |component: &str| {
        cluster.ready_pods(&format!(
            "trawl.dev/session={SESSION},app.kubernetes.io/component={component}"
        ))
    };
    let sniffers = session_pods("sniffer");
    let mut sniffer_nodes: Vec<&str> = sniffers.iter().map(|(_, node)| node.as_str()).collect();
    sniffer_nodes.sort_unstable();
    assert_eq!(
        sniffer_nodes,
        [REAL_NODE, SECOND_REAL_NODE],
        "a sniffer on each real node, none on the kwok nodes: {sniffers:?}"
    );
    let sniffer_spec = cluster.json(&["get", "pod", &sniffers[0].0]);
    let security = &sniffer_spec["spec"]["containers"][0]["securityContext"];
    assert_ne!(security["privileged"], true, "the sniffer runs unprivileged by default");
    assert_eq!(
        security["capabilities"]["add"],
        serde_json::json!(["NET_RAW", "NET_ADMIN"]),
        "{security}"
    );

    // Traffic on the node: a veth into a namespace this test made.
    let first = web_and_dns(&network, 1, 300);
    network.send_frames(&first, 2_000);
    // The node's own traffic on these ports (pods calling the API server through the `kubernetes`
    // Service) flows all along, so a moment with nothing on the way is waited for: a sniffer's
    // counters travel in its batches, and those of its other capture threads' open batches are
    // counted before they are stored.
    wait_until(
        "the first 300 packets stored, and every captured packet stored or dropped",
        DEADLINE,
        || async {
            let (captured, stored, dropped) = counts(&cluster.session_status());
            (stored >= 300 && captured == stored + dropped).then_some(())
        },
    )
    .await;
    let printed = cluster.kubectl(&["get", "cap", SESSION]);
    assert!(
        printed.contains("Capturing") || printed.contains("True"),
        "kubectl get cap: {printed}"
    );

    // Read back through the API's Service, from the host, as kube-proxy routes it.
    let service = cluster.json(&["get", "service", "trawl-api"]);
    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("a ClusterIP").to_owned();
    let base = format!("http://{cluster_ip}:8080/api/v1");
    let session_id = format!("{namespace}/{SESSION}");
    // As a user would (README): a ServiceAccount bound to the chart's viewer role in the session's
    // namespace, and a token for the API's audience. Without one the API says 401.
    cluster.kubectl(&["create", "serviceaccount", "reader"]);
    cluster.kubectl(&[
        "create",
        "rolebinding",
        "reader",
        "--clusterrole",
        "trawl-viewer",
        &format!("--serviceaccount={namespace}:reader"),
    ]);
    let token = cluster.kubectl(&["create", "token", "reader", "--audience", "trawl"]);
    let token = token.trim();
    let anonymous = ureq::get(&format!("{base}/sessions")).call();
    assert!(matches!(anonymous, Err(ureq::Error::StatusCode(401))), "{anonymous:?}");
    let me = api_get(&base, token, "/whoami");
    assert_eq!(me["name"], format!("system:serviceaccount:{namespace}:reader"));
    // The node's own traffic on port 443 (pods talking to the API server through the
    // `kubernetes` Service) is captured too, so look for our names among all of a protocol's. The
    // veth's frames may still be on their way (a node interface's packets wait 200 ms for their
    // deduplication, and the counters of the batches they go into travel with them).
    for (protocol, name) in [
        ("dns", "r1-0.shop.example"),
        ("http", "web1.example"),
        ("tls", "tls1.example"),
    ] {
        wait_until(
            &format!("a {protocol} packet named {name} through the API"),
            DEADLINE,
            || async {
                let page = api_get(
                    &base,
                    token,
                    &format!("/packets?session={session_id}&protocol={protocol}&limit=1000"),
                );
                page["items"]
                    .as_array()?
                    .iter()
                    .any(|p| p["l7_name"] == name)
                    .then_some(())
            },
        )
        .await;
    }
    let flows = api_get(&base, token, &format!("/flows?session={session_id}&limit=100"));
    assert!(
        flows["items"].as_array().is_some_and(|f| !f.is_empty()),
        "flows through the API: {flows}"
    );

    each_packet_once_as_the_pod_saw_it(&cluster, &base, &session_id).await;
    a_node_lost_under_traffic_is_named_and_picked_up_again(&cluster, &network).await;

    // Each pod says what it is in its first log lines.
    for (component, expected) in [("operator", "reconciling CaptureSessions"), ("api", "serving")] {
        let pod = &cluster.ready_pods(&format!("app.kubernetes.io/component={component}"))[0].0;
        let logs = cluster.kubectl(&["logs", pod]);
        assert!(logs.contains(expected), "kubectl logs {pod}: {logs}");
    }
    for (component, expected) in [("sniffer", "capturing"), ("parser", "consuming")] {
        let pod = &session_pods(component)[0].0;
        let logs = cluster.kubectl(&["logs", pod]);
        assert!(logs.contains(expected), "kubectl logs {pod}: {logs}");
    }

    // A burst: the builtin autoscaler adds parser pods, and removes them once the backlog is gone.
    cluster.set_target_backlog(1);
    let burst = web_and_dns(&network, 2, 150_000);
    let sender = network.send_frames_in_background(burst, 50_000);
    wait_until("a second ready parser pod under the burst", DEADLINE, || async {
        (session_pods("parser").len() >= 2).then_some(())
    })
    .await;
    wait_for_sender(sender);
    wait_until("parsers back to one after the burst", DEADLINE, || async {
        let deployment = cluster.try_json(&["get", "deployment", "-l", &format!("trawl.dev/session={SESSION}")])?;
        let replicas = deployment["items"][0]["spec"]["replicas"].as_i64()?;
        (replicas == 1 && session_pods("parser").len() == 1).then_some(())
    })
    .await;
    // The burst's target undone: with a target of one batch and the test's 10 s stabilization,
    // the builtin autoscaler would go on adding and removing parsers for the rest of the test (it
    // reads the batches ready in the queue, not those parsers hold unacknowledged), and each
    // removal returns a parser's prefetched batches to the queue: the final balance below once
    // found no quiet moment within its deadline in CI.
    cluster.set_target_backlog(100);

    // The operator restarted mid-session, and the first node's sniffer pod deleted under traffic:
    // the operator converges, the DaemonSet starts a new sniffer, and the old one's final
    // counters arrive.
    let operator = cluster.ready_pods("app.kubernetes.io/component=operator")[0].0.clone();
    let sender = network.send_frames_in_background(web_and_dns(&network, 3, 20_000), 2_000);
    cluster.kubectl(&["delete", "pod", &operator, "--wait=false"]);
    let on_first_node = |pods: Vec<(String, String)>| pods.into_iter().find(|(_, node)| node == REAL_NODE);
    let sniffer = on_first_node(session_pods("sniffer"))
        .expect("a sniffer on the first node")
        .0;
    cluster.kubectl(&["delete", "pod", &sniffer]);
    wait_until("a new sniffer pod on the first node", DEADLINE, || async {
        let (now, _) = on_first_node(session_pods("sniffer"))?;
        (now != sniffer).then_some(())
    })
    .await;
    wait_for_sender(sender);
    wait_until("a new operator pod", DEADLINE, || async {
        let now = cluster.ready_pods("app.kubernetes.io/component=operator");
        (now.len() == 1 && now[0].0 != operator).then_some(())
    })
    .await;
    // On a timeout, the last status says which side of the balance is short.
    let last = std::sync::Mutex::new(Value::Null);
    let status = tokio::time::timeout(
        DEADLINE,
        wait_until(
            "every captured packet stored or counted as dropped, backlog drained",
            DEADLINE * 2,
            || async {
                let status = cluster.session_status();
                *last.lock().unwrap() = status.clone();
                let (captured, stored, dropped) = counts(&status);
                let drained = status["backlog"].as_i64() == Some(0);
                (drained && captured > 300 && captured == stored + dropped).then_some(status)
            },
        ),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "not every captured packet stored or counted as dropped within {DEADLINE:?}; last status: {}",
            last.lock().unwrap()
        )
    });
    let (captured, stored, dropped) = counts(&status);
    let by_reason: u64 = status["packets"]["droppedByReason"]
        .as_object()
        .map(|reasons| reasons.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(
        status["packets"]["dropped"].as_u64(),
        Some(by_reason),
        "every drop has a reason: {status}"
    );
    // The deleted sniffer flushed within its grace period: its last batch is marked final.
    let (boots, finished): (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT boot_id)::bigint, count(DISTINCT boot_id) FILTER (WHERE final)::bigint \
         FROM batches WHERE session = $1",
    )
    .bind(&session_id)
    .fetch_one(&database.pool().await)
    .await
    .expect("count the sniffers' boots");
    assert!(
        boots >= 2,
        "the deleted sniffer's batches and its successor's: {boots} boot(s)"
    );
    assert!(finished >= 1, "the deleted sniffer's final batch did not arrive");
    eprintln!("real node: captured {captured}, stored {stored}, dropped {dropped} over {boots} sniffer boots");

    // Deleting the session removes its pods, its Secret and its queue.
    let queue = status["queue"].as_str().expect("the session's queue").to_owned();
    cluster.kubectl(&["delete", "cap", SESSION, "--timeout=120s"]);
    wait_until("the session's pods, Secret and queue to be gone", DEADLINE, || async {
        let pods = cluster.try_json(&["get", "pods", "-l", &format!("trawl.dev/session={SESSION}")])?;
        let secrets = cluster.try_json(&["get", "secrets", "-l", &format!("trawl.dev/session={SESSION}")])?;
        let queue_gone = vhost.get(&format!("/api/queues/{}/{queue}", vhost.name)).is_err();
        (pods["items"].as_array()?.is_empty() && secrets["items"].as_array()?.is_empty() && queue_gone).then_some(())
    })
    .await;
    check(
        control_plane
            .helm()
            .args(["uninstall", "trawl", "-n", &namespace, "--wait"])
            .output()
            .unwrap(),
        "helm uninstall",
    );
    let _ = control_plane
        .kubectl()
        .args(["delete", "namespace", &namespace, "--wait=false"])
        .output();
}

fn wait_for_sender(mut sender: std::process::Child) {
    let status = sender.wait().expect("wait for tcpreplay");
    assert!(status.success(), "tcpreplay exited with {status}");
}

/// Pods that talk on one node, across the two nodes and through a Service: a client and a server
/// on the first node, a server behind a Service on the second.
fn talking_pods() -> String {
    let pod = |name: &str, node: &str, command: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TEST_POD_IMAGE}
    imagePullPolicy: Never
    command: {command}
    readinessProbe: {{exec: {{command: [sh, -c, "ss -Hltn 'sport = :80' | grep -q . || [ {name} = client ]"]}}, periodSeconds: 1}}
"#
        )
    };
    let server = r#"[python3, -m, http.server, "80"]"#;
    let host_network = pod("host-server", SECOND_REAL_NODE, server).replace(
        "  nodeName: trawl-node-2\n",
        "  nodeName: trawl-node-2\n  hostNetwork: true\n",
    );
    [
        pod("client", REAL_NODE, "[sleep, infinity]"),
        pod("server-1", REAL_NODE, server),
        pod("server-2", SECOND_REAL_NODE, server),
        host_network,
        // Port 8080 to the pods' 80: the client's end sees one port, the server's another.
        "apiVersion: v1\nkind: Service\nmetadata: {name: server-2}\nspec: {selector: {app: server-2}, ports: [{port: 8080, targetPort: 80}]}\n"
            .to_owned(),
    ]
    .join("---\n")
}

/// (IPv4 id, TCP sequence number, TCP flags, payload length) of each TCP packet: what identifies
/// a packet on its way, whatever NAT did to its addresses and ports.
fn tcp_packets(frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<(u16, u32, u8, usize)> {
    let mut packets: Vec<(u16, u32, u8, usize)> = frames
        .into_iter()
        .filter_map(|frame| {
            let ip = frame.get(14..)?;
            if ip.first()? >> 4 != 4 || *ip.get(9)? != 6 {
                return None;
            }
            let header = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let tcp = ip.get(header..)?;
            let tcp_header = usize::from(tcp.get(12)? >> 4) * 4;
            Some((
                u16::from_be_bytes([ip[4], ip[5]]),
                u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?),
                *tcp.get(13)?,
                total.checked_sub(header + tcp_header)?,
            ))
        })
        .collect();
    packets.sort_unstable();
    packets
}

fn pcap_packets(bytes: &[u8]) -> Vec<(u16, u32, u8, usize)> {
    let path = std::env::temp_dir().join(format!("trawl-{}.pcap", testkit::unique_suffix()));
    std::fs::write(&path, bytes).expect("write a pcap");
    let frames = testkit::pcap::read(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    tcp_packets(frames.into_iter().map(|(_, frame)| frame))
}

/// tshark's analysis of a pcap: frames it flags as retransmissions or duplicate ACKs, which a
/// packet stored twice looks like.
fn flagged_as_repeats(bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("trawl-{}.pcap", testkit::unique_suffix()));
    std::fs::write(&path, bytes).expect("write a pcap");
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-Y", "tcp.analysis.retransmission or tcp.analysis.duplicate_ack", "-n"])
        .output()
        .expect("run tshark (apt: tshark)");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Issue #30: what a pod saw (tcpdump inside it) is what the session stores, each packet once,
/// for an exchange on one node, one across the two nodes, one through a ClusterIP Service whose
/// server is on the other node, one with a host-network pod there, and one with an address
/// outside the cluster reached through the first node's masquerade.
async fn each_packet_once_as_the_pod_saw_it(cluster: &Cluster, base: &str, session_id: &str) {
    cluster.kubectl_stdin(&["apply", "-f", "-"], &talking_pods());
    let outside = Outside::behind("trawl-cni0", "10.244.0.0/16", "10.253.0", "trawl-inet");
    let mut serve = outside.command("python3");
    serve
        .args(["-m", "http.server", "80", "--bind", &outside.address])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _outside_server = testkit::process::Service::start("http.server outside", serve);
    cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "pod/server-1",
        "pod/server-2",
        "pod/host-server",
        "--timeout=180s",
    ]);
    let ip = |pod: &str| {
        cluster.json(&["get", "pod", pod])["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (client, server_1, server_2) = (ip("client"), ip("server-1"), ip("server-2"));
    let host_server = ip("host-server");
    let service = cluster.json(&["get", "service", "server-2"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    // An analyst may export pcap.
    cluster.kubectl(&["create", "serviceaccount", "analyst"]);
    cluster.kubectl(&[
        "create",
        "rolebinding",
        "analyst",
        "--clusterrole",
        "trawl-analyst",
        &format!("--serviceaccount={}:analyst", cluster.namespace),
    ]);
    let token = cluster.kubectl(&["create", "token", "analyst", "--audience", "trawl"]);
    let token = token.trim();

    let mut tcpdump = cluster
        .control_plane
        .kubectl()
        .args(["-n", &cluster.namespace, "exec", "client", "--"])
        .args([
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-U",
            "--immediate-mode",
            "-w",
            "/tmp/reference.pcap",
        ])
        .args(["tcp", "port", "80", "or", "tcp", "port", "8080"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl exec tcpdump");
    let stderr = tcpdump.stderr.take().unwrap();
    let (listening, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = listening.send(());
            }
        }
    });
    heard
        .recv_timeout(DEADLINE)
        .expect("tcpdump in the client pod to listen");
    let exchanges = [
        (server_1.clone(), "same-node"),
        (server_2.clone(), "across-nodes"),
        (format!("{service}:8080"), "service"),
        (host_server.clone(), "host-network"),
        (outside.address.clone(), "outside"),
    ];
    for (target, what) in &exchanges {
        curl_from_client(cluster, &format!("http://{target}/?{what}"));
    }
    let reference_bytes = || cluster.kubectl_bytes(&["exec", "client", "--", "cat", "/tmp/reference.pcap"]);
    wait_until(
        "the client pod's capture to hold the connections' ends",
        DEADLINE,
        || async {
            let fins = pcap_packets(&reference_bytes())
                .iter()
                .filter(|(_, _, flags, _)| flags & 1 != 0)
                .count();
            (fins >= 2 * exchanges.len()).then_some(())
        },
    )
    .await;
    cluster.kubectl(&["exec", "client", "--", "pkill", "-INT", "tcpdump"]);
    let _ = tcpdump.wait();
    let reference_pcap = reference_bytes();
    let reference = pcap_packets(&reference_pcap);
    assert!(
        reference.len() >= exchanges.len() * 6,
        "{} HTTP exchanges: {} packets",
        exchanges.len(),
        reference.len()
    );
    assert_eq!(
        flagged_as_repeats(&reference_pcap),
        "",
        "the pod's own view has no repeats"
    );

    let export = |base: &str| {
        let url = format!("{base}/sessions/{session_id}/pcap?host={client}");
        let mut response = ureq::get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        response.body_mut().read_to_vec().expect("the pcap")
    };
    let stored = wait_until("the session to store what the client pod saw", DEADLINE, || async {
        let pcap = export(base);
        (pcap_packets(&pcap).len() >= reference.len()).then_some(pcap)
    })
    .await;
    assert_eq!(
        pcap_packets(&stored),
        reference,
        "each packet once, as the client pod saw it (same node {server_1}, across nodes {server_2}, \
         Service {service}, host network {host_server}, outside {})",
        outside.address
    );
    assert_eq!(flagged_as_repeats(&stored), "", "no packet stored twice");
    both_ends_named_and_the_map_weighs_what_the_pod_saw(
        base,
        token,
        session_id,
        &reference_pcap,
        &client,
        &[
            Called {
                name: "server-1",
                address: &server_1,
                service: None,
            },
            Called {
                name: "server-2",
                address: &server_2,
                service: Some(&service),
            },
        ],
    );
    a_request_through_a_service_is_one_flow(
        base,
        token,
        session_id,
        &cluster.namespace,
        (&client, &server_2, &service),
    )
    .await;
    eprintln!(
        "two nodes: the client pod saw {} packets in {} exchanges, the session stored the same {}",
        reference.len(),
        exchanges.len(),
        pcap_packets(&stored).len()
    );
    kubectl_trawl_lists_and_exports(cluster, session_id, &client);
    kubectl_trawl_as_any_identity(cluster, session_id, &client);
    kubectl_trawl_taps_a_pod_live(cluster);
    wireshark_captures_a_session_through_the_extcap(cluster, session_id);
    cluster.kubectl(&[
        "delete",
        "pod",
        "client",
        "server-1",
        "server-2",
        "host-server",
        "--wait=false",
    ]);
}

/// Cuts the second node off from the host (its kubelet from the API server, its sniffer from the
/// broker) as a network partition would, until dropped.
struct Partition {
    rules: Vec<[&'static str; 5]>,
}

impl Partition {
    /// `trawl-up1` is the host's end of the second node's uplink (`node.sh --netns`).
    fn cut_second_node() -> Self {
        let partition = Self {
            rules: vec![
                ["INPUT", "-i", "trawl-up1", "-j", "DROP"],
                ["FORWARD", "-i", "trawl-up1", "-j", "DROP"],
            ],
        };
        for rule in &partition.rules {
            let status = Command::new("iptables").arg("-I").args(rule).status().unwrap();
            assert!(status.success(), "iptables -I {rule:?}");
        }
        partition
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).status();
        }
    }
}

/// The `NodesCapturing` condition: (status, message).
fn nodes_capturing(status: &Value) -> Option<(String, String)> {
    let condition = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "NodesCapturing")?;
    Some((
        condition["status"].as_str()?.to_owned(),
        condition["message"].as_str()?.to_owned(),
    ))
}

/// Issue #30 item 6: the second node cut off while the first captures: the session names the lost
/// node with its sniffer's last counters, the first node stores everything meanwhile, and the
/// node's return is picked up by the same session.
async fn a_node_lost_under_traffic_is_named_and_picked_up_again(cluster: &Cluster, network: &TestNetwork) {
    let (_, stored_before, _) = counts(&cluster.session_status());
    let partition = Partition::cut_second_node();
    let sender = network.send_frames_in_background(web_and_dns(network, 4, 3_000), 300);
    let message = wait_until("the session to name the lost node", DEADLINE, || async {
        let (status, message) = nodes_capturing(&cluster.session_status())?;
        (status == "False").then_some(message)
    })
    .await;
    assert!(
        message.starts_with(&format!("{SECOND_REAL_NODE} (node not ready): last reported at ")),
        "{message}"
    );
    assert!(
        !message.contains(&format!("{REAL_NODE} (")),
        "only the cut node: {message}"
    );
    wait_for_sender(sender);
    wait_until(
        "the first node's packets stored while the second is away",
        DEADLINE,
        || async {
            let (_, stored, _) = counts(&cluster.session_status());
            (stored >= stored_before + 3_000).then_some(())
        },
    )
    .await;
    drop(partition);
    wait_until("the returned node picked up by the same session", DEADLINE, || async {
        let (status, _) = nodes_capturing(&cluster.session_status())?;
        (status == "True").then_some(())
    })
    .await;
    // What ran on the cut-off node (the operator or the API may have) is Ready again.
    wait_until("the chart's and the session's pods ready again", DEADLINE, || async {
        let ready = |selector: &str| cluster.ready_pods(selector).len();
        let sniffers = ready(&format!(
            "trawl.dev/session={SESSION},app.kubernetes.io/component=sniffer"
        ));
        (ready("app.kubernetes.io/component=operator") >= 1
            && ready("app.kubernetes.io/component=api") >= 1
            && sniffers == 2)
            .then_some(())
    })
    .await;
    eprintln!("two nodes: {message}; back after the partition");
}

/// Issue #34: `kubectl trawl tap pod/server-1 --payload -w -` piped into `tshark -i -` (a pipe read
/// as a live capture, as `wireshark -k -i -` reads it) while the pod is called:
/// the pod's requests arrive live through the API server's aggregation layer, signed in with the
/// admin's certificate,
/// and Ctrl-C removes the session and says what it captured.
/// `kubectl trawl ...` as a user runs it: kubectl finds the plugin on the PATH.
fn kubectl_trawl(cluster: &Cluster) -> Command {
    kubectl_trawl_as(&cluster.control_plane.kubeconfig)
}

/// `kubectl trawl ...` as the kubeconfig's identity.
fn kubectl_trawl_as(kubeconfig: &std::path::Path) -> Command {
    let plugin = testkit::process::workspace_binary("kubectl-trawl", "kubectl-trawl");
    let path = format!(
        "{}:{}",
        plugin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(testkit::control_plane::assets_dir().join("kubectl"));
    command.env("PATH", path).env("KUBECONFIG", kubeconfig).arg("trawl");
    command
}

/// A copy of the admin's kubeconfig signed in otherwise: `kubectl config set-credentials` args.
fn kubeconfig_as(cluster: &Cluster, user: &str, credentials: &[&str]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("trawl-kubeconfig-{user}-{}", testkit::unique_suffix()));
    std::fs::copy(&cluster.control_plane.kubeconfig, &path).expect("copy the kubeconfig");
    let kubectl = testkit::control_plane::assets_dir().join("kubectl");
    for args in [
        [&["config", "set-credentials", user][..], credentials].concat(),
        vec!["config", "set-context", "--current", "--user", user],
    ] {
        let output = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&path)
            .args(&args)
            .output()
            .unwrap();
        assert!(output.status.success(), "kubectl {args:?}: {output:?}");
    }
    path
}

/// `kubectl get --raw PATH` as the kubeconfig's identity: its exit status, stdout and stderr.
fn get_raw_as(kubeconfig: &std::path::Path, path: &str) -> (bool, String, String) {
    let output = Command::new(testkit::control_plane::assets_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw", path])
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `kubectl trawl open --no-browser` as a certificate user: the address it prints serves the web
/// UI's page and its assets, and the API signed in as that user, with no token anywhere; Chromium
/// shows the UI signed in with the session listed (frontend/e2e/signed-in.mjs).
fn web_ui_through_the_api_server(kubeconfig: &std::path::Path, session_id: &str) {
    use std::io::BufRead;
    let mut open = kubectl_trawl_as(kubeconfig)
        .args(["open", "--no-browser"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl trawl open");
    let mut printed = String::new();
    std::io::BufReader::new(open.stdout.take().unwrap())
        .read_line(&mut printed)
        .expect("the address kubectl trawl open prints");
    let address = printed.trim().trim_end_matches('/').to_owned();
    assert!(
        address.starts_with("http://127.0.0.1:") && !address.contains("token"),
        "an address with no token: {printed:?}"
    );
    let get = |path: &str| {
        let mut response = ureq::get(&format!("{address}{path}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap_or_else(|e| panic!("GET {path} through kubectl trawl open: {e}"));
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap_or_default())
    };
    let (status, page) = get("/");
    assert_eq!(status, 200, "the UI's page: {page}");
    let asset = page
        .split('"')
        .find(|part| part.starts_with("/assets/"))
        .unwrap_or_else(|| panic!("an asset in the page: {page}"))
        .to_owned();
    let (status, _) = get(&asset);
    assert_eq!(status, 200, "{asset}");
    let (status, me) = get("/api/v1/whoami");
    assert_eq!(status, 200, "{me}");
    let me: Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["name"], "trawl-admin", "{me}");
    // And in a browser: the page signs in by itself and lists the session.
    let chromium = Command::new("node")
        .args(["--test", "e2e/signed-in.mjs"])
        .current_dir(testkit::repo_root().join("frontend"))
        .env("TRAWL_UI_URL", &address)
        .env("TRAWL_SESSION", session_id)
        .env("TRAWL_USER", "trawl-admin")
        .output()
        .expect("node");
    assert!(
        chromium.status.success(),
        "the UI in Chromium through kubectl trawl open: {}{}",
        String::from_utf8_lossy(&chromium.stdout),
        String::from_utf8_lossy(&chromium.stderr)
    );
    let _ = Command::new("kill").args(["-INT", &open.id().to_string()]).status();
    let stopped = open.wait().expect("kubectl trawl open stops on Ctrl-C");
    assert!(stopped.success(), "kubectl trawl open exited with {stopped}");
    eprintln!(
        "kubectl trawl open: the UI's page, {asset} and whoami (trawl-admin) through the API server; Chromium signed in and listed {session_id}"
    );
}

/// Issue #34 item 2: the plugin reaches trawl-api through the API server's aggregation layer
/// (`data.trawl.dev/v1`) as any kubeconfig identity, and the same per-namespace rights decide:
/// the control plane's certificate admin and the analyst ServiceAccount export the session's
/// packets; a certificate user with no rights is named and refused.
fn kubectl_trawl_as_any_identity(cluster: &Cluster, session_id: &str, client: &str) {
    let available = cluster.kubectl(&[
        "wait",
        "--for=condition=Available",
        "apiservice/v1.data.trawl.dev",
        "--timeout=120s",
    ]);
    assert!(available.contains("condition met"), "{available}");
    let admin = cluster.control_plane.kubeconfig.clone();
    let analyst_token = cluster.kubectl(&["create", "token", "analyst"]);
    let analyst = kubeconfig_as(cluster, "analyst", &["--token", analyst_token.trim()]);
    // A user the cluster's CA signed a certificate for, and no RoleBinding names.
    let pki = cluster.control_plane.pki();
    let dir = std::env::temp_dir().join(format!("trawl-nobody-{}", testkit::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = testkit::certificates::client(&pki.join("ca.crt"), &pki.join("ca.key"), "nobody", &dir);
    let nobody = kubeconfig_as(
        cluster,
        "nobody",
        &[
            &format!("--client-certificate={}", cert.display()),
            &format!("--client-key={}", key.display()),
            "--embed-certs",
        ],
    );
    let analyst_name = format!("system:serviceaccount:{}:analyst", cluster.namespace);
    for (kubeconfig, who, may_export) in [
        (&admin, "trawl-admin", true),
        (&analyst, analyst_name.as_str(), true),
        (&nobody, "nobody", false),
    ] {
        let (ok, me, error) = get_raw_as(kubeconfig, "/apis/data.trawl.dev/v1/whoami");
        assert!(ok, "{who}: kubectl get --raw .../whoami: {error}");
        let me: Value = serde_json::from_str(&me).unwrap_or_else(|_| panic!("{who}: {me}"));
        assert_eq!(me["name"], who, "{me}");
        let file = dir.join(format!("{}.pcapng", who.replace(':', "-")));
        let exported = kubectl_trawl_as(kubeconfig)
            .args(["pcap", session_id, "-q", &format!("host {client}"), "-o"])
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&exported.stderr).into_owned();
        assert!(
            said.contains("through the Kubernetes API server"),
            "{who}: the plugin went through the API server: {said}"
        );
        if may_export {
            assert!(exported.status.success(), "{who}: kubectl trawl pcap: {said}");
            let read = Command::new("tshark")
                .arg("-r")
                .arg(&file)
                .args(["-T", "fields", "-e", "ip.src"])
                .output()
                .expect("tshark");
            let packets = String::from_utf8_lossy(&read.stdout).lines().count();
            assert!(
                read.status.success() && packets > 0,
                "{who}: tshark reads the client's packets in the export: {read:?}"
            );
        } else {
            assert!(!exported.status.success(), "{who} may not export: {said}");
            assert!(said.contains("you may not export packets of"), "{who}: {said}");
        }
    }
    web_ui_through_the_api_server(&admin, session_id);
    let _ = std::fs::remove_dir_all(&dir);
    for kubeconfig in [analyst, nobody] {
        let _ = std::fs::remove_file(kubeconfig);
    }
    eprintln!(
        "aggregated API: trawl-admin (certificate) and {analyst_name} (token) exported through the API server, nobody (certificate) refused"
    );
}

/// Issue #34 item 5: `kubectl trawl sessions` lists the session with its counts, and
/// `kubectl trawl pcap` writes its packets of one pod to a file tshark reads.
fn kubectl_trawl_lists_and_exports(cluster: &Cluster, session_id: &str, client: &str) {
    let (namespace, name) = session_id.split_once('/').unwrap();
    let listed = kubectl_trawl(cluster)
        .args(["sessions", "-n", namespace])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.status.success(),
        "kubectl trawl sessions: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "PHASE",
            "READY",
            "CAPTURED",
            "STORED",
            "DROPPED",
            "BY"
        ],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&name))
        .unwrap_or_else(|| panic!("the session in {table}"));
    assert_eq!(
        (row[0], row[2], row[7]),
        (namespace, "Capturing", "manifest"),
        "{table}"
    );
    let captured: u64 = row[4]
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("a count in {table}"));
    assert!(captured > 0, "{table}");

    let file = std::env::temp_dir().join(format!("trawl-plugin-{}.pcapng", testkit::unique_suffix()));
    let exported = kubectl_trawl(cluster)
        .args(["pcap", session_id, "-q", &format!("host {client}"), "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        exported.status.success(),
        "kubectl trawl pcap: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let read = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-T", "fields", "-e", "ip.src", "-e", "ip.dst"])
        .output()
        .expect("tshark");
    let _ = std::fs::remove_file(&file);
    let lines = String::from_utf8_lossy(&read.stdout).into_owned();
    assert!(
        read.status.success() && !lines.is_empty(),
        "tshark read the export: {lines}"
    );
    assert!(
        lines
            .lines()
            .all(|line| line.split('\t').any(|address| address == client)),
        "every exported packet is the client's: {lines}"
    );
    eprintln!(
        "kubectl trawl sessions: {name} Capturing with {captured} captured; kubectl trawl pcap: {} packets of {client}",
        lines.lines().count()
    );
}

fn kubectl_trawl_taps_a_pod_live(cluster: &Cluster) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut tap = kubectl_trawl(cluster)
        .args([
            "tap",
            "pod/server-1",
            "-n",
            &cluster.namespace,
            "--filter",
            "tcp port 80",
        ])
        .args(["--payload", "-w", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl trawl tap");
    let mut tshark = Command::new("tshark")
        .args([
            "-i",
            "-",
            "-l",
            "-n",
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "http.request.uri",
        ])
        .stdin(tap.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark (apt: tshark)");
    let (said, heard) = std::sync::mpsc::channel::<String>();
    let stderr = std::io::BufReader::new(tap.stderr.take().unwrap());
    let said_too = said.clone();
    std::thread::spawn(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .for_each(|line| drop(said_too.send(format!("tap: {line}"))))
    });
    let uris = std::io::BufReader::new(tshark.stdout.take().unwrap());
    std::thread::spawn(move || {
        uris.lines()
            .map_while(Result::ok)
            .for_each(|line| drop(said.send(format!("tshark: {line}"))))
    });
    let mut lines = Vec::new();
    let wait_for = |what: &str, found: &dyn Fn(&str) -> bool, lines: &mut Vec<String>, poke: &dyn Fn()| {
        let deadline = std::time::Instant::now() + DEADLINE;
        while !lines.iter().any(|line| found(line)) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {lines:#?}"
            );
            poke();
            if let Ok(line) = heard.recv_timeout(Duration::from_secs(1)) {
                lines.push(line);
            }
        }
    };
    wait_for(
        "the tap to capture",
        &|line| line.starts_with("tap: Capturing (Ctrl-C"),
        &mut lines,
        &|| {},
    );
    let server_1 = cluster.json(&["get", "pod", "server-1"])["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let call_server = || curl_from_client(cluster, &format!("http://{server_1}/?tapped"));
    wait_for(
        "the pod's request live in tshark",
        &|line| line == "tshark: /?tapped",
        &mut lines,
        &call_server,
    );
    let stopped = Command::new("kill")
        .args(["-INT", &tap.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = tap.wait().unwrap();
    assert!(status.success(), "kubectl trawl tap exited with {status}: {lines:#?}");
    wait_for(
        "the tap to say it removed its session",
        &|line| {
            line.starts_with(&format!("tap: Removed {}/tap-server-1-", cluster.namespace)) && line.contains("captured")
        },
        &mut lines,
        &|| {},
    );
    let _ = tshark.kill();
    let _ = tshark.wait();
    let left = cluster.kubectl(&["get", "cap", "-o", "name"]);
    assert!(!left.contains("tap-server-1-"), "the tap's session was removed: {left}");
    eprintln!("kubectl trawl tap -w -: the pod's request read live by tshark, the session removed on Ctrl-C");
}

/// The plugin installed in Wireshark's extcap folder for the test, removed with it.
struct ExtcapInstalled(std::path::PathBuf);

impl Drop for ExtcapInstalled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Issue #34 item 4: tshark (which runs extcap programs as Wireshark does) lists the session as an
/// interface and captures from it live: the pod's requests to server-1 are read from the extcap's
/// FIFO (by their headers: the example session keeps no payload).
fn wireshark_captures_a_session_through_the_extcap(cluster: &Cluster, session_id: &str) {
    use std::io::BufRead;
    use std::process::Stdio;
    let folders = String::from_utf8(Command::new("tshark").args(["-G", "folders"]).output().unwrap().stdout).unwrap();
    let extcap_dir = folders
        .lines()
        .find_map(|line| line.strip_prefix("Extcap path:"))
        .map(|path| std::path::PathBuf::from(path.trim()))
        .expect("tshark names its extcap folder");
    // Debian's tshark 4.0 reads its global extcap folder only (no personal one, no variable).
    let installed = ExtcapInstalled(extcap_dir.join(format!("kubectl-trawl-test-{}", testkit::unique_suffix())));
    std::os::unix::fs::symlink(
        testkit::process::workspace_binary("kubectl-trawl", "kubectl-trawl"),
        &installed.0,
    )
    .expect("link the plugin into the extcap folder");
    let tshark = |args: &[&str]| {
        let mut command = Command::new("tshark");
        command.env("KUBECONFIG", &cluster.control_plane.kubeconfig).args(args);
        command
    };
    let (namespace, name) = session_id.split_once('/').unwrap();
    let interface = format!("trawl.{namespace}.{name}");
    let listed = String::from_utf8(tshark(&["-D"]).output().unwrap().stdout).unwrap();
    assert!(
        listed.contains(&format!("{interface} (Trawl: {session_id} (")),
        "tshark -D: {listed}"
    );
    let server_1 = cluster.json(&["get", "pod", "server-1"])["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let to_server_1 = format!("ip.dst == {server_1} && tcp.dstport == 80");
    let mut capture = tshark(&[
        "-i",
        &interface,
        "-l",
        "-n",
        "-Y",
        &to_server_1,
        "-T",
        "fields",
        "-e",
        "ip.dst",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("tshark -i through the extcap");
    let (said, heard) = std::sync::mpsc::channel::<String>();
    let told = said.clone();
    let read = std::io::BufReader::new(capture.stdout.take().unwrap());
    std::thread::spawn(move || {
        read.lines()
            .map_while(Result::ok)
            .for_each(|line| drop(said.send(line)))
    });
    let errors = std::io::BufReader::new(capture.stderr.take().unwrap());
    std::thread::spawn(move || {
        errors
            .lines()
            .map_while(Result::ok)
            .for_each(|line| drop(told.send(format!("stderr: {line}"))))
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    while !lines.contains(&server_1) {
        assert!(
            std::time::Instant::now() < deadline,
            "tshark -i {interface} read: {lines:?}"
        );
        curl_from_client(cluster, &format!("http://{server_1}/?through-the-extcap"));
        if let Ok(line) = heard.recv_timeout(Duration::from_secs(1)) {
            lines.push(line);
        }
    }
    let _ = Command::new("kill").args(["-INT", &capture.id().to_string()]).status();
    let status = capture.wait().unwrap();
    assert!(status.success(), "tshark -i {interface} ended with {status}");
    drop(installed);
    eprintln!("Wireshark's extcap: tshark -D listed {interface}; tshark -i read the pod's request live");
}

/// One HTTP request from the `client` pod (curl inside it), which must succeed.
fn curl_from_client(cluster: &Cluster, url: &str) {
    cluster.kubectl(&["exec", "client", "--", "curl", "-sf", "-o", "/dev/null", url]);
}

/// Bytes of the frames in `pcap` between two addresses, both ways (tcpdump keeps whole frames).
fn bytes_between(pcap: &[u8], a: &str, b: &str) -> i64 {
    let path = std::env::temp_dir().join(format!("trawl-{}.pcap", testkit::unique_suffix()));
    std::fs::write(&path, pcap).expect("write a pcap");
    let frames = testkit::pcap::read(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let address = |frame: &[u8], at: usize| {
        frame
            .get(at..at + 4)
            .map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]))
    };
    frames
        .iter()
        .filter(|(_, frame)| {
            let (src, dst) = (address(frame, 26), address(frame, 30));
            (src.as_deref(), dst.as_deref()) == (Some(a), Some(b))
                || (src.as_deref(), dst.as_deref()) == (Some(b), Some(a))
        })
        .map(|(_, frame)| frame.len() as i64)
        .sum()
}

/// A server pod the client called: its name, its address, and its Service's address where the
/// client called it through that too.
struct Called<'a> {
    name: &'a str,
    address: &'a str,
    service: Option<&'a str>,
}

/// Issue #30 item 5: the flows between the client pod and the servers it called carry both pods'
/// names, and the service map's edge between them weighs the bytes the client saw (with a
/// server's Service's address, where it called the server through it too).
fn both_ends_named_and_the_map_weighs_what_the_pod_saw(
    base: &str,
    token: &str,
    session_id: &str,
    reference: &[u8],
    client: &str,
    servers: &[Called<'_>],
) {
    let flows = api_get(
        base,
        token,
        &format!("/flows?session={session_id}&host={client}&limit=100"),
    );
    let map = api_get(base, token, &format!("/service-map?session={session_id}&host={client}"));
    for Called {
        name: server,
        address,
        service,
    } in servers
    {
        let named: Vec<&Value> = flows["items"]
            .as_array()
            .expect("flows")
            .iter()
            .filter(|flow| [&flow["src"], &flow["dst"]].contains(&&Value::from(*address)))
            .collect();
        assert!(!named.is_empty(), "a flow with {server}: {flows}");
        for flow in named {
            let mut ends = [
                flow["src_endpoint"]["name"].as_str(),
                flow["dst_endpoint"]["name"].as_str(),
            ];
            ends.sort_unstable();
            assert_eq!(ends, [Some("client"), Some(*server)], "both ends named: {flow}");
        }
        let edge = map["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .find(|edge| {
                edge["from"].as_str().is_some_and(|id| id.ends_with("/client"))
                    && edge["to"]
                        .as_str()
                        .is_some_and(|id| id.ends_with(&format!("/{server}")))
            })
            .unwrap_or_else(|| panic!("an edge client -> {server}: {map}"));
        let through_service = service.map_or(0, |service| bytes_between(reference, client, service));
        assert_eq!(
            edge["bytes"].as_i64(),
            Some(bytes_between(reference, client, address) + through_service),
            "the edge weighs the bytes the client pod saw: {edge}"
        );
    }
}

/// Issue #30 item 3: a request through a Service and its reply are one flow, named by the client
/// pod, the Service and the serving pod, and the HTTP request pairs with its response.
async fn a_request_through_a_service_is_one_flow(
    base: &str,
    token: &str,
    session_id: &str,
    namespace: &str,
    (client, server, service): (&str, &str, &str),
) {
    let flows = api_get(
        base,
        token,
        &format!("/flows?session={session_id}&host={client}&limit=100"),
    );
    let items = flows["items"].as_array().expect("flows");
    assert!(
        items
            .iter()
            .all(|flow| flow["dst"] != service && flow["src"] != service),
        "no flow with the Service's address {service}: the exchange is kept where both directions carry the pods' {flows}"
    );
    // One flow called server-2 straight, the other through its Service: both reached its port 80.
    let to_server: Vec<&Value> = items
        .iter()
        .filter(|flow| flow["src"] == client && flow["dst"] == server && flow["dst_port"] == 80)
        .collect();
    assert_eq!(to_server.len(), 2, "client -> server-2:80 twice: {flows}");
    for flow in to_server {
        assert_eq!(flow["src_endpoint"]["name"], "client", "{flow}");
        assert_eq!(flow["dst_endpoint"]["name"], "server-2", "{flow}");
        assert_eq!(
            flow["dst_service"],
            serde_json::json!({"namespace": namespace, "name": "server-2"}),
            "{flow}"
        );
        assert!(
            flow["packets_sent"].as_i64() > Some(2) && flow["packets_received"].as_i64() > Some(2),
            "both directions in one flow: {flow}"
        );
    }
    let through_service = api_get(
        base,
        token,
        &format!("/flows?session={session_id}&service={namespace}/server-2&limit=100"),
    );
    assert!(
        through_service["items"]
            .as_array()
            .is_some_and(|flows| flows.len() >= 2),
        "service=server-2 selects the flows its backend served: {through_service}"
    );
    let request = wait_until(
        "the request through the Service, with its response",
        DEADLINE,
        || async {
            let requests = api_get(
                base,
                token,
                &format!("/events/http?session={session_id}&host={client}&limit=100"),
            );
            requests["items"]
                .as_array()?
                .iter()
                .find(|event| event["path"] == "/?service" && !event["status"].is_null())
                .cloned()
        },
    )
    .await;
    assert_eq!(request["status"], 200, "{request}");
    assert_eq!(
        (&request["client"], &request["server"]),
        (&Value::from(client), &Value::from(server)),
        "{request}"
    );
}
