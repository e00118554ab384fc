//! `trawl-operator`: reconciles CaptureSessions into capture pipelines.
//!
//! Run against the cluster of `KUBECONFIG` (the CRD must be installed):
//! `cargo run -p operator -- --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use crds::CaptureSession;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeStatus, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use operator::{build, config, context, endpoints, lease, metrics, queue, reconcile};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = config::Config::parse();
    service::logging::init();
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let probe = ready.clone();
    let metrics = Arc::new(metrics::Metrics::default());
    let exported = metrics.clone();
    service::admin::spawn(
        listener,
        service::admin::routes(
            move || exported.encode(),
            move || -> service::admin::Readiness {
                let ready = probe.load(Ordering::Acquire);
                Box::pin(std::future::ready(if ready {
                    Ok(())
                } else {
                    Err("waiting for the CaptureSession CRD".to_owned())
                }))
            },
        ),
    );

    wait_for_crd(&client).await;
    ready.store(true, Ordering::Release);
    // Only the holder of the Lease reconciles, so that two replicas never write at once.
    let mut leading = lease::wait_to_lead(&client, &config).await?;
    let database = config.database_url.as_deref().map(connect_database).transpose()?;
    let (cluster, pod_changes) = watch_cluster(&client);
    let context = Arc::new(context::Context {
        cluster: Some(cluster),
        database,
        ports: Default::default(),
        recorder: kube::runtime::events::Recorder::new(client.clone(), "trawl-operator".into()),
        windows: Default::default(),
        metrics,
        client: client.clone(),
        broker: queue::Broker::new(config.amqp_url.clone()),
        config: context::DecideConfig {
            pods: build::PodConfig {
                sniffer_image: config.sniffer_image.clone(),
                parser_image: config.parser_image.clone(),
                pod_amqp_url: config.pod_amqp_url.clone().unwrap_or_else(|| config.amqp_url.clone()),
                pod_database_url: config.pod_database_url.clone().or_else(|| config.database_url.clone()),
                privileged_sniffers: config.privileged_sniffers,
                namespace: config.own_namespace(),
            },
            scale_interval: config.scale_interval,
            scale_down_stabilization: config.scale_down_stabilization,
        },
    });
    if let Some(pool) = &context.database {
        let recorder = endpoints::Recorder::new(client.clone(), pool.clone());
        tokio::spawn(async move { recorder.run().await });
    }
    tracing::info!("reconciling CaptureSessions");
    let children = || watcher::Config::default().labels("app.kubernetes.io/managed-by=trawl-operator");
    let sessions = match &config.watch_namespace {
        Some(namespace) => Api::<CaptureSession>::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let own_namespace = config.own_namespace();
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), &own_namespace);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &own_namespace);
    let controller = Controller::new(sessions, watcher::Config::default());
    let capturing = controller.store();
    // Any pod or namespace change may change what a session captures (a targeted session's
    // selection, a node-wide session's pods); the caches are updated before the change reaches
    // the controller, so the reconcile sees it. Finished sessions capture nothing.
    let capturing_sessions = move || -> Vec<ObjectRef<CaptureSession>> {
        capturing
            .state()
            .iter()
            .filter(|session| {
                let phase = session.status.as_ref().and_then(|status| status.phase);
                session.spec.target.is_some() || phase != Some(crds::Phase::Completed)
            })
            .map(|session| ObjectRef::from_obj(session.as_ref()))
            .collect()
    };
    let on_namespace = capturing_sessions.clone();
    let on_service = capturing_sessions.clone();
    let controller = controller
        .watches_stream(pod_changes.pods, move |_: Pod| capturing_sessions())
        .watches_stream(pod_changes.namespaces, move |_: Namespace| on_namespace())
        .watches_stream(pod_changes.services, move |_: Service| on_service())
        .watches(daemonsets, children(), |daemonset| session_of(&daemonset))
        .watches(deployments, children(), |deployment| session_of(&deployment))
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error");
            }
        });
    let lost = async {
        while leading.changed().await.is_ok() {
            if !*leading.borrow() {
                break;
            }
        }
    };
    tokio::select! {
        _ = controller => {}
        _ = lost => anyhow::bail!("lost the leader-election Lease; exiting so that a restart rejoins as a standby"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// The session a child belongs to, by its labels (children live in the operator's namespace,
/// where no owner reference can point at a session of another).
fn session_of(child: &impl kube::ResourceExt) -> Option<ObjectRef<CaptureSession>> {
    let labels = child.labels();
    let name = labels.get(operator::names::SESSION_LABEL)?;
    let namespace = labels.get(operator::names::SESSION_NAMESPACE_LABEL)?;
    Some(ObjectRef::new(name).within(namespace))
}

type Changes<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

struct ClusterChanges {
    pods: Changes<Pod>,
    namespaces: Changes<Namespace>,
    services: Changes<Service>,
}

/// Caches of pods, namespaces and nodes for targeted sessions. The pod and namespace streams are
/// driven by the controller (which they trigger); the nodes' by a task of their own.
fn watch_cluster(client: &Client) -> (context::ClusterCache, ClusterChanges) {
    let (pods, pods_writer) = reflector::store();
    let (namespaces, namespaces_writer) = reflector::store();
    let (nodes, nodes_writer) = reflector::store();
    let (services, services_writer) = reflector::store();
    let lean = |mut object: kube::core::ObjectMeta| {
        object.managed_fields = None;
        object.annotations = None;
        object
    };
    let pod_stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(move |pod: &mut Pod| pod.metadata = lean(std::mem::take(&mut pod.metadata)))
        .reflect(pods_writer)
        .touched_objects();
    let namespace_stream = watcher(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(namespaces_writer)
        .touched_objects();
    let service_stream = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(move |service: &mut Service| service.metadata = lean(std::mem::take(&mut service.metadata)))
        .reflect(services_writer)
        .touched_objects();
    let node_stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|node: &mut Node| {
            node.metadata.managed_fields = None;
            // Only whether it is Ready (for sessions' lost nodes); images and the rest are large.
            node.status = node.status.take().map(|status| NodeStatus {
                conditions: status.conditions,
                ..NodeStatus::default()
            });
        })
        .reflect(nodes_writer)
        .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(node_stream);
        while let Some(result) = node_stream.next().await {
            if let Err(error) = result {
                tracing::warn!(%error, "watching nodes");
            }
        }
    });
    (
        context::ClusterCache {
            pods,
            namespaces,
            nodes,
            services,
        },
        ClusterChanges {
            pods: pod_stream.boxed(),
            namespaces: namespace_stream.boxed(),
            services: service_stream.boxed(),
        },
    )
}

/// A pool that connects on first use, and migrations applied in the background until they succeed:
/// a database outage must not keep the operator from managing the pipeline.
fn connect_database(url: &str) -> anyhow::Result<sqlx::PgPool> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
        .context("invalid --database-url")?;
    database::migrate_in_background(&pool);
    Ok(pool)
}

/// The operator is useless without its CRD: say so clearly and keep checking.
async fn wait_for_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    loop {
        match crds.get_opt("capturesessions.trawl.dev").await {
            Ok(Some(_)) => return,
            Ok(None) => tracing::warn!(
                "the CaptureSession CRD is not installed: kubectl apply --server-side -f crds/capturesession.yaml (or install the Helm chart)"
            ),
            Err(error) => tracing::warn!(%error, "cannot check for the CaptureSession CRD"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
