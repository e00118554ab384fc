//! Where trawl-api answers: the address the user gave (`--api`, `TRAWL_API_URL`); else through the
//! Kubernetes API server as the aggregated API `data.trawl.dev/v1`, signed in as whatever the
//! kubeconfig says (client certificate, OIDC, exec plugin, token), behind a proxy of this process
//! on a free port of 127.0.0.1; else, where the chart serves no aggregated API (`api.auth:
//! tokens`), a port-forward to a ready pod of trawl-api's Service, as `kubectl port-forward` does.

use anyhow::{Context, anyhow};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// The chart's API Service carries these labels (`charts/trawl/templates/api.yaml`).
const API_SERVICE: &str = "app.kubernetes.io/name=trawl,app.kubernetes.io/component=api";
/// The aggregated API's group version (`charts/trawl/templates/apiservice.yaml`).
const AGGREGATED: &str = "data.trawl.dev/v1";
/// Where trawl-api puts an HTML page's type, hidden from the API server's link rewriting
/// (`api::aggregated::PAGE_TYPE`).
const PAGE_TYPE: &str = "x-trawl-content-type";

pub struct Reached {
    /// `http://host:port`, without a trailing slash.
    pub url: String,
    /// What it goes through, to say so.
    pub through: Option<String>,
    /// The way there signs requests in as the kubeconfig identity: no token is needed.
    pub signed_in: bool,
    forwarding: Option<tokio::task::JoinHandle<()>>,
}

impl Reached {
    /// The bearer token to send: none where the way there signs requests in already.
    pub fn token_to_send(&self, token: Option<String>) -> Option<String> {
        token.filter(|_| !self.signed_in)
    }
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
            signed_in: false,
            forwarding: None,
        });
    }
    if let Some(reached) = through_the_api_server(client).await? {
        return Ok(reached);
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
        through: Some(format!("a port-forward to {through}")),
        signed_in: false,
        forwarding: Some(forwarding),
    })
}

/// A local proxy to the aggregated API when the API server serves it (its discovery answers).
async fn through_the_api_server(client: &Client) -> anyhow::Result<Option<Reached>> {
    match client.list_api_group_resources(AGGREGATED).await {
        Ok(_) => {}
        // Not installed (404), or installed and not available (503): the port-forward may still work.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 503 => return Ok(None),
        Err(error) => return Err(anyhow!("cannot reach the Kubernetes API server: {error}")),
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1 for the proxy to the API server")?;
    let local = listener.local_addr()?.port();
    let proxy = axum::Router::new().fallback(forward).with_state(client.clone());
    let forwarding = tokio::spawn(async move {
        let _ = axum::serve(listener, proxy).await;
    });
    Ok(Some(Reached {
        url: format!("http://127.0.0.1:{local}"),
        through: Some(format!(
            "the Kubernetes API server ({AGGREGATED}), as your kubeconfig identity"
        )),
        signed_in: true,
        forwarding: Some(forwarding),
    }))
}

/// The aggregated API's path for a path of trawl-api's own: `/api/v1/<route>` is
/// `/apis/data.trawl.dev/v1/<route>`, anything else the web UI's, under `ui/`. `watch=true` makes
/// the API server treat the request as long-running (a live export outlives its 60 s timeout);
/// trawl-api's aggregated listener takes it off again.
fn aggregated_path(path: &str, query: Option<&str>) -> String {
    let base = format!("/apis/{AGGREGATED}");
    let path = match path.strip_prefix("/api/v1/") {
        Some(route) => format!("{base}/{route}"),
        None => format!("{base}/ui{path}"),
    };
    match query {
        Some(query) if !query.is_empty() => format!("{path}?{query}&watch=true"),
        _ => format!("{path}?watch=true"),
    }
}

/// One request to the API server, signed in by the kube client; the answer streams back as it
/// comes (a live export). Only GETs: the data API reads.
async fn forward(State(client): State<Client>, request: Request) -> Response {
    if request.method() != axum::http::Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "the data API only reads").into_response();
    }
    let uri = aggregated_path(request.uri().path(), request.uri().query());
    let mut upstream = axum::http::Request::get(uri);
    if let Some(accept) = request.headers().get(axum::http::header::ACCEPT) {
        upstream = upstream.header(axum::http::header::ACCEPT, accept);
    }
    let upstream = match upstream.body(kube::client::Body::empty()) {
        Ok(upstream) => upstream,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    match client.send(upstream).await {
        Ok(mut response) => {
            if let Some(page) = response.headers_mut().remove(PAGE_TYPE) {
                response.headers_mut().insert(axum::http::header::CONTENT_TYPE, page);
            }
            response.map(axum::body::Body::new).into_response()
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("cannot reach the Kubernetes API server: {error}"),
        )
            .into_response(),
    }
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

#[cfg(test)]
mod tests {
    use super::aggregated_path;

    #[test]
    fn paths_go_under_the_aggregated_group() {
        assert_eq!(
            aggregated_path("/api/v1/sessions/ns/web/pcap", Some("format=pcapng&follow=true")),
            "/apis/data.trawl.dev/v1/sessions/ns/web/pcap?format=pcapng&follow=true&watch=true"
        );
        assert_eq!(
            aggregated_path("/assets/index.js", None),
            "/apis/data.trawl.dev/v1/ui/assets/index.js?watch=true"
        );
        assert_eq!(aggregated_path("/", None), "/apis/data.trawl.dev/v1/ui/?watch=true");
    }
}
