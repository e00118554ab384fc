//! The API's connections to PostgreSQL. The routes only read, so their sessions are read-only
//! (`default_transaction_read_only`): PostgreSQL refuses a write in them whatever a query turns
//! out to do, and each statement is bounded in time. Migrations, the one thing the API writes,
//! get a connection of their own.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The routes' pool: read-only sessions, statements bounded by `statement_timeout`; connects
/// when first used, so the API starts while the database is down.
pub fn serving(options: &PgConnectOptions, statement_timeout: Duration) -> PgPool {
    let timeout = format!("{}ms", statement_timeout.as_millis());
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection it hands out by default: a round trip per request, a
        // tenth of PostgreSQL's work for a /packets page (bench/api.sh). A broken connection
        // fails its query instead, and the pool replaces it.
        .test_before_acquire(false)
        .connect_lazy_with(options.clone().options([
            ("statement_timeout", timeout.as_str()),
            ("default_transaction_read_only", "on"),
        ]))
}

/// One ordinary connection to apply the migrations with, closed once idle.
pub fn migrating(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(Duration::from_secs(30))
        .connect_lazy_with(options.clone())
}
