//! `trawl-parser`: dissects a session's packet batches and stores them in PostgreSQL.
//!
//! Run: `cargo run -p parser -- --help`
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
    tracing::info!(session = %config.session, queue = %config.queue, "configuration parsed");
    anyhow::bail!("trawl-parser: dissection and storage are not built yet (issue #5); refusing to pretend")
}
