//! Capturing is a right (issue #29 item 5), on the test control plane: the chart's
//! ValidatingAdmissionPolicy and ClusterRoles, and several users (ServiceAccounts, by
//! impersonation). An analyst of a namespace may capture that namespace's pods and nothing wider;
//! a user who may create CaptureSessions but lacks `capture` is refused with the policy's message;
//! a node-wide or cross-namespace capture needs the cluster-wide right; changing only labels
//! needs none.
//!
//! Run (after `bash hack/control-plane/build.sh`): `cargo test -p operator --test capture_right`

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use testkit::control_plane::{ControlPlane, TestNamespace};
use testkit::{repo_root, unique_suffix};

fn run(mut command: Command, stdin: Option<&str>) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run a command");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what}: {}", text(&output.stderr));
    text(&output.stdout)
}

/// A session in `namespace` with `target` (None: node-wide), created as `user`.
fn create_as(namespace: &TestNamespace, user: &str, name: &str, target: Option<Value>) -> Output {
    let mut session = json!({
        "apiVersion": "trawl.dev/v1alpha1",
        "kind": "CaptureSession",
        "metadata": {"name": name, "namespace": namespace.name},
        "spec": {"filter": "tcp port 80"},
    });
    if let Some(target) = target {
        session["spec"]["target"] = target;
    }
    let mut kubectl = namespace.kubectl();
    kubectl.args(["create", "-f", "-", "--as", user]);
    run(kubectl, Some(&session.to_string()))
}

#[tokio::test]
async fn capturing_needs_the_capture_right_where_the_capture_reaches() {
    let control_plane = ControlPlane::shared();
    control_plane.install_crd().await;
    let namespace = control_plane.namespace().await;
    let ns = namespace.name.clone();
    let release = format!("cr{}", &unique_suffix()[..8]);
    let fullname = format!("{release}-trawl");

    // The chart's policy and roles; the binding narrowed to this test's namespace, so that tests
    // running beside it on the shared control plane are not affected.
    let mut helm = control_plane.helm();
    helm.args(["template", &release])
        .arg(repo_root().join("charts/trawl"))
        .args(["--namespace", &ns])
        .args([
            "--show-only",
            "templates/admission.yaml",
            "--show-only",
            "templates/roles.yaml",
        ]);
    let rendered = ok(run(helm, None), "helm template");
    let mut label = namespace.kubectl();
    label.args([
        "label",
        "namespace",
        &ns,
        &format!("trawl-test-capture-right={release}"),
    ]);
    ok(run(label, None), "label the namespace");
    let narrowed = rendered.replace(
        "  validationActions: [Deny]",
        &format!(
            "  validationActions: [Deny]\n  matchResources:\n    namespaceSelector:\n      matchLabels: {{trawl-test-capture-right: {release}}}"
        ),
    );
    assert_ne!(narrowed, rendered, "the binding was narrowed");
    let mut apply = control_plane.kubectl();
    apply.args(["apply", "-f", "-"]);
    ok(run(apply, Some(&narrowed)), "apply the policy and roles");

    let account = |name: &str| format!("system:serviceaccount:{ns}:{name}");
    for args in [
        vec!["create", "serviceaccount", "alice"],
        vec!["create", "serviceaccount", "bob"],
        vec!["create", "serviceaccount", "carol"],
        vec![
            "create",
            "rolebinding",
            "alice-analyst",
            &format!("--clusterrole={fullname}-analyst"),
            &format!("--serviceaccount={ns}:alice"),
        ],
        vec![
            "create",
            "rolebinding",
            "carol-analyst",
            &format!("--clusterrole={fullname}-analyst"),
            &format!("--serviceaccount={ns}:carol"),
        ],
        vec![
            "create",
            "role",
            "session-writer",
            "--verb=create,get,list",
            "--resource=capturesessions.trawl.dev",
        ],
        vec![
            "create",
            "rolebinding",
            "bob-writer",
            "--role=session-writer",
            &format!("--serviceaccount={ns}:bob"),
        ],
    ] {
        let mut kubectl = namespace.kubectl();
        kubectl.args(&args);
        ok(run(kubectl, None), &format!("{args:?}"));
    }
    let carol_cluster = format!("{release}-carol-cluster-capturer");
    let mut bind = control_plane.kubectl();
    bind.args(["create", "clusterrolebinding", &carol_cluster])
        .arg(format!("--clusterrole={fullname}-cluster-capturer"))
        .arg(format!("--serviceaccount={ns}:carol"));
    ok(run(bind, None), "bind carol cluster-wide");

    // The policy takes a moment to be loaded by the API server: until then everything passes.
    let pods = json!({"podSelector": {"matchLabels": {"app": "web"}}});
    testkit::wait_until(
        "the policy to refuse bob",
        std::time::Duration::from_secs(60),
        || async {
            let output = create_as(&namespace, &account("bob"), "probe", Some(pods.clone()));
            if output.status.success() {
                let mut delete = namespace.kubectl();
                delete.args(["delete", "cap", "probe", "--wait=false"]);
                run(delete, None);
                return None;
            }
            Some(())
        },
    )
    .await;

    // alice, an analyst of this namespace: its pods yes, wider no.
    ok(
        create_as(&namespace, &account("alice"), "web", Some(pods.clone())),
        "alice captures her namespace's pods",
    );
    let node_wide = create_as(&namespace, &account("alice"), "everything", None);
    assert!(!node_wide.status.success(), "alice captured node-wide");
    let error = text(&node_wide.stderr);
    assert!(
        error.contains("cluster-wide") && error.contains(&account("alice")),
        "{error}"
    );
    let other_namespaces = json!({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}});
    let wider = create_as(
        &namespace,
        &account("alice"),
        "elsewhere",
        Some(other_namespaces.clone()),
    );
    assert!(!wider.status.success(), "alice captured other namespaces");

    // bob may create CaptureSessions but not capture.
    let refused = create_as(&namespace, &account("bob"), "bobs", Some(pods.clone()));
    assert!(!refused.status.success(), "bob captured without the right");
    let error = text(&refused.stderr);
    assert!(
        error.contains(&format!("capturing in namespace {ns} needs the capture verb")),
        "{error}"
    );

    // carol holds the cluster-wide right too.
    ok(
        create_as(&namespace, &account("carol"), "everything", None),
        "carol captures node-wide",
    );
    ok(
        create_as(&namespace, &account("carol"), "elsewhere", Some(other_namespaces)),
        "carol captures other namespaces",
    );

    // Labels are not the capture: alice may label her session; changing its spec to node-wide she may not.
    let mut label = namespace.kubectl();
    label.args(["label", "cap", "web", "team=shop", "--as", &account("alice")]);
    ok(run(label, None), "alice labels her session");
    let mut widen = namespace.kubectl();
    widen.args([
        "patch",
        "cap",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/target"}]"#,
        "--as",
        &account("alice"),
    ]);
    let widened = run(widen, None);
    assert!(!widened.status.success(), "alice widened her session to node-wide");

    // Cluster-scoped leftovers of this test.
    let mut cleanup = control_plane.kubectl();
    cleanup.args(["delete", "--ignore-not-found", "--wait=false", "-f", "-"]);
    run(cleanup, Some(&narrowed));
    let mut unbind = control_plane.kubectl();
    unbind.args(["delete", "clusterrolebinding", &carol_cluster, "--ignore-not-found"]);
    run(unbind, None);
}
