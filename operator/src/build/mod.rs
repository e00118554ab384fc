//! Desired child objects of a session, as pure functions of (session, operator config): no
//! client here, so every builder is unit-tested from fixtures. Only `apply` talks to the API.
//!
//! Built as k8s-openapi's typed structs, so that a misspelt field does not compile (serde would
//! drop an unknown key of a JSON literal without a word). KEDA's ScaledObject has no Rust type
//! and stays JSON; a test checks it against the fields KEDA's CRD declares.

mod credentials;
#[cfg(test)]
pub mod fixture;
mod parsers;
mod scaled_object;
mod sniffers;
mod targets_configmap;

pub use credentials::{AMQP_URL_KEY, DATABASE_URL_KEY, credentials_secret};
pub use parsers::parser_deployment;
pub use scaled_object::parser_scaled_object;
pub use sniffers::sniffer_daemonset;
pub use targets_configmap::{sniffer_access, targets_configmap};

use std::collections::BTreeMap;

use crds::CaptureSession;
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names;

/// What the builders need from the operator's configuration.
#[derive(Clone, Debug)]
pub struct PodConfig {
    pub sniffer_image: String,
    pub parser_image: String,
    /// RabbitMQ URL as the pods reach it.
    pub pod_amqp_url: String,
    /// PostgreSQL URL as the parsers reach it.
    pub pod_database_url: Option<String>,
    pub privileged_sniffers: bool,
    /// Where every session's children go: the operator's own namespace.
    pub namespace: String,
}

/// The parsers' metrics and health port.
const PARSER_PORT: i32 = 9091;

/// Name, namespace and labels every child carries. Children live in the operator's namespace,
/// where an owner reference to a session of another namespace is not allowed: the labels name
/// the session, and the session's finalizer deletes them by those labels.
fn child_metadata(namespace: &str, name: String, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels.clone()),
        ..Default::default()
    }
}

fn env(pairs: &[(&str, String)]) -> Vec<EnvVar> {
    pairs
        .iter()
        .map(|(name, value)| EnvVar {
            name: (*name).to_owned(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect()
}

/// An environment variable read from the session's credentials Secret.
fn credential(session: &CaptureSession, variable: &str, key: &str) -> EnvVar {
    EnvVar {
        name: variable.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names::credentials_name(session),
                key: key.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: i32, period_seconds: i32) -> Option<Probe> {
    Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        ..Default::default()
    })
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> Option<ResourceRequirements> {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Quantity((*value).to_owned())))
            .collect::<BTreeMap<_, _>>()
    };
    Some(ResourceRequirements {
        requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
        limits: Some(quantities(&[("memory", memory_limit)])),
        ..Default::default()
    })
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    }
}

fn pod_template(labels: &BTreeMap<String, String>, spec: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}
