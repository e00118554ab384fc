use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Captures packets on host interfaces and publishes them in batches to RabbitMQ.
///
/// Runs as a host-network DaemonSet pod per node (the operator passes these settings);
/// every flag can also be given as the `TRAWL_*` environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "trawl-sniffer", version)]
pub struct Config {
    /// The CaptureSession this sniffer works for, as `namespace/name`.
    #[arg(long, env = "TRAWL_SESSION")]
    pub session: String,

    /// The node this sniffer runs on; identifies its packets together with a boot id.
    #[arg(long, env = "TRAWL_NODE")]
    pub node: String,

    /// Interfaces to capture on, comma-separated. Empty: every interface that is up and not loopback,
    /// including ones that appear later.
    #[arg(long, env = "TRAWL_INTERFACES", value_delimiter = ',')]
    pub interfaces: Vec<String>,

    /// Capture filter in tcpdump/BPF syntax, compiled by libpcap and run in the kernel.
    #[arg(long, env = "TRAWL_FILTER", default_value = "")]
    pub filter: String,

    /// A file of addresses (one per line) to narrow the capture to: the kernel filter becomes the
    /// `--filter` AND from-or-to one of them, swapped on the running capture whenever the file
    /// changes (read every 250 ms; replace it by rename, as ConfigMap volumes do). An empty file
    /// captures nothing.
    #[arg(long, env = "TRAWL_TARGETS_FILE")]
    pub targets_file: Option<std::path::PathBuf>,

    /// As `--targets-file`, from this node's key of a ConfigMap (`namespace/name`) watched through
    /// the Kubernetes API (in-cluster credentials or KUBECONFIG): how the operator hands a
    /// targeted session's sniffers their pods' addresses.
    #[arg(long, env = "TRAWL_TARGETS_CONFIGMAP", conflicts_with = "targets_file")]
    pub targets_configmap: Option<String>,

    /// A file of the addresses of the pods the session captures on every node (one per line),
    /// without narrowing the capture: a packet whose sender is one of them is kept where it
    /// leaves that pod, not again where it enters another or crosses an uplink (see the README's
    /// capture points). With `--targets-*` the targets are these pods.
    #[arg(long, env = "TRAWL_PODS_FILE", conflicts_with_all = ["targets_file", "targets_configmap"])]
    pub pods_file: Option<std::path::PathBuf>,

    /// As `--pods-file`, from every key of a ConfigMap (`namespace/name`, one per node): how the
    /// operator hands a node-wide session's sniffers the pods it captures.
    #[arg(long, env = "TRAWL_PODS_CONFIGMAP", conflicts_with_all = ["targets_file", "targets_configmap", "pods_file"])]
    pub pods_configmap: Option<String>,

    /// Bytes kept per packet.
    #[arg(long, env = "TRAWL_SNAPLEN", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=65535))]
    pub snaplen: u32,

    /// Capture backend: the TPACKET_V3 mmap ring, or pnet's datalink (one recvfrom per packet; portable fallback).
    #[arg(long, env = "TRAWL_BACKEND", value_enum, default_value_t = Backend::Ring)]
    pub backend: Backend,

    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "TRAWL_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Exchange batches are published to.
    #[arg(long, env = "TRAWL_EXCHANGE", default_value = "trawl.packets")]
    pub exchange: String,

    /// Routing key of the session's queue.
    #[arg(long, env = "TRAWL_ROUTING_KEY")]
    pub routing_key: String,

    /// Shards the session's traffic is split into by flow, each with its own queue (shard 0 is the
    /// routing key itself, shard N `<routing key>.shard-N`), so that a flow reaches one parser.
    #[arg(long, env = "TRAWL_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: u16,

    /// A batch is published when it holds this many packets...
    #[arg(long, env = "TRAWL_BATCH_PACKETS", default_value_t = 1024)]
    pub batch_packets: usize,

    /// ...or when its oldest packet is this old, whichever comes first.
    #[arg(long, env = "TRAWL_BATCH_TIMEOUT", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub batch_timeout: Duration,

    /// Batches published but not yet confirmed by the broker, at most.
    #[arg(long, env = "TRAWL_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,

    /// Memory for batches waiting while the broker is unreachable; beyond it batches are dropped and counted.
    #[arg(long, env = "TRAWL_BUFFER_BYTES", default_value_t = 64 << 20)]
    pub buffer_bytes: usize,

    /// On SIGTERM, how long to wait for the broker to confirm what was captured; the rest is counted as dropped.
    #[arg(long, env = "TRAWL_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Size of one block of the capture ring (a power of two, at least a page).
    #[arg(long, env = "TRAWL_RING_BLOCK_BYTES", default_value_t = 1 << 20)]
    pub ring_block_bytes: usize,

    /// Blocks in the capture ring of each interface; the ring absorbs bursts the sniffer cannot keep up with.
    #[arg(long, env = "TRAWL_RING_BLOCKS", default_value_t = 16)]
    pub ring_blocks: usize,

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "TRAWL_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// TPACKET_V3 memory-mapped ring: kernel timestamps, block batches, kernel drop counters.
    Ring,
    /// pnet's datalink channel on a socket prepared with the same filter and counters.
    Pnet,
}
