//! The router: `/api/v1` (tokens required when configured), the OpenAPI document and its docs
//! page, health and metrics, and the SPA with a fallback to `index.html` for client routes.
//! Each API route is declared once, for both routing and the OpenAPI document (utoipa-axum).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, Json};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Trawl API",
        description = "What Trawl captured: sessions, packets, flows, statistics, pcap exports and a live stream. \
                       Reads PostgreSQL only."
    ),
    modifiers(&BearerAuth),
    tags((name = "sessions"), (name = "packets"), (name = "flows"), (name = "events"), (name = "stats"), (name = "access", description = "Who the caller is and what it may do"))
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

/// The API's routes with their OpenAPI operations; the paths are in the handlers' annotations.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::whoami::get))
        .routes(routes!(routes::sessions::list))
        .routes(routes!(routes::sessions::get))
        .routes(routes!(routes::pcap::export))
        .routes(routes!(routes::packets::list))
        .routes(routes!(routes::packets::get))
        .routes(routes!(routes::stream::stream))
        .routes(routes!(routes::flows::list))
        .routes(routes!(routes::events::dns))
        .routes(routes!(routes::events::http))
        .routes(routes!(routes::events::tls))
        .routes(routes!(routes::stats::get))
        .routes(routes!(routes::service_map::get))
}

/// The OpenAPI document, as `/api/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    with_common_responses(api_routes().into_openapi())
}

/// Every API route can answer 401 (a token is configured and missing or wrong), 500 and 503
/// (the database is unavailable), with the common error body; documented once here instead of on
/// each handler. The pcap export's document leaves out the `session` filter its path replaces.
fn with_common_responses(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete]
            .into_iter()
            .flatten()
        {
            // The pcap export takes its session from the path, not from the shared filters.
            if operation.operation_id.as_deref() == Some("exportPcap")
                && let Some(parameters) = operation.parameters.as_mut()
            {
                parameters.retain(|p| p.name != "session");
            }
            let responses = &mut operation.responses.responses;
            for (status, description) in [
                (
                    "401",
                    "A bearer token is required (when the API has a tokens file) or the one given is unknown",
                ),
                ("500", "An internal error; the API's log says more"),
                ("503", "The database is unavailable; retry shortly"),
            ] {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description).into());
            }
        }
    }
    document
}

/// The document as this process serves it: without a tokens file nothing asks for a token (no
/// security requirement, no 401), and `limit` says the configured maximum.
fn as_deployed(mut document: utoipa::openapi::OpenApi, open: bool, max_page_size: u32) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    if open {
        document.security = None;
        if let Some(components) = document.components.as_mut() {
            components.security_schemes.clear();
        }
    }
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete]
            .into_iter()
            .flatten()
        {
            if open {
                operation.responses.responses.remove("401");
            }
            for parameter in operation.parameters.iter_mut().flatten() {
                if parameter.name == "limit"
                    && let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut()
                {
                    schema.maximum = Some(f64::from(max_page_size).into());
                }
            }
        }
    }
    document
}

pub fn router(state: AppState, static_dir: &Path) -> Router {
    let (api, document) = api_routes().split_for_parts();
    let document = as_deployed(
        with_common_responses(document),
        state.auth.is_open(),
        state.max_page_size,
    );
    let docs_page = crate::docs::render(&document);
    let metrics = state.metrics.clone();
    let routes = Router::new()
        .merge(api)
        .route("/api/openapi.json", get(move || async move { Json(document) }))
        .route("/docs", get(move || async move { Html(docs_page) }))
        .merge(admin_routes(&state))
        .fallback_service(spa(static_dir))
        .with_state(state);
    with_layers(routes, metrics)
}

/// What every request goes through, innermost first: NUL bytes refused, a panic turned into a
/// 500 for that request alone (the process keeps serving), the request metrics, the request log.
pub fn with_layers(routes: Router, metrics: Arc<Metrics>) -> Router {
    let panics = metrics.clone();
    routes
        .layer(axum::middleware::from_fn(crate::input::reject_nul))
        .layer(CatchPanicLayer::custom(move |panic: Box<dyn std::any::Any + Send>| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "a request handler panicked");
            panics.panics.inc();
            crate::error::internal_error_response()
        }))
        .layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::record))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
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

/// `/metrics` with the request metrics; ready once migrated and while the database answers.
fn admin_routes(state: &AppState) -> Router<AppState> {
    let (metrics, migrated, pool) = (state.metrics.clone(), state.migrated.clone(), state.pool.clone());
    service::admin::routes(
        move || metrics.encode(),
        move || -> service::admin::Readiness {
            let (migrated, pool) = (migrated.clone(), pool.clone());
            Box::pin(async move {
                if !migrated.load(std::sync::atomic::Ordering::Acquire) {
                    return Err("migrating the database".to_owned());
                }
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|error| format!("database unreachable: {error}"))
            })
        },
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
