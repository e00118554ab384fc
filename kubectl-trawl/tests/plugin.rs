//! `kubectl trawl` on the test control plane with the real operator (kwok nodes run the
//! sniffers and parsers, so sessions turn Ready): found by kubectl as a plugin on the PATH, `tap
//! deploy/web` makes a session that selects exactly the Deployment's pods, waits for Ready, and on
//! Ctrl-C removes it and says what it captured; `sessions` lists it; `stop` removes a kept one;
//! mistakes a user makes get messages they can act on.
//!
//! Run (after `bash hack/services.sh` and `bash hack/control-plane/build.sh`):
//! `cargo test -p kubectl-trawl --test plugin`

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::process::{Service, free_port, workspace_binary};
use testkit::rabbitmq::TestVhost;
use testkit::wait_until;

const DEADLINE: Duration = Duration::from_secs(120);

/// `kubectl ARGS` with the plugin on the PATH, as a user who ran `cargo install` has it.
fn kubectl(namespace: &TestNamespace, args: &[&str]) -> Command {
    let plugin = workspace_binary("kubectl-trawl", "kubectl-trawl");
    let path = format!(
        "{}:{}",
        plugin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // No flags before the plugin's name (kubectl refuses them): the kubeconfig comes from the
    // environment, as a user's does.
    let mut command = Command::new(testkit::control_plane::assets_dir().join("kubectl"));
    command
        .env("PATH", path)
        .env("KUBECONFIG", &namespace.control_plane.kubeconfig)
        .args(args);
    command
}

fn run(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run kubectl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn deploy(namespace: &TestNamespace, name: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "front"}},
                "spec": {
                    "containers": [{"name": "main", "image": "registry.invalid/fake:1"}],
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
                }
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(namespace.client.clone(), &namespace.name)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
}

fn sessions(namespace: &TestNamespace) -> Vec<Value> {
    let output = run({
        let mut command = namespace.kubectl();
        command.args(["get", "cap", "-o", "json"]);
        command
    });
    let list: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// A kubeconfig for a ServiceAccount that may read Deployments and Pods in the namespace and
/// nothing else (no CaptureSessions).
fn watcher_kubeconfig(namespace: &TestNamespace) -> std::path::PathBuf {
    let ns = namespace.name.as_str();
    for args in [
        vec!["create", "serviceaccount", "watcher"],
        vec![
            "create",
            "role",
            "watcher",
            "--verb=get,list",
            "--resource=deployments.apps,pods",
        ],
        vec![
            "create",
            "rolebinding",
            "watcher",
            "--role=watcher",
            &format!("--serviceaccount={ns}:watcher"),
        ],
    ] {
        let mut command = namespace.kubectl();
        command.args(&args);
        let output = run(command);
        assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    }
    let mut token = namespace.kubectl();
    token.args(["create", "token", "watcher"]);
    let token = text(&run(token).stdout).trim().to_owned();
    let path = std::env::temp_dir().join(format!("trawl-watcher-{ns}.kubeconfig"));
    std::fs::copy(&namespace.control_plane.kubeconfig, &path).unwrap();
    for args in [
        vec!["config", "set-credentials", "watcher", &format!("--token={token}")],
        vec!["config", "set-context", "--current", "--user=watcher"],
    ] {
        let mut command = Command::new(testkit::control_plane::assets_dir().join("kubectl"));
        command.env("KUBECONFIG", &path).args(&args);
        let output = run(command);
        assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    }
    path
}

#[tokio::test]
async fn tap_captures_a_deployment_until_ctrl_c_and_cleans_up() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;
    let vhost = TestVhost::create();
    let mut operator = Command::new(workspace_binary("operator", "trawl-operator"));
    operator
        .env("KUBECONFIG", &control_plane.kubeconfig)
        .args(["--amqp-url", &vhost.amqp_url, "--watch-namespace", &namespace.name])
        .args(["--namespace", &namespace.name])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    let _operator = Service::start("trawl-operator", operator);
    deploy(&namespace, "web").await;
    deploy(&namespace, "db").await;
    wait_until("both Deployments' pods on nodes", DEADLINE, || async {
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(namespace.client.clone(), &namespace.name)
            .list(&Default::default())
            .await
            .ok()?;
        let placed = pods
            .items
            .iter()
            .filter(|pod| pod.spec.as_ref().and_then(|spec| spec.node_name.as_ref()).is_some())
            .count();
        (placed == 4).then_some(())
    })
    .await;

    // Mistakes first: each says what to do.
    for (args, complaint) in [
        (vec!["tap", "deploy/missing"], "deployment missing not found"),
        (vec!["tap", "-l", "app=nothing"], "no pods match -l app=nothing"),
        (vec!["tap", "svc/web"], "cannot be tapped"),
        (vec!["tap"], "name what to tap"),
        (vec!["stop", "nothing-here"], "no capture session nothing-here"),
    ] {
        let mut full = vec!["trawl"];
        full.extend(&args);
        full.extend(["-n", &namespace.name]);
        let output = run(kubectl(&namespace, &full));
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            text(&output.stderr).contains(complaint),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(sessions(&namespace).is_empty(), "a mistake left a session behind");

    // Someone who may look at the workloads but not capture is told so, in the API server's words.
    let watcher = watcher_kubeconfig(&namespace);
    let mut forbidden = kubectl(&namespace, &["trawl", "tap", "deploy/web", "-n", &namespace.name]);
    forbidden.env("KUBECONFIG", &watcher);
    let output = run(forbidden);
    assert!(!output.status.success(), "a user without the right started a capture");
    let error = text(&output.stderr);
    assert!(
        error.contains(&format!("you may not capture in namespace {}", namespace.name)) && error.contains("forbidden"),
        "{error}"
    );
    let _ = std::fs::remove_file(&watcher);
    assert!(sessions(&namespace).is_empty());

    // tap deploy/web: Ready, with exactly the Deployment's selector.
    let mut tap = kubectl(&namespace, &["trawl", "tap", "deploy/web", "-n", &namespace.name]);
    tap.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = tap.spawn().expect("start kubectl trawl tap");
    let (lines, received) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let out_lines = lines.clone();
    std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(out_lines.send(l)))
    });
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| drop(lines.send(l))));
    let mut said = Vec::new();
    let started = Instant::now();
    while !said.iter().any(|line: &String| line.starts_with("Capturing (Ctrl-C")) {
        let line = received
            .recv_timeout(DEADLINE.saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("tap never said it was capturing: {said:?}"));
        said.push(line);
    }
    assert!(
        said.iter()
            .any(|line| line.starts_with("Tapping deploy/web: 2 pods on")),
        "{said:?}"
    );
    let tapped = sessions(&namespace);
    assert_eq!(tapped.len(), 1, "{tapped:?}");
    let session = &tapped[0];
    let name = session["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("tap-web-"), "{name}");
    assert_eq!(session["metadata"]["labels"]["trawl.dev/tapped-by"], "kubectl-trawl");
    assert_eq!(
        session["spec"]["target"]["podSelector"]["matchLabels"],
        json!({"app": "web"})
    );

    let listed = run(kubectl(&namespace, &["trawl", "sessions", "-n", &namespace.name]));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    let row = table
        .lines()
        .find(|line| line.contains(&name))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("Capturing") && row.contains("True") && row.ends_with("tap"),
        "{row}"
    );

    // Ctrl-C: the session goes, and the user is told what it captured.
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(interrupted.is_ok_and(|status| status.success()));
    let status = child.wait().unwrap();
    assert!(status.success(), "tap exited with {status}");
    let rest: Vec<String> = received.try_iter().collect();
    assert!(
        rest.iter()
            .any(|line| line.starts_with(&format!("Removed {}/{name}: ", namespace.name)) && line.contains("captured")),
        "{rest:?}"
    );
    wait_until("the tapped session to be gone", DEADLINE, || async {
        sessions(&namespace).is_empty().then_some(())
    })
    .await;

    // --keep leaves it for `stop`; -l selects by labels.
    let mut keep = kubectl(
        &namespace,
        &[
            "trawl",
            "tap",
            "-l",
            "app=db,tier=front",
            "--keep",
            "--duration",
            "10m",
            "-n",
            &namespace.name,
        ],
    );
    keep.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = keep.spawn().unwrap();
    let name = wait_until("the kept session to exist", DEADLINE, || async {
        sessions(&namespace)
            .first()
            .and_then(|session| session["metadata"]["name"].as_str().map(str::to_owned))
    })
    .await;
    assert_eq!(
        sessions(&namespace)[0]["spec"]["target"]["podSelector"]["matchLabels"],
        json!({"app": "db", "tier": "front"})
    );
    assert_eq!(sessions(&namespace)[0]["spec"]["duration"], "10m");
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(interrupted.is_ok_and(|status| status.success()));
    assert!(child.wait().unwrap().success());
    assert_eq!(sessions(&namespace).len(), 1, "--keep keeps the session");
    let stopped = run(kubectl(&namespace, &["trawl", "stop", &name, "-n", &namespace.name]));
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(text(&stopped.stdout).starts_with(&format!("Removed {}/{name}", namespace.name)));
    assert!(sessions(&namespace).is_empty());
}
