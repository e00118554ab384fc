//! Reconciling one CaptureSession, as a pipeline: observe (every read) -> decide (pure) ->
//! apply (server-side apply in a stated order, Events, the status once). Deletion goes through a
//! finalizer that deletes the queue; the children follow by ownership.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crds::CaptureSession;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};

use crate::apply;
use crate::context::Context;
use crate::decide;
use crate::error::Error;
use crate::names::{FIELD_MANAGER, FINALIZER};
use crate::observe::{self, Now};

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
    result
}

async fn reconcile_session(session: Arc<CaptureSession>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = session.namespace().ok_or(Error::Incomplete)?;
    let sessions: Api<CaptureSession> = Api::namespaced(context.client.clone(), &namespace);
    if session.meta().deletion_timestamp.is_none() && !session.finalizers().iter().any(|f| f == FINALIZER) {
        add_finalizer(&sessions, &session).await?;
        // The change comes back as a watch event; the helper then finds the finalizer in place.
        return Ok(Action::await_change());
    }
    finalizer(&sessions, FINALIZER, session, |event| async {
        match event {
            Finalizer::Apply(session) => converge(&session, &context).await,
            Finalizer::Cleanup(session) => cleanup(&session, &context).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Adds the finalizer under the operator's field manager (kube's finalizer helper patches without
/// one, which the API server records as `unknown`). The resource version makes it a no-op that
/// fails, to be retried, when the session changed meanwhile.
async fn add_finalizer(sessions: &Api<CaptureSession>, session: &CaptureSession) -> Result<(), Error> {
    let mut finalizers = session.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    let patch = serde_json::json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": session.resource_version() }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    sessions
        .patch(&session.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(e))))?;
    Ok(())
}

async fn converge(session: &CaptureSession, context: &Context) -> Result<Action, Error> {
    let uid = session.uid().unwrap_or_default();
    let mut observed = observe::observe(session, context).await?;
    // The autoscaler's memory of the session is this process's, not the world's.
    observed.window = context.windows.get(&uid);
    let now = Now::current();
    let decision = decide::decide(session, &observed, now, &context.config);
    let applied = apply::apply(session, &decision, &observed, now, context).await;
    // Applied, the DaemonSet shows the port to the next reservation; not applied (failed, or the
    // session stalls, is suspended or ends), the port goes back.
    context.ports.release(&uid).await;
    applied?;
    context.windows.put(uid, decision.window.clone());
    Ok(decision.requeue.map_or_else(Action::await_change, Action::requeue))
}

async fn cleanup(session: &CaptureSession, context: &Context) -> Result<Action, Error> {
    context.windows.forget(&session.uid().unwrap_or_default());
    apply::remove_children(session, context).await?;
    apply::unlabel_all_nodes(session, context).await?;
    let plan = decide::decide_cleanup(session);
    if let Some(queue) = plan.queue {
        context
            .broker
            .delete(&queue, session.shards())
            .await
            .map_err(|source| Error::DeleteQueue {
                name: queue.clone(),
                source,
            })?;
        tracing::info!(session = %session.name_any(), %queue, "queue deleted");
    }
    if let (Some(pool), Some((namespace, name))) = (&context.database, plan.mirror) {
        database::mark_deleted(pool, &namespace, &name)
            .await
            .map_err(|e| Error::Mirror(e.into()))?;
    }
    Ok(Action::await_change())
}

/// A failed reconcile, reported in one place: the log line, the error metric by the action that
/// failed, and a Warning Event on the session (the recorder folds repeats into a series, so a
/// lasting outage is one Event). Then a retry.
pub fn error_policy(session: Arc<CaptureSession>, error: &Error, context: Arc<Context>) -> Action {
    let kind = error.kind();
    tracing::warn!(session = %session.name_any(), %kind, %error, "reconcile failed; retrying");
    context
        .metrics
        .errors
        .get_or_create(&crate::metrics::KindLabel { kind })
        .inc();
    let note = format!("{error}; retrying");
    tokio::spawn(async move {
        context
            .event(&session, EventType::Warning, "ReconcileFailed", note)
            .await;
    });
    Action::requeue(Duration::from_secs(5))
}
