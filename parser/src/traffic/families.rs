//! The traffic metrics' series (`trawl_traffic_*`): per session and edge, following Prometheus
//! naming (base units, `_total` on counters, `_seconds` on durations).

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The two ends of an edge, as the session's contexts name them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Edge {
    pub session: String,
    pub source_namespace: String,
    pub source: String,
    pub destination_namespace: String,
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabel {
    pub session: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeOutcome {
    #[prometheus(flatten)]
    pub edge: Edge,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsQuery {
    #[prometheus(flatten)]
    pub edge: Edge,
    pub query_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsResponse {
    #[prometheus(flatten)]
    pub edge: Edge,
    pub query_type: &'static str,
    pub rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    #[prometheus(flatten)]
    pub edge: Edge,
    pub protocol: &'static str,
    pub method: &'static str,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeProtocol {
    #[prometheus(flatten)]
    pub edge: Edge,
    pub protocol: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What a new series counted before its first scrape: applied once the series has been scraped at
/// zero (see [`Families::add`]).
#[derive(Default)]
struct Deferred {
    /// Series created since the last scrape (their family's address and labels, hashed).
    fresh: std::collections::HashSet<u64>,
    counts: Vec<Box<dyn FnOnce() + Send>>,
    /// When the oldest of `counts` was deferred.
    since: Option<std::time::Instant>,
}

/// Without scrapes, deferred counts apply after this long or past this many.
const DEFER_AT_MOST: std::time::Duration = std::time::Duration::from_secs(60);
const DEFERRED_AT_MOST: usize = 16_384;

fn series_key<F, L: std::hash::Hash>(family: &F, labels: &L) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same series hashes the same from one call to the next.
    let mut hasher = std::hash::DefaultHasher::new();
    (family as *const F as usize).hash(&mut hasher);
    labels.hash(&mut hasher);
    hasher.finish()
}

/// Half a millisecond to about 16 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Clone)]
pub struct Families {
    pub packets: Family<Edge, Counter>,
    pub bytes: Family<Edge, Counter>,
    pub connections_opened: Family<Edge, Counter>,
    pub connections_closed: Family<EdgeOutcome, Counter>,
    pub retransmissions: Family<Edge, Counter>,
    pub zero_windows: Family<Edge, Counter>,
    pub dns_queries: Family<DnsQuery, Counter>,
    pub dns_responses: Family<DnsResponse, Counter>,
    pub dns_response_time: HistogramFamily<Edge>,
    pub requests: Family<Request, Counter>,
    pub request_duration: HistogramFamily<EdgeProtocol>,
    pub edges: Family<SessionLabel, Gauge>,
    pub edges_folded: Family<SessionLabel, Counter>,
    pub addresses_named: Family<SessionLabel, Gauge>,
    deferred: Arc<Mutex<Deferred>>,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            packets: Family::default(),
            bytes: Family::default(),
            connections_opened: Family::default(),
            connections_closed: Family::default(),
            retransmissions: Family::default(),
            zero_windows: Family::default(),
            dns_queries: Family::default(),
            dns_responses: Family::default(),
            dns_response_time: Family::new_with_constructor(latency),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency),
            edges: Family::default(),
            edges_folded: Family::default(),
            addresses_named: Family::default(),
            deferred: Arc::default(),
        }
    }
}

impl Families {
    /// Adds `n` to a counter. A series seen for the first time is created at zero and gets its
    /// count after the next scrape: Prometheus takes a series' first sample as its start, so a
    /// series born with its first burst counted would lose that burst from every `rate()` (the
    /// first DNS failures of a workload, say, which an alert is for).
    pub fn add<L>(&self, family: &Family<L, Counter>, labels: L, n: u64)
    where
        L: Clone + std::hash::Hash + Eq + Send + Sync + 'static,
    {
        let created = family.get(&labels).is_none();
        let counter = family.get_or_create_owned(&labels);
        self.count_created(series_key(family, &labels), created, move || {
            counter.inc_by(n);
        });
    }

    /// Observes `value` in a histogram, deferred for a new series as [`Self::add`].
    pub fn observe<L>(&self, family: &HistogramFamily<L>, labels: L, value: f64)
    where
        L: Clone + std::hash::Hash + Eq + Send + Sync + 'static,
    {
        let created = family.get(&labels).is_none();
        let histogram = family.get_or_create_owned(&labels);
        self.count_created(series_key(family, &labels), created, move || histogram.observe(value));
    }

    fn count_created(&self, key: u64, created: bool, apply: impl FnOnce() + Send + 'static) {
        let mut deferred = self.deferred.lock().expect("not poisoned");
        if created {
            deferred.fresh.insert(key);
        }
        if !deferred.fresh.contains(&key) {
            drop(deferred);
            apply();
            return;
        }
        deferred.counts.push(Box::new(apply));
        let since = *deferred.since.get_or_insert_with(std::time::Instant::now);
        // Nobody scrapes (or rarely): count rather than hold memory.
        if deferred.counts.len() >= DEFERRED_AT_MOST || since.elapsed() >= DEFER_AT_MOST {
            drop(deferred);
            self.apply_deferred();
        }
    }

    /// After a scrape: what new series counted before it.
    pub fn apply_deferred(&self) {
        let counts = {
            let mut deferred = self.deferred.lock().expect("not poisoned");
            deferred.fresh.clear();
            deferred.since = None;
            std::mem::take(&mut deferred.counts)
        };
        for apply in counts {
            apply();
        }
    }

    /// Registers the series under `registry` (prefixed `trawl_traffic`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("packets", "Packets from source to destination", self.packets.clone());
        registry.register(
            "bytes",
            "Bytes on the wire from source to destination (frame lengths as captured on the wire, not as kept)",
            self.bytes.clone(),
        );
        registry.register(
            "tcp_connections_opened",
            "TCP connections opened by a SYN from source (the client) to destination",
            self.connections_opened.clone(),
        );
        registry.register(
            "tcp_connections_closed",
            "TCP connections that ended, by outcome: established (handshake done, closed by FIN or idle 5 min), \
             reset, refused (SYN answered by RST), timed_out (SYN unanswered 30 s)",
            self.connections_closed.clone(),
        );
        registry.register(
            "tcp_retransmissions",
            "TCP segments carrying sequence space their sender had sent before (resent or filling a gap)",
            self.retransmissions.clone(),
        );
        registry.register(
            "tcp_zero_windows",
            "TCP segments whose sender advertised a zero receive window",
            self.zero_windows.clone(),
        );
        registry.register(
            "dns_queries",
            "DNS queries from source (the client) to destination, by query type",
            self.dns_queries.clone(),
        );
        registry.register(
            "dns_responses",
            "DNS responses to source (the client) from destination, by query type and response code",
            self.dns_responses.clone(),
        );
        registry.register(
            "dns_response_seconds",
            "From a DNS query to its response",
            self.dns_response_time.clone(),
        );
        registry.register(
            "requests",
            "Answered requests from source (the client) to destination, by protocol, method and status class",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "From a request to its response, by protocol",
            self.request_duration.clone(),
        );
        registry.register(
            "edges",
            "Edges with series of their own in this parser",
            self.edges.clone(),
        );
        registry.register(
            "edges_folded",
            "Edges past the session's maxEdges, whose traffic is counted under the edge `other`",
            self.edges_folded.clone(),
        );
        registry.register(
            "addresses_named",
            "Addresses of pods, Services and nodes known from the endpoint history at its last reading",
            self.addresses_named.clone(),
        );
    }
}
