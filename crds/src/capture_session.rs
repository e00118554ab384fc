use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Go-style duration such as `90s`, `10m` or `1h30m` (what `metav1.Duration` accepts).
const DURATION_RULE: &str = r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$')";
// The bound checks skip malformed values, which DURATION_RULE already reports, so that a typo
// yields one clear message instead of an extra CEL evaluation error.
const POSITIVE_DURATION_RULE: &str =
    r"!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) > duration('0s')";
const AT_LEAST_A_MINUTE_RULE: &str =
    r"!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) >= duration('1m')";

/// What to capture, on which nodes, for how long, and how the parsers scale. Sniffers on the
/// selected nodes publish to a queue; autoscaled parsers dissect what they captured into
/// PostgreSQL, and the API and UI serve it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "trawl.dev",
    version = "v1alpha1",
    kind = "CaptureSession",
    namespaced,
    shortname = "cap",
    category = "trawl",
    status = "CaptureSessionStatus",
    validation = Rule::new("size(self.metadata.name) <= 63").message("a session's name must be at most 63 characters: it is a label value on the session's pods"),
    doc = "A packet capture pipeline declared as a resource: sniffers on the selected nodes capture what the filter selects, parsers dissect it into PostgreSQL, and the API and web UI serve it.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Where the session is in its lifecycle"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"Whether every part of the pipeline is up"}"#,
    printcolumn = r#"{"name":"Sniffers","type":"integer","jsonPath":".status.sniffers.ready","description":"Sniffer pods ready"}"#,
    printcolumn = r#"{"name":"Targets","type":"integer","jsonPath":".status.targets.pods","priority":1,"description":"Selected pods being captured"}"#,
    printcolumn = r#"{"name":"Parsers","type":"integer","jsonPath":".status.parsers.replicas","description":"Parser replicas running"}"#,
    printcolumn = r#"{"name":"Backlog","type":"integer","jsonPath":".status.backlog","description":"Batches waiting in the queue"}"#,
    printcolumn = r#"{"name":"Packets","type":"integer","jsonPath":".status.packets.captured","description":"Packets captured by the sniffers"}"#,
    printcolumn = r#"{"name":"Dropped","type":"integer","jsonPath":".status.packets.dropped","priority":1,"description":"Packets dropped, for any reason"}"#,
    printcolumn = r#"{"name":"Stored","type":"integer","jsonPath":".status.packets.stored","priority":1,"description":"Packets stored in PostgreSQL"}"#,
    printcolumn = r#"{"name":"Deduplicated","type":"integer","jsonPath":".status.packets.deduplicated","priority":1,"description":"Copies of packets already captured on another interface of the node"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CaptureSessionSpec {
    /// Labels a node must carry for a sniffer to run on it. Empty: every schedulable node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations for the sniffer pods, so that tainted nodes (control planes, dedicated pools) can be captured on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// Capture only the traffic of these pods: the sniffers run only on nodes that host one, and
    /// each narrows its kernel filter (the `filter` AND the pods' addresses) as pods come, change
    /// their labels and go, without restarting. Unset: everything on the selected nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,

    /// Host interfaces to capture on, by name (e.g. `eth0`). Empty: every interface that is up and not loopback,
    /// including ones that appear later such as new pod veths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 15)))]
    pub interfaces: Vec<String>,

    /// Capture filter in tcpdump/BPF syntax (e.g. `tcp port 443 or udp port 53`), run in the kernel.
    /// Empty: every packet. An expression libpcap cannot compile marks the session `Stalled` with reason `InvalidFilter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub filter: Option<String>,

    /// Bytes kept of each packet, from its start; the original length is always recorded.
    /// The default keeps every header and the start of L7 (HTTP request lines, most TLS ClientHellos) but not bulk payload.
    #[serde(default = "default_snaplen")]
    #[schemars(range(min = 64, max = 65535))]
    pub snaplen: i32,

    /// Whether payload bytes beyond the transport header are stored. Off by default: only headers are kept,
    /// which is enough for flows, L7 metadata and pcap export of truncated packets.
    #[serde(default)]
    pub store_payload: bool,

    /// How long to capture, as a Go duration (`30s`, `10m`, `2h`). The session completes when this or
    /// `maxPackets` is reached first. Unset: until deleted or suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("duration must be a Go duration such as 90s, 10m or 1h30m"))]
    #[x_kube(validation = Rule::new(POSITIVE_DURATION_RULE).message("duration must be greater than zero"))]
    pub duration: Option<String>,

    /// Stop capturing after this many packets in total across all sniffers (copies of one packet on
    /// several interfaces of a node count once). Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_packets: Option<i64>,

    /// Pause the session: sniffers are removed, the queue and the stored data are kept.
    #[serde(default)]
    pub suspend: bool,

    /// How parsers are scaled.
    #[serde(default)]
    pub parsers: ParserScaling,

    /// How long captured data is kept in PostgreSQL, as a Go duration.
    #[serde(default = "default_retention")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("retention must be a Go duration such as 24h or 168h"))]
    #[x_kube(validation = Rule::new(AT_LEAST_A_MINUTE_RULE).message("retention must be at least 1m"))]
    pub retention: String,

    /// Upper bound of the session's queue in bytes. Past it the broker rejects new batches and the sniffers
    /// count them as dropped (reason `queue_full`) rather than letting the broker run out of memory or disk.
    #[serde(default = "default_max_backlog_bytes")]
    #[schemars(range(min = 1_048_576))]
    pub max_backlog_bytes: i64,

    /// How the session's RabbitMQ queues are kept.
    #[serde(default)]
    pub queue: QueueSpec,

    /// Traffic as Prometheus metrics: the parsers export packets, bytes, TCP connections by outcome,
    /// retransmissions, DNS and requests per edge (source to destination) on their `/metrics`.
    /// Unset: none. Off unless asked for because every edge is a set of series in the cluster's
    /// Prometheus, which a short debugging capture should not grow unasked (Hubble's flow metrics
    /// are opt-in for the same reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<TrafficMetrics>,
}

/// Which context names an edge's two ends and how many edges get series of their own.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficMetrics {
    /// What names the sending end: its `workload` (Deployment, StatefulSet, DaemonSet, Job, or the
    /// pod itself when it has no owner; a Service or node by its name), its `namespace` only, its
    /// `pod`, or `none`.
    #[serde(default)]
    pub source_context: EdgeContext,

    /// What names the receiving end, as `sourceContext`.
    #[serde(default)]
    pub destination_context: EdgeContext,

    /// Edges with series of their own, per parser replica; traffic of further edges is added to
    /// one edge named `other` and counted in `trawl_traffic_edges_folded_total`.
    #[serde(default = "default_max_edges")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_edges: i32,
}

impl Default for TrafficMetrics {
    fn default() -> Self {
        Self {
            source_context: EdgeContext::default(),
            destination_context: EdgeContext::default(),
            max_edges: default_max_edges(),
        }
    }
}

fn default_max_edges() -> i32 {
    1000
}

/// What names one end of an edge in metric labels (Hubble's `sourceContext`/`destinationContext`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EdgeContext {
    /// The owning workload (and namespace).
    #[default]
    Workload,
    /// The namespace alone.
    Namespace,
    /// The pod (and namespace): one series per pod, which restarts renew.
    Pod,
    /// Nothing: every end is one.
    None,
}

impl EdgeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::Namespace => "namespace",
            Self::Pod => "pod",
            Self::None => "none",
        }
    }
}

/// Which pods a session captures, as a NetworkPolicy peer selects them: `podSelector` alone picks
/// pods in the session's own namespace; with `namespaceSelector` it picks them in every matching
/// namespace (`{}`: all namespaces); `namespaceSelector` alone picks every pod there.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.namespaceSelector) || has(self.podSelector)").message("target needs a namespaceSelector, a podSelector or both"))]
pub struct Target {
    /// Namespaces whose pods are candidates, by their labels. Unset: the session's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<Selector>,

    /// Pods to capture, by their labels. Unset: every pod of the selected namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<Selector>,
}

/// A Kubernetes label selector (`matchLabels` AND every `matchExpressions` requirement). An empty
/// selector matches everything. Requirements that contradict `matchLabels` (so that nothing could
/// ever match) are rejected.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.matchExpressions) || !has(self.matchLabels) || self.matchExpressions.all(e, !(e.key in self.matchLabels) || (e.operator == 'In' && self.matchLabels[e.key] in e.values) || (e.operator == 'NotIn' && !(self.matchLabels[e.key] in e.values)) || e.operator == 'Exists')").message("a matchExpressions requirement contradicts matchLabels for the same key, so the selector can never match"))]
pub struct Selector {
    /// Labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    #[schemars(extend("additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub match_labels: BTreeMap<String, String>,

    /// Requirements that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<Requirement>,
}

/// One label requirement: `In`/`NotIn` a list of values, or the key `Exists`/`DoesNotExist`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : size(self.values) == 0").message("In and NotIn need at least one value; Exists and DoesNotExist take none"))]
pub struct Requirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// How a requirement relates a label to its values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Scaling of the parser Deployment that consumes the session's queue.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("parsers.minReplicas must be less than or equal to parsers.maxReplicas"))]
#[x_kube(validation = Rule::new("self.maxReplicas <= self.shards").message("parsers.maxReplicas must not exceed parsers.shards: each parser consumes whole shards, so parsers beyond the shard count would idle"))]
#[x_kube(validation = Rule::new("self.shards == oldSelf.shards").message("parsers.shards cannot change during a session: flows would move between parsers mid-stream"))]
pub struct ParserScaling {
    /// Fewest parser replicas. 0 lets an idle session scale its parsers away.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,

    /// Most parser replicas.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Queued batches per parser replica that the autoscaler aims for.
    #[serde(default = "default_target_backlog")]
    #[schemars(range(min = 1))]
    pub target_backlog: i64,

    /// Shards the session's traffic is split into by flow, each a queue of its own; a parser
    /// consumes whole shards, so all of a flow's packets reach one parser (TCP reassembly needs
    /// them). At least `maxReplicas`; fixed for the session's life.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 256))]
    pub shards: i32,

    /// Who sets the replica count: `builtin` (the operator, from the queue depth), `keda`
    /// (a KEDA ScaledObject the operator creates), or `none` (fixed at `minReplicas`).
    #[serde(default)]
    pub autoscaler: Autoscaler,
}

impl Default for ParserScaling {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_backlog: default_target_backlog(),
            shards: default_shards(),
            autoscaler: Autoscaler::default(),
        }
    }
}

/// The session's RabbitMQ queues.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == oldSelf.type").message("queue.type cannot change during a session: RabbitMQ cannot change a declared queue's type"))]
pub struct QueueSpec {
    /// `classic` (default): on one broker node, lost with it. `quorum`: replicated over a RabbitMQ
    /// cluster's nodes (surviving the loss of a minority of them), and a batch delivered five times
    /// without being stored is set aside and counted as dropped (reason `redelivered`) instead of
    /// being redelivered forever. Needs RabbitMQ 3.8 or later; the chart's bundled broker is a
    /// single node, so quorum pays off with a cluster given in `broker.url` (its nodes' URLs,
    /// comma-separated).
    #[serde(default, rename = "type")]
    pub type_: QueueType,
}

/// How a queue is kept.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

/// Who owns the parser Deployment's replica count.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Autoscaler {
    /// The operator polls the queue depth and scales the Deployment.
    #[default]
    Builtin,
    /// A KEDA ScaledObject with a RabbitMQ trigger scales the Deployment.
    Keda,
    /// No autoscaling: `minReplicas` parsers run.
    None,
}

/// What the operator observed and did; read by `kubectl get cap`, kstatus (Flux) and Argo CD.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaptureSessionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Latest observations, by type: `Ready`, `Reconciling`, `Stalled` (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Where the session is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Sniffer pods wanted and ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sniffers: Option<SnifferCounts>,

    /// Parser replicas running and wanted by the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsers: Option<ParserCounts>,

    /// Batches waiting in the session's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,

    /// Packet accounting: captured = stored + dropped + in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<PacketCounts>,

    /// When the first sniffer was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the session reached `Completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// The pods `spec.target` selects, as the sniffers capture them now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<TargetCounts>,

    /// The RabbitMQ queue that buffers this session's batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// Lifecycle phase of a session.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; sniffers are not all running yet.
    Pending,
    /// Sniffers are capturing.
    Capturing,
    /// `suspend` is set: no sniffers, queue and data kept.
    Suspended,
    /// Capture ended (duration or maxPackets reached); parsers are emptying the queue.
    Draining,
    /// Capture ended and the queue is empty; data is kept until retention.
    Completed,
    /// The session cannot make progress; see the `Stalled` condition.
    Failed,
}

/// Sniffer pods of the session's DaemonSet.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnifferCounts {
    /// Nodes that should run a sniffer.
    pub desired: i32,
    /// Sniffers that are ready (capturing and connected to the broker).
    pub ready: i32,
}

/// What `spec.target` resolved to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetCounts {
    /// Selected pods with an address, on nodes the session captures on: the ones captured.
    pub pods: i32,
    /// Nodes that host them, each running a sniffer.
    pub nodes: i32,
    /// Selected pods that use the host's network: their traffic cannot be told apart from the
    /// node's by address, so they are not captured.
    #[serde(default)]
    pub host_network_pods: i32,
}

/// Parser replicas of the session's Deployment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParserCounts {
    /// Replicas currently running.
    pub replicas: i32,
    /// Replicas the autoscaler asks for.
    pub desired_replicas: i32,
}

/// Packet accounting of a session, summed over its sniffers and parsers.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PacketCounts {
    /// Packets the sniffers took from the kernel.
    pub captured: i64,
    /// Packets lost, for any reason (the sum of `droppedByReason`).
    pub dropped: i64,
    /// Packets lost, by reason: `kernel` (the capture ring overflowed), `queue_full` (the broker rejected the batch),
    /// `buffer_full` (the broker was unreachable longer than the sniffer could buffer), ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub dropped_by_reason: BTreeMap<String, i64>,
    /// Packets stored in PostgreSQL.
    pub stored: i64,
    /// Copies of a packet the same node's sniffer had already captured on another interface (a
    /// pod's packet on its veth, the bridge and the peer's veth): captured, neither stored nor
    /// lost. Captured = stored + deduplicated + on the way + dropped for every reason but
    /// `kernel` (those the ring lost before a sniffer captured them).
    #[serde(default)]
    pub deduplicated: i64,
}

/// Condition types, as kstatus (Flux) and Argo CD read them.
pub mod condition {
    /// Every part of the pipeline is up and doing what the spec asks.
    pub const READY: &str = "Ready";
    /// The operator is still working towards the spec.
    pub const RECONCILING: &str = "Reconciling";
    /// The operator cannot make progress without a change from the user.
    pub const STALLED: &str = "Stalled";
    /// Sessions with `spec.target`: whether selected pods are being captured, and which are not.
    pub const TARGETED: &str = "Targeted";
    /// The parsers store what the queue holds (False, reason `StorageStuck`: batches wait and
    /// nothing was stored for two minutes).
    pub const STORING: &str = "Storing";
    /// Every node that captured for the session still does (False, reason `NodesLost`: a node
    /// whose sniffer reported before is not ready, or its sniffer is not; the message names each
    /// with the last counters its sniffer reported).
    pub const NODES_CAPTURING: &str = "NodesCapturing";
}

fn default_snaplen() -> i32 {
    1024
}
fn default_retention() -> String {
    "24h".to_owned()
}
fn default_max_backlog_bytes() -> i64 {
    1 << 30
}
fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    10
}
fn default_shards() -> i32 {
    default_max_replicas()
}
fn default_target_backlog() -> i64 {
    100
}

impl CaptureSession {
    /// The session's RabbitMQ queue (also its routing key on `trawl.packets`): from namespace, name and
    /// uid, so that a session recreated under the same name never reads its predecessor's batches.
    pub fn queue_name(&self) -> Option<String> {
        let namespace = self.metadata.namespace.as_deref()?;
        let name = self.metadata.name.as_deref()?;
        let uid = self.metadata.uid.as_deref()?;
        Some(format!("trawl.{namespace}.{name}.{}", &uid[..uid.len().min(8)]))
    }

    /// The session's shard count (`parsers.shards`), within the schema's bounds.
    pub fn shards(&self) -> u16 {
        self.spec.parsers.shards.clamp(1, 256) as u16
    }
}
