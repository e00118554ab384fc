//! `/metrics`: requests by route, method and status, and their latency by route.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/api/v1/packets/{id}`), never the raw path: ids would explode the series.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    /// Requests whose handler panicked (each answered with a 500).
    pub panics: Counter,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabel, Histogram>,
    /// TokenReviews sent to the API server, by outcome (`--auth kubernetes`).
    pub token_reviews: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("trawl_api");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response's headers, by route",
            duration.clone(),
        );
        let token_reviews = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "token_reviews",
            "TokenReviews sent to the Kubernetes API server, by outcome (answers are cached, rejections briefly)",
            token_reviews.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "handler_panics",
            "Requests whose handler panicked; each got a 500 and the process kept serving",
            panics.clone(),
        );
        Self {
            registry,
            panics,
            requests,
            duration,
            token_reviews,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        service::admin::encode(&self.registry)
    }
}

/// The method as a label from a closed set: any token is a valid HTTP method, and each new label
/// value would be a series kept forever.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub async fn record(State(metrics): State<std::sync::Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .duration
        .get_or_create(&RouteLabel { route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
