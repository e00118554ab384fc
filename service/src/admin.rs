//! The admin routes every binary serves: `/metrics` (Prometheus' OpenMetrics text), `/healthz`
//! (the process answers) and `/readyz` (it can do its job now; the body says why not).
//!
//! The sniffer, parser and operator serve them on a listener of their own; the API merges them
//! into its main router.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The content type of what prometheus-client's text encoder writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the process is not ready, or `Ok` when it is.
pub type Readiness = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A registry as OpenMetrics text.
pub fn encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("writing to a String cannot fail");
    text
}

/// A `/metrics` response: `body` from prometheus-client's text encoder.
pub fn metrics_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
}

/// The three admin routes. `metrics` encodes the process's registry; `ready` checks readiness.
pub fn routes<S: Clone + Send + Sync + 'static>(
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    ready: impl Fn() -> Readiness + Clone + Send + Sync + 'static,
) -> Router<S> {
    let ready = Arc::new(ready);
    Router::new()
        .route("/metrics", get(move || std::future::ready(metrics_response(metrics()))))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready().await {
                        Ok(()) => (StatusCode::OK, "ready".to_owned()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                    }
                }
            }),
        )
}

/// Serves the admin routes on `listener` until the process ends; a failure is logged, since the
/// binary's job goes on without them.
pub fn spawn(listener: tokio::net::TcpListener, routes: Router) {
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, routes).await {
            tracing::error!(%error, "the metrics and health server stopped");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(ready: bool) -> Router {
        routes(
            || "# EOF\n".to_owned(),
            move || -> Readiness { Box::pin(async move { if ready { Ok(()) } else { Err("waiting".into()) } }) },
        )
    }

    async fn get(app: Router, path: &str) -> (StatusCode, Option<String>, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let (status, content_type, body) = get(app(true), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS));
        assert_eq!(body, "# EOF\n");
    }

    #[tokio::test]
    async fn readyz_says_why_not() {
        assert_eq!(get(app(true), "/readyz").await.0, StatusCode::OK);
        let (status, _, body) = get(app(false), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "waiting");
        assert_eq!(get(app(false), "/healthz").await.0, StatusCode::OK);
    }
}
