//! Records what every cluster address is, over time, for the API to name packets' endpoints by
//! (issue #20): watches Pods, Services and Nodes and keeps `endpoint_history` in PostgreSQL. Runs
//! in the leading operator beside the reconciler; the sniffers and parsers need no cluster
//! credentials for it, and the API reads only PostgreSQL.
//!
//! [`identity`] turns objects into the addresses they hold (pure), [`history`] writes the rows;
//! [`backends`] records which Service each pod address and port serves, from EndpointSlices.

pub mod backends;
pub mod history;
pub mod identity;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tokio::sync::Mutex;

use identity::{Held, Identity, Workload};

/// Owners resolved so far, by namespace, kind and name; bounded by clearing it when full.
const OWNER_CACHE: usize = 10_000;

pub struct Recorder {
    client: Client,
    pool: PgPool,
    owners: Mutex<HashMap<(String, String, String), Option<Workload>>>,
}

impl Recorder {
    pub fn new(client: Client, pool: PgPool) -> Self {
        Self {
            client,
            pool,
            owners: Mutex::default(),
        }
    }

    /// Watches until the process ends (watch errors are retried with kube's backoff).
    pub async fn run(&self) {
        tokio::join!(
            self.watch::<Pod>("pod"),
            self.watch::<Service>("service"),
            self.watch::<Node>("node"),
            backends::watch(self.client.clone(), &self.pool),
        );
    }

    async fn watch<K>(&self, kind: &'static str)
    where
        K: Resource + Holds + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listed: Vec<(Option<String>, String)> = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(object)) => {
                    listed.push((object.namespace(), object.name_any()));
                    self.apply(kind, &object, object.addresses(self).await).await;
                }
                Ok(Event::InitDone) => {
                    let ended = persist("resync", || history::resync(&self.pool, kind, &listed)).await;
                    tracing::info!(
                        kind,
                        listed = listed.len(),
                        ended,
                        "endpoint history in step with the cluster"
                    );
                }
                Ok(Event::Apply(object)) => self.apply(kind, &object, object.addresses(self).await).await,
                Ok(Event::Delete(object)) => self.apply(kind, &object, Vec::new()).await,
                Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
            }
        }
    }

    /// What `object` holds now: each address recorded, and whatever it held before and no longer
    /// does ended.
    async fn apply<K: Resource>(&self, kind: &'static str, object: &K, held: Vec<Held>) {
        for one in &held {
            persist("hold", || history::hold(&self.pool, one)).await;
        }
        let identity = Identity {
            kind,
            namespace: object.meta().namespace.clone(),
            name: object.meta().name.clone().unwrap_or_default(),
            workload: None,
            node: None,
        };
        let now = chrono::Utc::now();
        persist("release", || history::release(&self.pool, &identity, &held, now)).await;
    }

    /// The pod's workload: its controller, or the controller's controller for a ReplicaSet
    /// (Deployment) or a Job (CronJob).
    async fn workload(&self, pod: &Pod) -> Option<Workload> {
        let owner = identity::controller(pod.metadata.owner_references.as_ref())?;
        let namespace = pod.namespace().unwrap_or_default();
        let direct = Workload {
            kind: owner.kind.clone(),
            name: owner.name.clone(),
        };
        if !matches!(owner.kind.as_str(), "ReplicaSet" | "Job") {
            return Some(direct);
        }
        let key = (namespace.clone(), owner.kind.clone(), owner.name.clone());
        if let Some(known) = self.owners.lock().await.get(&key) {
            return known.clone().or(Some(direct));
        }
        let parent = match owner.kind.as_str() {
            "ReplicaSet" => self.parent::<ReplicaSet>(&namespace, &owner.name).await,
            _ => self.parent::<Job>(&namespace, &owner.name).await,
        };
        let mut owners = self.owners.lock().await;
        if owners.len() >= OWNER_CACHE {
            owners.clear();
        }
        owners.insert(key, parent.clone());
        parent.or(Some(direct))
    }

    /// The controller of `name` (a ReplicaSet's Deployment, a Job's CronJob), if it has one.
    async fn parent<K>(&self, namespace: &str, name: &str) -> Option<Workload>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(object)) => identity::controller(object.meta().owner_references.as_ref()).map(|owner| Workload {
                kind: owner.kind.clone(),
                name: owner.name.clone(),
            }),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(namespace, name, %error, "cannot read a pod's owner; naming the owner itself");
                None
            }
        }
    }
}

/// The objects whose addresses are recorded.
trait Holds {
    fn addresses<'a>(&'a self, recorder: &'a Recorder) -> BoxFuture<'a, Vec<Held>>;
}

impl Holds for Pod {
    fn addresses<'a>(&'a self, recorder: &'a Recorder) -> BoxFuture<'a, Vec<Held>> {
        Box::pin(async move {
            let workload = recorder.workload(self).await;
            identity::pod_addresses(self, workload)
        })
    }
}

impl Holds for Service {
    fn addresses<'a>(&'a self, _: &'a Recorder) -> BoxFuture<'a, Vec<Held>> {
        Box::pin(std::future::ready(identity::service_addresses(self)))
    }
}

impl Holds for Node {
    fn addresses<'a>(&'a self, _: &'a Recorder) -> BoxFuture<'a, Vec<Held>> {
        Box::pin(std::future::ready(identity::node_addresses(self)))
    }
}

/// Retries a database write until it succeeds: a database outage delays the history, it does
/// not lose it (the watch waits meanwhile and its events queue up).
pub(super) async fn persist<T, F, Fut>(what: &str, mut write: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match write().await {
            Ok(value) => return value,
            Err(error) => {
                tracing::warn!(what, %error, retry_in = ?backoff, "cannot write the endpoint history");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
