//! The real `trawl-operator` on the test control plane (kwok nodes) with a real RabbitMQ:
//! a session becomes sniffers, a queue, parsers and their credentials Secret and turns Ready; an invalid filter stalls it
//! with nothing created; deleting it removes the queue and lets the finalizer go.
//!
//! Run (after `bash hack/services.sh` and `bash hack/control-plane/build.sh`):
//! `cargo test -p operator --test reconcile`

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port, workspace_binary};
use testkit::rabbitmq::TestVhost;
use testkit::{batches, repo_root, wait_until};

const DEADLINE: Duration = Duration::from_secs(90);

struct Rig {
    namespace: TestNamespace,
    vhost: TestVhost,
    operator: Service,
    metrics_port: u16,
    extra: Vec<String>,
}

impl Rig {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Self {
        let control_plane = ControlPlane::shared();
        control_plane.install_crd().await;
        let namespace = control_plane.namespace().await;
        let vhost = TestVhost::create();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let metrics_port = free_port();
        let operator = start_operator(&namespace, &vhost, metrics_port, &extra);
        Self {
            namespace,
            vhost,
            operator,
            metrics_port,
            extra,
        }
    }

    /// Kills the operator (SIGKILL: no chance to finish anything) and starts a new one.
    fn restart_operator_hard(&mut self) {
        self.operator.signal("KILL");
        self.operator.wait_for_exit(DEADLINE).expect("killed");
        self.metrics_port = free_port();
        self.operator = start_operator(&self.namespace, &self.vhost, self.metrics_port, &self.extra);
    }

    fn reconciles(&self) -> u64 {
        testkit::metrics::scrape(self.metrics_port).map_or(0, |text| {
            testkit::metrics::sum(&text, "trawl_operator_reconciles_total")
        })
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut command = self.namespace.kubectl();
        command
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        command.stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or("").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `kubectl apply` of a manifest, which must succeed.
    fn apply(&self, manifest: &str) {
        let applied = self.kubectl(&["apply", "-f", "-"], Some(manifest));
        assert!(
            applied.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }

    /// `kubectl wait` until the session is Ready, which must happen within 90 s.
    fn wait_ready(&self, name: &str) {
        let waited = self.kubectl(
            &["wait", "--for=condition=Ready", &format!("cap/{name}"), "--timeout=90s"],
            None,
        );
        assert!(
            waited.status.success(),
            "kubectl wait: {}",
            String::from_utf8_lossy(&waited.stderr)
        );
    }

    fn session(&self, name: &str) -> Option<Value> {
        let output = self.kubectl(&["get", "cap", name, "-o", "json"], None);
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).unwrap())
    }

    fn condition(&self, name: &str, kind: &str) -> Option<Value> {
        let session = self.session(name)?;
        session["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    }

    fn queue_exists(&self, queue: &str) -> bool {
        self.vhost
            .get(&format!("/api/queues/{}/{queue}", self.vhost.name))
            .is_ok()
    }
}

impl Rig {
    fn status(&self, name: &str, field: &str) -> Value {
        self.session(name)
            .map(|s| s["status"][field].clone())
            .unwrap_or(Value::Null)
    }

    async fn wait_phase(&self, name: &str, phase: &str) {
        let deadline = std::time::Instant::now() + DEADLINE;
        while self.status(name, "phase") != phase {
            if std::time::Instant::now() > deadline {
                panic!("phase {phase} not reached within {DEADLINE:?}; {}", self.describe(name));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets `spec.suspend` and waits for the Suspended phase.
    async fn suspend(&self, name: &str) {
        let patch = r#"{"spec":{"suspend":true}}"#;
        let patched = self.kubectl(&["patch", "cap", name, "--type", "merge", "-p", patch], None);
        assert!(patched.status.success(), "{}", String::from_utf8_lossy(&patched.stderr));
        self.wait_phase(name, "Suspended").await;
    }

    /// The session's status and its children, for a failure message.
    fn describe(&self, name: &str) -> String {
        let status = self.session(name).map(|s| s["status"].to_string()).unwrap_or_default();
        let children = self.kubectl(&["get", "ds,deploy,pods", "-o", "wide"], None);
        let (out, err) = (
            String::from_utf8_lossy(&children.stdout),
            String::from_utf8_lossy(&children.stderr),
        );
        format!("status: {status}\nchildren:\n{out}{err}")
    }

    async fn parser_replicas(&self) -> Option<i32> {
        let deployments = Api::<Deployment>::namespaced(self.namespace.client.clone(), &self.namespace.name);
        deployments
            .get_opt(&format!("{}-web-and-dns-parser", self.namespace.name))
            .await
            .ok()??
            .spec
            .replicas
    }

    /// Puts `count` messages in the queue, as sniffers would, with no parser consuming them (kwok runs no containers).
    async fn fill_queue(&self, queue: &str, count: usize) {
        use lapin::options::BasicPublishOptions;
        let connection = lapin::Connection::connect(&self.vhost.amqp_url, Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        for _ in 0..count {
            channel
                .basic_publish(
                    "trawl.packets".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    b"batch",
                    Default::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }

    fn purge_queue(&self, queue: &str) {
        self.vhost
            .delete(&format!("/api/queues/{}/{queue}/contents", self.vhost.name))
            .unwrap();
    }
}

fn start_operator(namespace: &TestNamespace, vhost: &TestVhost, metrics_port: u16, extra: &[String]) -> Service {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trawl-operator"));
    command
        .env("KUBECONFIG", &namespace.control_plane.kubeconfig)
        .args(["--amqp-url", &vhost.amqp_url, "--watch-namespace", &namespace.name])
        .args(["--namespace", &namespace.name])
        .args(["--listen", &format!("127.0.0.1:{metrics_port}")])
        .args(extra);
    Service::start("trawl-operator", command)
}

fn example() -> String {
    std::fs::read_to_string(repo_root().join("examples/capture.yaml")).unwrap()
}

#[tokio::test]
async fn a_session_becomes_sniffers_a_queue_and_parsers_and_turns_ready() {
    let rig = Rig::start().await;
    rig.apply(&example());

    rig.wait_ready("web-and-dns");

    let client = rig.namespace.client.clone();
    let ns = rig.namespace.name.as_str();
    let daemonset = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .get(&format!("{}-web-and-dns-sniffer", rig.namespace.name))
        .await
        .unwrap();
    assert_eq!(
        daemonset.status.as_ref().unwrap().number_ready,
        2,
        "one sniffer per node of the capture pool"
    );
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/component=sniffer"))
        .await
        .unwrap();
    let mut nodes: Vec<String> = pods
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["kwok-node-0", "kwok-node-1"]);
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(&format!("{}-web-and-dns-parser", rig.namespace.name))
        .await
        .expect("the parser Deployment");
    // The pods' URLs sit in a Secret of the operator's namespace (here the test's), labelled
    // with the session's uid (which the finalizer deletes it by), not in the workloads.
    let credentials = Api::<Secret>::namespaced(client, ns)
        .get(&format!("{}-web-and-dns-credentials", rig.namespace.name))
        .await
        .expect("the credentials Secret");
    assert_eq!(
        credentials.metadata.labels.unwrap()["trawl.dev/session-uid"],
        rig.session("web-and-dns").unwrap()["metadata"]["uid"].as_str().unwrap()
    );
    assert_eq!(credentials.data.unwrap()["amqp-url"].0, rig.vhost.amqp_url.as_bytes());
    assert!(!serde_json::to_string(&daemonset).unwrap().contains(&rig.vhost.amqp_url));

    // The finalizer is the operator's, under its own field manager.
    let stored = Api::<crds::CaptureSession>::namespaced(rig.namespace.client.clone(), ns)
        .get("web-and-dns")
        .await
        .unwrap();
    let managers: Vec<String> = stored
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.to_string().contains("f:finalizers"))
        })
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["trawl-operator"], "who wrote the finalizer");

    let session = rig.session("web-and-dns").unwrap();
    let status = &session["status"];
    assert_eq!(status["phase"], "Capturing");
    assert_eq!(status["observedGeneration"], session["metadata"]["generation"]);
    assert_eq!(
        (
            status["sniffers"]["desired"].as_i64(),
            status["sniffers"]["ready"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let queue = status["queue"].as_str().unwrap().to_owned();
    assert!(rig.queue_exists(&queue), "queue {queue} missing");
    assert!(rig.queue_exists(&format!("{queue}.dead")), "dead-letter queue missing");

    // Deletion: the finalizer deletes the queue and the children (by label: in the operator's
    // namespace no owner reference can point at a session, and this control plane runs no
    // garbage collector anyway), then lets the session go.
    let deleted = rig.kubectl(&["delete", "cap", "web-and-dns", "--wait=false"], None);
    assert!(deleted.status.success());
    wait_until("the session to be gone", DEADLINE, || async {
        rig.session("web-and-dns").is_none().then_some(())
    })
    .await;
    assert!(!rig.queue_exists(&queue), "the queue outlived its session");
    let left = rig.kubectl(
        &[
            "get",
            "daemonsets,deployments,secrets",
            "-l",
            "trawl.dev/session=web-and-dns",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "children outlived their session"
    );
}

#[tokio::test]
async fn an_invalid_filter_stalls_the_session_and_creates_nothing() {
    let rig = Rig::start().await;
    let manifest = example().replace(
        "filter: tcp port 443 or tcp port 80 or udp port 53",
        "filter: tcp port eleventy",
    );
    rig.apply(&manifest);

    let stalled = wait_until("Stalled=True", DEADLINE, || async {
        rig.condition("web-and-dns", "Stalled")
            .filter(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(stalled["reason"], "InvalidFilter");
    assert!(
        stalled["message"].as_str().unwrap().contains("tcp port eleventy"),
        "{stalled}"
    );
    assert_eq!(rig.condition("web-and-dns", "Ready").unwrap()["status"], "False");
    let daemonsets = Api::<DaemonSet>::namespaced(rig.namespace.client.clone(), &rig.namespace.name);
    assert!(
        daemonsets
            .get_opt(&format!("{}-web-and-dns-sniffer", rig.namespace.name))
            .await
            .unwrap()
            .is_none(),
        "sniffers were created"
    );
}

#[tokio::test]
async fn suspend_removes_the_sniffers_and_keeps_the_queue() {
    let rig = Rig::start().await;
    rig.apply(&example());
    rig.wait_phase("web-and-dns", "Capturing").await;
    let queue = rig.status("web-and-dns", "queue").as_str().unwrap().to_owned();

    rig.suspend("web-and-dns").await;
    let daemonsets = Api::<DaemonSet>::namespaced(rig.namespace.client.clone(), &rig.namespace.name);
    wait_until("the sniffers to be removed", DEADLINE, || async {
        daemonsets
            .get_opt(&format!("{}-web-and-dns-sniffer", rig.namespace.name))
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(rig.queue_exists(&queue));
    assert_eq!(
        rig.status("web-and-dns", "observedGeneration"),
        rig.session("web-and-dns").unwrap()["metadata"]["generation"]
    );
}

#[tokio::test]
async fn the_end_of_the_duration_drains_the_queue_then_completes() {
    let rig = Rig::start().await;
    let manifest = example().replace("duration: 30m", "duration: 10s");
    rig.apply(&manifest);
    let queue = wait_until("the session's queue", DEADLINE, || async {
        rig.status("web-and-dns", "queue").as_str().map(str::to_owned)
    })
    .await;
    rig.fill_queue(&queue, 3).await;

    // Capture ends; three batches still wait for parsers.
    rig.wait_phase("web-and-dns", "Draining").await;
    let daemonsets = Api::<DaemonSet>::namespaced(rig.namespace.client.clone(), &rig.namespace.name);
    assert!(
        daemonsets
            .get_opt(&format!("{}-web-and-dns-sniffer", rig.namespace.name))
            .await
            .unwrap()
            .is_none(),
        "sniffers kept after the duration"
    );
    rig.purge_queue(&queue);
    rig.wait_phase("web-and-dns", "Completed").await;
    assert!(rig.status("web-and-dns", "completionTime").is_string());
    assert_eq!(
        rig.parser_replicas().await,
        Some(0),
        "parsers stay at zero once completed"
    );
    assert!(
        rig.queue_exists(&queue),
        "the queue is kept until the session is deleted"
    );
}

#[tokio::test]
async fn a_backlog_scales_parsers_up_at_once_and_down_after_the_window() {
    let rig = Rig::start_with(&["--scale-interval", "1s", "--scale-down-stabilization", "6s"]).await;
    let manifest = example().replace("targetBacklog: 100", "targetBacklog: 10");
    rig.apply(&manifest);
    rig.wait_phase("web-and-dns", "Capturing").await;
    let queue = rig.status("web-and-dns", "queue").as_str().unwrap().to_owned();
    assert_eq!(rig.parser_replicas().await, Some(1));

    rig.fill_queue(&queue, 35).await;
    wait_until("4 parser replicas for 35 queued batches", DEADLINE, || async {
        (rig.parser_replicas().await == Some(4)).then_some(())
    })
    .await;

    rig.purge_queue(&queue);
    let drained = std::time::Instant::now();
    wait_until("the parsers to scale back to 1", DEADLINE, || async {
        (rig.parser_replicas().await == Some(1)).then_some(())
    })
    .await;
    assert!(
        drained.elapsed() >= Duration::from_secs(5),
        "scaled down before the stabilization window passed"
    );
    let events = rig.kubectl(&["get", "events.events.k8s.io", "-o", "json"], None);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"ScaledUp") && reasons.contains(&"ScaledDown"),
        "scalings are recorded as events: {reasons:?}"
    );
}

#[tokio::test]
async fn a_spec_change_reaches_the_children_and_an_unchanged_reapply_writes_nothing() {
    let rig = Rig::start().await;
    rig.apply(&example());
    rig.wait_phase("web-and-dns", "Capturing").await;

    let changed = example().replace(
        "filter: tcp port 443 or tcp port 80 or udp port 53",
        "filter: udp port 53",
    );
    rig.apply(&changed);
    let daemonsets = Api::<DaemonSet>::namespaced(rig.namespace.client.clone(), &rig.namespace.name);
    wait_until("the new filter in the sniffers' environment", DEADLINE, || async {
        let daemonset = daemonsets
            .get(&format!("{}-web-and-dns-sniffer", rig.namespace.name))
            .await
            .ok()?;
        let container = daemonset.spec.template.spec?.containers.into_iter().next()?;
        let filter = container.env?.into_iter().find(|v| v.name == "TRAWL_FILTER")?.value?;
        (filter == "udp port 53").then_some(())
    })
    .await;
    wait_until("observedGeneration to follow", DEADLINE, || async {
        let session = rig.session("web-and-dns")?;
        (session["status"]["observedGeneration"] == session["metadata"]["generation"]).then_some(())
    })
    .await;

    // Settled: further reconciles (the autoscaler requeues every few seconds) and an unchanged
    // re-apply must not write the session or its sniffers again.
    let version = |value: Option<Value>| value.map(|v| v["metadata"]["resourceVersion"].clone());
    // Settled: capturing, and a whole reconcile left the session as it was (one already running
    // when the phase turned may still write what it observed a moment earlier).
    wait_until("a ready, settled session", DEADLINE, || async {
        if rig.status("web-and-dns", "phase") != "Capturing" {
            return None;
        }
        let before = version(rig.session("web-and-dns"));
        let reconciles = rig.reconciles();
        wait_until("one more reconcile", DEADLINE, || async {
            (rig.reconciles() >= reconciles + 2).then_some(())
        })
        .await;
        (version(rig.session("web-and-dns")) == before).then_some(())
    })
    .await;
    let session_before = version(rig.session("web-and-dns"));
    let daemonset_before = daemonsets
        .get(&format!("{}-web-and-dns-sniffer", rig.namespace.name))
        .await
        .unwrap()
        .metadata
        .resource_version;
    rig.apply(&changed);
    let reconciles = rig.reconciles();
    wait_until("two more reconciles", DEADLINE, || async {
        (rig.reconciles() >= reconciles + 2).then_some(())
    })
    .await;
    assert_eq!(
        version(rig.session("web-and-dns")),
        session_before,
        "the session was written again"
    );
    assert_eq!(
        daemonsets
            .get(&format!("{}-web-and-dns-sniffer", rig.namespace.name))
            .await
            .unwrap()
            .metadata
            .resource_version,
        daemonset_before
    );
}

#[tokio::test]
async fn an_operator_killed_mid_reconcile_converges_after_a_restart() {
    let mut rig = Rig::start().await;
    rig.apply(&example());
    // Kill it while the first reconcile is under way, before the session is Ready.
    wait_until("the first reconcile to begin", DEADLINE, || async {
        rig.status("web-and-dns", "queue").as_str().map(|_| ())
    })
    .await;
    rig.restart_operator_hard();
    rig.wait_ready("web-and-dns");
    let client = rig.namespace.client.clone();
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), &rig.namespace.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(client, &rig.namespace.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        (daemonsets.items.len(), deployments.items.len()),
        (1, 1),
        "children duplicated"
    );
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_reconciles_and_the_standby_takes_over() {
    let mut rig = Rig::start_with(&["--lease-duration", "3s"]).await;
    let second_port = free_port();
    let mut second = start_operator(&rig.namespace, &rig.vhost, second_port, &rig.extra);
    rig.apply(&example());
    rig.wait_phase("web-and-dns", "Capturing").await;

    let leases =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(rig.namespace.client.clone(), &rig.namespace.name);
    let holder = || async { leases.get("trawl-operator").await.ok()?.spec?.holder_identity };
    let first_leads = holder().await == Some(format!("trawl-operator-{}", rig.operator.pid()));
    let (standby_pid, standby_port) = if first_leads {
        (second.pid(), second_port)
    } else {
        (rig.operator.pid(), rig.metrics_port)
    };
    let reconciles_of = |port: u16| {
        let text = testkit::metrics::scrape(port)?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("trawl_operator_reconciles_total"))
                .count(),
        )
    };
    assert_eq!(
        reconciles_of(standby_port),
        Some(0),
        "the standby reconciled while not leading"
    );

    // The leader dies; the standby takes the Lease and carries on.
    let leader = if first_leads { &mut rig.operator } else { &mut second };
    leader.signal("KILL");
    leader.wait_for_exit(DEADLINE).expect("killed");
    rig.suspend("web-and-dns").await;
    assert_eq!(holder().await, Some(format!("trawl-operator-{standby_pid}")));
    assert!(
        reconciles_of(standby_port).unwrap_or(0) > 0,
        "the new leader did not reconcile"
    );
}

/// KEDA's ScaledObject CRD, reduced to what the API server needs to store objects of it.
const KEDA_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scaledobjects.keda.sh}
spec:
  group: keda.sh
  scope: Namespaced
  names: {kind: ScaledObject, listKind: ScaledObjectList, plural: scaledobjects, singular: scaledobject}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

#[tokio::test]
async fn keda_mode_says_when_keda_is_missing_and_creates_a_scaled_object_once_it_is_there() {
    let rig = Rig::start().await;
    let manifest = example().replace("autoscaler: builtin", "autoscaler: keda");
    rig.apply(&manifest);
    let stalled = wait_until("Stalled=True", DEADLINE, || async {
        rig.condition("web-and-dns", "Stalled")
            .filter(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(stalled["reason"], "KedaNotInstalled");

    // KEDA arrives (only its CRD: nothing here runs KEDA itself).
    rig.apply(KEDA_CRD);
    rig.wait_phase("web-and-dns", "Capturing").await;
    let queue = rig.status("web-and-dns", "queue").as_str().unwrap().to_owned();
    let scaled = rig.kubectl(
        &[
            "get",
            "scaledobjects.keda.sh",
            &format!("{}-web-and-dns-parser", rig.namespace.name),
            "-o",
            "json",
        ],
        None,
    );
    assert!(scaled.status.success(), "{}", String::from_utf8_lossy(&scaled.stderr));
    let scaled: Value = serde_json::from_slice(&scaled.stdout).unwrap();
    assert_eq!(scaled["spec"]["triggers"][0]["metadata"]["queueName"], queue.as_str());
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        format!("{}-web-and-dns-parser", rig.namespace.name)
    );
    let _ = rig.kubectl(&["delete", "crd", "scaledobjects.keda.sh", "--wait=false"], None);
}

#[tokio::test]
async fn packet_counts_come_from_what_the_parsers_stored_and_max_packets_ends_the_capture() {
    let database = TestDatabase::create().await;
    let rig = Rig::start_with(&["--database-url", &database.url]).await;
    let manifest = example().replace("maxPackets: 5000000", "maxPackets: 20");
    rig.apply(&manifest);
    let queue = wait_until("the session's queue", DEADLINE, || async {
        rig.status("web-and-dns", "queue").as_str().map(str::to_owned)
    })
    .await;
    // kwok runs no containers: a real parser on the host stands in for the Deployment's pods.
    let session = format!("{}/web-and-dns", rig.namespace.name);
    let mut parser = Command::new(workspace_binary("parser", "trawl-parser"));
    parser
        .args([
            "--session",
            &session,
            "--queue",
            &queue,
            "--amqp-url",
            &rig.vhost.amqp_url,
        ])
        .args(["--database-url", &database.url])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    let _parser = Service::start("trawl-parser", parser);

    // One sniffer's two batches: 24 packets captured and stored, 3 more lost to a full queue.
    let connection = lapin::Connection::connect(&rig.vhost.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let origin = batches::origin(&session, "kwok-node-0");
    let now = batches::now_nanos();
    let first = batches::l7_batch_at(now, &origin, 0, 0, 12, 0);
    let counters = wire::Counters {
        captured: 27,
        kernel_drops: 0,
        drops: vec![("queue_full".into(), 3)],
    };
    let second = batches::batch_of(
        &origin,
        1,
        0,
        &counters,
        (12..24).map(|seq| (seq, now + seq, batches::l7_frame(seq))),
    );
    for (seq, body) in [first, second].iter().enumerate() {
        batches::publish(&channel, "trawl.packets", &queue, &origin.batch_id(seq as u64), body).await;
    }

    // 27 captured >= maxPackets 20: the capture ends, the parser empties the queue, and it completes.
    rig.wait_phase("web-and-dns", "Completed").await;
    let packets = rig.status("web-and-dns", "packets");
    assert_eq!(
        packets,
        serde_json::json!({"captured": 27, "deduplicated": 0, "dropped": 3, "droppedByReason": {"queue_full": 3}, "stored": 24}),
        "captured = stored + deduplicated + dropped"
    );
    let events = rig.kubectl(&["get", "events.events.k8s.io", "-o", "json"], None);
    let events: Value = serde_json::from_slice(&events.stdout).unwrap();
    let notes: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "CaptureEnded")
        .filter_map(|e| e["note"].as_str())
        .collect();
    assert!(notes.iter().any(|n| n.contains("maxPackets (20) reached")), "{notes:?}");

    // The mirror the API reads: the session as the operator last wrote it, then marked deleted.
    let pool = database.pool().await;
    let (phase, stored): (Option<String>, Option<i64>) =
        wait_until("the mirrored Completed phase", DEADLINE, || async {
            let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
                "SELECT phase, (status->'packets'->>'stored')::bigint FROM sessions WHERE namespace = $1 AND name = $2",
            )
            .bind(&rig.namespace.name)
            .bind("web-and-dns")
            .fetch_optional(&pool)
            .await
            .unwrap();
            row.filter(|(phase, _)| phase.as_deref() == Some("Completed"))
        })
        .await;
    assert_eq!((phase.as_deref(), stored), (Some("Completed"), Some(24)));
    assert!(rig.kubectl(&["delete", "cap", "web-and-dns"], None).status.success());
    let deleted: bool = sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM sessions WHERE namespace = $1")
        .bind(&rig.namespace.name)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(deleted, "the mirror still shows a deleted session as live");

    // Created again under the same name: a new capture. With the old session's counts it would
    // reach maxPackets at once and end without capturing anything. Kubernetes stamps creation to
    // the second, and sniffers count for a session when first seen at or after its creation: a
    // session created again within the second its predecessor's sniffer was first seen cannot be
    // told from it, so the second is let pass (here everything happens within one).
    wait_until("a second past the old sniffer's first batch", DEADLINE, || async {
        let past: Option<bool> = sqlx::query_scalar(
            "SELECT now() >= date_trunc('second', max(first_seen)) + interval '1 second' \
             FROM sniffer_counters WHERE session = $1",
        )
        .bind(&session)
        .fetch_one(&pool)
        .await
        .ok()?;
        past.filter(|past| *past).map(|_| ())
    })
    .await;
    rig.apply(&manifest);
    rig.wait_phase("web-and-dns", "Capturing").await;
    assert_eq!(
        rig.status("web-and-dns", "packets"),
        serde_json::json!({"captured": 0, "deduplicated": 0, "dropped": 0, "stored": 0}),
        "the new session counts only its own sniffers"
    );
}
