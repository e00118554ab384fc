//! The addresses a targeted session captures, and where they come from: a file (the local run,
//! tests) or, in a cluster, the session's targets ConfigMap, watched through the API server so
//! that a new pod is captured within a second or two of the operator seeing its address (a
//! mounted ConfigMap would reach the pod only at the kubelet's next sync, a minute or more).
//! Every change compiles a new kernel filter and swaps it on the running captures.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::capture::{self, KernelFilter};
use crate::worker::Shared;

#[derive(Clone, Debug)]
pub enum Source {
    /// One address per line, replaced by rename (read every 250 ms).
    File(PathBuf),
    /// This node's key of a ConfigMap (one address per line); a missing ConfigMap or key: none.
    ConfigMap {
        namespace: String,
        name: String,
        node: String,
    },
}

impl Source {
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Option<Self>> {
        if let Some(path) = &config.targets_file {
            return Ok(Some(Self::File(path.clone())));
        }
        let Some(reference) = &config.targets_configmap else {
            return Ok(None);
        };
        let (namespace, name) = reference
            .split_once('/')
            .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--targets-configmap {reference:?} is not namespace/name"))?;
        Ok(Some(Self::ConfigMap {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            node: config.node.clone(),
        }))
    }

    /// The targets now, for the captures' first filter. An unreachable source: none yet (the
    /// follower brings them in), so that nothing untargeted is ever captured.
    pub async fn read(&self) -> String {
        match self {
            Self::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
            Self::ConfigMap { namespace, name, node } => {
                let read = async {
                    let client = Client::try_default().await.ok()?;
                    let configmaps: Api<ConfigMap> = Api::namespaced(client, namespace);
                    let configmap = configmaps.get_opt(name).await.ok()??;
                    Some(node_targets(&configmap, node))
                };
                tokio::time::timeout(Duration::from_secs(10), read)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }
        }
    }

    /// Applies every change until the sniffer stops.
    pub fn follow(self, user_filter: String, shared: std::sync::Arc<Shared>) {
        match self {
            Self::File(path) => {
                std::thread::Builder::new()
                    .name("targets".into())
                    .spawn(move || follow_file(&path, &user_filter, &shared))
                    .expect("spawn the targets thread");
            }
            Self::ConfigMap { namespace, name, node } => {
                tokio::spawn(async move { follow_configmap(&namespace, &name, &node, &user_filter, &shared).await });
            }
        }
    }
}

fn node_targets(configmap: &ConfigMap, node: &str) -> String {
    configmap
        .data
        .as_ref()
        .and_then(|data| data.get(node))
        .cloned()
        .unwrap_or_default()
}

/// Compiles `text`'s addresses into the kernel filter and hands it to the capture threads. A
/// list that does not parse or compile keeps the filter as it was (logged).
pub fn narrow(text: &str, user_filter: &str, shared: &Shared) {
    let compiled = capture::parse_targets(text)
        .map_err(|message| message.to_string())
        .and_then(|targets| {
            KernelFilter::targeting(user_filter, &targets)
                .map(|filter| (targets.len(), filter))
                .map_err(|error| error.to_string())
        });
    match compiled {
        Ok((count, filter)) => {
            tracing::info!(
                targets = count,
                instructions = filter.instructions.len(),
                "capture narrowed to the targets"
            );
            // The targets gauge moves when a capture thread has swapped the filter in.
            shared.filter.publish(filter);
        }
        Err(error) => tracing::warn!(%error, "targets not applied; the filter stays as it was"),
    }
}

fn follow_file(path: &std::path::Path, user_filter: &str, shared: &Shared) {
    let mut last = std::fs::read_to_string(path).unwrap_or_default();
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(250));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text != last {
            narrow(&text, user_filter, shared);
            last = text;
        }
    }
}

async fn follow_configmap(namespace: &str, name: &str, node: &str, user_filter: &str, shared: &Shared) {
    let client = loop {
        match Client::try_default().await {
            Ok(client) => break client,
            Err(error) => {
                tracing::warn!(%error, "cannot reach the Kubernetes API for the targets; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(client, namespace);
    // One object by name: the Role the operator grants covers exactly this name.
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let events = watcher::watcher(configmaps, config).default_backoff();
    futures::pin_mut!(events);
    let mut last: Option<String> = None;
    while let Some(event) = events.next().await {
        let text = match event {
            Ok(watcher::Event::Apply(configmap) | watcher::Event::InitApply(configmap)) => {
                node_targets(&configmap, node)
            }
            Ok(watcher::Event::Delete(_)) => String::new(),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(error) => {
                tracing::warn!(%error, "watching the targets ConfigMap");
                continue;
            }
        };
        if last.as_ref() != Some(&text) {
            narrow(&text, user_filter, shared);
            last = Some(text);
        }
    }
}
