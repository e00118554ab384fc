use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// Reconciles each CaptureSession into a sniffer DaemonSet, a RabbitMQ queue and an
/// autoscaled parser Deployment, and reports the session's status.
///
/// Uses the in-cluster service account or `KUBECONFIG`; every flag can also be given as
/// the `TRAWL_*` environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "trawl-operator", version)]
pub struct Config {
    /// Image of the sniffer DaemonSet.
    #[arg(
        long,
        env = "TRAWL_SNIFFER_IMAGE",
        default_value = "ghcr.io/trawl-dev/trawl-sniffer:latest"
    )]
    pub sniffer_image: String,

    /// Image of the parser Deployments.
    #[arg(
        long,
        env = "TRAWL_PARSER_IMAGE",
        default_value = "ghcr.io/trawl-dev/trawl-parser:latest"
    )]
    pub parser_image: String,

    /// RabbitMQ URL the operator declares queues with.
    #[arg(
        long,
        env = "TRAWL_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// RabbitMQ URL the sniffers and parsers connect to (in-cluster address). Default: `--amqp-url`.
    #[arg(long, env = "TRAWL_POD_AMQP_URL")]
    pub pod_amqp_url: Option<String>,

    /// PostgreSQL URL the operator mirrors sessions into and reads packet counts from.
    #[arg(long, env = "TRAWL_DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL URL the parsers connect to (in-cluster address). Default: `--database-url`.
    /// Handed to them, like the RabbitMQ URL, through a Secret in the operator's namespace.
    #[arg(long, env = "TRAWL_POD_DATABASE_URL")]
    pub pod_database_url: Option<String>,

    /// Run sniffers fully privileged instead of with NET_RAW and NET_ADMIN only.
    #[arg(long, env = "TRAWL_PRIVILEGED_SNIFFERS", default_value_t = false)]
    pub privileged_sniffers: bool,

    /// How often the builtin autoscaler reads queue depths.
    #[arg(long, env = "TRAWL_SCALE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub scale_interval: Duration,

    /// How long the backlog must stay low before parsers are scaled down.
    #[arg(long, env = "TRAWL_SCALE_DOWN_STABILIZATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub scale_down_stabilization: Duration,

    /// Lease used for leader election, in the operator's namespace.
    #[arg(long, env = "TRAWL_LEASE_NAME", default_value = "trawl-operator")]
    pub lease_name: String,

    /// The operator's own namespace: its leader-election Lease, and every session's sniffers,
    /// parsers, their Secret and targets ConfigMap (so a session's namespace holds no
    /// credentials and needs no privileged pods). Default: the pod's namespace (POD_NAMESPACE),
    /// else `default`.
    #[arg(long, env = "TRAWL_NAMESPACE")]
    pub namespace: Option<String>,

    /// How long a leader's Lease lasts without renewal; a standby replica takes over after it.
    #[arg(long, env = "TRAWL_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Reconcile the sessions of this namespace only. Default: every namespace.
    #[arg(long, env = "TRAWL_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "TRAWL_LISTEN", default_value = "0.0.0.0:9092")]
    pub listen: SocketAddr,
}

impl Config {
    /// `--namespace`, else the pod's namespace, else `default`.
    pub fn own_namespace(&self) -> String {
        self.namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_owned())
    }
}
