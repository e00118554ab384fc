//! Decide: what a session should look like, as a pure function of the session, what was
//! observed and the time. No client and no clock here, so every path is unit-tested from
//! fixtures (below); `apply` carries the decision out and `status` writes what it says.

use std::time::Duration;

use std::collections::BTreeSet;

use crds::{Autoscaler, CaptureSession, Phase, SnifferCounts, TargetCounts, condition};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use crate::build;
use crate::conditions::{self, DesiredCondition};
use crate::context::DecideConfig;
use crate::observe::{Now, Observed};
use crate::{scaling, targets};

/// What one reconcile will do and report.
#[derive(Debug)]
pub struct Decision {
    pub phase: Phase,
    pub conditions: Vec<DesiredCondition>,
    pub children: Children,
    /// A new replica count for the parser Deployment (the builtin autoscaler's), with the
    /// event that explains it.
    pub scale: Option<Scale>,
    /// The autoscaler's window after this reconcile's recommendation.
    pub window: scaling::Window,
    pub events: Vec<DesiredEvent>,
    /// What the status reports of the children; `None` leaves those fields out.
    pub report: Option<Report>,
    /// When to look again without a change; `None`: only on a change.
    pub requeue: Option<Duration>,
}

/// The desired children, in the order `apply` applies them.
#[derive(Debug, Default)]
pub struct Children {
    /// Declare the session's queue (bounded by `maxBacklogBytes`).
    pub queue: bool,
    pub secret: Option<Secret>,
    /// For a session with `spec.target`: the per-node addresses and the sniffers' access to them,
    /// applied before the sniffers.
    pub targets: Option<TargetChildren>,
    /// Nodes to label (they host a targeted pod, so a sniffer starts there) and to unlabel.
    pub node_labels: NodeLabels,
    pub sniffers: Sniffers,
    pub parsers: Option<Deployment>,
    /// KEDA's ScaledObject (no Rust type: JSON).
    pub scaled_object: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct TargetChildren {
    pub configmap: ConfigMap,
    pub account: ServiceAccount,
    pub role: Role,
    pub binding: RoleBinding,
}

#[derive(Debug, Default, PartialEq)]
pub struct NodeLabels {
    pub label: String,
    pub add: BTreeSet<String>,
    pub remove: BTreeSet<String>,
}

/// What becomes of the sniffer DaemonSet.
#[derive(Debug, Default)]
pub enum Sniffers {
    /// Leave it as it is (or absent).
    #[default]
    Untouched,
    Apply(Box<DaemonSet>),
    Remove,
}

#[derive(Debug, PartialEq)]
pub struct Scale {
    pub from: i32,
    pub to: i32,
}

/// An Event about the session.
#[derive(Debug, PartialEq)]
pub struct DesiredEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl DesiredEvent {
    fn normal(reason: &'static str, message: String) -> Self {
        Self {
            warning: false,
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Self {
        Self {
            warning: true,
            reason,
            message,
        }
    }
}

/// The children's counts as the status shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub sniffers: Option<SnifferCounts>,
    pub parsers_ready: i32,
    pub desired_parsers: i32,
    pub backlog: Option<i64>,
    pub targets: Option<TargetCounts>,
}

/// The decision for one reconcile: a spec that cannot run stops here with a condition saying why;
/// otherwise the lifecycle (capturing, suspended, draining, completed) picks the children and the
/// status.
pub fn decide(session: &CaptureSession, observed: &Observed, now: Now, config: &DecideConfig) -> Decision {
    let previous = session.status.clone().unwrap_or_default();
    let mut decision = Decision {
        phase: Phase::Pending,
        conditions: Vec::new(),
        children: Children::default(),
        scale: None,
        window: observed.window.clone(),
        events: Vec::new(),
        report: None,
        requeue: None,
    };
    if let Some((reason, problem)) = invalid_spec(session) {
        return refused(decision, observed, config, &previous, reason, problem);
    }
    let keda = session.spec.parsers.autoscaler == Autoscaler::Keda;
    if keda && observed.keda_installed != Some(true) {
        return without_keda(decision, &previous);
    }
    if previous.queue.is_none() {
        let queue = session.queue_name().unwrap_or_default();
        decision.events.push(DesiredEvent::normal(
            "Created",
            format!("queue {queue}, sniffers and parsers"),
        ));
    }
    decision.children.queue = true;
    let ending = Ending::of(session, observed, now, &previous, &mut decision);
    let capturing = !session.spec.suspend && !ending.finished;
    stop_capturing_unless(capturing, session, observed, &mut decision);
    if ending.finished && observed.backlog == Some(0) {
        return completed(decision, observed, &previous);
    }
    let (sniffers, desired) = children(session, observed, now, config, capturing, &mut decision);
    let requeue = if session.spec.parsers.autoscaler == Autoscaler::Builtin {
        config.scale_interval
    } else {
        Duration::from_secs(30)
    };
    if session.spec.suspend {
        return suspended(decision, requeue);
    }
    if ending.finished {
        return draining(decision, observed);
    }
    readiness(session, observed, sniffers.as_ref(), desired, &mut decision);
    decision.requeue = Some(wake_up(&ending, now, requeue));
    decision
}

fn suspended(mut decision: Decision, requeue: Duration) -> Decision {
    decision.phase = Phase::Suspended;
    decision.conditions = conditions::kstatus_done(
        "Suspended",
        "capture suspended: no sniffers; the queue and stored data are kept".into(),
    );
    decision.requeue = Some(requeue);
    decision
}

/// The capture ended: the parsers store what is left in the queue.
fn draining(mut decision: Decision, observed: &Observed) -> Decision {
    let message = format!(
        "capture ended; parsers are storing the {} batches left in the queue",
        observed.backlog.unwrap_or(0)
    );
    decision.phase = Phase::Draining;
    decision.conditions = conditions::kstatus(false, None, &message);
    decision.requeue = Some(Duration::from_secs(5));
    decision
}

/// Wake up for the autoscaler and for the end of the capture, whichever comes first.
fn wake_up(ending: &Ending, now: Now, requeue: Duration) -> Duration {
    let until_deadline = ending
        .deadline
        .map(|deadline| deadline.duration_since(now.wall))
        .and_then(|span| Duration::try_from(span).ok());
    until_deadline
        .map_or(requeue, |d| d.min(requeue))
        .max(Duration::from_millis(500))
}

/// What in the spec cannot run: a filter libpcap cannot compile, target labels that are not labels.
fn invalid_spec(session: &CaptureSession) -> Option<(&'static str, String)> {
    invalid_filter(session)
        .map(|problem| ("InvalidFilter", problem))
        .or_else(|| {
            let target = session.spec.target.as_ref()?;
            targets::invalid_labels(target).map(|problem| ("InvalidTarget", problem))
        })
}

/// A spec that cannot run: a condition the user can act on, and no change to the children.
/// Sniffers that run already keep their previous, valid spec (the DaemonSet is not applied), so
/// the status says so instead of claiming capture stopped.
fn refused(
    mut decision: Decision,
    observed: &Observed,
    config: &DecideConfig,
    previous: &crds::CaptureSessionStatus,
    reason: &'static str,
    problem: String,
) -> Decision {
    let failed_before = previous.phase == Some(Phase::Failed);
    let reported_before = previous
        .conditions
        .iter()
        .any(|c| c.type_ == crds::condition::STALLED && c.status == "True" && c.reason == reason);
    let running = observed.sniffers.is_some() && matches!(previous.phase, Some(Phase::Capturing | Phase::Pending));
    let message = if running {
        format!("{problem}; capture continues as before until this is fixed")
    } else {
        format!("{problem}; fix it to start capturing")
    };
    if !reported_before && !failed_before {
        decision.events.push(DesiredEvent::warning(reason, message.clone()));
    }
    decision.conditions = conditions::kstatus(false, Some((reason, message)), "");
    if running {
        decision.phase = previous.phase.unwrap_or(Phase::Capturing);
        decision.report = Some(Report {
            sniffers: observed.sniffers.as_ref().and_then(|s| s.counts.clone()),
            parsers_ready: observed.parsers.as_ref().map_or(0, |p| p.ready),
            desired_parsers: observed.parsers.as_ref().map_or(0, |p| p.replicas),
            backlog: observed.backlog.map(i64::from),
            targets: previous.targets.clone(),
        });
        // Keep the counts fresh while the sniffers run.
        decision.requeue = Some(config.scale_interval);
    } else {
        decision.phase = Phase::Failed;
    }
    decision
}

/// KEDA mode needs KEDA: without its CRD nothing would scale the parsers.
fn without_keda(mut decision: Decision, previous: &crds::CaptureSessionStatus) -> Decision {
    let message = "spec.parsers.autoscaler is keda, but KEDA is not installed (no scaledobjects.keda.sh CRD): \
                   install KEDA or set autoscaler to builtin"
        .to_owned();
    if previous.phase != Some(Phase::Failed) {
        decision
            .events
            .push(DesiredEvent::warning("KedaNotInstalled", message.clone()));
    }
    decision.phase = Phase::Failed;
    decision.conditions = conditions::kstatus(false, Some(("KedaNotInstalled", message)), "");
    // CRDs are not watched: look again from time to time, so that installing KEDA is noticed.
    decision.requeue = Some(Duration::from_secs(10));
    decision
}

/// Whether the capture is over: the duration is up or enough packets are captured (then the
/// parsers drain the queue and stop), or it ended before.
struct Ending {
    deadline: Option<k8s_openapi::jiff::Timestamp>,
    finished: bool,
}

impl Ending {
    fn of(
        session: &CaptureSession,
        observed: &Observed,
        now: Now,
        previous: &crds::CaptureSessionStatus,
        decision: &mut Decision,
    ) -> Self {
        let deadline = capture_deadline(session);
        let expired = deadline.is_some_and(|deadline| deadline <= now.wall);
        let enough = session
            .spec
            .max_packets
            .zip(observed.counts.as_ref())
            .is_some_and(|(max, counts)| counts.captured - counts.deduplicated >= max);
        let ended_before = matches!(previous.phase, Some(Phase::Draining | Phase::Completed));
        if (expired || enough) && !ended_before {
            let why = if enough {
                format!("maxPackets ({}) reached", session.spec.max_packets.unwrap_or_default())
            } else {
                format!(
                    "duration ({}) reached",
                    session.spec.duration.as_deref().unwrap_or_default()
                )
            };
            decision
                .events
                .push(DesiredEvent::normal("CaptureEnded", format!("{why}; sniffers removed")));
        }
        Self {
            deadline,
            finished: expired || enough || ended_before,
        }
    }
}

/// When the session is not capturing: its sniffers go, and so do its node labels.
fn stop_capturing_unless(capturing: bool, session: &CaptureSession, observed: &Observed, decision: &mut Decision) {
    if capturing {
        return;
    }
    if observed.sniffers.is_some() {
        decision.children.sniffers = Sniffers::Remove;
    }
    if let Some(observed_targets) = &observed.targets {
        decision.children.node_labels = NodeLabels {
            label: targets::node_label(session),
            add: BTreeSet::new(),
            remove: observed_targets.labelled.clone(),
        };
    }
}

/// Capture over and every batch stored: the parsers scale to zero and the session is done.
fn completed(mut decision: Decision, observed: &Observed, previous: &crds::CaptureSessionStatus) -> Decision {
    if let Some(parsers) = &observed.parsers
        && parsers.replicas != 0
    {
        decision.scale = Some(Scale {
            from: parsers.replicas,
            to: 0,
        });
    }
    if previous.phase != Some(Phase::Completed) {
        decision.events.push(DesiredEvent::normal(
            "Completed",
            "capture ended and the queue is drained".into(),
        ));
    }
    decision.phase = Phase::Completed;
    decision.conditions = conditions::kstatus_done("Completed", "capture ended and every batch is stored".into());
    decision.report = Some(Report {
        sniffers: None,
        parsers_ready: 0,
        desired_parsers: 0,
        backlog: Some(0),
        targets: None,
    });
    decision
}

/// The children of a running session (credentials, sniffers while capturing, parsers and their
/// autoscaling) and the report of them. Returns the sniffers' counts and the parsers wanted.
fn children(
    session: &CaptureSession,
    observed: &Observed,
    now: Now,
    config: &DecideConfig,
    capturing: bool,
    decision: &mut Decision,
) -> (Option<SnifferCounts>, i32) {
    let queue = session.queue_name().unwrap_or_default();
    decision.children.secret = Some(build::credentials_secret(session, &config.pods));
    let sniffers = match (capturing, observed.sniffer_port) {
        (true, Some(port)) => {
            // Without the cluster's caches (tests that do not watch pods), an empty list: the
            // sniffers then keep every copy for their deduplication to sort out.
            decide_targets(
                session,
                &config.pods.namespace,
                &observed.targets.clone().unwrap_or_default(),
                decision,
            );
            decision.children.sniffers =
                Sniffers::Apply(Box::new(build::sniffer_daemonset(session, &config.pods, &queue, port)));
            observed.sniffers.as_ref().and_then(|s| s.counts.clone())
        }
        _ => None,
    };
    decision.children.parsers = Some(build::parser_deployment(session, &config.pods, &queue));
    if session.spec.parsers.autoscaler == Autoscaler::Keda {
        decision.children.scaled_object = Some(build::parser_scaled_object(session, &config.pods.namespace, &queue));
    }
    let current = observed.parsers.as_ref().map_or(1, |p| p.replicas);
    let desired = autoscale(session, observed, now, config, current, decision);
    decision.report = Some(Report {
        sniffers: sniffers.clone(),
        parsers_ready: observed.parsers.as_ref().map_or(0, |p| p.ready),
        desired_parsers: desired,
        backlog: observed.backlog.map(i64::from),
        targets: (capturing && session.spec.target.is_some())
            .then(|| observed.targets.as_ref().map(|t| t.resolved.counts()))
            .flatten(),
    });
    (sniffers, desired)
}

/// Capturing: Ready once every sniffer and enough parsers are, and storage keeps up; the
/// conditions say what is awaited.
fn readiness(
    session: &CaptureSession,
    observed: &Observed,
    sniffers: Option<&SnifferCounts>,
    desired: i32,
    decision: &mut Decision,
) {
    let parsers_ready = observed.parsers.as_ref().map_or(0, |p| p.ready);
    let sniffers_ready = sniffers.is_some_and(|s| s.desired > 0 && s.ready == s.desired);
    let ready = sniffers_ready && parsers_ready >= session.spec.parsers.min_replicas.max(1).min(desired.max(1));
    let waiting_for = match (sniffers, sniffers_ready) {
        (None, _) => "waiting for the sniffer DaemonSet".to_owned(),
        (Some(s), false) if s.desired == 0 && session.spec.target.is_some() => {
            "waiting for a selected pod with an address on a node the nodeSelector matches".to_owned()
        }
        (Some(s), false) if s.desired == 0 => "no node matches the session's nodeSelector".to_owned(),
        (Some(s), false) => format!("{} of {} sniffers ready", s.ready, s.desired),
        (Some(_), true) => format!("{parsers_ready} parser replicas ready"),
    };
    decision.phase = if ready { Phase::Capturing } else { Phase::Pending };
    decision.conditions = conditions::kstatus(ready, None, &waiting_for);
    let storing = storing_condition(observed);
    if !storing.status {
        // Capturing but storing nothing: the session is not doing what the user asked.
        decision.conditions[0] = DesiredCondition {
            type_: condition::READY,
            status: false,
            reason: storing.reason,
            message: storing.message.clone(),
        };
    }
    decision.conditions.push(storing);
    decision
        .conditions
        .push(nodes_capturing_condition(&observed.lost_nodes));
    if let (Some(_), Some(observed_targets)) = (&session.spec.target, &observed.targets) {
        decision.conditions.push(targeted_condition(&observed_targets.resolved));
    }
}

/// Whether every node that captured for the session still does (issue #30 item 6): a lost node
/// is named with the last counters its sniffer reported, which are what the session has of it
/// until it returns (its sniffer then flushes what it buffered, or counts it as dropped).
fn nodes_capturing_condition(lost: &[crate::observe::LostNode]) -> DesiredCondition {
    if lost.is_empty() {
        return DesiredCondition {
            type_: condition::NODES_CAPTURING,
            status: true,
            reason: "AllNodesCapturing",
            message: "every node that captured for the session still does".into(),
        };
    }
    let nodes: Vec<String> = lost
        .iter()
        .map(|lost| {
            let last = &lost.last;
            format!(
                "{} ({}): last reported at {}: {} captured, {} dropped",
                last.node, lost.why, last.reported_at, last.captured, last.dropped
            )
        })
        .collect();
    DesiredCondition {
        type_: condition::NODES_CAPTURING,
        status: false,
        reason: "NodesLost",
        message: nodes.join("; "),
    }
}

/// A queue that holds batches while nothing is stored for this long means the parsers cannot
/// store them (a parser failing on every attempt, the database refusing writes), not that they are
/// slow: a parser stores a group every few hundred milliseconds while it drains.
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

/// Whether the session's storage keeps up with its queue (issue #29 item 2).
fn storing_condition(observed: &Observed) -> DesiredCondition {
    let waiting = observed.backlog.unwrap_or(0);
    match observed.since_stored {
        Some(idle) if waiting > 0 && idle >= STUCK_AFTER => DesiredCondition {
            type_: condition::STORING,
            status: false,
            reason: "StorageStuck",
            message: format!(
                "{waiting} batches wait in the queue and none was stored for {}s: the parsers cannot store them \
                 (see their logs, and trawl_parser_dead_lettered_total for batches set aside)",
                idle.as_secs()
            ),
        },
        _ if waiting > 0 => DesiredCondition {
            type_: condition::STORING,
            status: true,
            reason: "Draining",
            message: format!("{waiting} batches wait in the queue"),
        },
        _ => DesiredCondition {
            type_: condition::STORING,
            status: true,
            reason: "KeepingUp",
            message: "no batches wait in the queue".into(),
        },
    }
}

/// The ConfigMap of the pods the session captures (a targeted session's targets, or every pod on
/// a node-wide session's nodes), the sniffers' access to it, and for a targeted session the node
/// labels that place sniffers exactly where targeted pods run.
fn decide_targets(
    session: &CaptureSession,
    namespace: &str,
    observed: &crate::observe::ObservedTargets,
    decision: &mut Decision,
) {
    let (account, role, binding) = build::sniffer_access(session, namespace);
    decision.children.targets = Some(TargetChildren {
        configmap: build::targets_configmap(session, namespace, observed.resolved.by_node()),
        account,
        role,
        binding,
    });
    let wanted: BTreeSet<String> = match session.spec.target {
        Some(_) => observed.resolved.addresses.keys().cloned().collect(),
        None => BTreeSet::new(),
    };
    decision.children.node_labels = NodeLabels {
        label: targets::node_label(session),
        add: wanted.difference(&observed.labelled).cloned().collect(),
        remove: observed.labelled.difference(&wanted).cloned().collect(),
    };
}

/// `Targeted`: how many selected pods are captured, and which selected pods are not because they
/// share the node's network.
fn targeted_condition(resolved: &targets::Resolved) -> DesiredCondition {
    let counts = resolved.counts();
    let skipped = if resolved.host_network.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = resolved.host_network.iter().take(5).map(String::as_str).collect();
        let more = resolved.host_network.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!(
            "; not captured: {}{more} (host network: their traffic cannot be told apart from the node's by address)",
            shown.join(", ")
        )
    };
    if let Some((node, count)) = resolved.overfull_nodes().first() {
        return DesiredCondition {
            type_: crds::condition::TARGETED,
            status: false,
            reason: "TooManyTargets",
            message: format!(
                "node {node} hosts {count} targeted addresses, more than the {} a kernel filter holds: its sniffer \
                 keeps its previous targets; narrow the podSelector",
                targets::MAX_ADDRESSES_PER_NODE
            ),
        };
    }
    let (status, reason) = match (counts.pods > 0, resolved.host_network.is_empty()) {
        (true, true) => (true, "PodsTargeted"),
        (true, false) => (true, "HostNetworkPodsSkipped"),
        (false, true) => (false, "NoPodsSelected"),
        (false, false) => (false, "HostNetworkPodsSkipped"),
    };
    DesiredCondition {
        type_: crds::condition::TARGETED,
        status,
        reason,
        message: format!("{} pods on {} nodes captured{skipped}", counts.pods, counts.nodes),
    }
}

/// The builtin autoscaler: the replica count the parsers should have now (up at once, down after
/// the stabilization window), recorded in `decision` with its event when it differs.
fn autoscale(
    session: &CaptureSession,
    observed: &Observed,
    now: Now,
    config: &DecideConfig,
    current: i32,
    decision: &mut Decision,
) -> i32 {
    let parsers = &session.spec.parsers;
    if parsers.autoscaler != Autoscaler::Builtin {
        return current;
    }
    let Some(backlog) = observed.backlog else {
        return current;
    };
    let recommendation = scaling::recommend(
        u64::from(backlog),
        parsers.target_backlog,
        parsers.min_replicas,
        parsers.max_replicas,
    );
    let desired = decision
        .window
        .decide(now.instant, recommendation, current, config.scale_down_stabilization);
    if desired != current {
        let message = format!(
            "parsers {current} -> {desired} for a backlog of {backlog} batches (target {} each)",
            parsers.target_backlog
        );
        let reason = if desired > current { "ScaledUp" } else { "ScaledDown" };
        decision.events.push(DesiredEvent::normal(reason, message));
        decision.scale = Some(Scale {
            from: current,
            to: desired,
        });
    }
    desired
}

/// Why the session's filter cannot run, if it cannot: libpcap compiles it as the sniffer will.
pub fn invalid_filter(session: &CaptureSession) -> Option<String> {
    let expression = session.spec.filter.as_deref().unwrap_or("").trim();
    if expression.is_empty() {
        return None;
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).ok()?;
    dead.compile(expression, true)
        .err()
        .map(|error| format!("spec.filter {expression:?} is not valid tcpdump syntax ({error})"))
}

/// When capture must end: `startTime + duration`, once the session has started.
fn capture_deadline(session: &CaptureSession) -> Option<k8s_openapi::jiff::Timestamp> {
    let duration: kube::core::Duration = session.spec.duration.as_deref()?.parse().ok()?;
    let started = session.status.as_ref()?.start_time.as_ref()?.0;
    let duration: std::time::Duration = duration.into();
    started
        .checked_add(k8s_openapi::jiff::SignedDuration::try_from(duration).ok()?)
        .ok()
}

/// What deleting a session takes: its queues go (its children follow by ownership), and its
/// mirror row is marked deleted.
#[derive(Debug, PartialEq)]
pub struct Cleanup {
    pub queue: Option<String>,
    pub mirror: Option<(String, String)>,
}

pub fn decide_cleanup(session: &CaptureSession) -> Cleanup {
    Cleanup {
        queue: session.queue_name(),
        mirror: session.metadata.namespace.clone().zip(session.metadata.name.clone()),
    }
}

#[cfg(test)]
mod tests;
