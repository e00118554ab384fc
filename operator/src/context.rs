//! What every reconcile shares: the client, the operator's tunables and its long-lived state
//! (the broker connection, autoscaler windows, reserved sniffer ports, the database, the
//! cluster caches). A leaf: observe, decide, apply and reconcile depend on it, not on each other
//! through it.

use std::sync::Arc;
use std::time::Duration;

use crds::CaptureSession;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};

use crate::build::PodConfig;
use crate::{ports, queue, scaling};

/// The operator's tunables that decisions depend on.
#[derive(Clone, Debug)]
pub struct DecideConfig {
    pub pods: PodConfig,
    /// How often the builtin autoscaler looks at the backlog.
    pub scale_interval: Duration,
    pub scale_down_stabilization: Duration,
}

/// The operator's caches of the cluster's pods, namespaces and nodes, which targeted sessions
/// resolve against (kept by watches; a pod or namespace change reconciles the targeted sessions).
#[derive(Clone)]
pub struct ClusterCache {
    pub pods: Store<Pod>,
    pub namespaces: Store<Namespace>,
    pub nodes: Store<Node>,
    pub services: Store<Service>,
}

pub struct Context {
    pub client: Client,
    pub config: DecideConfig,
    /// The RabbitMQ the operator itself declares queues with.
    pub broker: queue::Broker,
    pub recorder: Recorder,
    pub windows: scaling::Windows,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Sniffer ports reserved by reconciles in flight, which a list of DaemonSets does not show yet.
    pub ports: ports::SnifferPorts,
    /// Where the parsers store packets: read for the packet counts, written with the session mirror.
    pub database: Option<sqlx::PgPool>,
    /// Pods, namespaces and nodes, for sessions with `spec.target`. `None` in tests that do not
    /// watch them.
    pub cluster: Option<ClusterCache>,
}

impl Context {
    pub async fn event(&self, session: &CaptureSession, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &session.object_ref(&())).await {
            tracing::warn!(%error, "cannot record an event");
        }
    }
}
