//! The router: `/api/v1` (tokens required when configured), the OpenAPI document and its docs
//! page, health and metrics, and the SPA with a fallback to `index.html` for client routes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use sqlx::PgPool;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;

use crate::auth::Tokens;
use crate::metrics::Metrics;
use crate::routes;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: Arc<Tokens>,
    pub metrics: Arc<Metrics>,
    pub max_page_size: u32,
    /// Flips to true at shutdown, ending live streams so that the server can stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set once the migrations have run: until then the tables may not exist.
    pub migrated: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Trawl API",
        description = "What Trawl captured: sessions, packets, flows, statistics, pcap exports and a live stream. \
                       Reads PostgreSQL only."
    ),
    paths(
        routes::sessions::list,
        routes::sessions::get,
        routes::pcap::export,
        routes::packets::list,
        routes::packets::get,
        routes::stream::stream,
        routes::flows::list,
        routes::stats::get,
    ),
    modifiers(&BearerAuth),
    tags((name = "sessions"), (name = "packets"), (name = "flows"), (name = "stats"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

pub fn router(state: AppState, static_dir: &Path) -> Router {
    let api = Router::new()
        .route("/sessions", get(routes::sessions::list))
        .route("/sessions/{namespace}/{name}", get(routes::sessions::get))
        .route("/sessions/{namespace}/{name}/pcap", get(routes::pcap::export))
        .route("/packets", get(routes::packets::list))
        .route("/packets/{id}", get(routes::packets::get))
        .route("/flows", get(routes::flows::list))
        .route("/stats", get(routes::stats::get))
        .route("/stream", get(routes::stream::stream));
    let document = ApiDoc::openapi();
    let docs_page = crate::docs::render(&document);
    Router::new()
        .nest("/api/v1", api)
        .route("/api/openapi.json", get(move || async move { Json(document) }))
        .route("/docs", get(move || async move { Html(docs_page) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback_service(spa(static_dir))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::record,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(state)
}

/// The request's span for the log, with any `access_token` in the query string blanked out.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let path = request.uri().path();
    let query = request.uri().query().map(|query| {
        query
            .split('&')
            .map(|pair| {
                if pair.starts_with("access_token=") {
                    "access_token=<redacted>"
                } else {
                    pair
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let uri = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    tracing::info_span!("request", method = %request.method(), %uri)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.migrated.load(std::sync::atomic::Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "migrating the database".to_owned());
    }
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ready".to_owned()),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {error}"),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// The built SPA: hashed files under `assets/` are cached for a year, everything else
/// (`index.html` above all) is revalidated, and unknown paths get `index.html` for the client router.
fn spa(static_dir: &Path) -> Router {
    let index = static_dir.join("index.html");
    if !index.exists() {
        let message = format!(
            "The web UI is not built ({} is missing): run `npm ci && npm run build` in frontend/. The API is at /api/v1 and its docs at /docs.",
            index.display()
        );
        return Router::new().fallback(get(move || async move { (StatusCode::NOT_FOUND, message) }));
    }
    let assets: PathBuf = static_dir.join("assets");
    let immutable = SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    let revalidate =
        SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Router::new()
        .nest_service(
            "/assets",
            tower::ServiceBuilder::new()
                .layer(immutable)
                .service(ServeDir::new(assets)),
        )
        .fallback_service(ServeDir::new(static_dir).fallback(ServeFile::new(index)))
        .layer(revalidate)
}
