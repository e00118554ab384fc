//! `trawl-api`: the REST API and web UI over what Trawl captured.
//!
//! Run: `cargo run -p api -- --help`
mod config;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TRAWL_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    tracing::info!(listen = %config.listen, "configuration parsed");
    anyhow::bail!("trawl-api: the API is not built yet (issue #7); refusing to pretend")
}
