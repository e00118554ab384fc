//! The data API as the aggregated API `data.trawl.dev/v1` (issue #34 item 2): the real `trawl-api`
//! with `--auth kubernetes --aggregated-listen`, the test control plane's front-proxy certificates
//! (hack/control-plane/up.sh) and real `curl` as the API server's proxy. The identity in the
//! `X-Remote-*` headers is believed only from a client holding the front proxy's certificate, and
//! decides through SubjectAccessReviews exactly as a bearer token's owner does; the plain listener
//! ignores those headers. (The API server's own proxying, and `kubectl trawl` through it with a
//! certificate, a ServiceAccount and a user without rights, is the real-node test's.)
//!
//! Run (after `bash hack/services.sh`): `cargo test -p api --test aggregated`

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use testkit::control_plane::ControlPlane;
use testkit::postgres::TestDatabase;
use testkit::process::{Service, free_port};
use testkit::{repo_root, unique_suffix, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A self-signed serving certificate for 127.0.0.1, as the chart's is for the Service's name.
fn serving_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=trawl-api", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

struct Proxy<'a> {
    base: String,
    serving_ca: &'a Path,
    /// The client certificate and key curl presents.
    client: Option<(PathBuf, PathBuf)>,
}

impl Proxy<'_> {
    /// curl's exit status and the answer's status and body, as `user` in `groups`.
    fn get(&self, path: &str, user: Option<&str>, groups: &[&str]) -> (i32, u16, Value) {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(self.serving_ca);
        if let Some((cert, key)) = &self.client {
            curl.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(user) = user {
            curl.args(["-H", &format!("X-Remote-User: {user}")]);
        }
        for group in groups {
            curl.args(["-H", &format!("X-Remote-Group: {group}")]);
        }
        let output = curl.arg(format!("{}{path}", self.base)).output().expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            output.status.code().unwrap_or(-1),
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

fn session(namespace: &str, name: &str) -> crds::CaptureSession {
    let yaml = std::fs::read_to_string(repo_root().join("examples/capture.yaml")).unwrap();
    let mut session: crds::CaptureSession = serde_yaml::from_str(&yaml).unwrap();
    session.metadata.namespace = Some(namespace.into());
    session.metadata.name = Some(name.into());
    session.metadata.uid = Some(format!("{namespace}-{name}-uid"));
    session
}

#[tokio::test]
async fn the_front_proxys_identity_decides_and_nobody_else_can_claim_one() {
    let control_plane = ControlPlane::shared();
    let (a, b) = (control_plane.namespace().await, control_plane.namespace().await);
    // The chart's viewer role, bound to a user (not a ServiceAccount: the aggregated API's point).
    let release = format!("trawl-{}", &unique_suffix()[..6]);
    let roles = run(control_plane.helm().args([
        "template",
        &release,
        repo_root().join("charts/trawl").to_str().unwrap(),
        "--show-only",
        "templates/roles.yaml",
    ]))
    .stdout;
    let mut apply = control_plane.kubectl();
    apply.args(["apply", "-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = apply.stdout(std::process::Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &roles).unwrap();
    assert!(child.wait().unwrap().success(), "apply the chart's roles");
    let alice = format!("alice-{}", unique_suffix());
    run(a.kubectl().args([
        "create",
        "rolebinding",
        "alice",
        "--clusterrole",
        &format!("{release}-viewer"),
        "--user",
        &alice,
    ]));

    let database = TestDatabase::create().await;
    let dir = std::env::temp_dir().join(format!("trawl-aggregated-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let (serving_cert, serving_key) = serving_certificate(&dir, "serving");
    let (plain, aggregated) = (free_port(), free_port());
    let mut api = Command::new(env!("CARGO_BIN_EXE_trawl-api"));
    api.env("KUBECONFIG", &control_plane.kubeconfig)
        .args(["--database-url", &database.url])
        .args(["--listen", &format!("127.0.0.1:{plain}")])
        .args(["--auth", "kubernetes"])
        .args(["--aggregated-listen", &format!("127.0.0.1:{aggregated}")])
        .arg("--tls-cert-file")
        .arg(&serving_cert)
        .arg("--tls-key-file")
        .arg(&serving_key);
    let _api = Service::start("trawl-api", api);
    wait_until("the API to be ready", DEADLINE, || async {
        ureq::get(format!("http://127.0.0.1:{plain}/readyz"))
            .call()
            .ok()
            .map(|_| ())
    })
    .await;
    let pool = database.pool().await;
    for (namespace, name) in [(&a.name, "web"), (&b.name, "db")] {
        database::mirror_session(&pool, &session(namespace, name))
            .await
            .unwrap();
    }

    let pki = control_plane.pki();
    let base = format!("https://127.0.0.1:{aggregated}");
    let front_proxy = Proxy {
        base: base.clone(),
        serving_ca: &serving_cert,
        client: Some((pki.join("front-proxy-client.crt"), pki.join("front-proxy-client.key"))),
    };

    // Discovery, which the API server's availability check reads, needs no user.
    let (_, status, discovery) = front_proxy.get("/apis/data.trawl.dev/v1", None, &[]);
    assert_eq!(status, 200, "{discovery}");
    assert_eq!(discovery["kind"], "APIResourceList");
    assert_eq!(discovery["groupVersion"], "data.trawl.dev/v1");

    // The proxied user is the caller; `watch=true` (the plugin's, for the API server) is dropped.
    let (_, status, me) = front_proxy.get(
        "/apis/data.trawl.dev/v1/whoami?watch=true",
        Some(&alice),
        &["developers", "system:authenticated"],
    );
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], alice.as_str());
    assert_eq!(me["groups"], serde_json::json!(["developers", "system:authenticated"]));
    let listed = |user: &str| -> Vec<String> {
        let (_, status, sessions) = front_proxy.get(
            "/apis/data.trawl.dev/v1/sessions?watch=true",
            Some(user),
            &["system:authenticated"],
        );
        assert_eq!(status, 200, "{user}: {sessions}");
        sessions["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}/{}", s["namespace"].as_str().unwrap(), s["name"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(
        listed(&alice),
        [format!("{}/web", a.name)],
        "alice sees her namespace's session"
    );
    assert!(listed("mallory").is_empty(), "a user without rights sees nothing");
    let (_, status, _) = front_proxy.get(
        &format!("/apis/data.trawl.dev/v1/sessions/{}/db", b.name),
        Some(&alice),
        &["system:authenticated"],
    );
    assert_eq!(status, 403, "alice may not read another namespace's session");
    let (_, status, _) = front_proxy.get("/apis/data.trawl.dev/v1/sessions", None, &[]);
    assert_eq!(status, 401, "no user named, no caller");
    let (_, status, _) = front_proxy.get("/apis/metrics.k8s.io/v1beta1/nodes", Some(&alice), &[]);
    assert_eq!(status, 404, "only data.trawl.dev is served");

    // Only the front proxy's certificate gets through: not one its CA signed for another name,
    // not the cluster's admin (signed by the cluster's CA), not a client without one.
    // A client certificate the front proxy's CA signed for a name the API server does not allow.
    let other_name = testkit::certificates::client(
        &pki.join("front-proxy-ca.crt"),
        &pki.join("front-proxy-ca.key"),
        "not-the-front-proxy",
        &dir,
    );
    for (who, client) in [
        ("the front proxy CA's other name", Some(other_name)),
        (
            "the cluster CA's admin",
            Some((pki.join("admin.crt"), pki.join("admin.key"))),
        ),
        ("no client certificate", None),
    ] {
        let impostor = Proxy {
            base: base.clone(),
            serving_ca: &serving_cert,
            client,
        };
        let (exit, status, _) = impostor.get(
            "/apis/data.trawl.dev/v1/whoami",
            Some("system:admin"),
            &["system:masters"],
        );
        assert!(exit != 0 && status == 0, "{who}: curl exit {exit}, HTTP {status}");
    }
    // A rotated serving certificate (as the kubelet updates a renewed Secret's files) is served
    // without a restart; clients trusting only the old one then fail.
    let (rotated_cert, rotated_key) = serving_certificate(&dir, "rotated");
    let old_ca = dir.join("old-serving.crt");
    std::fs::copy(&serving_cert, &old_ca).unwrap();
    std::fs::rename(&rotated_key, &serving_key).unwrap();
    std::fs::rename(&rotated_cert, &serving_cert).unwrap();
    let trusting = |ca: &Path| {
        let proxy = Proxy {
            base: base.clone(),
            serving_ca: ca,
            client: Some((pki.join("front-proxy-client.crt"), pki.join("front-proxy-client.key"))),
        };
        proxy.get("/apis/data.trawl.dev/v1/whoami", Some(&alice), &[]).1
    };
    wait_until("the rotated serving certificate in use", DEADLINE, || async {
        (trusting(&serving_cert) == 200).then_some(())
    })
    .await;
    assert_eq!(trusting(&old_ca), 0, "the old certificate is no longer served");

    // The plain listener takes no identity from headers.
    let answer = ureq::get(format!("http://127.0.0.1:{plain}/api/v1/whoami"))
        .header("X-Remote-User", "system:admin")
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401, "X-Remote-User on the plain listener");
    let _ = std::fs::remove_dir_all(&dir);
}
