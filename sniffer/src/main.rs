//! `trawl-sniffer`: captures packets on host interfaces and publishes batches to RabbitMQ.
//!
//! Run: `cargo run -p sniffer -- --help`
mod config;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TRAWL_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    tracing::info!(?config, "configuration parsed");
    anyhow::bail!("trawl-sniffer: capture is not built yet (issue #4); refusing to pretend")
}
