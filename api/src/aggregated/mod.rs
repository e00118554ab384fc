//! The data API as a Kubernetes aggregated API, `data.trawl.dev/v1`, as metrics-server serves
//! `metrics.k8s.io`: the Kubernetes API server authenticates the caller however its kubeconfig
//! says (client certificate, OIDC, an exec plugin, a token) and proxies the request here over TLS
//! with its front-proxy client certificate and the caller's identity in `X-Remote-*` headers.
//! The same SubjectAccessReviews then decide what the caller sees.
//!
//! Paths: `/apis/data.trawl.dev/v1/<route>` is `/api/v1/<route>` (so
//! `kubectl get --raw /apis/data.trawl.dev/v1/sessions` works) and `/apis/data.trawl.dev/v1/ui/<path>`
//! the web UI's `/<path>`; `/apis/data.trawl.dev/v1` itself is the discovery document the API
//! server's availability check reads.

pub mod front_proxy;
pub mod tls;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};

use tls::SharedTrust;

pub const GROUP: &str = "data.trawl.dev";
pub const VERSION: &str = "v1";
/// Every path the API server proxies to this listener starts so.
pub const PREFIX: &str = "/apis/data.trawl.dev/v1";

/// The API server rewrites the links of an HTML page it proxies to point at this pod's address
/// (Kubernetes' proxy transport), which no browser can reach: the web UI's page travels with an
/// opaque type and its own in this header, which `kubectl trawl`'s proxy puts back.
pub const PAGE_TYPE: &str = "x-trawl-content-type";

/// The identity the API server vouched for, set on requests that came through the front proxy
/// and read by the [`crate::auth::Caller`] extractor. Only the aggregated listener sets it.
#[derive(Clone, Debug)]
pub struct Proxied(pub Arc<crate::auth::kubernetes::Identity>);

/// Where a path under [`PREFIX`] goes in the router, or `None` outside it.
pub fn route_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix(PREFIX)?;
    if rest.is_empty() {
        return Some(String::new());
    }
    let rest = rest.strip_prefix('/')?;
    Some(match rest.strip_prefix("ui") {
        Some("") => "/".to_owned(),
        Some(ui) if ui.starts_with('/') => ui.to_owned(),
        _ => format!("/api/v1/{rest}"),
    })
}

/// The discovery document: a group version with no resources of its own (what it serves are
/// plain routes, read with `kubectl get --raw`), which is all the availability check needs.
fn discovery() -> Response {
    Json(serde_json::json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [],
    }))
    .into_response()
}

/// Outermost on the aggregated listener: answers discovery, takes the identity from the front
/// proxy's headers and rewrites the path to the router's.
pub async fn rewrite(State(trust): State<SharedTrust>, mut request: Request, next: Next) -> Response {
    let Some(route) = route_of(request.uri().path()) else {
        return (StatusCode::NOT_FOUND, format!("not under {PREFIX}")).into_response();
    };
    if route.is_empty() {
        return discovery();
    }
    // `watch=true` is the plugin's, for the API server (a live export is then long-running).
    let query = request.uri().query().map(|query| {
        query
            .split('&')
            .filter(|pair| *pair != "watch" && !pair.starts_with("watch="))
            .collect::<Vec<_>>()
            .join("&")
    });
    let uri = match query.filter(|query| !query.is_empty()) {
        Some(query) => format!("{route}?{query}"),
        None => route,
    };
    let Ok(uri) = uri.parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "the path is not a valid URI").into_response();
    };
    *request.uri_mut() = uri;
    let identity = trust
        .read()
        .expect("trust lock")
        .front_proxy
        .identity(request.headers());
    if let Some(identity) = identity {
        request.extensions_mut().insert(Proxied(Arc::new(identity)));
    }
    let mut response = next.run(request).await;
    let html = response
        .headers()
        .get(CONTENT_TYPE)
        .filter(|kind| kind.as_bytes().starts_with(b"text/html"))
        .cloned();
    if let Some(html) = html {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        response.headers_mut().insert(PAGE_TYPE, html);
    }
    response
}

/// Listens on `address` and serves `router` there until `shutdown` turns true, with the TLS and
/// front proxy `sources` say, read again every [`tls::REFRESH`].
pub async fn serve(
    address: std::net::SocketAddr,
    sources: tls::Sources,
    router: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    use axum::ServiceExt;
    use tower::Layer;
    let trust: SharedTrust = Arc::new(std::sync::RwLock::new(Arc::new(sources.load().await?)));
    let listener = tls::bind(address, trust.clone()).await?;
    tls::keep_fresh(sources, trust.clone());
    // Outside the router, so that the rewritten path is the one routed.
    let service = axum::middleware::from_fn_with_state(trust, rewrite).layer(router);
    Ok(async move {
        axum::serve(listener, ServiceExt::<Request>::into_make_service(service))
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
    })
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn paths_map_to_the_routers() {
        assert_eq!(route_of("/apis/data.trawl.dev/v1").as_deref(), Some(""));
        assert_eq!(
            route_of("/apis/data.trawl.dev/v1/sessions").as_deref(),
            Some("/api/v1/sessions")
        );
        assert_eq!(
            route_of("/apis/data.trawl.dev/v1/sessions/ns/web/pcap").as_deref(),
            Some("/api/v1/sessions/ns/web/pcap")
        );
        assert_eq!(route_of("/apis/data.trawl.dev/v1/ui").as_deref(), Some("/"));
        assert_eq!(
            route_of("/apis/data.trawl.dev/v1/ui/assets/index.js").as_deref(),
            Some("/assets/index.js")
        );
        assert_eq!(route_of("/apis/data.trawl.dev/v1/uid").as_deref(), Some("/api/v1/uid"));
        assert_eq!(route_of("/apis/data.trawl.dev/v10"), None);
        assert_eq!(route_of("/api/v1/sessions"), None);
        assert_eq!(route_of("/apis"), None);
    }
}
