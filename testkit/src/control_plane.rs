use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

/// A real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes)
/// run by `hack/control-plane/up.sh`, one per test binary.
///
/// The script watches this process and tears everything down when it ends, however it ends,
/// so a failing or killed test leaves no process or folder behind.
/// Set `TRAWL_KUBECONFIG` to use an already running control plane instead.
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// Folder with kubectl, helm and the other binaries.
    pub assets: PathBuf,
    _script: Option<Child>,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();
static WITH_REAL_NODE: OnceLock<ControlPlane> = OnceLock::new();

/// The name of the first real node that [`ControlPlane::with_real_nodes`] joins (this machine's
/// own network namespace).
pub const REAL_NODE: &str = "trawl-node";
/// The first real node's address: the gateway of its pods' bridge, where pods reach the host.
pub const REAL_NODE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 244, 0, 1);
/// The second real node: a network namespace of its own, routed to the first (pod subnet
/// 10.244.1.0/24, node address 10.245.1.2).
pub const SECOND_REAL_NODE: &str = "trawl-node-2";

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    pub fn shared() -> &'static ControlPlane {
        SHARED.get_or_init(|| Self::start(&[]))
    }

    /// A control plane with this machine joined as two real nodes ([`REAL_NODE`] and
    /// [`SECOND_REAL_NODE`], each with its containerd, kubelet and kube-proxy;
    /// `hack/control-plane/node.sh`) beside the kwok nodes, which are tainted so that only what
    /// tolerates them lands there. `images` are copied from Docker into both nodes' containerd.
    /// One per test binary; there can be one per machine.
    pub fn with_real_nodes(images: &[String]) -> &'static ControlPlane {
        WITH_REAL_NODE.get_or_init(|| {
            let mut args = vec!["--real-nodes".to_owned(), "2".to_owned()];
            for image in images {
                args.extend(["--load-image".to_owned(), image.clone()]);
            }
            Self::start(&args)
        })
    }

    fn start(extra_args: &[String]) -> ControlPlane {
        let assets = assets_dir();
        if let Ok(kubeconfig) = std::env::var("TRAWL_KUBECONFIG") {
            return ControlPlane {
                kubeconfig: kubeconfig.into(),
                assets,
                _script: None,
            };
        }
        let root = crate::repo_root();
        let dir = std::env::temp_dir().join(format!("trawl-control-plane-{}", crate::unique_suffix()));
        let mut script = Command::new("bash")
            .arg(root.join("hack/control-plane/up.sh"))
            .args(["--dir".as_ref(), dir.as_os_str()])
            .args(["--owner-pid", &std::process::id().to_string()])
            .args(extra_args)
            .env("TRAWL_CONTROL_PLANE_ASSETS", &assets)
            .stdout(Stdio::null())
            .spawn()
            .expect("run hack/control-plane/up.sh");
        let ready = dir.join("ready");
        // A real node imports images and starts containerd, the kubelet and kube-proxy first.
        let limit = Duration::from_secs(if extra_args.is_empty() { 180 } else { 480 });
        let deadline = Instant::now() + limit;
        while !ready.exists() {
            if let Some(status) = script.try_wait().expect("poll up.sh") {
                panic!("hack/control-plane/up.sh exited with {status} before the API was ready (its output is above)");
            }
            assert!(
                Instant::now() < deadline,
                "the test control plane was not ready within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            assets,
            _script: Some(script),
        }
    }

    /// A client with the admin credential.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read the test kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("load the test kubeconfig");
        Client::try_from(config).expect("build a client")
    }

    /// `kubectl` against this control plane.
    /// The certificates `up.sh` made: the cluster's CA (`ca.crt`, `ca.key`) and the aggregation
    /// layer's front proxy (`front-proxy-ca.crt`, `front-proxy-client.crt` and its key).
    pub fn pki(&self) -> PathBuf {
        self.kubeconfig
            .parent()
            .expect("the control plane's folder")
            .join("pki")
    }

    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.assets.join("kubectl"));
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// `helm` against this control plane.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(self.assets.join("helm"));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Installs the CaptureSession CRD (idempotent) and waits until the API server serves it.
    pub async fn install_crd(&self) {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let output = self
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(crate::repo_root().join("crds/capturesession.yaml"))
            .output()
            .expect("run kubectl");
        assert!(
            output.status.success(),
            "apply the CRD: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let crds: Api<CustomResourceDefinition> = Api::all(self.client().await);
        crate::wait_until(
            "the CaptureSession CRD to be established",
            Duration::from_secs(60),
            || async {
                let crd = crds.get("capturesessions.trawl.dev").await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            },
        )
        .await;
    }

    /// A namespace for one test, deleted when the handle drops.
    pub async fn namespace(&'static self) -> TestNamespace {
        let client = self.client().await;
        let name = format!("test-{}", crate::unique_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        // Pods cannot be created before the namespace's default ServiceAccount exists, and the
        // DaemonSet and ReplicaSet controllers back off for minutes after such a failure.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &name);
        crate::wait_until(
            "the namespace's default ServiceAccount",
            Duration::from_secs(60),
            || async { accounts.get_opt("default").await.ok().flatten().map(|_| ()) },
        )
        .await;
        TestNamespace {
            name,
            client,
            control_plane: self,
        }
    }
}

/// A namespace of one test. Dropping it asks for its deletion (the namespace controller finishes it).
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    pub control_plane: &'static ControlPlane,
}

impl TestNamespace {
    /// `kubectl -n <this namespace>`.
    pub fn kubectl(&self) -> Command {
        let mut command = self.control_plane.kubectl();
        command.args(["-n", &self.name]);
        command
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // The client belongs to the test's runtime, which is shutting down; kubectl needs none.
        let _ = self
            .control_plane
            .kubectl()
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .status();
    }
}

/// The folder of control-plane binaries, as `hack/control-plane/build.sh` lays it out.
pub fn assets_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TRAWL_CONTROL_PLANE_ASSETS") {
        return dir.into();
    }
    let versions = std::fs::read_to_string(crate::repo_root().join("hack/control-plane/versions.env"))
        .expect("read hack/control-plane/versions.env");
    let version = versions
        .lines()
        .find_map(|line| line.strip_prefix("KUBERNETES_VERSION=v"))
        .expect("KUBERNETES_VERSION in versions.env")
        .trim();
    let cache = std::env::var("TRAWL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/trawl"));
    let dir = cache.join(format!("kubebuilder-envtest/k8s/{version}-linux-amd64"));
    for binary in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kwok",
        "helm",
    ] {
        assert!(
            is_executable(&dir.join(binary)),
            "the test control plane is not built ({binary} missing in {}): run `bash hack/control-plane/build.sh`",
            dir.display()
        );
    }
    dir
}

fn is_executable(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file()).unwrap_or(false)
}
