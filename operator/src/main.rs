//! `trawl-operator`: reconciles CaptureSessions into capture pipelines.
//!
//! Run: `cargo run -p operator -- --help`
mod config;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAWL_LOG")
                .unwrap_or_else(|_| "info,lapin::returned_messages=error".into()),
        )
        .init();
    tracing::info!(?config, "configuration parsed");
    anyhow::bail!("trawl-operator: reconciliation is not built yet (issue #6); refusing to pretend")
}
