//! Reconciling one CaptureSession: validate -> queue -> children by server-side apply -> status.
//! Deletion goes through a finalizer that deletes the queue; the children follow by ownership.

use std::sync::Arc;
use std::time::Duration;

use crds::{CaptureSession, CaptureSessionStatus, Phase, SnifferCounts};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::build::{self, Settings};
use crate::names::{FIELD_MANAGER, FINALIZER};
use crate::{queue, status};

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// RabbitMQ URL the operator itself declares queues with.
    pub amqp_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the session has no namespace, name or uid yet")]
    Incomplete,
}

pub async fn reconcile(session: Arc<CaptureSession>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = session.namespace().ok_or(Error::Incomplete)?;
    let sessions: Api<CaptureSession> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&sessions, FINALIZER, session, |event| async {
        match event {
            Finalizer::Apply(session) => apply(&session, &context).await,
            Finalizer::Cleanup(session) => cleanup(&session, &context).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

pub fn error_policy(session: Arc<CaptureSession>, error: &Error, _context: Arc<Context>) -> Action {
    tracing::warn!(session = %session.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn apply(session: &CaptureSession, context: &Context) -> Result<Action, Error> {
    let namespace = session.namespace().ok_or(Error::Incomplete)?;
    let queue = session.queue_name().ok_or(Error::Incomplete)?;
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let daemonsets: Api<DaemonSet> = Api::namespaced(context.client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);

    // A filter the API server could not check: no children, and a condition the user can act on.
    if let Some(message) = invalid_filter(session) {
        write_status(
            session,
            context,
            &queue,
            status::kstatus(false, Some(("InvalidFilter", message)), ""),
            None,
        )
        .await?;
        return Ok(Action::await_change());
    }

    queue::declare(&context.amqp_url, &queue, session.spec.max_backlog_bytes).await?;
    let daemonset = build::sniffer_daemonset(session, &context.settings, &queue);
    let deployment = build::parser_deployment(session, &context.settings, &queue);
    let daemonset = daemonsets
        .patch(&daemonset.name_any(), &apply, &Patch::Apply(&daemonset))
        .await
        .map_err(Error::Kube)?;
    let deployment = deployments
        .patch(&deployment.name_any(), &apply, &Patch::Apply(&deployment))
        .await
        .map_err(Error::Kube)?;

    let sniffers = daemonset.status.as_ref().map(|s| SnifferCounts {
        desired: s.desired_number_scheduled,
        ready: s.number_ready,
    });
    let parsers_ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let sniffers_ready = sniffers.as_ref().is_some_and(|s| s.desired > 0 && s.ready == s.desired);
    let ready = sniffers_ready && parsers_ready >= session.spec.parsers.min_replicas.max(1);
    let waiting_for = match (&sniffers, sniffers_ready) {
        (None, _) => "waiting for the sniffer DaemonSet".to_owned(),
        (Some(s), false) if s.desired == 0 => "no node matches the session's nodeSelector".to_owned(),
        (Some(s), false) => format!("{} of {} sniffers ready", s.ready, s.desired),
        (Some(_), true) => format!("{parsers_ready} parser replicas ready"),
    };
    let backlog = queue::backlog(&context.amqp_url, &queue).await.ok().map(i64::from);
    let observed = Observed {
        sniffers,
        parsers_ready,
        desired_parsers: deployment.spec.replicas,
        backlog,
    };
    write_status(
        session,
        context,
        &queue,
        status::kstatus(ready, None, &waiting_for),
        Some(observed),
    )
    .await?;
    // Children changes wake the controller; the requeue refreshes backlog and counts.
    Ok(Action::requeue(Duration::from_secs(if ready { 30 } else { 5 })))
}

async fn cleanup(session: &CaptureSession, context: &Context) -> Result<Action, Error> {
    if let Some(queue) = session.queue_name() {
        queue::delete(&context.amqp_url, &queue).await?;
        tracing::info!(session = %session.name_any(), %queue, "queue deleted");
    }
    Ok(Action::await_change())
}

struct Observed {
    sniffers: Option<SnifferCounts>,
    parsers_ready: i32,
    desired_parsers: Option<i32>,
    backlog: Option<i64>,
}

fn invalid_filter(session: &CaptureSession) -> Option<String> {
    let expression = session.spec.filter.as_deref().unwrap_or("").trim();
    if expression.is_empty() {
        return None;
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).ok()?;
    dead.compile(expression, true).err().map(|error| {
        format!("spec.filter {expression:?} is not valid tcpdump syntax ({error}); fix the filter to start capturing")
    })
}

async fn write_status(
    session: &CaptureSession,
    context: &Context,
    queue: &str,
    decided: Vec<status::Decided>,
    observed: Option<Observed>,
) -> Result<(), Error> {
    let previous = session.status.clone().unwrap_or_default();
    let generation = session.metadata.generation.unwrap_or(0);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = status::conditions(&previous.conditions, decided, generation, &now);
    let stalled = conditions
        .iter()
        .any(|c| c.type_ == crds::condition::STALLED && c.status == "True");
    let ready = conditions
        .iter()
        .any(|c| c.type_ == crds::condition::READY && c.status == "True");
    let phase = if stalled {
        Phase::Failed
    } else if ready {
        Phase::Capturing
    } else {
        Phase::Pending
    };
    let mut next = CaptureSessionStatus {
        observed_generation: Some(generation),
        conditions,
        phase: Some(phase),
        queue: Some(queue.to_owned()),
        start_time: previous.start_time.clone(),
        completion_time: previous.completion_time.clone(),
        packets: previous.packets.clone(),
        ..Default::default()
    };
    if let Some(observed) = observed {
        next.parsers = Some(crds::ParserCounts {
            replicas: observed.parsers_ready,
            desired_replicas: observed.desired_parsers.unwrap_or(session.spec.parsers.min_replicas),
        });
        if observed.sniffers.as_ref().is_some_and(|s| s.ready > 0) && next.start_time.is_none() {
            next.start_time = Some(now);
        }
        next.sniffers = observed.sniffers;
        next.backlog = observed.backlog;
    }
    if !status::changed(session.status.as_ref(), &next) {
        return Ok(());
    }
    let sessions: Api<CaptureSession> =
        Api::namespaced(context.client.clone(), &session.namespace().ok_or(Error::Incomplete)?);
    let patch = json!({"apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession", "status": next});
    sessions
        .patch_status(
            &session.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::Kube)?;
    Ok(())
}
