//! The sniffer's counters. They are the Prometheus metrics and the accounting carried in every
//! batch at once, so the two can never disagree:
//! `captured = confirmed + dropped (by reason) + pending`, and `pending` is 0 after a clean stop.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why packets were lost after capture. The wire format and `/metrics` use these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The broker nacked the batch: the session queue is at its bound (`reject-publish`).
    QueueFull,
    /// The broker returned the batch: no queue is bound to the routing key.
    Unroutable,
    /// The broker was unreachable and the memory buffer was full.
    BufferFull,
    /// The broker did not confirm the batch before the shutdown deadline.
    Shutdown,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [Self::QueueFull, Self::Unroutable, Self::BufferFull, Self::Shutdown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Unroutable => "unroutable",
            Self::BufferFull => "buffer_full",
            Self::Shutdown => "shutdown",
        }
    }
}

/// How the wire's counters name deduplicated packets (beside the drop reasons; not a loss).
pub const DEDUPLICATED: &str = "deduplicated";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

pub struct Accounting {
    pub registry: Registry,
    pub captured_packets: Counter,
    pub captured_bytes: Counter,
    pub kernel_drops: Counter,
    /// Copies of a packet already captured on another interface of this node (see `crate::dedup`):
    /// neither stored nor lost. The wire carries them among the drops, as `deduplicated`.
    pub deduplicated: Counter,
    pub confirmed_packets: Counter,
    pub batches_published: Counter,
    pub batches_confirmed: Counter,
    pub batches_nacked: Counter,
    pub publish_latency: Histogram,
    pub interfaces: Gauge,
    /// Addresses the kernel filter is narrowed to (`--targets-file`).
    pub targets: Gauge,
    /// Kernel filters swapped on running captures (one per interface and change).
    pub filter_swaps: Counter,
    pub broker_connections: Counter,
    pending_packets: Gauge,
    dropped_packets: Family<ReasonLabel, Counter>,
}

impl Default for Accounting {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("trawl_sniffer");
        let accounting = Self {
            captured_packets: Counter::default(),
            captured_bytes: Counter::default(),
            kernel_drops: Counter::default(),
            deduplicated: Counter::default(),
            confirmed_packets: Counter::default(),
            batches_published: Counter::default(),
            batches_confirmed: Counter::default(),
            batches_nacked: Counter::default(),
            publish_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            interfaces: Gauge::default(),
            targets: Gauge::default(),
            filter_swaps: Counter::default(),
            broker_connections: Counter::default(),
            pending_packets: Gauge::default(),
            dropped_packets: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "packets_captured",
            "Packets taken from the kernel",
            accounting.captured_packets.clone(),
        );
        registry.register(
            "bytes_captured",
            "Bytes on the wire of captured packets",
            accounting.captured_bytes.clone(),
        );
        registry.register(
            "kernel_drops",
            "Packets the kernel dropped before capture (ring or socket buffer full)",
            accounting.kernel_drops.clone(),
        );
        registry.register(
            "packets_deduplicated",
            "Captured packets that were copies of one already captured on another interface of this node (not stored, not lost)",
            accounting.deduplicated.clone(),
        );
        registry.register(
            "packets_confirmed",
            "Packets in batches the broker confirmed",
            accounting.confirmed_packets.clone(),
        );
        registry.register(
            "packets_dropped",
            "Captured packets lost, by reason",
            accounting.dropped_packets.clone(),
        );
        registry.register(
            "packets_pending",
            "Captured packets neither confirmed nor dropped yet",
            accounting.pending_packets.clone(),
        );
        registry.register(
            "batches_published",
            "Batches sent to the broker",
            accounting.batches_published.clone(),
        );
        registry.register(
            "batches_confirmed",
            "Batches the broker acked",
            accounting.batches_confirmed.clone(),
        );
        registry.register(
            "batches_nacked",
            "Batches the broker nacked or returned",
            accounting.batches_nacked.clone(),
        );
        registry.register(
            "publish_latency_seconds",
            "From publish to broker confirm",
            accounting.publish_latency.clone(),
        );
        registry.register(
            "interfaces",
            "Interfaces being captured on",
            accounting.interfaces.clone(),
        );
        registry.register(
            "targets",
            "Addresses the running kernel filter is narrowed to (the targeted pods'), when targeting; moves once a capture thread swapped the new filter in",
            accounting.targets.clone(),
        );
        registry.register(
            "filter_swaps",
            "Kernel filters replaced on a running capture (one per interface and change of targets)",
            accounting.filter_swaps.clone(),
        );
        registry.register(
            "broker_connections",
            "Connections made to the broker (more than one: it reconnected)",
            accounting.broker_connections.clone(),
        );
        for reason in DropReason::ALL {
            // Every reason is exported from the start, so a dashboard sees 0 rather than no series.
            let _ = accounting.dropped_packets.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        Self { registry, ..accounting }
    }
}

impl Accounting {
    pub fn drop_packets(&self, reason: DropReason, packets: u64) {
        self.dropped_packets
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc_by(packets);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_packets
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .get()
    }

    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|&reason| self.dropped(reason)).sum()
    }

    pub fn pending(&self) -> u64 {
        self.captured_packets
            .get()
            .saturating_sub(self.confirmed_packets.get() + self.dropped_total() + self.deduplicated.get())
    }

    /// The cumulative counters as the wire format carries them.
    pub fn snapshot(&self) -> wire::Counters {
        wire::Counters {
            captured: self.captured_packets.get(),
            kernel_drops: self.kernel_drops.get(),
            drops: DropReason::ALL
                .iter()
                .map(|&reason| (reason.as_str().to_owned(), self.dropped(reason)))
                .chain([(DEDUPLICATED.to_owned(), self.deduplicated.get())])
                .filter(|(_, packets)| *packets > 0)
                .collect(),
        }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        self.pending_packets.set(self.pending() as i64);
        service::admin::encode(&self.registry)
    }
}
