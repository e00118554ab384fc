//! Apply: carry a decision out, by server-side apply as `trawl-operator`, in this order:
//! 1. the queue, so that sniffers never publish to nowhere;
//! 2. the credentials Secret, which the pods read at start;
//! 3. for a targeted session, the sniffers' ServiceAccount, Role, RoleBinding and targets
//!    ConfigMap, then the node labels that place them (so a sniffer starts with its targets);
//! 4. the sniffer DaemonSet (or its removal), then the parser Deployment and KEDA's ScaledObject;
//! 5. the parsers' scale, through the scale subresource (the autoscaler owns the count);
//! 6. the Events, once what they announce has happened;
//! 7. the status, written once and only when it changed, and the sessions mirror.

use crds::CaptureSession;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::decide::{Children, Decision, NodeLabels, Scale, Sniffers, TargetChildren};
use crate::error::Error;
use crate::names::{self, FIELD_MANAGER};
use crate::observe::{Now, Observed};
use crate::status;

pub async fn apply(
    session: &CaptureSession,
    decision: &Decision,
    observed: &Observed,
    now: Now,
    context: &Context,
) -> Result<(), Error> {
    let namespace = session.namespace().ok_or(Error::Incomplete)?;
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    let children = &context.config.pods.namespace;
    apply_children(session, children, &decision.children, &ssa, context).await?;
    if let Some(scale) = &decision.scale {
        apply_scale(session, children, scale, context).await?;
    }
    for event in &decision.events {
        let type_ = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        context.event(session, type_, event.reason, event.message.clone()).await;
    }
    write_status(session, &namespace, decision, observed, now, &ssa, context).await
}

/// Steps 1 to 4: the queue, then each child in the order the pods need them.
async fn apply_children(
    session: &CaptureSession,
    namespace: &str,
    children: &Children,
    ssa: &PatchParams,
    context: &Context,
) -> Result<(), Error> {
    if children.queue {
        let queue = session.queue_name().ok_or(Error::Incomplete)?;
        context
            .broker
            .declare(
                &queue,
                session.shards(),
                session.spec.max_backlog_bytes,
                crate::queue::kind(session.spec.queue.type_),
            )
            .await
            .map_err(|source| Error::DeclareQueue { name: queue, source })?;
    }
    if let Some(secret) = &children.secret {
        let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
        let name = secret.name_any();
        secrets
            .patch(&name, ssa, &Patch::Apply(secret))
            .await
            .map_err(|source| Error::ApplySecret { name, source })?;
    }
    if let Some(targets) = &children.targets {
        apply_targets(namespace, targets, ssa, context).await?;
    }
    label_nodes(session, &children.node_labels, context).await?;
    apply_sniffers(session, namespace, &children.sniffers, ssa, context).await?;
    if let Some(deployment) = &children.parsers {
        let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), namespace);
        let name = deployment.name_any();
        deployments
            .patch(&name, ssa, &Patch::Apply(deployment))
            .await
            .map_err(|source| Error::ApplyDeployment { name, source })?;
    }
    if let Some(scaled) = &children.scaled_object {
        let gvk = kube::core::GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
        let resource = kube::discovery::ApiResource::from_gvk(&gvk);
        let scaled_objects: Api<kube::core::DynamicObject> =
            Api::namespaced_with(context.client.clone(), namespace, &resource);
        let name = names::parser_name(session);
        scaled_objects
            .patch(&name, ssa, &Patch::Apply(scaled))
            .await
            .map_err(|source| Error::ApplyScaledObject { name, source })?;
    }
    Ok(())
}

async fn apply_sniffers(
    session: &CaptureSession,
    namespace: &str,
    sniffers: &Sniffers,
    ssa: &PatchParams,
    context: &Context,
) -> Result<(), Error> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(context.client.clone(), namespace);
    match sniffers {
        Sniffers::Untouched => Ok(()),
        Sniffers::Apply(daemonset) => {
            let name = daemonset.name_any();
            daemonsets
                .patch(&name, ssa, &Patch::Apply(daemonset.as_ref()))
                .await
                .map_err(|source| Error::ApplyDaemonSet { name, source })?;
            Ok(())
        }
        Sniffers::Remove => {
            let name = names::sniffer_name(session);
            match daemonsets.delete(&name, &Default::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(source) => Err(Error::DeleteDaemonSet { name, source }),
            }
        }
    }
}

/// Step 5: the autoscaler owns the parsers' count, so it goes through the scale subresource.
async fn apply_scale(session: &CaptureSession, namespace: &str, scale: &Scale, context: &Context) -> Result<(), Error> {
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), namespace);
    let name = names::parser_name(session);
    let replicas = json!({"spec": {"replicas": scale.to}});
    deployments
        .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&replicas))
        .await
        .map_err(|source| Error::ScaleDeployment {
            name: name.clone(),
            replicas: scale.to,
            source,
        })?;
    tracing::info!(session = %session.name_any(), from = scale.from, to = scale.to, "scaled the parsers");
    Ok(())
}

/// Step 7: the status, once and only when it changed, and the sessions mirror.
async fn write_status(
    session: &CaptureSession,
    namespace: &str,
    decision: &Decision,
    observed: &Observed,
    now: Now,
    ssa: &PatchParams,
    context: &Context,
) -> Result<(), Error> {
    let now = Time(now.wall);
    let next = status::next(session, decision, observed.counts.as_ref(), &now);
    if status::changed(session.status.as_ref(), &next) {
        let sessions: Api<CaptureSession> = Api::namespaced(context.client.clone(), namespace);
        let patch = json!({"apiVersion": "trawl.dev/v1alpha1", "kind": "CaptureSession", "status": next});
        let name = session.name_any();
        sessions
            .patch_status(&name, ssa, &Patch::Apply(&patch))
            .await
            .map_err(|source| Error::WriteStatus { name, source })?;
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

async fn apply_targets(
    namespace: &str,
    targets: &TargetChildren,
    ssa: &PatchParams,
    context: &Context,
) -> Result<(), Error> {
    async fn one<K>(namespace: &str, object: &K, ssa: &PatchParams, context: &Context) -> Result<(), Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(context.client.clone(), namespace);
        let name = object.name_any();
        api.patch(&name, ssa, &Patch::Apply(object))
            .await
            .map_err(|source| Error::ApplyTargets {
                what: format!("{} {name}", K::kind(&())),
                source,
            })?;
        Ok(())
    }
    one(namespace, &targets.account, ssa, context).await?;
    one(namespace, &targets.role, ssa, context).await?;
    one(namespace, &targets.binding, ssa, context).await?;
    one(namespace, &targets.configmap, ssa, context).await
}

/// Sets or removes the session's label on nodes, each session under a field manager of its own:
/// server-side apply then removes exactly this session's label when it applies none, whatever
/// other sessions and tools set on the node.
async fn label_nodes(session: &CaptureSession, labels: &NodeLabels, context: &Context) -> Result<(), Error> {
    if labels.add.is_empty() && labels.remove.is_empty() {
        return Ok(());
    }
    let nodes: Api<Node> = Api::all(context.client.clone());
    let manager = format!("{FIELD_MANAGER}/{}", session.uid().unwrap_or_default());
    let params = PatchParams::apply(&manager).force();
    let changes = labels
        .add
        .iter()
        .map(|node| (node, true))
        .chain(labels.remove.iter().map(|node| (node, false)));
    for (node, add) in changes {
        let patch = if add {
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {&labels.label: "true"}}})
        } else {
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        };
        match nodes.patch(node, &params, &Patch::Apply(&patch)).await {
            Ok(_) => {}
            // A node that went away needs no label removed.
            Err(kube::Error::Api(status)) if status.code == 404 && !add => {}
            Err(source) => {
                return Err(Error::LabelNode {
                    name: node.clone(),
                    source,
                });
            }
        }
    }
    tracing::info!(session = %session.name_any(), added = ?labels.add, removed = ?labels.remove, "sniffer placement changed");
    Ok(())
}

/// On deletion: the session's label off every node that carries it.
pub async fn unlabel_all_nodes(session: &CaptureSession, context: &Context) -> Result<(), Error> {
    let Some(cluster) = &context.cluster else { return Ok(()) };
    let label = crate::targets::node_label(session);
    let remove = cluster
        .nodes
        .state()
        .iter()
        .filter(|node| node.labels().contains_key(&label))
        .map(|node| node.name_any())
        .collect();
    label_nodes(
        session,
        &NodeLabels {
            label,
            add: Default::default(),
            remove,
        },
        context,
    )
    .await
}

/// Deletes every child of a deleted session by its uid label (children live in the operator's
/// namespace, where no owner reference can point at the session): the sniffers first, so that
/// nothing captures for a session that is going.
pub async fn remove_children(session: &CaptureSession, context: &Context) -> Result<(), Error> {
    let namespace = &context.config.pods.namespace;
    let selected = ListParams::default().labels(&names::children_selector(session));
    let client = &context.client;
    async fn remove<K>(api: Api<K>, selected: &ListParams, what: &'static str) -> Result<(), Error>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.delete_collection(&DeleteParams::background(), selected).await {
            Ok(_) => Ok(()),
            // A kind the cluster does not serve (KEDA not installed) has nothing to delete.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::DeleteChildren { what, source }),
        }
    }
    remove(
        Api::<DaemonSet>::namespaced(client.clone(), namespace),
        &selected,
        "DaemonSets",
    )
    .await?;
    remove(
        Api::<Deployment>::namespaced(client.clone(), namespace),
        &selected,
        "Deployments",
    )
    .await?;
    if session.spec.parsers.autoscaler == crds::Autoscaler::Keda {
        let gvk = kube::core::GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
        let resource = kube::discovery::ApiResource::from_gvk(&gvk);
        let scaled_objects: Api<kube::core::DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        remove(scaled_objects, &selected, "ScaledObjects").await?;
    }
    remove(
        Api::<Secret>::namespaced(client.clone(), namespace),
        &selected,
        "Secrets",
    )
    .await?;
    remove(
        Api::<ConfigMap>::namespaced(client.clone(), namespace),
        &selected,
        "ConfigMaps",
    )
    .await?;
    remove(
        Api::<RoleBinding>::namespaced(client.clone(), namespace),
        &selected,
        "RoleBindings",
    )
    .await?;
    remove(Api::<Role>::namespaced(client.clone(), namespace), &selected, "Roles").await?;
    remove(
        Api::<ServiceAccount>::namespaced(client.clone(), namespace),
        &selected,
        "ServiceAccounts",
    )
    .await
}
