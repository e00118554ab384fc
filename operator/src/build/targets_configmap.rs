//! What targeted sniffers read: the targets ConfigMap and the identity allowed to read it.

use std::collections::BTreeMap;

use crds::CaptureSession;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::child_metadata;
use crate::names;

/// The targets ConfigMap: per node (the key), the addresses its sniffer captures, one per line.
/// Watched by the sniffers through the API, not mounted: a mounted ConfigMap reaches a running
/// pod only at the kubelet's next sync (a minute or more), and a new pod must be captured within
/// seconds of getting its address.
pub fn targets_configmap(session: &CaptureSession, namespace: &str, by_node: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: child_metadata(
            namespace,
            names::targets_name(session),
            &names::labels(session, "sniffer"),
        ),
        data: Some(by_node),
        ..Default::default()
    }
}

/// The sniffers' identity: a ServiceAccount that may read the session's targets ConfigMap and
/// nothing else (a Role limited to that one name).
pub fn sniffer_access(session: &CaptureSession, namespace: &str) -> (ServiceAccount, Role, RoleBinding) {
    let name = names::targets_name(session);
    let labels = names::labels(session, "sniffer");
    let account = ServiceAccount {
        metadata: child_metadata(namespace, name.clone(), &labels),
        ..Default::default()
    };
    let role = Role {
        metadata: child_metadata(namespace, name.clone(), &labels),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![name.clone()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: child_metadata(namespace, name.clone(), &labels),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        }]),
    };
    (account, role, binding)
}
