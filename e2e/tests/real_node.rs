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
use testkit::control_plane::{ControlPlane, REAL_NODE, REAL_NODE_IP};
use testkit::forward::Forward;
use testkit::netns::TestNetwork;
use testkit::postgres::TestDatabase;
use testkit::rabbitmq::TestVhost;
use testkit::{frames, wait_until};

const REGISTRY: &str = "ghcr.io/trawl-dev";
const TAG: &str = "dev";
const SESSION: &str = "web-and-dns";
/// Pods start in seconds here, but the first start of each image unpacks it.
const DEADLINE: Duration = Duration::from_secs(180);

fn images() -> Vec<String> {
    ["operator", "sniffer", "parser", "api"]
        .iter()
        .map(|component| format!("{REGISTRY}/trawl-{component}:{TAG}"))
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
    fn kubectl(&self, args: &[&str]) -> String {
        let output = self
            .control_plane
            .kubectl()
            .args(["-n", &self.namespace])
            .args(args)
            .output()
            .expect("run kubectl");
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

/// (captured, stored, dropped) of the session's status; captured counts packets, not the copies of
/// a packet the sniffer saw again on another interface (`deduplicated`, neither stored nor lost).
fn counts(status: &Value) -> (u64, u64, u64) {
    let packets = &status["packets"];
    let n = |key: &str| packets[key].as_u64().unwrap_or(0);
    (n("captured") - n("deduplicated"), n("stored"), n("dropped"))
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
            "{image} is not built: run `images/build.sh --prebuilt --local-bases`"
        );
    }
    let control_plane = ControlPlane::with_real_node(&images());
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
        .output()
        .expect("run helm");
    check(install, "helm install");

    // --wait saw the operator and API Deployments available: their readiness probes pass on
    // the real kubelet. They run on the real node, as nothing tolerates the kwok nodes' taint.
    for component in ["operator", "api"] {
        let pods = cluster.ready_pods(&format!("app.kubernetes.io/component={component}"));
        assert!(!pods.is_empty(), "no ready {component} pod");
        assert!(pods.iter().all(|(_, node)| node == REAL_NODE), "{component}: {pods:?}");
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
    assert_eq!(sniffers.len(), 1, "one sniffer, on the real node only: {sniffers:?}");
    assert_eq!(sniffers[0].1, REAL_NODE);
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
    let status = wait_until("the first 300 packets to be stored", DEADLINE, || async {
        let status = cluster.session_status();
        let (_, stored, _) = counts(&status);
        (stored >= 300).then_some(status)
    })
    .await;
    let (captured, stored, dropped) = counts(&status);
    assert_eq!(captured, stored + dropped, "captured = stored + dropped: {status}");
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
    let dns = api_get(
        &base,
        token,
        &format!("/packets?session={session_id}&protocol=dns&limit=1000"),
    );
    let names: Vec<&str> = dns["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["l7_name"].as_str())
        .collect();
    assert!(
        names.contains(&"r1-0.shop.example"),
        "DNS names through the API: {names:?}"
    );
    // The node's own traffic on port 443 (pods talking to the API server through the
    // `kubernetes` Service) is captured too, so look for our names among all of a protocol's.
    for (protocol, name) in [("http", "web1.example"), ("tls", "tls1.example")] {
        let page = api_get(
            &base,
            token,
            &format!("/packets?session={session_id}&protocol={protocol}&limit=1000"),
        );
        let found = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|p| p["l7_name"] == name);
        assert!(found, "no {protocol} packet named {name} through the API");
    }
    let flows = api_get(&base, token, &format!("/flows?session={session_id}&limit=100"));
    assert!(
        flows["items"].as_array().is_some_and(|f| !f.is_empty()),
        "flows through the API: {flows}"
    );

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
    cluster.kubectl(&[
        "patch",
        "cap",
        SESSION,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"parsers":{"targetBacklog":1}}}"#,
    ]);
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

    // The operator restarted mid-session, and a sniffer pod deleted under traffic: the operator
    // converges, the DaemonSet starts a new sniffer, and the old one's final counters arrive.
    let operator = cluster.ready_pods("app.kubernetes.io/component=operator")[0].0.clone();
    let sender = network.send_frames_in_background(web_and_dns(&network, 3, 20_000), 2_000);
    cluster.kubectl(&["delete", "pod", &operator, "--wait=false"]);
    let sniffer = session_pods("sniffer")[0].0.clone();
    cluster.kubectl(&["delete", "pod", &sniffer]);
    wait_until("a new sniffer pod", DEADLINE, || async {
        let now = session_pods("sniffer");
        (now.len() == 1 && now[0].0 != sniffer).then_some(())
    })
    .await;
    wait_for_sender(sender);
    wait_until("a new operator pod", DEADLINE, || async {
        let now = cluster.ready_pods("app.kubernetes.io/component=operator");
        (now.len() == 1 && now[0].0 != operator).then_some(())
    })
    .await;
    let status = wait_until(
        "every captured packet stored or counted as dropped, backlog drained",
        DEADLINE,
        || async {
            let status = cluster.session_status();
            let (captured, stored, dropped) = counts(&status);
            let drained = status["backlog"].as_i64() == Some(0);
            (drained && captured > 300 && captured == stored + dropped).then_some(status)
        },
    )
    .await;
    let (captured, stored, dropped) = counts(&status);
    let by_reason: u64 = status["packets"]["droppedByReason"]
        .as_object()
        .map(|reasons| reasons.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(dropped, by_reason, "every drop has a reason: {status}");
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
