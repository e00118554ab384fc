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
use crate::points::Captured;
use crate::worker::Shared;

#[derive(Clone, Debug)]
pub enum Source {
    /// One address per line, replaced by rename (read every 250 ms).
    File { path: PathBuf, narrow: bool },
    /// A ConfigMap with a key per node (one address per line); a missing ConfigMap or key: none.
    ConfigMap {
        namespace: String,
        name: String,
        node: String,
        narrow: bool,
    },
}

/// What a source says: this node's addresses (the kernel filter's, when narrowing), every node's
/// (the captured pods), and the Services all of whose backends are captured pods with those
/// backends (see `crate::points`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub this_node: String,
    pub every_node: String,
    pub services: String,
    pub backends: String,
}

/// The ConfigMap's keys that are not nodes (node names cannot start with a dot), as the
/// operator's `targets::Resolved::by_node` writes them: `ClusterIP:port` and `pod address:port`
/// lines.
const SERVICES_KEY: &str = ".services";
const BACKENDS_KEY: &str = ".backends";

impl Source {
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Option<Self>> {
        let files = [(&config.targets_file, true), (&config.pods_file, false)];
        if let Some((path, narrow)) = files
            .into_iter()
            .find_map(|(path, narrow)| Some((path.clone()?, narrow)))
        {
            return Ok(Some(Self::File { path, narrow }));
        }
        let configmaps = [
            (&config.targets_configmap, "--targets-configmap", true),
            (&config.pods_configmap, "--pods-configmap", false),
        ];
        let Some((reference, flag, narrow)) = configmaps
            .into_iter()
            .find_map(|(reference, flag, narrow)| Some((reference.as_ref()?, flag, narrow)))
        else {
            return Ok(None);
        };
        let (namespace, name) = reference
            .split_once('/')
            .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty())
            .ok_or_else(|| anyhow::anyhow!("{flag} {reference:?} is not namespace/name"))?;
        Ok(Some(Self::ConfigMap {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            node: config.node.clone(),
            narrow,
        }))
    }

    /// Whether the capture is narrowed to this node's addresses.
    pub fn narrows(&self) -> bool {
        match self {
            Self::File { narrow, .. } | Self::ConfigMap { narrow, .. } => *narrow,
        }
    }

    /// The lists now, for the captures' first filter. An unreachable source: none yet (the
    /// follower brings them in), so that nothing untargeted is ever captured.
    pub async fn read(&self) -> Lists {
        match self {
            Self::File { path, .. } => file_lists(path),
            Self::ConfigMap {
                namespace, name, node, ..
            } => {
                let read = async {
                    let client = Client::try_default().await.ok()?;
                    let configmaps: Api<ConfigMap> = Api::namespaced(client, namespace);
                    let configmap = configmaps.get_opt(name).await.ok()??;
                    Some(configmap_lists(&configmap, node))
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
        let narrow = self.narrows();
        match self {
            Self::File { path, .. } => {
                std::thread::Builder::new()
                    .name("targets".into())
                    .spawn(move || follow_file(&path, narrow, &user_filter, &shared))
                    .expect("spawn the targets thread");
            }
            Self::ConfigMap {
                namespace, name, node, ..
            } => {
                tokio::spawn(async move {
                    follow_configmap(&namespace, &name, &node, narrow, &user_filter, &shared).await;
                });
            }
        }
    }
}

fn file_lists(path: &std::path::Path) -> Lists {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Lists {
        this_node: text.clone(),
        every_node: text,
        ..Lists::default()
    }
}

fn configmap_lists(configmap: &ConfigMap, node: &str) -> Lists {
    let Some(data) = configmap.data.as_ref() else {
        return Lists::default();
    };
    let key = |key: &str| data.get(key).cloned().unwrap_or_default();
    Lists {
        this_node: key(node),
        every_node: data
            .iter()
            .filter(|(key, _)| !key.starts_with('.'))
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        services: key(SERVICES_KEY),
        backends: key(BACKENDS_KEY),
    }
}

/// Hands the lists to the capture threads: the captured pods always, the narrowed kernel filter
/// when `narrow`.
pub fn apply(lists: &Lists, narrow: bool, user_filter: &str, shared: &Shared) {
    match Captured::parse(&lists.every_node, &lists.services, &lists.backends) {
        Ok(captured) => {
            tracing::info!(
                pods = captured.pods.len(),
                services = captured.services.len(),
                backends = captured.backends.len(),
                "captured pods' addresses updated"
            );
            shared.pods.publish(captured);
        }
        Err(error) => tracing::warn!(%error, "captured pods not updated; the list stays as it was"),
    }
    if narrow {
        self::narrow(&lists.this_node, user_filter, shared);
    }
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

fn follow_file(path: &std::path::Path, narrow: bool, user_filter: &str, shared: &Shared) {
    let mut last = file_lists(path);
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(250));
        let lists = file_lists(path);
        if lists != last {
            apply(&lists, narrow, user_filter, shared);
            last = lists;
        }
    }
}

async fn follow_configmap(namespace: &str, name: &str, node: &str, narrow: bool, user_filter: &str, shared: &Shared) {
    let client = loop {
        match Client::try_default().await {
            Ok(client) => break client,
            Err(error) => {
                tracing::warn!(%error, "cannot reach the Kubernetes API for the pods' addresses; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let configmaps: Api<ConfigMap> = Api::namespaced(client, namespace);
    // One object by name: the Role the operator grants covers exactly this name.
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let events = watcher::watcher(configmaps, config).default_backoff();
    futures::pin_mut!(events);
    let mut last: Option<Lists> = None;
    while let Some(event) = events.next().await {
        let lists = match event {
            Ok(watcher::Event::Apply(configmap) | watcher::Event::InitApply(configmap)) => {
                configmap_lists(&configmap, node)
            }
            Ok(watcher::Event::Delete(_)) => Lists::default(),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(error) => {
                tracing::warn!(%error, "watching the pods ConfigMap");
                continue;
            }
        };
        if last.as_ref() != Some(&lists) {
            apply(&lists, narrow, user_filter, shared);
            last = Some(lists);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configmap_holds_each_nodes_pods_and_the_services_apart() {
        let configmap: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop-web-targets", "namespace": "trawl"},
            "data": {
                "node-a": "10.244.0.5\n",
                "node-b": "10.244.1.7\n",
                ".services": "10.96.0.10:80\n",
                ".backends": "10.244.1.7:8080\n",
            }
        }))
        .unwrap();
        let lists = configmap_lists(&configmap, "node-a");
        assert_eq!(lists.this_node, "10.244.0.5\n");
        let captured = Captured::parse(&lists.every_node, &lists.services, &lists.backends).unwrap();
        assert_eq!(captured.pods.len(), 2, "{lists:?}");
        assert_eq!(captured.services.len(), 1);
        assert_eq!(captured.backends.len(), 1);
    }
}
