//! The Helm chart on the real control plane: it lints, renders for the API server with default
//! and with external-services values, its schema rejects bad values, its CRD is the generated one,
//! its Argo CD health script answers as documented, and the operator reconciles a session to
//! Ready with nothing but the chart's own ServiceAccount and RBAC.
//!
//! Run (after `bash hack/services.sh` and `bash hack/control-plane/build.sh`):
//! `cargo test -p operator --test chart`

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::control_plane::ControlPlane;
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port};
use testkit::rabbitmq::TestVhost;
use testkit::{repo_root, unique_suffix, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);

fn run(mut command: Command, stdin: Option<&[u8]>) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the command");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn chart() -> String {
    repo_root().join("charts/trawl").display().to_string()
}

/// `helm template` of the chart with `--set` values.
fn template(release: &str, namespace: &str, values: &[&str]) -> Output {
    let mut helm = ControlPlane::shared().helm();
    helm.args(["template", release, &chart(), "--namespace", namespace]);
    for value in values {
        helm.args(["--set", value]);
    }
    run(helm, None)
}

/// The rendered chart split as `kubectl apply` takes it: the release namespace's documents, less
/// those `leave_out` names (a `kind: ...` line), and those the chart places in kube-system (the
/// API's RoleBinding to read the front proxy's ConfigMap), which `apply -n` refuses beside them.
fn split_rendered(rendered: &[u8], leave_out: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let (mut release, mut kube_system) = (String::new(), String::new());
    for document in text(rendered).split("\n---\n") {
        let has_line = |wanted: &str| document.lines().any(|line| line.trim() == wanted);
        if leave_out.iter().any(|kind| has_line(kind)) {
            continue;
        }
        let into = if has_line("namespace: kube-system") {
            &mut kube_system
        } else {
            &mut release
        };
        into.push_str(document);
        into.push_str("\n---\n");
    }
    (release.into_bytes(), kube_system.into_bytes())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const EXTERNAL: &[&str] = &[
    "postgresql.enabled=false",
    "rabbitmq.enabled=false",
    "database.url=postgres://trawl:secret@db.example.internal:5432/trawl",
    "broker.url=amqp://trawl:secret@mq.example.internal:5672/%2f",
    "api.ingress.enabled=true",
    "api.auth=tokens",
    "api.tokensSecret=trawl-tokens",
    "operator.keda=true",
];

#[tokio::test]
async fn the_chart_lints_renders_for_the_api_server_and_rejects_bad_values() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;

    let mut lint = control_plane.helm();
    lint.args(["lint", "--strict", &chart()]);
    let lint = run(lint, None);
    assert!(
        lint.status.success(),
        "helm lint: {}{}",
        text(&lint.stdout),
        text(&lint.stderr)
    );

    for (what, values) in [("default values", &[][..]), ("external services", EXTERNAL)] {
        let rendered = template("lint", &namespace.name, values);
        assert!(rendered.status.success(), "{what}: {}", text(&rendered.stderr));
        let (in_release, in_kube_system) = split_rendered(&rendered.stdout, &[]);
        for (mut apply, documents) in [
            (namespace.kubectl(), in_release),
            (control_plane.kubectl(), in_kube_system),
        ] {
            apply.args(["apply", "--dry-run=server", "-f", "-"]);
            if documents.is_empty() {
                continue;
            }
            let applied = run(apply, Some(&documents));
            assert!(
                applied.status.success(),
                "{what}: the API server refused the chart: {}",
                text(&applied.stderr)
            );
        }
        let kinds = text(&rendered.stdout);
        let has_databases = kinds.contains("kind: StatefulSet");
        assert_eq!(
            has_databases,
            values.is_empty(),
            "{what}: bundled databases only by default"
        );
    }

    for (values, complaint) in [
        (&["operator.replica=2"][..], "replica"),
        (&["postgresql.enabled=false"][..], "database"),
        (&["api.service.type=Internal"][..], "type"),
        (&["operator.scaleInterval=soon"][..], "scaleInterval"),
    ] {
        let rendered = template("bad", &namespace.name, values);
        assert!(!rendered.status.success(), "{values:?} was accepted");
        let error = text(&rendered.stderr);
        assert!(
            error.contains("schema") && error.contains(complaint),
            "{values:?}: {error}"
        );
    }

    let monitored = template("lint", &namespace.name, &["serviceMonitor.enabled=true"]);
    assert!(text(&monitored.stdout).contains("kind: ServiceMonitor"));
    assert!(!text(&template("lint", &namespace.name, &[]).stdout).contains("kind: ServiceMonitor"));

    // The Prometheus Operator's kinds: with its CRDs (`auto`), when asked, and not otherwise.
    let defaults = text(&template("lint", &namespace.name, &[]).stdout);
    assert!(!defaults.contains("kind: PodMonitor") && !defaults.contains("kind: PrometheusRule"));
    let mut with_crds = control_plane.helm();
    with_crds.args(["template", "lint", &chart(), "--namespace", &namespace.name]);
    with_crds.args(["--api-versions", "monitoring.coreos.com/v1/PodMonitor"]);
    with_crds.args(["--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]);
    let with_crds = text(&run(with_crds, None).stdout);
    assert!(with_crds.contains("kind: PodMonitor") && with_crds.contains("kind: PrometheusRule"));
    assert!(with_crds.contains("alert: TrawlDnsFailureRatioHigh"), "{with_crds}");
    let off = template(
        "lint",
        &namespace.name,
        &["podMonitor.enabled=false", "prometheusRule.enabled=false"],
    );
    assert!(!text(&off.stdout).contains("kind: PodMonitor"));
    let bad = template("bad", &namespace.name, &["podMonitor.enabled=maybe"]);
    assert!(!bad.status.success(), "podMonitor.enabled=maybe was accepted");
    // The dashboard's ConfigMap carries JSON Grafana can load, with the sidecar's label.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("charts/trawl/files/dashboard.json")).unwrap())
            .unwrap();
    assert_eq!(dashboard["uid"], "trawl-traffic");
    assert!(defaults.contains("grafana_dashboard: \"1\"") && defaults.contains("trawl-traffic.json"));

    let generated = std::fs::read_to_string(repo_root().join("crds/capturesession.yaml")).unwrap();
    let packaged = std::fs::read_to_string(repo_root().join("charts/trawl/crds/capturesession.yaml")).unwrap();
    assert!(
        generated == packaged,
        "charts/trawl/crds/capturesession.yaml differs from crds/capturesession.yaml: copy it over"
    );
}

#[test]
fn the_argo_cd_health_script_reads_the_conditions() {
    let script = repo_root().join("charts/trawl/gitops/argocd-health.lua");
    let cases = [
        (
            r#"{metadata={generation=2}, status={observedGeneration=2, conditions={{type="Ready", status="True", message="2 of 2 sniffers ready"}}}}"#,
            "Healthy",
        ),
        (
            r#"{metadata={generation=3}, status={observedGeneration=2, conditions={{type="Ready", status="True"}}}}"#,
            "Progressing",
        ),
        (
            r#"{metadata={generation=1}, status={observedGeneration=1, conditions={{type="Ready", status="False"}, {type="Stalled", status="True", reason="InvalidFilter", message="spec.filter is not valid"}}}}"#,
            "Degraded",
        ),
        (
            r#"{metadata={generation=1}, status={observedGeneration=1, phase="Pending", conditions={{type="Ready", status="False", message="1 of 2 sniffers ready"}, {type="Reconciling", status="True"}}}}"#,
            "Progressing",
        ),
        (r#"{metadata={generation=1}}"#, "Progressing"),
    ];
    for (object, expected) in cases {
        let program = format!(
            "obj = {object}\nlocal health = dofile({:?})\nprint(health.status .. '|' .. health.message)",
            script.display().to_string()
        );
        let output = Command::new("lua5.4")
            .args(["-e", &program])
            .output()
            .expect("lua5.4 (apt install lua5.4)");
        assert!(output.status.success(), "{}", text(&output.stderr));
        let answer = text(&output.stdout);
        assert_eq!(answer.split('|').next(), Some(expected), "{object}: {answer}");
    }
}

#[tokio::test]
async fn the_operator_reconciles_under_the_charts_own_service_account_and_rbac() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;
    let vhost = TestVhost::create();
    let database = TestDatabase::create().await;
    let release = format!("trawl-{}", &unique_suffix()[..6]);
    let database_url = format!("database.url={}", database.url);
    let broker_url = format!("broker.url={}", vhost.amqp_url);
    let rendered = template(
        &release,
        &namespace.name,
        &[
            "postgresql.enabled=false",
            "rabbitmq.enabled=false",
            &database_url,
            &broker_url,
        ],
    );
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    // No trawl-api runs here to answer for the APIService: left out, since an unavailable
    // aggregated API stalls namespace deletion on the shared control plane.
    let (in_release, in_kube_system) = split_rendered(&rendered.stdout, &["kind: APIService"]);
    for (mut apply, documents) in [
        (namespace.kubectl(), in_release),
        (control_plane.kubectl(), in_kube_system),
    ] {
        apply.args(["apply", "-f", "-"]);
        let applied = run(apply, Some(&documents));
        assert!(applied.status.success(), "{}", text(&applied.stderr));
    }

    // A kubeconfig whose only credential is a token of the chart's operator ServiceAccount.
    let mut token = namespace.kubectl();
    token.args(["create", "token", &format!("{release}-operator"), "--duration=1h"]);
    let token = run(token, None);
    assert!(token.status.success(), "{}", text(&token.stderr));
    let kubeconfig = std::env::temp_dir().join(format!("{release}.kubeconfig"));
    std::fs::copy(&control_plane.kubeconfig, &kubeconfig).unwrap();
    let kubectl = |args: &[&str]| {
        let mut command = Command::new(control_plane.assets.join("kubectl"));
        command.arg("--kubeconfig").arg(&kubeconfig).args(args);
        run(command, None)
    };
    let set = kubectl(&[
        "config",
        "set-credentials",
        "operator",
        &format!("--token={}", text(&token.stdout).trim()),
    ]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    let context = kubectl(&["config", "set-context", "--current", "--user=operator"]);
    assert!(context.status.success(), "{}", text(&context.stderr));
    let who = kubectl(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(
        text(&who.stdout),
        format!("system:serviceaccount:{}:{release}-operator", namespace.name)
    );

    let mut operator = Command::new(env!("CARGO_BIN_EXE_trawl-operator"));
    operator
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", &namespace.name)
        .args(["--amqp-url", &vhost.amqp_url, "--database-url", &database.url])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    let _operator = Service::start("trawl-operator", operator);

    // Sessions live in a namespace of their own, as a team's would: the operator writes nothing
    // there but their status and Events; their children go to the release's namespace.
    let apps = control_plane.namespace().await;
    let example = std::fs::read_to_string(repo_root().join("examples/capture.yaml")).unwrap();
    let mut apply = apps.kubectl();
    apply.args(["apply", "-f", "-"]);
    assert!(run(apply, Some(example.as_bytes())).status.success());
    let mut wait = apps.kubectl();
    wait.args(["wait", "--for=condition=Ready", "cap/web-and-dns", "--timeout=120s"]);
    let waited = run(wait, None);
    let mut describe = namespace.kubectl();
    describe.args(["get", "ds,deploy,events.events.k8s.io", "-o", "wide"]);
    assert!(
        waited.status.success(),
        "not Ready under the chart's RBAC: {}\n{}",
        text(&waited.stderr),
        text(&run(describe, None).stdout)
    );
    let children = format!("{}-web-and-dns", apps.name);
    for kind in ["daemonset", "deployment", "secret"] {
        let suffix = match kind {
            "daemonset" => "sniffer",
            "deployment" => "parser",
            _ => "credentials",
        };
        let mut get = namespace.kubectl();
        get.args(["get", kind, &format!("{children}-{suffix}"), "-o", "name"]);
        assert!(
            run(get, None).status.success(),
            "the session's {kind} in the release's namespace"
        );
    }
    let mut in_apps = apps.kubectl();
    in_apps.args([
        "get",
        "daemonsets,deployments,secrets,configmaps",
        "-l",
        "app.kubernetes.io/managed-by=trawl-operator",
        "-o",
        "name",
    ]);
    let in_apps = run(in_apps, None);
    assert_eq!(
        text(&in_apps.stdout).trim(),
        "",
        "nothing of Trawl's in the session's namespace"
    );
    // The operator's rights there: none on Secrets, ConfigMaps or workloads.
    for (verb, resource, namespace_name, allowed) in [
        ("patch", "secrets", apps.name.as_str(), "no"),
        ("create", "configmaps", apps.name.as_str(), "no"),
        ("create", "daemonsets.apps", apps.name.as_str(), "no"),
        ("patch", "secrets", namespace.name.as_str(), "yes"),
        ("list", "secrets", namespace.name.as_str(), "no"),
    ] {
        let answer = kubectl(&["auth", "can-i", verb, resource, "-n", namespace_name]);
        assert_eq!(
            text(&answer.stdout).trim(),
            allowed,
            "the operator may {verb} {resource} in {namespace_name}"
        );
    }
    // Events need their own RBAC rule: the Created event proves it.
    wait_until("the Created event", DEADLINE, || async {
        let mut events = apps.kubectl();
        events.args(["get", "events.events.k8s.io", "-o", "jsonpath={.items[*].reason}"]);
        text(&run(events, None).stdout).contains("Created").then_some(())
    })
    .await;
    // The endpoint history needs watching pods, Services and nodes and reading ReplicaSets: the
    // parser's pod named by its Deployment proves all but the nodes, which their rows prove.
    let pool = database.pool().await;
    wait_until(
        "the endpoint history of the parser's pod, a Service and a node",
        DEADLINE,
        || async {
            let kinds: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT CASE WHEN kind = 'pod' AND workload_kind = 'Deployment' THEN 'pod of a Deployment' \
             ELSE kind END FROM endpoint_history ORDER BY 1",
            )
            .fetch_all(&pool)
            .await
            .ok()?;
            (kinds.iter().any(|k| k == "pod of a Deployment")
                && kinds.iter().any(|k| k == "service")
                && kinds.iter().any(|k| k == "node"))
            .then_some(())
        },
    )
    .await;

    // A targeted session needs the node labels, the targets ConfigMap and the sniffers'
    // ServiceAccount, Role and RoleBinding: its ConfigMap holding the pod proves the operator may
    // create them all (a Role only with the permissions it grants).
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "web", "image": "registry.invalid/web:1"}],
                 "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}]}}"#;
    let targeted = r#"{"apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession", "metadata": {"name": "targeted"},
        "spec": {"target": {"podSelector": {"matchLabels": {"app": "web"}}},
                 "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                 "parsers": {"autoscaler": "none", "minReplicas": 0, "maxReplicas": 1, "shards": 1}}}"#;
    for object in [pod, targeted] {
        let mut apply = apps.kubectl();
        apply.args(["apply", "-f", "-"]);
        let applied = run(apply, Some(object.as_bytes()));
        assert!(applied.status.success(), "{}", text(&applied.stderr));
    }
    wait_until("the targeted session's ConfigMap for kwok-node-0", DEADLINE, || async {
        let mut get = namespace.kubectl();
        get.args([
            "get",
            "configmap",
            &format!("{}-targeted-targets", apps.name),
            "-o",
            "jsonpath={.data.kwok-node-0}",
        ]);
        (!text(&run(get, None).stdout).trim().is_empty()).then_some(())
    })
    .await;

    // The sniffers' ServiceAccount may watch their targets ConfigMap and nothing else: a real
    // sniffer under its token narrows to the pod, and the token cannot read another ConfigMap.
    let sniffer_kubeconfig = std::env::temp_dir().join(format!("{release}-sniffer.kubeconfig"));
    write_kubeconfig(
        control_plane,
        &sniffer_kubeconfig,
        &service_account_token(&namespace, &format!("{}-targeted-targets", apps.name), None),
    );
    let metrics_port = free_port();
    let mut sniffer = Command::new(testkit::process::workspace_binary("sniffer", "trawl-sniffer"));
    sniffer
        .env("KUBECONFIG", &sniffer_kubeconfig)
        .args(["--session", &format!("{}/targeted", apps.name), "--node", "kwok-node-0"])
        .args([
            "--targets-configmap",
            &format!("{}/{}-targeted-targets", namespace.name, apps.name),
        ])
        .args([
            "--interfaces",
            "lo",
            "--routing-key",
            "chart-test",
            "--amqp-url",
            &vhost.amqp_url,
        ])
        .args(["--listen", &format!("127.0.0.1:{metrics_port}")]);
    let sniffer = Service::start("trawl-sniffer", sniffer);
    wait_until("the sniffer to narrow to the targeted pod", DEADLINE, || async {
        let text = testkit::metrics::scrape(metrics_port)?;
        (testkit::metrics::value(&text, "trawl_sniffer_targets")? == 1).then_some(())
    })
    .await;
    drop(sniffer);
    let mut other = Command::new(control_plane.assets.join("kubectl"));
    other.arg("--kubeconfig").arg(&sniffer_kubeconfig).args([
        "-n",
        &namespace.name,
        "get",
        "configmap",
        "kube-root-ca.crt",
    ]);
    let refused = other.output().unwrap();
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("forbidden"),
        "the sniffers' token read another ConfigMap: {}",
        text(&refused.stderr)
    );
    let _ = std::fs::remove_file(&sniffer_kubeconfig);

    // The API with Kubernetes auth under its own ServiceAccount: it may review tokens and access.
    let api_kubeconfig = std::env::temp_dir().join(format!("{release}-api.kubeconfig"));
    let api_token = service_account_token(&namespace, &format!("{release}-api"), None);
    write_kubeconfig(control_plane, &api_kubeconfig, &api_token);
    let port = free_port();
    let mut api = Command::new(testkit::process::workspace_binary("api", "trawl-api"));
    api.env("KUBECONFIG", &api_kubeconfig)
        .args([
            "--database-url",
            &database.url,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--auth", "kubernetes", "--token-audiences", "trawl"]);
    let _api = Service::start("trawl-api", api);
    // The operator's ServiceAccount may get every CaptureSession: it sees the mirrored sessions.
    let caller = service_account_token(&namespace, &format!("{release}-operator"), Some("trawl"));
    wait_until("the API to answer with both sessions", DEADLINE, || async {
        let mut response = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/sessions"))
            .header("Authorization", &format!("Bearer {caller}"))
            .call()
            .ok()?;
        let body: serde_json::Value = response.body_mut().read_json().ok()?;
        let names: Vec<String> = body["items"]
            .as_array()?
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        (names.contains(&"web-and-dns".to_owned()) && names.contains(&"targeted".to_owned())).then_some(())
    })
    .await;
    // A token for another audience is not taken.
    let wrong_audience = service_account_token(&namespace, &format!("{release}-operator"), None);
    let refused = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/sessions"))
        .header("Authorization", &format!("Bearer {wrong_audience}"))
        .call();
    assert!(matches!(refused, Err(ureq::Error::StatusCode(401))), "{refused:?}");
    let _ = std::fs::remove_file(&api_kubeconfig);

    // Deleting a session deletes its children in the release's namespace (by label: no owner
    // reference crosses namespaces), under the same RBAC.
    let mut delete = apps.kubectl();
    delete.args(["delete", "cap", "targeted", "--timeout=60s"]);
    let deleted = run(delete, None);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    let mut left = namespace.kubectl();
    left.args([
        "get",
        "daemonsets,deployments,secrets,configmaps,serviceaccounts,roles,rolebindings",
        "-l",
        &format!("trawl.dev/session-namespace={},trawl.dev/session=targeted", apps.name),
        "-o",
        "name",
    ]);
    let left = run(left, None);
    assert_eq!(text(&left.stdout).trim(), "", "the deleted session's children are gone");
    let _ = std::fs::remove_file(&kubeconfig);
}

/// `kubectl create token`, for `audience` if given.
fn service_account_token(
    namespace: &testkit::control_plane::TestNamespace,
    account: &str,
    audience: Option<&str>,
) -> String {
    let mut token = namespace.kubectl();
    token.args(["create", "token", account, "--duration=1h"]);
    if let Some(audience) = audience {
        token.args(["--audience", audience]);
    }
    let token = run(token, None);
    assert!(token.status.success(), "{}", text(&token.stderr));
    text(&token.stdout).trim().to_owned()
}

/// A copy of the control plane's kubeconfig whose only credential is `token`.
fn write_kubeconfig(control_plane: &ControlPlane, path: &std::path::Path, token: &str) {
    std::fs::copy(&control_plane.kubeconfig, path).unwrap();
    for args in [
        vec![
            "config".to_owned(),
            "set-credentials".into(),
            "sa".into(),
            format!("--token={token}"),
        ],
        vec![
            "config".into(),
            "set-context".into(),
            "--current".into(),
            "--user=sa".into(),
        ],
    ] {
        let mut command = Command::new(control_plane.assets.join("kubectl"));
        command.arg("--kubeconfig").arg(path).args(&args);
        let output = run(command, None);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}
