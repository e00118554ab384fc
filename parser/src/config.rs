use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// Consumes a session's packet batches, dissects them from L2 to L7, aggregates flows
/// and writes them to PostgreSQL, acknowledging a batch only after its rows are committed.
///
/// Runs as the session's autoscaled Deployment; every flag can also be given as the
/// `TRAWL_*` environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "trawl-parser", version)]
pub struct Config {
    /// The CaptureSession whose queue is consumed, as `namespace/name`.
    #[arg(long, env = "TRAWL_SESSION")]
    pub session: String,

    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "TRAWL_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// The session's queue.
    #[arg(long, env = "TRAWL_QUEUE")]
    pub queue: String,

    /// Shards of the session's traffic (as the sniffers split it): this parser consumes the ones
    /// it holds a lease on, shared out among the session's parsers through PostgreSQL.
    #[arg(long, env = "TRAWL_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: u16,

    /// Batches delivered but not yet acknowledged, at most: a backlog is stored a third of this many
    /// per transaction (at most 16), three transactions at a time.
    #[arg(long, env = "TRAWL_PREFETCH", default_value_t = 48)]
    pub prefetch: u16,

    /// PostgreSQL connection URL.
    #[arg(long, env = "TRAWL_DATABASE_URL")]
    pub database_url: String,

    /// Keep payload bytes beyond the transport header (the session's `storePayload`).
    #[arg(long, env = "TRAWL_STORE_PAYLOAD", default_value_t = false)]
    pub store_payload: bool,

    /// How long the session's data is kept (the CaptureSession's `retention`).
    #[arg(long, env = "TRAWL_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub retention: Duration,

    /// How often expired data is removed.
    #[arg(long, env = "TRAWL_RETENTION_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,

    /// Traffic metrics per edge on `/metrics` (the session's `spec.metrics`), as
    /// `source=CONTEXT,destination=CONTEXT,max-edges=N` with contexts workload, namespace, pod or
    /// none. Unset: none.
    #[arg(long, env = "TRAWL_TRAFFIC_METRICS")]
    pub traffic_metrics: Option<crate::traffic::config::TrafficConfig>,

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "TRAWL_LISTEN", default_value = "0.0.0.0:9091")]
    pub listen: SocketAddr,
}
