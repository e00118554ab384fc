//! `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::accounting::Accounting;

#[derive(Clone)]
pub struct Health {
    pub accounting: Arc<Accounting>,
    /// Connected to the broker.
    pub connected: Arc<AtomicBool>,
}

pub async fn serve(listener: tokio::net::TcpListener, health: Health) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(health);
    axum::serve(listener, app).await
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        health.accounting.encode(),
    )
}

/// Ready once connected to the broker and capturing on at least one interface.
async fn ready(State(health): State<Health>) -> (StatusCode, &'static str) {
    if !health.connected.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to the broker")
    } else if health.accounting.interfaces.get() == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "not capturing on any interface")
    } else {
        (StatusCode::OK, "ready")
    }
}
