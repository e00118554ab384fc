//! Reconciling one CaptureSession: validate -> queue -> children by server-side apply -> status.
//! Deletion goes through a finalizer that deletes the queue; the children follow by ownership.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{CaptureSession, CaptureSessionStatus, Phase, SnifferCounts};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::build::{self, Settings};
use crate::names::{FIELD_MANAGER, FINALIZER};
use crate::{queue, scaling, status};

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// The RabbitMQ the operator itself declares queues with.
    pub broker: queue::Broker,
    pub recorder: Recorder,
    pub scale_interval: Duration,
    pub scale_down_stabilization: Duration,
    /// Recent autoscaler recommendations, by session uid.
    pub windows: Mutex<HashMap<String, scaling::Window>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Sniffer ports handed out by this process, which a list of DaemonSets may not show yet.
    pub assigned_ports: tokio::sync::Mutex<std::collections::BTreeSet<i32>>,
    /// Where the parsers store packets: read for the packet counts, written with the session mirror.
    pub database: Option<sqlx::PgPool>,
}

impl Context {
    async fn event(&self, session: &CaptureSession, type_: EventType, reason: &str, note: String) {
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
    #[error("every sniffer port ({}..{}) is taken", build::SNIFFER_PORTS.start, build::SNIFFER_PORTS.end)]
    NoFreePort,
    #[error("cannot mirror the session into PostgreSQL: {0}")]
    Mirror(#[source] database::MirrorError),
}

/// One reconcile, measured: `trawl_operator_reconciles_total{result}` and its duration.
pub async fn reconcile(session: Arc<CaptureSession>, context: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_session(session, context.clone()).await;
    context.metrics.duration.observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    context
        .metrics
        .reconciles
        .get_or_create(&crate::metrics::ResultLabel { result: outcome })
        .inc();
    if let Err(error) = &result {
        context
            .metrics
            .errors
            .get_or_create(&crate::metrics::KindLabel { kind: error.kind() })
            .inc();
    }
    result
}

async fn reconcile_session(session: Arc<CaptureSession>, context: Arc<Context>) -> Result<Action, Error> {
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

impl Error {
    /// A label for `trawl_operator_reconcile_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kubernetes",
            Self::Queue(_) => "rabbitmq",
            Self::Finalizer(_) => "finalizer",
            Self::Incomplete => "incomplete",
            Self::Mirror(_) => "database",
            Self::NoFreePort => "ports",
        }
    }
}

pub fn error_policy(session: Arc<CaptureSession>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!(session = %session.name_any(), %error, "reconcile failed; retrying");
    // The recorder folds repeats of the same event into a series, so a lasting outage is one Event.
    let note = format!("{error}; retrying");
    tokio::spawn(async move {
        context
            .event(&session, EventType::Warning, "ReconcileFailed", note)
            .await;
    });
    Action::requeue(Duration::from_secs(5))
}

async fn apply(session: &CaptureSession, context: &Context) -> Result<Action, Error> {
    let namespace = session.namespace().ok_or(Error::Incomplete)?;
    let queue = session.queue_name().ok_or(Error::Incomplete)?;
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let daemonsets: Api<DaemonSet> = Api::namespaced(context.client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let previous = session.status.clone().unwrap_or_default();
    let counts = packet_counts(session, context).await;

    // A filter the API server could not check: no children, and a condition the user can act on.
    if let Some(message) = invalid_filter(session) {
        if previous.phase != Some(Phase::Failed) {
            context
                .event(session, EventType::Warning, "InvalidFilter", message.clone())
                .await;
        }
        let decided = status::kstatus(false, Some(("InvalidFilter", message)), "");
        write_status(session, context, &queue, &counts, Phase::Failed, decided, None).await?;
        return Ok(Action::await_change());
    }
    // KEDA mode needs KEDA: without its CRD nothing would scale the parsers.
    let keda = session.spec.parsers.autoscaler == crds::Autoscaler::Keda;
    if keda && !keda_installed(&context.client).await? {
        let message = "spec.parsers.autoscaler is keda, but KEDA is not installed (no scaledobjects.keda.sh CRD): \
                       install KEDA or set autoscaler to builtin"
            .to_owned();
        if previous.phase != Some(Phase::Failed) {
            context
                .event(session, EventType::Warning, "KedaNotInstalled", message.clone())
                .await;
        }
        let decided = status::kstatus(false, Some(("KedaNotInstalled", message)), "");
        write_status(session, context, &queue, &counts, Phase::Failed, decided, None).await?;
        // CRDs are not watched: look again from time to time, so that installing KEDA is noticed.
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    if previous.queue.is_none() {
        context
            .event(
                session,
                EventType::Normal,
                "Created",
                format!("queue {queue}, sniffers and parsers"),
            )
            .await;
    }
    context.broker.declare(&queue, session.spec.max_backlog_bytes).await?;
    let backlog = context.broker.backlog(&queue).await.ok();

    // Capture ends when the duration is up or enough packets are captured; then the parsers drain
    // the queue and stop.
    let expired = capture_deadline(session).is_some_and(|deadline| deadline <= k8s_openapi::jiff::Timestamp::now());
    let enough = session
        .spec
        .max_packets
        .zip(counts.as_ref())
        .is_some_and(|(max, counts)| counts.captured >= max);
    let ending = expired || enough;
    let finished = ending || matches!(previous.phase, Some(Phase::Draining | Phase::Completed));
    if ending && !matches!(previous.phase, Some(Phase::Draining | Phase::Completed)) {
        let why = if enough {
            format!("maxPackets ({}) reached", session.spec.max_packets.unwrap_or_default())
        } else {
            format!(
                "duration ({}) reached",
                session.spec.duration.as_deref().unwrap_or_default()
            )
        };
        context
            .event(
                session,
                EventType::Normal,
                "CaptureEnded",
                format!("{why}; sniffers removed"),
            )
            .await;
    }
    let sniffer_name = crate::names::sniffer_name(session);
    if (session.spec.suspend || finished) && daemonsets.get_opt(&sniffer_name).await.map_err(Error::Kube)?.is_some() {
        daemonsets
            .delete(&sniffer_name, &Default::default())
            .await
            .map_err(Error::Kube)?;
    }

    if finished && backlog == Some(0) {
        let parser_name = crate::names::parser_name(session);
        let parked = json!({"spec": {"replicas": 0}});
        if deployments.get_opt(&parser_name).await.map_err(Error::Kube)?.is_some() {
            deployments
                .patch_scale(&parser_name, &PatchParams::default(), &Patch::Merge(&parked))
                .await
                .map_err(Error::Kube)?;
        }
        if previous.phase != Some(Phase::Completed) {
            context
                .event(
                    session,
                    EventType::Normal,
                    "Completed",
                    "capture ended and the queue is drained".into(),
                )
                .await;
        }
        let decided = status::kstatus_done("Completed", "capture ended and every batch is stored".into());
        let observed = Observed {
            sniffers: None,
            parsers_ready: 0,
            desired_parsers: Some(0),
            backlog: Some(0),
        };
        write_status(
            session,
            context,
            &queue,
            &counts,
            Phase::Completed,
            decided,
            Some(observed),
        )
        .await?;
        return Ok(Action::await_change());
    }

    let desired = build::credentials_secret(session, &context.settings);
    secrets
        .patch(&desired.name_any(), &apply, &Patch::Apply(&desired))
        .await
        .map_err(Error::Kube)?;
    let daemonset = if session.spec.suspend || finished {
        None
    } else {
        let port = sniffer_port(session, context, &daemonsets).await?;
        let desired = build::sniffer_daemonset(session, &context.settings, &queue, port);
        Some(
            daemonsets
                .patch(&desired.name_any(), &apply, &Patch::Apply(&desired))
                .await
                .map_err(Error::Kube)?,
        )
    };
    let desired = build::parser_deployment(session, &context.settings, &queue);
    let deployment = deployments
        .patch(&desired.name_any(), &apply, &Patch::Apply(&desired))
        .await
        .map_err(Error::Kube)?;
    if keda {
        let scaled = build::parser_scaled_object(session, &queue);
        let gvk = kube::core::GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
        let resource = kube::discovery::ApiResource::from_gvk(&gvk);
        let scaled_objects: Api<kube::core::DynamicObject> =
            Api::namespaced_with(context.client.clone(), &namespace, &resource);
        let name = crate::names::parser_name(session);
        scaled_objects
            .patch(&name, &apply, &Patch::Apply(&scaled))
            .await
            .map_err(Error::Kube)?;
    }
    let parsers = autoscale(session, context, &deployments, &deployment, backlog).await?;

    let sniffers = daemonset
        .as_ref()
        .and_then(|ds| ds.status.as_ref())
        .map(|s| SnifferCounts {
            desired: s.desired_number_scheduled,
            ready: s.number_ready,
        });
    let parsers_ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let observed = Observed {
        sniffers: sniffers.clone(),
        parsers_ready,
        desired_parsers: Some(parsers),
        backlog: backlog.map(i64::from),
    };
    let requeue = if session.spec.parsers.autoscaler == crds::Autoscaler::Builtin {
        context.scale_interval
    } else {
        Duration::from_secs(30)
    };
    if session.spec.suspend {
        let decided = status::kstatus_done(
            "Suspended",
            "capture suspended: no sniffers; the queue and stored data are kept".into(),
        );
        write_status(
            session,
            context,
            &queue,
            &counts,
            Phase::Suspended,
            decided,
            Some(observed),
        )
        .await?;
        return Ok(Action::requeue(requeue));
    }
    if finished {
        let message = format!(
            "capture ended; parsers are storing the {} batches left in the queue",
            backlog.unwrap_or(0)
        );
        let decided = status::kstatus(false, None, &message);
        write_status(
            session,
            context,
            &queue,
            &counts,
            Phase::Draining,
            decided,
            Some(observed),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let sniffers_ready = sniffers.as_ref().is_some_and(|s| s.desired > 0 && s.ready == s.desired);
    let ready = sniffers_ready && parsers_ready >= session.spec.parsers.min_replicas.max(1).min(parsers.max(1));
    let waiting_for = match (&sniffers, sniffers_ready) {
        (None, _) => "waiting for the sniffer DaemonSet".to_owned(),
        (Some(s), false) if s.desired == 0 => "no node matches the session's nodeSelector".to_owned(),
        (Some(s), false) => format!("{} of {} sniffers ready", s.ready, s.desired),
        (Some(_), true) => format!("{parsers_ready} parser replicas ready"),
    };
    let phase = if ready { Phase::Capturing } else { Phase::Pending };
    write_status(
        session,
        context,
        &queue,
        &counts,
        phase,
        status::kstatus(ready, None, &waiting_for),
        Some(observed),
    )
    .await?;
    // Wake up for the autoscaler and for the end of the capture, whichever comes first.
    let until_deadline = capture_deadline(session)
        .map(|deadline| deadline.duration_since(k8s_openapi::jiff::Timestamp::now()))
        .and_then(|span| Duration::try_from(span).ok());
    Ok(Action::requeue(
        until_deadline
            .map_or(requeue, |d| d.min(requeue))
            .max(Duration::from_millis(500)),
    ))
}

/// The session's sniffer port: the one its DaemonSet has, or else a port no other session's
/// sniffers use (chosen under a lock, so that two new sessions never get the same one).
async fn sniffer_port(session: &CaptureSession, context: &Context, daemonsets: &Api<DaemonSet>) -> Result<i32, Error> {
    let port_of = |daemonset: &DaemonSet| {
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
    };
    let name = crate::names::sniffer_name(session);
    if let Some(port) = daemonsets
        .get_opt(&name)
        .await
        .map_err(Error::Kube)?
        .as_ref()
        .and_then(port_of)
    {
        return Ok(port);
    }
    let mut assigned = context.assigned_ports.lock().await;
    // Ports are per node, so every namespace counts; an operator limited to one namespace by
    // RBAC sees only its own.
    let selector =
        ListParams::default().labels("app.kubernetes.io/managed-by=trawl-operator,app.kubernetes.io/component=sniffer");
    let all: Api<DaemonSet> = Api::all(context.client.clone());
    let existing = match all.list(&selector).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 403 => daemonsets.list(&selector).await.map_err(Error::Kube)?,
        Err(error) => return Err(Error::Kube(error)),
    };
    let mut taken: std::collections::BTreeSet<i32> = existing.items.iter().filter_map(port_of).collect();
    taken.extend(assigned.iter().copied());
    let port = build::free_sniffer_port(build::preferred_sniffer_port(session), &taken).ok_or(Error::NoFreePort)?;
    assigned.insert(port);
    Ok(port)
}

async fn keda_installed(client: &Client) -> Result<bool, Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds
        .get_opt("scaledobjects.keda.sh")
        .await
        .map_err(Error::Kube)?
        .is_some())
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

/// The builtin autoscaler: scales the parser Deployment through its scale subresource. Returns
/// the replica count the Deployment should have now.
async fn autoscale(
    session: &CaptureSession,
    context: &Context,
    deployments: &Api<Deployment>,
    deployment: &Deployment,
    backlog: Option<u32>,
) -> Result<i32, Error> {
    let parsers = &session.spec.parsers;
    let current = deployment.spec.replicas.unwrap_or(1);
    if parsers.autoscaler != crds::Autoscaler::Builtin {
        return Ok(current);
    }
    let Some(backlog) = backlog else { return Ok(current) };
    let recommendation = scaling::recommend(
        u64::from(backlog),
        parsers.target_backlog,
        parsers.min_replicas,
        parsers.max_replicas,
    );
    let uid = session.uid().unwrap_or_default();
    let desired = {
        let mut windows = context.windows.lock().expect("not poisoned");
        windows.entry(uid).or_default().decide(
            Instant::now(),
            recommendation,
            current,
            context.scale_down_stabilization,
        )
    };
    if desired != current {
        let scale = json!({"spec": {"replicas": desired}});
        deployments
            .patch_scale(&deployment.name_any(), &PatchParams::default(), &Patch::Merge(&scale))
            .await
            .map_err(Error::Kube)?;
        let note = format!(
            "parsers {current} -> {desired} for a backlog of {backlog} batches (target {} each)",
            parsers.target_backlog
        );
        tracing::info!(session = %session.name_any(), %note, "scaled");
        let reason = if desired > current { "ScaledUp" } else { "ScaledDown" };
        context.event(session, EventType::Normal, reason, note).await;
    }
    Ok(desired)
}

async fn cleanup(session: &CaptureSession, context: &Context) -> Result<Action, Error> {
    if let Some(queue) = session.queue_name() {
        context.broker.delete(&queue).await?;
        tracing::info!(session = %session.name_any(), %queue, "queue deleted");
    }
    if let (Some(pool), Some(namespace)) = (&context.database, session.namespace()) {
        database::mark_deleted(pool, &namespace, &session.name_any())
            .await
            .map_err(|e| Error::Mirror(e.into()))?;
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

/// The session's packet counts from the database, or `None` (keeping the last known counts) when
/// there is no database or it cannot be read right now.
async fn packet_counts(session: &CaptureSession, context: &Context) -> Option<crds::PacketCounts> {
    let pool = context.database.as_ref()?;
    let key = database::session_key(&session.namespace()?, &session.name_any());
    let created = session
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|time| time.0.to_string());
    match database::packet_counts(pool, &key, created.as_deref()).await {
        Ok(counts) => Some(counts),
        Err(error) => {
            tracing::warn!(session = %key, %error, "cannot read packet counts; keeping the last ones");
            None
        }
    }
}

async fn write_status(
    session: &CaptureSession,
    context: &Context,
    queue: &str,
    counts: &Option<crds::PacketCounts>,
    phase: Phase,
    decided: Vec<status::Decided>,
    observed: Option<Observed>,
) -> Result<(), Error> {
    let previous = session.status.clone().unwrap_or_default();
    let generation = session.metadata.generation.unwrap_or(0);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = status::conditions(&previous.conditions, decided, generation, &now);
    let mut next = CaptureSessionStatus {
        observed_generation: Some(generation),
        conditions,
        phase: Some(phase),
        queue: Some(queue.to_owned()),
        start_time: previous.start_time.clone(),
        completion_time: previous.completion_time.clone(),
        packets: counts.clone().or_else(|| previous.packets.clone()),
        ..Default::default()
    };
    if let Some(observed) = observed {
        next.parsers = Some(crds::ParserCounts {
            replicas: observed.parsers_ready,
            desired_replicas: observed.desired_parsers.unwrap_or(session.spec.parsers.min_replicas),
        });
        if observed.sniffers.as_ref().is_some_and(|s| s.ready > 0) && next.start_time.is_none() {
            next.start_time = Some(now.clone());
        }
        next.sniffers = observed.sniffers;
        next.backlog = observed.backlog;
    }
    if phase == Phase::Completed && next.completion_time.is_none() {
        next.completion_time = Some(now.clone());
    }
    if status::changed(session.status.as_ref(), &next) {
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
    }
    // The mirror skips unchanged rows itself; writing it on every reconcile also repairs a row
    // that a database outage kept from being written.
    if let Some(pool) = &context.database {
        let mut mirrored = session.clone();
        mirrored.status = Some(next);
        database::mirror_session(pool, &mirrored).await.map_err(Error::Mirror)?;
    }
    Ok(())
}
