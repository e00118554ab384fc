//! What the parser's `/readyz` and `/metrics` report (the routes are `service::admin`'s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

/// `/metrics` from the parser's registry; ready when consuming from the broker and the database
/// answers.
pub fn routes(metrics: Arc<Metrics>, connected: Arc<AtomicBool>, pool: sqlx::PgPool) -> axum::Router {
    service::admin::routes(
        move || metrics.encode(),
        move || -> service::admin::Readiness {
            let (connected, pool) = (connected.clone(), pool.clone());
            Box::pin(async move {
                if !connected.load(Ordering::Acquire) {
                    return Err("not consuming from the broker".to_owned());
                }
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|_| "database unreachable".to_owned())
            })
        },
    )
}
