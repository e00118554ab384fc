//! `trawl-api`: the REST API and web UI over what Trawl captured (PostgreSQL only).
//!
//! Run: `cargo run -p api -- --database-url postgres://trawl:trawl@127.0.0.1:5432/trawl`
//! then open http://127.0.0.1:8080/ (UI) or http://127.0.0.1:8080/docs (API docs).
mod app;
mod auth;
mod config;
mod cursor;
mod docs;
mod error;
mod filter;
mod metrics;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TRAWL_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let tokens = match &config.tokens_file {
        Some(path) => auth::Tokens::load(path)?,
        None => {
            tracing::warn!("no --tokens-file: the API is open to anyone who can reach it");
            auth::Tokens::open()
        }
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&config.database_url)
        .context("invalid --database-url")?;
    // The API starts even when the database is down (readyz says so) and migrates once it is up.
    let migrating = pool.clone();
    let migrated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = migrated.clone();
    tokio::spawn(async move {
        while let Err(error) = database::MIGRATOR.run(&migrating).await {
            tracing::warn!(%error, "cannot migrate the database; retrying in 5 s");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let state = app::AppState {
        pool,
        tokens: Arc::new(tokens),
        metrics: Arc::default(),
        max_page_size: config.max_page_size,
        shutdown,
        migrated,
    };
    let router = app::router(state, &config.static_dir);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, "serving");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        })
        .await?;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
