//! Status from what was applied and observed: the decision's phase and conditions merged into the
//! previous status ([`crate::conditions::merge`]), counts, times.

use crds::{CaptureSession, CaptureSessionStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions;

/// Whether writing `next` would change anything a reader sees.
pub fn changed(current: Option<&CaptureSessionStatus>, next: &CaptureSessionStatus) -> bool {
    current != Some(next)
}

/// The status a decision leads to: `previous` updated with the decided phase, conditions and
/// counts. Start and completion times are set once; packet counts the database could not give
/// keep their last values.
pub fn next(
    session: &CaptureSession,
    decision: &crate::decide::Decision,
    counts: Option<&crds::PacketCounts>,
    now: &Time,
) -> CaptureSessionStatus {
    let previous = session.status.clone().unwrap_or_default();
    let generation = session.metadata.generation.unwrap_or(0);
    let mut next = CaptureSessionStatus {
        observed_generation: Some(generation),
        conditions: conditions::merge(&previous.conditions, decision.conditions.clone(), generation, now),
        phase: Some(decision.phase),
        queue: session.queue_name(),
        start_time: previous.start_time.clone(),
        completion_time: previous.completion_time.clone(),
        packets: counts.cloned().or_else(|| previous.packets.clone()),
        ..Default::default()
    };
    if let Some(report) = &decision.report {
        next.parsers = Some(crds::ParserCounts {
            replicas: report.parsers_ready,
            desired_replicas: report.desired_parsers,
        });
        if report.sniffers.as_ref().is_some_and(|s| s.ready > 0) && next.start_time.is_none() {
            next.start_time = Some(now.clone());
        }
        next.sniffers = report.sniffers.clone();
        next.backlog = report.backlog;
        next.targets = report.targets.clone();
    }
    if decision.phase == crds::Phase::Completed && next.completion_time.is_none() {
        next.completion_time = Some(now.clone());
    }
    next
}
