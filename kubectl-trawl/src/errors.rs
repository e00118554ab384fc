//! What the API server's answers mean for someone at a terminal.

use anyhow::anyhow;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client for the kubeconfig's (or `context`'s) cluster and identity, as kubectl would use, and
/// the identity's bearer token if it has one (for trawl-api, which takes the cluster's tokens).
pub async fn connect(context: Option<&str>) -> anyhow::Result<(Client, Option<String>)> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match Kubeconfig::read() {
        Ok(kubeconfig) => Config::from_custom_kubeconfig(kubeconfig, &options).await?,
        Err(_) => Config::infer().await?,
    };
    let token = config
        .auth_info
        .token
        .as_ref()
        .map(|token| secrecy::ExposeSecret::expose_secret(token).to_owned());
    Ok((Client::try_from(config)?, token))
}

/// An error of a call on CaptureSessions, said in terms of what to do next.
pub fn sessions(error: kube::Error, namespace: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) if status.code == 403 => anyhow!(
            "you may not capture in namespace {namespace}: {} (ask for a Role that allows capturesessions.trawl.dev there)",
            status.message
        ),
        kube::Error::Api(status) if status.code == 422 || status.code == 400 => {
            anyhow!("the capture was refused: {}", status.message)
        }
        kube::Error::Api(_) => anyhow!(error),
        _ => anyhow!("cannot reach the Kubernetes API server: {error}"),
    }
}

pub fn not_installed() -> anyhow::Error {
    anyhow!(
        "Trawl is not installed in this cluster: it has no CaptureSession resource (install it with `helm install trawl charts/trawl`)"
    )
}

/// Whether the cluster serves CaptureSessions at all.
pub async fn ensure_installed(client: &Client) -> anyhow::Result<()> {
    match client.list_api_group_resources("trawl.dev/v1alpha1").await {
        Ok(resources) if resources.resources.iter().any(|r| r.name == "capturesessions") => Ok(()),
        Ok(_) => Err(not_installed()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(not_installed()),
        Err(error) => Err(anyhow!("cannot reach the Kubernetes API server: {error}")),
    }
}
