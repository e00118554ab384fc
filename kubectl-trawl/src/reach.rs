//! Where trawl-api answers: the address the user gave (`--api`, `TRAWL_API_URL`), or else a
//! port-forward to a ready pod of the chart's API Service through the Kubernetes API server, as
//! `kubectl port-forward` does, on a free port of 127.0.0.1 for as long as the command runs.

use anyhow::{Context, anyhow};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// The chart's API Service carries these labels (`charts/trawl/templates/api.yaml`).
const API_SERVICE: &str = "app.kubernetes.io/name=trawl,app.kubernetes.io/component=api";

pub struct Reached {
    /// `http://host:port`, without a trailing slash.
    pub url: String,
    /// What it forwards to, to say so (`trawl/trawl-api-5d9c-x7k2q:8080`).
    pub through: Option<String>,
    forwarding: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Reached {
    fn drop(&mut self) {
        if let Some(forwarding) = self.forwarding.take() {
            forwarding.abort();
        }
    }
}

pub async fn api(client: &Client, given: Option<String>) -> anyhow::Result<Reached> {
    if let Some(url) = given {
        return Ok(Reached {
            url: url.trim_end_matches('/').to_owned(),
            through: None,
            forwarding: None,
        });
    }
    let not_found = |why: String| {
        anyhow!(
            "{why}; pass --api URL (or TRAWL_API_URL), for example after `kubectl -n trawl port-forward svc/trawl-api 8080:8080`"
        )
    };
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default().labels(API_SERVICE))
        .await
        .map_err(|error| not_found(format!("cannot look for trawl-api's Service ({error})")))?;
    let service = services
        .items
        .into_iter()
        .next()
        .ok_or_else(|| not_found("no trawl-api Service in this cluster".into()))?;
    let namespace = service.namespace().unwrap_or_default();
    let spec = service.spec.clone().unwrap_or_default();
    let selector = spec.selector.unwrap_or_default();
    let selector: Vec<String> = selector.iter().map(|(key, value)| format!("{key}={value}")).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let listed = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|error| not_found(format!("cannot list trawl-api's pods in {namespace} ({error})")))?;
    let pod = listed
        .items
        .into_iter()
        .find(is_ready)
        .ok_or_else(|| not_found(format!("no ready trawl-api pod in {namespace}")))?;
    let port = target_port(&spec.ports.unwrap_or_default(), &pod)
        .ok_or_else(|| not_found(format!("trawl-api's Service in {namespace} has no port")))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1 for the port-forward")?;
    let local = listener.local_addr()?.port();
    let name = pod.name_any();
    let through = format!("{namespace}/{name}:{port}");
    let forwarding = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (pods, name) = (pods.clone(), name.clone());
            tokio::spawn(async move {
                let mut forwarder = match pods.portforward(&name, &[port]).await {
                    Ok(forwarder) => forwarder,
                    Err(error) => {
                        eprintln!("port-forward to {name}:{port} failed: {error}");
                        return;
                    }
                };
                if let Some(mut upstream) = forwarder.take_stream(port) {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
                forwarder.abort();
            });
        }
    });
    Ok(Reached {
        url: format!("http://127.0.0.1:{local}"),
        through: Some(through),
        forwarding: Some(forwarding),
    })
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's port behind the Service's first port (a number, or a container port's name).
fn target_port(ports: &[k8s_openapi::api::core::v1::ServicePort], pod: &Pod) -> Option<u16> {
    let first = ports.first()?;
    let port = match &first.target_port {
        None => first.port,
        Some(IntOrString::Int(port)) => *port,
        Some(IntOrString::String(name)) => {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|container| container.ports.iter().flatten())
                .find(|port| port.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    u16::try_from(port).ok()
}
