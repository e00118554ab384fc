//! `trawl-parser`: dissects a session's packet batches and stores them in PostgreSQL.
//!
//! Run: `cargo run -p parser -- --session default/demo --queue <queue> --database-url postgres://...`
mod config;
mod consumer;
mod copy;
mod counters;
mod events;
mod flows;
mod health;
mod metrics;
mod packet_rows;
mod rollups;
mod segments;
mod shards;
mod store;
mod streams;
mod traffic;
mod turn;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    service::logging::init();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let metrics = Arc::new(metrics::Metrics::default());
    let mut store = connect_store(&config.database_url, &metrics).await;
    if let Some(traffic_config) = config.traffic_metrics.clone() {
        let traffic = Arc::new(traffic::Traffic::new(
            &config.session,
            traffic_config,
            metrics.traffic.clone(),
        ));
        let (naming, pool) = (traffic.clone(), store.pool.clone());
        tokio::spawn(async move {
            loop {
                if let Err(error) = naming.refresh_names(&pool).await {
                    tracing::warn!(%error, "cannot read the endpoint history; edges keep the names known");
                }
                tokio::time::sleep(traffic::directory::REFRESH).await;
            }
        });
        store = store.with_traffic(traffic);
    }
    let store = Arc::new(store);
    ensure_partitions_ahead(&store).await;
    let connected = Arc::new(AtomicBool::new(false));
    service::admin::spawn(
        listener,
        health::routes(metrics.clone(), connected.clone(), store.pool.clone()),
    );
    let partitions = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            ensure_partitions_ahead(&partitions).await;
        }
    });

    let (expiring, session, retention, every) = (
        store.clone(),
        config.session.clone(),
        config.retention,
        config.retention_interval,
    );
    tokio::spawn(async move {
        loop {
            match expiring.expire(&session, retention).await {
                Ok(deleted) if deleted > 0 => tracing::info!(deleted, "removed packets past retention"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention run failed"),
            }
            tokio::time::sleep(every).await;
        }
    });

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let leases = Arc::new(shards::ShardLeases::new(
        store.pool.clone(),
        config.queue.clone(),
        config.shards,
        holder_name(),
    ));
    let (allowed_sender, allowed) = tokio::sync::watch::channel(shards::ShardSet::new());
    let (consuming_sender, consuming_shards) = tokio::sync::watch::channel(shards::ShardSet::new());
    let keeper = leases.clone();
    let (keeper_stopping, keeper_metrics) = (stopping.clone(), metrics.clone());
    let mut keeper_allowed = allowed.clone();
    tokio::spawn(async move {
        while keeper_allowed.changed().await.is_ok() {
            let held = keeper_allowed.borrow().len() as i64;
            keeper_metrics.shards_consumed.set(held);
        }
    });
    let keeping = tokio::spawn(async move { keeper.keep(allowed_sender, consuming_shards, keeper_stopping).await });
    let consumer = consumer::Consumer {
        amqp_url: config.amqp_url.clone(),
        session: config.session.clone(),
        queue: config.queue.clone(),
        allowed,
        consuming: consuming_sender,
        prefetch: config.prefetch.max(1),
        store_payload: config.store_payload,
        store: store.clone(),
        metrics: metrics.clone(),
        connected,
    };
    let consuming = tokio::spawn(async move { consumer.run(stopping).await });
    let signal = service::shutdown::signal_received().await;
    tracing::info!("{signal}: finishing the batch in hand");
    let _ = stop.send(true);
    consuming.await?;
    keeping.await?;
    if let Err(error) = leases.leave().await {
        tracing::warn!(%error, "cannot release the shard leases; they expire by themselves");
    }
    tracing::info!(
        batches = metrics.batches_consumed.get(),
        rows = metrics.rows_written.get(),
        redeliveries_skipped = metrics.redeliveries_skipped.get(),
        // Segments of these went to this parser, the rest of them will not.
        unfinished_tcp_messages_dropped = store.unfinished_messages(),
        "stopped"
    );
    Ok(())
}

/// This parser among the session's parsers: its pod's name, and a random part because a
/// restarted pod keeps its name while its old self may still look alive.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "parser".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{host}-{:05x}-{nanos:08x}", std::process::id())
}

/// The database may be down when the parser starts (or restarts): wait for it rather than exit.
async fn connect_store(url: &str, metrics: &metrics::Metrics) -> store::Store {
    let mut backoff = Duration::from_millis(200);
    loop {
        match store::Store::connect(url, metrics.streams.clone()).await {
            Ok(store) => return store,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "database unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Today and the next two days exist before packets need them.
async fn ensure_partitions_ahead(store: &store::Store) {
    let today = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 86_400) as i64;
    if let Err(error) = store.ensure_partitions(today..=today + 2).await {
        tracing::warn!(%error, "cannot create packet partitions ahead");
    }
}
