//! What `tap` captures: a workload's own pod selector (`deploy/web`, `sts/db`, `ds/agent`), one
//! pod's labels (`pod/web-7d9f-x2`), or a label selector (`-l app=web`), in one namespace or all.

use anyhow::{Context, anyhow, bail};
use crds::{Requirement, Selector, SelectorOperator, Target};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::{Api, Client};

/// The pods a tap captures.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// What the user named, for messages (`deploy/web`, `-l app=web`).
    pub what: String,
    /// A name for the session: the workload's or the selector's.
    pub short_name: String,
    pub target: Target,
    /// The pods that match now, with their nodes.
    pub pods: Vec<(String, Option<String>)>,
}

/// `kind/name` as kubectl spells it, to the kind's canonical name.
fn kind_of(text: &str) -> Option<&'static str> {
    Some(match text {
        "deploy" | "deployment" | "deployments" | "deployment.apps" => "deployment",
        "sts" | "statefulset" | "statefulsets" | "statefulset.apps" => "statefulset",
        "ds" | "daemonset" | "daemonsets" | "daemonset.apps" => "daemonset",
        "rs" | "replicaset" | "replicasets" | "replicaset.apps" => "replicaset",
        "po" | "pod" | "pods" => "pod",
        _ => return None,
    })
}

/// A Kubernetes label selector as the CaptureSession's own type.
pub fn selector(labels: &LabelSelector) -> Selector {
    Selector {
        match_labels: labels.match_labels.clone().unwrap_or_default(),
        match_expressions: labels
            .match_expressions
            .iter()
            .flatten()
            .filter_map(|e| {
                let operator = match e.operator.as_str() {
                    "In" => SelectorOperator::In,
                    "NotIn" => SelectorOperator::NotIn,
                    "Exists" => SelectorOperator::Exists,
                    "DoesNotExist" => SelectorOperator::DoesNotExist,
                    _ => return None,
                };
                Some(Requirement {
                    key: e.key.clone(),
                    operator,
                    values: e.values.clone().unwrap_or_default(),
                })
            })
            .collect(),
    }
}

/// A selector as `kubectl get -l` spells it.
pub fn selector_text(selector: &Selector) -> String {
    let mut parts: Vec<String> = selector.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for requirement in &selector.match_expressions {
        let values = requirement.values.join(",");
        parts.push(match requirement.operator {
            SelectorOperator::In => format!("{} in ({values})", requirement.key),
            SelectorOperator::NotIn => format!("{} notin ({values})", requirement.key),
            SelectorOperator::Exists => requirement.key.clone(),
            SelectorOperator::DoesNotExist => format!("!{}", requirement.key),
        });
    }
    parts.join(",")
}

/// `-l app=web,tier!=db`: equality (`=`, `==`) and presence only, which is what a CaptureSession
/// selector and a user's quick tap need.
pub fn parse_selector(text: &str) -> anyhow::Result<Selector> {
    let mut selector = Selector::default();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        if let Some((key, value)) = part.split_once("!=") {
            selector.match_expressions.push(Requirement {
                key: key.trim().to_owned(),
                operator: SelectorOperator::NotIn,
                values: vec![value.trim().to_owned()],
            });
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            selector
                .match_labels
                .insert(key.trim().to_owned(), value.trim().to_owned());
        } else if let Some(key) = part.strip_prefix('!') {
            selector.match_expressions.push(Requirement {
                key: key.trim().to_owned(),
                operator: SelectorOperator::DoesNotExist,
                values: Vec::new(),
            });
        } else {
            selector.match_expressions.push(Requirement {
                key: part.to_owned(),
                operator: SelectorOperator::Exists,
                values: Vec::new(),
            });
        }
    }
    if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
        bail!("-l {text:?} selects every pod: name at least one label");
    }
    Ok(selector)
}

/// One namespaced object, if it exists.
async fn fetch<K>(client: &Client, namespace: &str, name: &str) -> kube::Result<Option<K>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace).get_opt(name).await
}

/// The pod selector of `kind/name` in `namespace`.
async fn workload_selector(client: &Client, namespace: &str, kind: &str, name: &str) -> anyhow::Result<Selector> {
    let missing = || format!("{kind} {name} not found in namespace {namespace}");
    let labels: LabelSelector = match kind {
        "deployment" => {
            fetch::<Deployment>(client, namespace, name)
                .await?
                .with_context(missing)?
                .spec
                .selector
        }
        "statefulset" => {
            fetch::<StatefulSet>(client, namespace, name)
                .await?
                .with_context(missing)?
                .spec
                .selector
        }
        "daemonset" => {
            fetch::<DaemonSet>(client, namespace, name)
                .await?
                .with_context(missing)?
                .spec
                .selector
        }
        "replicaset" => {
            fetch::<ReplicaSet>(client, namespace, name)
                .await?
                .with_context(missing)?
                .spec
                .selector
        }
        _ => {
            // A pod: its labels (a StatefulSet's pod carries its own name among them).
            let pod = fetch::<Pod>(client, namespace, name).await?.with_context(missing)?;
            let labels = pod.metadata.labels.unwrap_or_default();
            if labels.is_empty() {
                bail!("pod {name} has no labels, so a capture session cannot select it");
            }
            LabelSelector {
                match_labels: Some(labels),
                ..LabelSelector::default()
            }
        }
    };
    let selector = selector(&labels);
    if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
        bail!("{kind} {name} selects every pod of its namespace");
    }
    Ok(selector)
}

/// Resolves what the user named to a target and the pods it matches now.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    workload: Option<&str>,
    labels: Option<&str>,
    all_namespaces: bool,
) -> anyhow::Result<Resolved> {
    let (what, short_name, selector) = match (workload, labels) {
        (Some(_), Some(_)) => bail!("name a workload or give -l, not both"),
        (None, None) => bail!("name what to tap: deploy/NAME, sts/NAME, ds/NAME, pod/NAME, or -l SELECTOR"),
        (Some(workload), None) => {
            if all_namespaces {
                bail!("--all-namespaces goes with -l, not with a named workload");
            }
            let (kind, name) = workload
                .split_once('/')
                .ok_or_else(|| anyhow!("{workload:?}: name it as KIND/NAME, such as deploy/web"))?;
            let kind =
                kind_of(kind).ok_or_else(|| anyhow!("{kind:?} cannot be tapped: use deploy, sts, ds, rs or pod"))?;
            let selector = workload_selector(client, namespace, kind, name).await?;
            (workload.to_owned(), name.to_owned(), selector)
        }
        (None, Some(labels)) => {
            let selector = parse_selector(labels)?;
            let short = selector
                .match_labels
                .values()
                .next()
                .cloned()
                .unwrap_or_else(|| "pods".to_owned());
            (format!("-l {labels}"), short, selector)
        }
    };
    let pods_api: Api<Pod> = if all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    };
    let matching = pods_api
        .list(&ListParams::default().labels(&selector_text(&selector)))
        .await?;
    let pods: Vec<(String, Option<String>)> = matching
        .items
        .into_iter()
        .map(|pod| {
            let name = match (&pod.metadata.namespace, all_namespaces) {
                (Some(ns), true) => format!("{ns}/{}", pod.metadata.name.unwrap_or_default()),
                _ => pod.metadata.name.unwrap_or_default(),
            };
            (name, pod.spec.and_then(|spec| spec.node_name))
        })
        .collect();
    if pods.is_empty() {
        let place = if all_namespaces {
            "any namespace".to_owned()
        } else {
            format!("namespace {namespace}")
        };
        bail!("no pods match {what} in {place}: nothing to capture");
    }
    let target = Target {
        namespace_selector: all_namespaces.then(Selector::default),
        pod_selector: Some(selector),
    };
    Ok(Resolved {
        what,
        short_name,
        target,
        pods,
    })
}

/// Nodes the pods run on, each once.
pub fn nodes(pods: &[(String, Option<String>)]) -> Vec<String> {
    let mut nodes: Vec<String> = pods.iter().filter_map(|(_, node)| node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_label_selector_reads_as_kubectl_writes_it() {
        let selector = parse_selector("app=web, tier!=db,canary,!legacy").unwrap();
        assert_eq!(selector.match_labels, BTreeMap::from([("app".into(), "web".into())]));
        assert_eq!(selector_text(&selector), "app=web,tier notin (db),canary,!legacy");
        assert!(parse_selector(" , ").is_err());
    }

    #[test]
    fn kinds_are_spelled_as_kubectl_spells_them() {
        assert_eq!(kind_of("deploy"), Some("deployment"));
        assert_eq!(kind_of("sts"), Some("statefulset"));
        assert_eq!(kind_of("svc"), None);
    }
}
