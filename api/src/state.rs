//! The application state every handler shares. A leaf: it names the types it holds and nothing
//! imports back, so handlers, extractors and the router all depend on it and not on each other.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::auth::Auth;
use crate::limits::Limits;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub max_page_size: u32,
    /// How many exports and streams may run, in total and per caller.
    pub limits: Limits,
    /// Flips to true at shutdown, ending live streams so that the server can stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set once the migrations have run: until then the tables may not exist.
    pub migrated: Arc<AtomicBool>,
}

/// What the `Caller` extractor needs, taken from any state that has it.
impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}
