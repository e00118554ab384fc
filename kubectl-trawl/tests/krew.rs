//! The krew manifest installs the plugin: `hack/krew-package.sh` packs this build and writes the
//! manifest with the archive's sha256, krew (built by `hack/deps.sh`) installs it into a KREW_ROOT
//! of the test's own, and kubectl finds `kubectl trawl` there. The manifest as committed, whose
//! sha256 is a placeholder, is refused for the same archive.
//!
//! Run (after `bash hack/deps.sh`): `cargo test -p kubectl-trawl --test krew`

use std::path::PathBuf;
use std::process::Command;

use testkit::process::workspace_binary;
use testkit::{repo_root, unique_suffix};

fn krew() -> PathBuf {
    let cache = std::env::var("TRAWL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/trawl"));
    let krew = cache.join("go/bin/krew");
    assert!(krew.exists(), "{} is missing: run `bash hack/deps.sh`", krew.display());
    krew
}

#[test]
fn krew_installs_the_plugin_from_its_manifest() {
    let work = std::env::temp_dir().join(format!("trawl-krew-{}", unique_suffix()));
    let package = Command::new("bash")
        .arg(repo_root().join("hack/krew-package.sh"))
        .arg(workspace_binary("kubectl-trawl", "kubectl-trawl"))
        .arg(work.join("dist"))
        .output()
        .unwrap();
    assert!(package.status.success(), "{}", String::from_utf8_lossy(&package.stderr));
    let archive = work.join("dist/kubectl-trawl_linux_amd64.tar.gz");
    let install = |manifest: PathBuf, root: &str| {
        Command::new(krew())
            .env("KREW_ROOT", work.join(root))
            .arg("install")
            .arg(format!("--manifest={}", manifest.display()))
            .arg(format!("--archive={}", archive.display()))
            .output()
            .unwrap()
    };

    let committed = install(repo_root().join("kubectl-trawl/krew/trawl.yaml"), "refused");
    assert!(
        !committed.status.success(),
        "krew took an archive whose sha256 the manifest does not name"
    );

    let installed = install(work.join("dist/trawl.yaml"), "krew");
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let path = format!("{}:{}", work.join("krew/bin").display(), std::env::var("PATH").unwrap());
    let kubectl = testkit::control_plane::assets_dir().join("kubectl");
    let version = Command::new(kubectl)
        .env("PATH", path)
        .args(["trawl", "--version"])
        .output()
        .unwrap();
    assert!(version.status.success(), "{}", String::from_utf8_lossy(&version.stderr));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("kubectl trawl "));
    let _ = std::fs::remove_dir_all(&work);
}
