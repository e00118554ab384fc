//! Observe: every read a reconcile makes, before anything is decided. The cluster (the session's
//! children, KEDA's CRD), the broker (the queue's backlog) and the database (packet counts).

use std::time::Instant;

use std::collections::BTreeSet;

use crds::{CaptureSession, PacketCounts, SnifferCounts, Target};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::context::{ClusterCache, Context};
use crate::error::Error;
use crate::{names, scaling, targets};

/// What the world looked like to one reconcile.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The session's sniffer DaemonSet, if it exists.
    pub sniffers: Option<ObservedSniffers>,
    /// The session's parser Deployment, if it exists.
    pub parsers: Option<ObservedParsers>,
    /// Batches waiting in the session's queue; `None` when the queue does not exist yet or the
    /// broker could not be asked.
    pub backlog: Option<u32>,
    /// Whether KEDA's ScaledObject CRD exists; only asked for sessions with `autoscaler: keda`.
    pub keda_installed: Option<bool>,
    /// Packet counts from the database; `None` without a database or while it cannot be read
    /// (the status then keeps the last known counts).
    pub counts: Option<PacketCounts>,
    /// How long ago the session last stored a batch; `None` when the database cannot be read.
    pub since_stored: Option<std::time::Duration>,
    /// The sniffer port: the DaemonSet's own, or one reserved for this reconcile. `None` for a
    /// suspended session that has no sniffers.
    pub sniffer_port: Option<i32>,
    /// The builtin autoscaler's recent recommendations for this session (kept by the reconciler
    /// between reconciles, not read from the cluster).
    pub window: scaling::Window,
    /// For a session with `spec.target`: what it selects now, and which nodes carry its label.
    pub targets: Option<ObservedTargets>,
    /// Nodes whose sniffer reported for the session and does no longer, though it did not stop.
    pub lost_nodes: Vec<LostNode>,
}

/// A node that captured for the session and does not now (issue #30 item 6).
#[derive(Clone, Debug, PartialEq)]
pub struct LostNode {
    /// What is wrong: the node is gone or not ready, or its sniffer is missing or not ready.
    pub why: &'static str,
    /// The last counters its sniffer reported.
    pub last: database::NodeCounters,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedTargets {
    pub resolved: targets::Resolved,
    pub labelled: BTreeSet<String>,
}

impl ClusterCache {
    /// Resolved only once every cache holds a full list: a half-filled cache would unlabel nodes
    /// and stop sniffers whose pods it has not seen yet.
    async fn observe(&self, session: &CaptureSession, target: &Target) -> Result<ObservedTargets, Error> {
        let wait = async {
            self.pods.wait_until_ready().await?;
            self.namespaces.wait_until_ready().await?;
            self.services.wait_until_ready().await?;
            self.nodes.wait_until_ready().await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(30), wait).await {
            Ok(Ok(())) => {}
            _ => return Err(Error::CacheNotReady),
        }
        let nodes = self.nodes.state();
        let label = targets::node_label(session);
        let labelled = nodes
            .iter()
            .filter(|node| node.labels().contains_key(&label))
            .map(|node| node.name_any())
            .collect();
        let pods = self.pods.state();
        let mut resolved = targets::resolve(session, target, &pods, &self.namespaces.state(), &nodes);
        resolved.add_services(&self.services.state(), &pods);
        Ok(ObservedTargets { resolved, labelled })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedSniffers {
    pub counts: Option<SnifferCounts>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedParsers {
    /// `spec.replicas`: what the Deployment is scaled to now.
    pub replicas: i32,
    pub ready: i32,
}

pub async fn observe(session: &CaptureSession, context: &Context) -> Result<Observed, Error> {
    let children = &context.config.pods.namespace;
    let queue = session.queue_name().ok_or(Error::Incomplete)?;
    let daemonsets: Api<DaemonSet> = Api::namespaced(context.client.clone(), children);
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), children);
    let sniffer_name = names::sniffer_name(session);
    let daemonset = daemonsets.get_opt(&sniffer_name).await.map_err(|source| Error::Read {
        what: format!("DaemonSet {sniffer_name}"),
        source,
    })?;
    let parser_name = names::parser_name(session);
    let deployment = deployments.get_opt(&parser_name).await.map_err(|source| Error::Read {
        what: format!("Deployment {parser_name}"),
        source,
    })?;
    let keda_installed = if session.spec.parsers.autoscaler == crds::Autoscaler::Keda {
        Some(keda_installed(context).await?)
    } else {
        None
    };
    let sniffer_port = match daemonset.as_ref().and_then(port_of) {
        Some(port) => Some(port),
        None if session.spec.suspend => None,
        None => Some(reserve_sniffer_port(session, context, &daemonsets).await?),
    };
    // A node-wide session captures every pod on its nodes: its sniffers need all their addresses
    // too (see the sniffer's capture points); and a session that had a target needs its labelled
    // nodes for their labels' removal.
    let targets = match &context.cluster {
        Some(cluster) => {
            let every_pod = targets::every_pod();
            let target = session.spec.target.as_ref().unwrap_or(&every_pod);
            Some(cluster.observe(session, target).await?)
        }
        None => None,
    };
    let (counts, since_stored) = storage(session, context).await;
    let lost_nodes = lost_nodes(session, context).await;
    Ok(Observed {
        sniffers: daemonset.map(|daemonset| ObservedSniffers {
            counts: daemonset.status.map(|s| SnifferCounts {
                desired: s.desired_number_scheduled,
                ready: s.number_ready,
            }),
        }),
        parsers: deployment.map(|deployment| ObservedParsers {
            replicas: deployment.spec.replicas.unwrap_or(1),
            ready: deployment.status.and_then(|s| s.ready_replicas).unwrap_or(0),
        }),
        backlog: if queue_declared(session) {
            context.broker.backlog(&queue, session.shards()).await.ok()
        } else {
            None
        },
        keda_installed,
        counts,
        since_stored,
        sniffer_port,
        window: scaling::Window::default(),
        targets,
        lost_nodes,
    })
}

/// Nodes whose sniffer reported for the session, did not say it stopped, and is not capturing
/// now: the node is gone or not ready (the node lifecycle controller's view), or the session's
/// sniffer pod there is missing or not ready. Empty without the cluster's caches or a database.
async fn lost_nodes(session: &CaptureSession, context: &Context) -> Vec<LostNode> {
    let (Some(pool), Some(cluster), Some(namespace)) = (&context.database, &context.cluster, session.namespace())
    else {
        return Vec::new();
    };
    let key = database::session_key(&namespace, &session.name_any());
    let created = created(session);
    let Ok(reported) = database::node_counters(pool, &key, created.as_deref())
        .await
        .inspect_err(|error| tracing::warn!(session = %key, %error, "cannot read the nodes' counters"))
    else {
        return Vec::new();
    };
    let ready = |conditions: Option<&Vec<k8s_openapi::api::core::v1::NodeCondition>>| {
        conditions.is_some_and(|all| all.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let sniffers: Vec<_> = cluster
        .pods
        .state()
        .into_iter()
        .filter(|pod| {
            let labels = pod.labels();
            pod.namespace().as_deref() == Some(context.config.pods.namespace.as_str())
                && pod.metadata.deletion_timestamp.is_none()
                && labels.get(names::SESSION_UID_LABEL) == session.uid().as_ref()
                && labels.get("app.kubernetes.io/component").map(String::as_str) == Some("sniffer")
        })
        .collect();
    reported
        .into_iter()
        .filter(|last| !last.stopped)
        .filter_map(|last| {
            let node = cluster.nodes.get(&kube::runtime::reflector::ObjectRef::new(&last.node));
            let sniffer = sniffers
                .iter()
                .find(|pod| pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some(last.node.as_str()));
            let sniffer_ready = sniffer.is_some_and(|pod| {
                let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
                conditions.is_some_and(|all| all.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            let why = match node {
                None => "node gone",
                Some(node) if !ready(node.status.as_ref().and_then(|status| status.conditions.as_ref())) => {
                    "node not ready"
                }
                Some(_) if sniffer.is_none() => "no sniffer",
                Some(_) if !sniffer_ready => "sniffer not ready",
                Some(_) => return None,
            };
            Some(LostNode { why, last })
        })
        .collect()
}

/// When the observation was made: wall-clock time for the status, a monotonic instant for the
/// autoscaler's window.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub wall: k8s_openapi::jiff::Timestamp,
    pub instant: Instant,
}

impl Now {
    pub fn current() -> Self {
        Self {
            wall: k8s_openapi::jiff::Timestamp::now(),
            instant: Instant::now(),
        }
    }
}

/// Whether an earlier reconcile declared the session's queue. Asking the broker for the depth of
/// a queue that does not exist closes the channel with NOT_FOUND, which lapin logs as an error;
/// a new session's first reconcile declares the queue and reads its depth the next time.
fn queue_declared(session: &CaptureSession) -> bool {
    session
        .status
        .as_ref()
        .is_some_and(|status| status.queue.is_some() && status.phase != Some(crds::Phase::Failed))
}

fn port_of(daemonset: &DaemonSet) -> Option<i32> {
    daemonset
        .spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .ports
        .as_ref()?
        .first()
        .map(|p| p.container_port)
}

/// The session's sniffer port, reserved until the reconcile applies its DaemonSet (see
/// `crate::ports`). Ports are per node, so every namespace's sniffers count; an operator limited
/// to one namespace by RBAC sees only its own.
async fn reserve_sniffer_port(
    session: &CaptureSession,
    context: &Context,
    daemonsets: &Api<DaemonSet>,
) -> Result<i32, Error> {
    let uid = session.uid().ok_or(Error::Incomplete)?;
    let in_use = || async {
        let selector = ListParams::default()
            .labels("app.kubernetes.io/managed-by=trawl-operator,app.kubernetes.io/component=sniffer");
        let all: Api<DaemonSet> = Api::all(context.client.clone());
        let read = |source| Error::Read {
            what: "sniffer DaemonSets".into(),
            source,
        };
        let existing = match all.list(&selector).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 403 => daemonsets.list(&selector).await.map_err(read)?,
            Err(error) => return Err(read(error)),
        };
        Ok(existing.items.iter().filter_map(port_of).collect())
    };
    context.ports.reserve(&uid, in_use).await?.ok_or(Error::NoFreePort)
}

async fn keda_installed(context: &Context) -> Result<bool, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(context.client.clone());
    let crd = crds
        .get_opt("scaledobjects.keda.sh")
        .await
        .map_err(|source| Error::Read {
            what: "CustomResourceDefinition scaledobjects.keda.sh".into(),
            source,
        })?;
    Ok(crd.is_some())
}

/// The session's creation time (RFC 3339): the database counts only sniffers first seen since.
fn created(session: &CaptureSession) -> Option<String> {
    session
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|time| time.0.to_string())
}

/// What the database says of the session's storage: its packet counts and how long ago it last
/// stored a batch; `None` for either (the status keeps the last known counts) when there is no
/// database or it cannot be read right now.
async fn storage(session: &CaptureSession, context: &Context) -> (Option<PacketCounts>, Option<std::time::Duration>) {
    let (Some(pool), Some(namespace)) = (context.database.as_ref(), session.namespace()) else {
        return (None, None);
    };
    let key = database::session_key(&namespace, &session.name_any());
    let created = created(session);
    let counts = database::packet_counts(pool, &key, created.as_deref())
        .await
        .inspect_err(|error| tracing::warn!(session = %key, %error, "cannot read packet counts; keeping the last ones"))
        .ok();
    let since_stored = database::seconds_since_stored(pool, &key, created.as_deref())
        .await
        .inspect_err(|error| tracing::warn!(session = %key, %error, "cannot read when the session last stored"))
        .ok()
        .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds.max(0.0)).ok());
    (counts, since_stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{CaptureSessionStatus, Phase};

    #[test]
    fn the_backlog_is_asked_for_only_once_the_queue_was_declared() {
        let mut session = crate::build::fixture::session();
        assert!(!queue_declared(&session), "a new session");
        session.status = Some(CaptureSessionStatus {
            queue: Some("q".into()),
            phase: Some(Phase::Failed),
            ..Default::default()
        });
        assert!(!queue_declared(&session), "a failed session never declared it");
        session.status.as_mut().unwrap().phase = Some(Phase::Pending);
        assert!(queue_declared(&session));
    }
}
