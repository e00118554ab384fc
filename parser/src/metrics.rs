//! The parser's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::streams::StreamMetrics;
use crate::traffic::families::Families;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub batches_consumed: Counter,
    pub packets_consumed: Counter,
    pub rows_written: Counter,
    pub redeliveries_skipped: Counter,
    pub parse_errors: Family<KindLabel, Counter>,
    pub dead_lettered: Family<ReasonLabel, Counter>,
    pub write_latency: Histogram,
    /// From each packet's capture timestamp to the commit of its row.
    pub wire_to_stored: Histogram,
    pub streams: StreamMetrics,
    /// Shards of the session this parser consumes now.
    pub shards_consumed: Gauge,
    /// The traffic's own metrics (`trawl_traffic_*`), filled when the session asks for them.
    pub traffic: Families,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let traffic = Families::default();
        traffic.register(root.sub_registry_with_prefix("trawl_traffic"));
        let registry = root.sub_registry_with_prefix("trawl_parser");
        let metrics = Self {
            batches_consumed: Counter::default(),
            packets_consumed: Counter::default(),
            rows_written: Counter::default(),
            redeliveries_skipped: Counter::default(),
            parse_errors: Family::default(),
            dead_lettered: Family::default(),
            write_latency: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            wire_to_stored: Histogram::new(exponential_buckets(0.001, 1.5, 30)),
            streams: StreamMetrics::default(),
            shards_consumed: Gauge::default(),
            traffic,
            registry: Registry::default(),
        };
        registry.register(
            "batches_consumed",
            "Batches taken from the queue",
            metrics.batches_consumed.clone(),
        );
        registry.register(
            "packets_consumed",
            "Packets in consumed batches",
            metrics.packets_consumed.clone(),
        );
        registry.register(
            "shards_consumed",
            "Shards of the session's queues this parser holds and consumes",
            metrics.shards_consumed.clone(),
        );
        registry.register(
            "rows_written",
            "Packet rows committed to PostgreSQL",
            metrics.rows_written.clone(),
        );
        registry.register(
            "redeliveries_skipped",
            "Batches already stored, acknowledged without writing",
            metrics.redeliveries_skipped.clone(),
        );
        registry.register(
            "parse_errors",
            "Malformed or truncated packets, by kind",
            metrics.parse_errors.clone(),
        );
        registry.register(
            "dead_lettered",
            "Messages sent to the dead-letter queue, by reason",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "write_latency_seconds",
            "Time to store one batch",
            metrics.write_latency.clone(),
        );
        registry.register(
            "wire_to_stored_seconds",
            "From a packet's capture timestamp to the commit of its row (clocks of the sniffer's and the parser's hosts)",
            metrics.wire_to_stored.clone(),
        );
        registry.register(
            "tcp_stream_outcomes",
            "TCP stream reassembly: messages read from several segments (reassembled), streams given up (past 16 KiB or \
             unframed), ended with an unfinished message, evicted, reset after a failed transaction",
            metrics.streams.outcomes.clone(),
        );
        registry.register(
            "tcp_streams_open",
            "TCP stream directions followed for L7",
            metrics.streams.open.clone(),
        );
        registry.register(
            "tcp_stream_bytes",
            "Bytes held by the followed TCP streams",
            metrics.streams.held_bytes.clone(),
        );
        Self {
            registry: root,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let text = service::admin::encode(&self.registry);
        // New traffic series were scraped at zero: now they may count.
        self.traffic.apply_deferred();
        text
    }
}
