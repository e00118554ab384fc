//! The API's refusals, in-process: the router driven with tower's `oneshot`, no server process.
//! 400s, 401s and 403s are decided before the database is asked, so their state points at a
//! database that does not exist (a 5xx would show that a handler reached it); 404s read a real,
//! migrated, empty database.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use api::auth::Tokens;
use api::state::AppState;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use testkit::postgres::TestDatabase;
use tower::ServiceExt;

const READER: &str = "reader-token-0123456789";
const ANALYST: &str = "analyst-token-0123456789";

fn tokens() -> Tokens {
    let path = std::env::temp_dir().join(format!("trawl-tokens-{}.yaml", testkit::unique_suffix()));
    std::fs::write(
        &path,
        format!(
            "tokens:\n  - {{name: reader, token: {READER}, scopes: [read]}}\n  - {{name: analyst, token: {ANALYST}, scopes: [read, payload, pcap]}}\n"
        ),
    )
    .unwrap();
    let tokens = Tokens::load(&path).unwrap();
    std::fs::remove_file(path).unwrap();
    tokens
}

fn state(pool: sqlx::PgPool, tokens: Tokens) -> AppState {
    AppState {
        pool,
        auth: Arc::new(tokens.into()),
        metrics: Arc::default(),
        max_page_size: 1000,
        limits: Default::default(),
        shutdown: tokio::sync::watch::channel(false).1,
        migrated: Arc::new(AtomicBool::new(true)),
    }
}

fn unreachable_database() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(200))
        .connect_lazy("postgres://nobody:nothing@127.0.0.1:1/none")
        .unwrap()
}

async fn get(state: AppState, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let router = api::router::router(state, std::path::Path::new("/nonexistent"));
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_parameters_are_400s_that_name_the_parameter() {
    let open = || state(unreachable_database(), Tokens::open());
    for (uri, parameter) in [
        ("/api/v1/packets?limit=many", "limit"),
        ("/api/v1/packets?q=host", "q"),
        ("/api/v1/packets?port=70000", "port"),
        ("/api/v1/flows?since=yesterday", "since"),
        ("/api/v1/packets?session=no-slash", "session"),
        ("/api/v1/stats?protocol=tcp%20or%20udp", "protocol"),
        ("/api/v1/stats?bucket=often", "bucket"),
        // Given twice: the same JSON error as any other bad value, not axum's plain text.
        ("/api/v1/flows?sort=bytes&sort=packets", "sort"),
        // The schema's integer has no sign and no spaces.
        ("/api/v1/packets?port=%2B80", "port"),
        ("/api/v1/packets?limit=%2010", "limit"),
        // A path segment that is not UTF-8 once decoded.
        ("/api/v1/sessions/%FF/web", "path"),
    ] {
        let (status, body) = get(open(), uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["parameter"], parameter, "{uri}: {body}");
    }
}

#[tokio::test]
async fn the_served_document_asks_for_tokens_only_when_there_are_any() {
    let open = get(state(unreachable_database(), Tokens::open()), "/api/openapi.json", None)
        .await
        .1;
    assert!(open["security"].is_null(), "an open API asks for no token");
    assert!(open["paths"]["/api/v1/packets"]["get"]["responses"]["401"].is_null());
    let limit = |document: &Value| {
        document["paths"]["/api/v1/packets"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()["schema"]["maximum"]
            .clone()
    };
    assert_eq!(limit(&open), 1000, "the configured page size bounds `limit`");
    let names = |path: &str| -> Vec<String> {
        open["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!names("/api/v1/sessions/{namespace}/{name}/pcap").contains(&"session".to_owned()));
    assert!(names("/api/v1/stream").contains(&"Last-Event-ID".to_owned()));
    let guarded = get(
        state(unreachable_database(), tokens()),
        "/api/openapi.json",
        Some(READER),
    )
    .await
    .1;
    assert!(!guarded["security"].is_null());
    assert!(!guarded["paths"]["/api/v1/packets"]["get"]["responses"]["401"].is_null());
}

#[tokio::test]
async fn tokens_are_required_and_scoped() {
    let guarded = || state(unreachable_database(), tokens());
    let (status, _) = get(guarded(), "/api/v1/packets", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(guarded(), "/api/v1/packets", Some("not-a-token-at-all")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(guarded(), "/api/v1/sessions/team-a/web/pcap", Some(READER)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a read token may not export pcap: {body}"
    );
    // The analyst passes the scope check and only then meets the (missing) database.
    let (status, _) = get(guarded(), "/api/v1/sessions/team-a/web/pcap", Some(ANALYST)).await;
    assert!(status.is_server_error(), "{status}");
    let (status, _) = get(guarded(), "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "probes need no token");
}

#[tokio::test]
async fn unknown_things_are_404s() {
    let database = TestDatabase::create().await;
    let pool = database.pool().await;
    database::MIGRATOR.run(&pool).await.unwrap();
    let open = || state(pool.clone(), Tokens::open());
    let (status, body) = get(open(), "/api/v1/packets/424242", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = get(open(), "/api/v1/sessions/team-a/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(open(), "/api/v1/packets", None).await;
    assert_eq!(status, StatusCode::OK, "an empty page is not a 404");
}

#[tokio::test]
async fn unbounded_input_is_refused_before_the_database() {
    let open = || state(unreachable_database(), Tokens::open());
    let deep = format!("{}tcp{}", "%28".repeat(600), "%29".repeat(600));
    let nots = "not%20".repeat(1000) + "tcp";
    let chained = vec!["tcp"; 200].join("%20and%20");
    for (uri, parameter) in [
        (format!("/api/v1/packets?q={deep}"), "q"),
        (format!("/api/v1/packets?q={nots}"), "q"),
        (format!("/api/v1/flows?q={chained}"), "q"),
        ("/api/v1/packets?session=local/demo%00".to_owned(), "session"),
        ("/api/v1/sessions/local%00/demo".to_owned(), "path"),
        ("/api/v1/packets?since=200000y".to_owned(), "since"),
        ("/api/v1/stats?bucket=1000000000y".to_owned(), "bucket"),
    ] {
        let (status, body) = get(open(), &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {body}", &uri[..uri.len().min(80)]);
        assert_eq!(body["error"]["parameter"], parameter, "{body}");
    }
}

#[tokio::test]
async fn a_panicking_handler_costs_one_500_not_the_process() {
    use axum::routing::get as route;
    let metrics = Arc::new(api::metrics::Metrics::default());
    let routes = axum::Router::new()
        .route(
            "/boom",
            route(|| async {
                if std::hint::black_box(true) {
                    panic!("a bug");
                }
                "unreachable"
            }),
        )
        .route("/fine", route(|| async { "fine" }));
    let app = api::router::with_layers(routes, metrics.clone());
    let call = |uri: &'static str| app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap());
    let response = call("/boom").await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("internal error"),
        "no detail leaks"
    );
    assert_eq!(call("/fine").await.unwrap().status(), StatusCode::OK, "still serving");
    let text = metrics.encode();
    assert_eq!(
        testkit::metrics::value(&text, "trawl_api_handler_panics_total"),
        Some(1),
        "{text}"
    );
}

#[test]
fn the_openapi_document_names_each_operation_once_and_every_answer() {
    let document = serde_json::to_value(api::router::openapi()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} repeats");
            for status in ["200", "401", "500", "503"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
    assert_eq!(ids.len(), 13, "{ids:?}");
}

/// The web UI's types are generated from `frontend/openapi.json` (`npm run api-types`), so that
/// file must be the API's document: regenerate both with
/// `TRAWL_WRITE_OPENAPI=1 cargo test -p api --test in_process openapi && (cd frontend && npm run api-types)`.
#[test]
fn the_ui_is_typed_from_the_current_openapi_document() {
    let document = serde_json::to_string_pretty(&api::router::openapi()).unwrap() + "\n";
    let path = testkit::repo_root().join("frontend/openapi.json");
    if std::env::var_os("TRAWL_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &document).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == document,
        "frontend/openapi.json is not the API's document: regenerate it and the UI's types with \
         TRAWL_WRITE_OPENAPI=1 cargo test -p api --test in_process openapi && (cd frontend && npm run api-types)"
    );
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_a_503_and_the_pcap_export_is_exempt() {
    let database = TestDatabase::create().await;
    let setup = database.pool().await;
    database::MIGRATOR.run(&setup).await.unwrap();
    sqlx::raw_sql(
        "SELECT trawl_ensure_partitions(current_date - 1); SELECT trawl_ensure_partitions(current_date); \
         INSERT INTO batches (batch_id, session, node, boot_id, batch_seq, packets, final) \
           VALUES ('slow-0', 'test/slow', 'node', 'boot', 0, 1000000, false); \
         INSERT INTO packets (id, session, ts, seq, node, interface, original_len, captured_len, src_port, dst_port, \
           l7_guessed, fragment, payload_kept) \
         SELECT n, 'test/slow', now() - n * interval '1 ms', n, 'node', 'eth0', 60, 60, 40000, 80, false, false, false \
         FROM generate_series(1, 1000000) AS n; ANALYZE packets;",
    )
    .execute(&setup)
    .await
    .unwrap();
    setup.close().await;
    let options: sqlx::postgres::PgConnectOptions = database.url.parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy_with(options.options([("statement_timeout", "20ms")]));

    // Walking a million rows for a port none has takes far longer than 20 ms.
    let (status, body) = get(
        state(pool.clone(), Tokens::open()),
        "/api/v1/packets?session=test/slow&q=port%201",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("statement timeout"),
        "{body}"
    );

    let router = api::router::router(state(pool, Tokens::open()), std::path::Path::new("/nonexistent"));
    let response = router
        .oneshot(
            Request::get("/api/v1/sessions/test/slow/pcap?q=port%201")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(bytes.len(), 24, "a whole (empty) pcap file, not a cut-off stream");
}

/// The routes' connections are read-only sessions: PostgreSQL refuses a write through them
/// (SQLSTATE 25006), while they read, and the migrating connection writes.
#[tokio::test]
async fn the_routes_read_through_sessions_that_cannot_write() {
    let database = TestDatabase::create().await;
    let options: sqlx::postgres::PgConnectOptions = database.url.parse().unwrap();
    database::MIGRATOR
        .run(&api::pool::migrating(&options))
        .await
        .expect("the migrating connection writes");
    let serving = api::pool::serving(&options, std::time::Duration::from_secs(5));
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&serving)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    let refused =
        sqlx::query("INSERT INTO endpoint_history (address, kind, name, since) VALUES ('10.0.0.1', 'pod', 'x', now())")
            .execute(&serving)
            .await
            .unwrap_err();
    let code = refused
        .as_database_error()
        .and_then(|error| error.code())
        .map(|code| code.into_owned());
    assert_eq!(code.as_deref(), Some("25006"), "{refused}");
    serving.close().await;
}
