//! Every path of `decide`, from fixtures: the example session as the API server returns it, and
//! what a reconcile could have observed.

use std::time::{Duration, Instant};

use crds::{Autoscaler, CaptureSession, CaptureSessionStatus, PacketCounts, Phase, SnifferCounts};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::build::fixture::{pod_config, session};
use crate::observe::{ObservedParsers, ObservedSniffers};

const NOW: i64 = 1_800_000_000;

fn with_status(mut session: CaptureSession, status: CaptureSessionStatus) -> CaptureSession {
    session.status = Some(status);
    session
}

fn running() -> CaptureSessionStatus {
    CaptureSessionStatus {
        phase: Some(Phase::Capturing),
        queue: session().queue_name(),
        start_time: Some(Time(Timestamp::from_second(NOW - 60).unwrap())),
        ..Default::default()
    }
}

fn decide_config() -> DecideConfig {
    DecideConfig {
        pods: pod_config(),
        scale_interval: Duration::from_secs(5),
        scale_down_stabilization: Duration::from_secs(60),
    }
}

fn at(base: Instant, seconds: u64) -> Now {
    Now {
        wall: Timestamp::from_second(NOW + seconds as i64).unwrap(),
        instant: base + Duration::from_secs(seconds),
    }
}

fn now() -> Now {
    at(Instant::now(), 0)
}

/// A session whose sniffers and parsers are all up, with an empty queue.
fn healthy() -> Observed {
    Observed {
        sniffers: Some(ObservedSniffers {
            counts: Some(SnifferCounts { desired: 2, ready: 2 }),
        }),
        parsers: Some(ObservedParsers { replicas: 1, ready: 1 }),
        backlog: Some(0),
        sniffer_port: Some(24_000),
        ..Default::default()
    }
}

fn condition(decision: &Decision, type_: &str) -> (bool, &'static str) {
    let c = decision.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status, c.reason)
}

fn reasons(decision: &Decision) -> Vec<&'static str> {
    decision.events.iter().map(|n| n.reason).collect()
}

#[test]
fn a_new_session_gets_its_queue_secret_sniffers_and_parsers() {
    let observed = Observed {
        sniffer_port: Some(24_000),
        ..Default::default()
    };
    let decision = decide(&session(), &observed, now(), &decide_config());
    assert!(decision.children.queue);
    assert!(decision.children.secret.is_some());
    let Sniffers::Apply(daemonset) = &decision.children.sniffers else {
        panic!("sniffers to apply, got {:?}", decision.children.sniffers)
    };
    let container = &daemonset.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 24_000);
    assert!(decision.children.parsers.is_some());
    assert!(decision.children.scaled_object.is_none());
    assert_eq!(reasons(&decision), ["Created"]);
    assert_eq!(decision.phase, Phase::Pending);
    assert_eq!(condition(&decision, "Reconciling"), (true, "Progressing"));
    assert_eq!(
        decision.conditions[0].message, "waiting for the sniffer DaemonSet",
        "{:?}",
        decision.conditions
    );
    assert_eq!(decision.requeue, Some(Duration::from_secs(5)));
    assert_eq!(decision.scale, None, "a new Deployment starts at one parser");
}

#[test]
fn ready_when_every_sniffer_and_parser_is() {
    let decision = decide(&with_status(session(), running()), &healthy(), now(), &decide_config());
    assert_eq!(decision.phase, Phase::Capturing);
    assert_eq!(condition(&decision, "Ready"), (true, "Capturing"));
    assert!(reasons(&decision).is_empty(), "no Created event for a known queue");
    let report = decision.report.unwrap();
    assert_eq!(report.sniffers, Some(SnifferCounts { desired: 2, ready: 2 }));
    assert_eq!((report.parsers_ready, report.desired_parsers), (1, 1));

    let mut waiting = healthy();
    waiting.sniffers = Some(ObservedSniffers {
        counts: Some(SnifferCounts { desired: 2, ready: 1 }),
    });
    let decision = decide(&with_status(session(), running()), &waiting, now(), &decide_config());
    assert_eq!(decision.phase, Phase::Pending);
    assert_eq!(decision.conditions[0].message, "1 of 2 sniffers ready");

    let mut nowhere = healthy();
    nowhere.sniffers = Some(ObservedSniffers {
        counts: Some(SnifferCounts { desired: 0, ready: 0 }),
    });
    let decision = decide(&with_status(session(), running()), &nowhere, now(), &decide_config());
    assert_eq!(
        decision.conditions[0].message,
        "no node matches the session's nodeSelector"
    );
}

#[test]
fn a_lost_node_is_named_with_the_last_counters_its_sniffer_reported() {
    let decision = decide(&with_status(session(), running()), &healthy(), now(), &decide_config());
    assert_eq!(condition(&decision, "NodesCapturing"), (true, "AllNodesCapturing"));

    let mut lost = healthy();
    lost.lost_nodes = vec![crate::observe::LostNode {
        why: "node not ready",
        last: database::NodeCounters {
            node: "node-b".into(),
            captured: 1200,
            dropped: 3,
            reported_at: "2026-12-07T12:00:00Z".into(),
            stopped: false,
        },
    }];
    let decision = decide(&with_status(session(), running()), &lost, now(), &decide_config());
    assert_eq!(condition(&decision, "NodesCapturing"), (false, "NodesLost"));
    let message = &decision
        .conditions
        .iter()
        .find(|c| c.type_ == "NodesCapturing")
        .unwrap()
        .message;
    assert_eq!(
        message,
        "node-b (node not ready): last reported at 2026-12-07T12:00:00Z: 1200 captured, 3 dropped"
    );
}

#[test]
fn an_invalid_filter_creates_nothing_and_stalls_with_the_reason() {
    let mut session = session();
    session.spec.filter = Some("tcp port".into());
    let decision = decide(&session, &Observed::default(), now(), &decide_config());
    assert_eq!(decision.phase, Phase::Failed);
    assert_eq!(condition(&decision, "Stalled"), (true, "InvalidFilter"));
    assert_eq!(condition(&decision, "Ready"), (false, "InvalidFilter"));
    assert!(!decision.children.queue && decision.children.secret.is_none());
    assert!(matches!(decision.children.sniffers, Sniffers::Untouched));
    assert!(decision.children.parsers.is_none());
    assert_eq!(reasons(&decision), ["InvalidFilter"]);
    assert!(decision.events[0].warning);
    assert!(
        decision.events[0].message.contains("\"tcp port\""),
        "{:?}",
        decision.events
    );
    assert_eq!(decision.requeue, None, "only a change of the spec can fix it");

    let failed = with_status(
        session,
        CaptureSessionStatus {
            phase: Some(Phase::Failed),
            ..Default::default()
        },
    );
    let again = decide(&failed, &Observed::default(), now(), &decide_config());
    assert!(
        again.events.is_empty(),
        "the Warning is raised once, not on every reconcile"
    );
}

#[test]
fn keda_mode_needs_keda() {
    let mut session = session();
    session.spec.parsers.autoscaler = Autoscaler::Keda;
    let missing = Observed {
        keda_installed: Some(false),
        ..healthy()
    };
    let decision = decide(&session, &missing, now(), &decide_config());
    assert_eq!(decision.phase, Phase::Failed);
    assert_eq!(condition(&decision, "Stalled"), (true, "KedaNotInstalled"));
    assert_eq!(reasons(&decision), ["KedaNotInstalled"]);
    assert_eq!(decision.requeue, Some(Duration::from_secs(10)), "CRDs are not watched");
    assert!(decision.children.parsers.is_none());

    let installed = Observed {
        keda_installed: Some(true),
        backlog: Some(10_000),
        ..healthy()
    };
    let decision = decide(&session, &installed, now(), &decide_config());
    assert!(decision.children.scaled_object.is_some());
    assert_eq!(decision.scale, None, "KEDA owns the replica count");
    assert_eq!(decision.requeue, Some(Duration::from_secs(30)));
}

#[test]
fn suspend_removes_the_sniffers_and_keeps_the_rest() {
    let mut session = with_status(session(), running());
    session.spec.suspend = true;
    let observed = Observed {
        sniffer_port: None,
        ..healthy()
    };
    let decision = decide(&session, &observed, now(), &decide_config());
    assert!(matches!(decision.children.sniffers, Sniffers::Remove));
    assert!(decision.children.queue && decision.children.parsers.is_some());
    assert_eq!(decision.phase, Phase::Suspended);
    assert_eq!(condition(&decision, "Ready"), (true, "Suspended"));
    assert_eq!(decision.report.unwrap().sniffers, None);

    let gone = Observed {
        sniffers: None,
        ..observed
    };
    let decision = decide(&session, &gone, now(), &decide_config());
    assert!(matches!(decision.children.sniffers, Sniffers::Untouched));
}

#[test]
fn duration_reached_drains_then_completes() {
    let mut session = with_status(session(), running());
    session.spec.duration = Some("30s".into());
    let base = Instant::now();
    let busy = Observed {
        backlog: Some(7),
        ..healthy()
    };
    let draining = decide(&session, &busy, at(base, 0), &decide_config());
    assert!(matches!(draining.children.sniffers, Sniffers::Remove));
    assert_eq!(draining.phase, Phase::Draining);
    assert_eq!(reasons(&draining), ["CaptureEnded"]);
    assert!(draining.events[0].message.starts_with("duration (30s) reached"));
    assert!(draining.conditions[0].message.contains("the 7 batches left"));
    assert_eq!(draining.requeue, Some(Duration::from_secs(5)));

    session.status.as_mut().unwrap().phase = Some(Phase::Draining);
    let drained = Observed {
        sniffers: None,
        ..healthy()
    };
    let completed = decide(&session, &drained, at(base, 5), &decide_config());
    assert_eq!(completed.phase, Phase::Completed);
    assert_eq!(completed.scale, Some(Scale { from: 1, to: 0 }), "parsers parked");
    assert_eq!(reasons(&completed), ["Completed"], "CaptureEnded is not repeated");
    assert_eq!(condition(&completed, "Ready"), (true, "Completed"));
    assert!(completed.children.secret.is_none() && completed.children.parsers.is_none());
    assert_eq!(completed.requeue, None);
}

#[test]
fn capture_wakes_up_for_its_deadline() {
    let mut session = with_status(session(), running());
    session.spec.duration = Some("62s".into());
    let decision = decide(&session, &healthy(), now(), &decide_config());
    assert_eq!(decision.phase, Phase::Capturing);
    assert_eq!(
        decision.requeue,
        Some(Duration::from_secs(2)),
        "deadline before the next scale check"
    );
}

#[test]
fn max_packets_reached_ends_the_capture() {
    let mut session = with_status(session(), running());
    session.spec.max_packets = Some(1_000);
    let observed = Observed {
        counts: Some(PacketCounts {
            captured: 1_000,
            ..Default::default()
        }),
        backlog: Some(3),
        ..healthy()
    };
    let decision = decide(&session, &observed, now(), &decide_config());
    assert_eq!(decision.phase, Phase::Draining);
    assert!(decision.events[0].message.starts_with("maxPackets (1000) reached"));
    let below = Observed {
        counts: Some(PacketCounts {
            captured: 999,
            ..Default::default()
        }),
        ..observed
    };
    assert_eq!(
        decide(&session, &below, now(), &decide_config()).phase,
        Phase::Capturing
    );
}

#[test]
fn the_builtin_autoscaler_scales_up_at_once_and_down_after_the_window() {
    let session = with_status(session(), running());
    let base = Instant::now();
    let mut observed = Observed {
        backlog: Some(450),
        ..healthy()
    };
    let up = decide(&session, &observed, at(base, 0), &decide_config());
    assert_eq!(
        up.scale,
        Some(Scale { from: 1, to: 5 }),
        "450 batches / 100 each, at most 5"
    );
    assert_eq!(reasons(&up), ["ScaledUp"]);
    assert_eq!(up.report.as_ref().unwrap().desired_parsers, 5);

    // The backlog is gone, but the window has not passed: no scale-down yet.
    observed.window = up.window;
    observed.parsers = Some(ObservedParsers { replicas: 5, ready: 5 });
    observed.backlog = Some(0);
    let holding = decide(&session, &observed, at(base, 30), &decide_config());
    assert_eq!(holding.scale, None);
    assert_eq!(holding.report.as_ref().unwrap().desired_parsers, 5);

    observed.window = holding.window;
    let down = decide(&session, &observed, at(base, 91), &decide_config());
    assert_eq!(down.scale, Some(Scale { from: 5, to: 1 }));
    assert_eq!(reasons(&down), ["ScaledDown"]);

    let unknown = Observed {
        backlog: None,
        ..healthy()
    };
    assert_eq!(
        decide(&session, &unknown, now(), &decide_config()).scale,
        None,
        "no backlog, no guess"
    );
}

#[test]
fn deletion_removes_the_queue_and_marks_the_mirror() {
    let mut session = session();
    session.metadata.name = Some("web-and-dns".into());
    let plan = decide_cleanup(&session);
    assert_eq!(plan.queue, session.queue_name());
    assert!(plan.queue.is_some());
    assert_eq!(plan.mirror, Some(("team-a".into(), "web-and-dns".into())));
}

#[test]
fn an_invalid_filter_on_a_running_session_says_capture_goes_on() {
    let mut session = with_status(session(), running());
    session.spec.filter = Some("tcp port".into());
    let decision = decide(&session, &healthy(), now(), &decide_config());
    assert_eq!(decision.phase, Phase::Capturing, "the sniffers still capture");
    assert_eq!(condition(&decision, "Stalled"), (true, "InvalidFilter"));
    let stalled = decision.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert!(
        stalled
            .message
            .contains("capture continues as before until this is fixed"),
        "{}",
        stalled.message
    );
    assert!(
        matches!(decision.children.sniffers, Sniffers::Untouched),
        "the old filter stays"
    );
    assert!(decision.children.parsers.is_none() && !decision.children.queue);
    let report = decision.report.as_ref().expect("counts stay in the status");
    assert_eq!(report.sniffers, Some(SnifferCounts { desired: 2, ready: 2 }));
    assert_eq!(reasons(&decision), ["InvalidFilter"]);

    // Reported once: the next reconcile sees its own Stalled condition.
    let mut status = running();
    status.conditions = crate::conditions::merge(
        &[],
        decision.conditions.clone(),
        1,
        &Time(Timestamp::from_second(NOW).unwrap()),
    );
    let again = decide(
        &with_status(session.clone(), status),
        &healthy(),
        now(),
        &decide_config(),
    );
    assert!(again.events.is_empty());

    // A session that never captured stays Failed, told to fix the filter to start.
    let mut fresh = self::session();
    fresh.spec.filter = Some("tcp port".into());
    let failed = decide(&fresh, &Observed::default(), now(), &decide_config());
    assert_eq!(failed.phase, Phase::Failed);
    assert!(failed.conditions[0].message.ends_with("fix it to start capturing"));
}

fn targeted(session: CaptureSession) -> CaptureSession {
    let mut session = session;
    session.spec.target =
        Some(serde_json::from_value(serde_json::json!({"podSelector": {"matchLabels": {"app": "checkout"}}})).unwrap());
    session
}

fn observed_targets(per_node: &[(&str, usize)], labelled: &[&str]) -> crate::observe::ObservedTargets {
    let mut resolved = targets::Resolved::default();
    for (node, count) in per_node {
        let addresses = (0..*count).map(|i| std::net::IpAddr::from([10, 244, (i / 250) as u8, (i % 250) as u8]));
        resolved.addresses.insert((*node).to_owned(), addresses.collect());
        resolved.pods += count;
    }
    crate::observe::ObservedTargets {
        resolved,
        labelled: labelled.iter().map(|n| (*n).to_owned()).collect(),
    }
}

#[test]
fn a_targeted_session_labels_the_nodes_of_its_pods_and_unlabels_the_others() {
    let session = with_status(targeted(session()), running());
    let observed = Observed {
        targets: Some(observed_targets(&[("node-a", 2), ("node-b", 1)], &["node-b", "node-c"])),
        ..healthy()
    };
    let decision = decide(&session, &observed, now(), &decide_config());
    let labels = &decision.children.node_labels;
    assert_eq!(labels.label, "capture.trawl.dev/0123456789abcdef");
    assert_eq!(labels.add, BTreeSet::from(["node-a".to_owned()]));
    assert_eq!(labels.remove, BTreeSet::from(["node-c".to_owned()]));
    let children = decision
        .children
        .targets
        .as_ref()
        .expect("the targets ConfigMap and access");
    let data = children.configmap.data.as_ref().unwrap();
    assert_eq!(data["node-a"], "10.244.0.0\n10.244.0.1\n");
    assert_eq!(
        children.role.rules.as_ref().unwrap()[0]
            .resource_names
            .as_ref()
            .unwrap(),
        &["team-a-web-and-dns-targets"]
    );
    let Sniffers::Apply(daemonset) = &decision.children.sniffers else {
        panic!("sniffers applied")
    };
    let pod = daemonset.spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.node_selector.as_ref().unwrap()["capture.trawl.dev/0123456789abcdef"],
        "true"
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("team-a-web-and-dns-targets"));
    assert_eq!(condition(&decision, "Targeted"), (true, "PodsTargeted"));
    assert_eq!(decision.report.as_ref().unwrap().targets.as_ref().unwrap().pods, 3);
}

#[test]
fn a_node_with_more_targets_than_a_kernel_filter_holds_is_reported() {
    let session = with_status(targeted(session()), running());
    let observed = Observed {
        targets: Some(observed_targets(
            &[("node-a", targets::MAX_ADDRESSES_PER_NODE + 1)],
            &["node-a"],
        )),
        ..healthy()
    };
    let decision = decide(&session, &observed, now(), &decide_config());
    assert_eq!(condition(&decision, "Targeted"), (false, "TooManyTargets"));
}

#[test]
fn a_suspended_targeted_session_unlabels_every_node() {
    let mut session = with_status(targeted(session()), running());
    session.spec.suspend = true;
    let observed = Observed {
        targets: Some(observed_targets(&[("node-a", 1)], &["node-a", "node-b"])),
        ..healthy()
    };
    let decision = decide(&session, &observed, now(), &decide_config());
    assert!(decision.children.node_labels.add.is_empty());
    assert_eq!(decision.children.node_labels.remove.len(), 2);
    assert!(decision.children.targets.is_none());
}

#[test]
fn a_target_with_a_malformed_label_stalls_the_session() {
    let mut session = session();
    session.spec.target = Some(
        serde_json::from_value(serde_json::json!({"podSelector": {"matchLabels": {"app": "no spaces"}}})).unwrap(),
    );
    let decision = decide(&session, &Observed::default(), now(), &decide_config());
    assert_eq!(condition(&decision, "Stalled"), (true, "InvalidTarget"));
    assert_eq!(decision.phase, Phase::Failed);
}

#[test]
fn a_queue_that_holds_batches_while_nothing_is_stored_makes_the_session_not_ready() {
    let session = with_status(session(), running());
    let condition = |decision: &Decision, type_: &str| {
        decision
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
            .unwrap_or_else(|| panic!("no {type_} condition"))
    };
    let draining = Observed {
        backlog: Some(69),
        since_stored: Some(Duration::from_secs(3)),
        ..healthy()
    };
    let decision = decide(&session, &draining, now(), &decide_config());
    assert!(condition(&decision, "Ready").status);
    assert_eq!(condition(&decision, "Storing").reason, "Draining");

    let stuck = Observed {
        since_stored: Some(STUCK_AFTER + Duration::from_secs(1)),
        ..draining.clone()
    };
    let decision = decide(&session, &stuck, now(), &decide_config());
    let ready = condition(&decision, "Ready");
    assert!(!ready.status);
    assert_eq!(ready.reason, "StorageStuck");
    assert!(
        ready.message.starts_with("69 batches wait in the queue"),
        "{}",
        ready.message
    );
    assert!(!condition(&decision, "Storing").status);

    let idle = Observed {
        backlog: Some(0),
        since_stored: Some(Duration::from_secs(3600)),
        ..healthy()
    };
    let decision = decide(&session, &idle, now(), &decide_config());
    assert!(
        condition(&decision, "Storing").status,
        "an idle session with an empty queue is fine"
    );
}
