//! `trawl-api`: the REST API and web UI over what Trawl captured (PostgreSQL only).
//!
//! Run: `cargo run -p api -- --database-url postgres://trawl:trawl@127.0.0.1:5432/trawl`
//! then open http://127.0.0.1:8080/ (UI) or http://127.0.0.1:8080/docs (API docs).

use std::sync::Arc;

use anyhow::Context as _;
use api::{aggregated, auth, config, metrics, router, state};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    service::logging::init();
    let metrics = Arc::new(metrics::Metrics::default());
    let mut kubernetes = None;
    let auth = match (config.auth, &config.tokens_file) {
        (config::AuthMode::Kubernetes, Some(_)) => {
            anyhow::bail!("--tokens-file and --auth kubernetes exclude each other: pick one way to tell callers apart")
        }
        (config::AuthMode::Kubernetes, None) => {
            let client = kube::Client::try_default()
                .await
                .context("--auth kubernetes needs the Kubernetes API (in-cluster config or KUBECONFIG)")?;
            kubernetes = Some(client.clone());
            auth::Auth::Kubernetes(std::sync::Arc::new(auth::kubernetes::Reviewer::new(
                client,
                config.token_audiences.clone(),
                metrics.token_reviews.clone(),
            )))
        }
        (config::AuthMode::Tokens, Some(path)) => auth::Tokens::load(path)?.into(),
        (config::AuthMode::Tokens, None) => {
            tracing::warn!("no --tokens-file: the API is open to anyone who can reach it");
            auth::Tokens::open().into()
        }
    };
    let options: sqlx::postgres::PgConnectOptions = config.database_url.parse().context("invalid --database-url")?;
    let pool = api::pool::serving(&options, config.statement_timeout);
    // The API starts even when the database is down (readyz says so) and migrates once it is up.
    let migrated = database::migrate_in_background(&api::pool::migrating(&options));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let state = state::AppState {
        pool,
        auth: Arc::new(auth),
        metrics,
        max_page_size: config.max_page_size,
        limits: api::limits::Limits::default(),
        shutdown,
        migrated,
    };
    let router = router::router(state, &config.static_dir);
    let aggregated = match (config.aggregated_listen, kubernetes) {
        (None, _) => None,
        (Some(_), None) => anyhow::bail!("--aggregated-listen needs --auth kubernetes"),
        (Some(address), Some(client)) => {
            let (Some(cert_file), Some(key_file)) = (config.tls_cert_file.clone(), config.tls_key_file.clone()) else {
                anyhow::bail!("--aggregated-listen needs --tls-cert-file and --tls-key-file");
            };
            let sources = aggregated::tls::Sources {
                client,
                cert_file,
                key_file,
            };
            let serving = aggregated::serve(address, sources, router.clone(), stop.subscribe()).await?;
            tracing::info!(listen = %address, group = aggregated::GROUP, "serving the aggregated API");
            Some(tokio::spawn(serving))
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, "serving");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let signal = service::shutdown::signal_received().await;
            tracing::info!("{signal}: shutting down");
            let _ = stop.send(true);
        })
        .await?;
    if let Some(aggregated) = aggregated {
        aggregated.await??;
    }
    Ok(())
}
