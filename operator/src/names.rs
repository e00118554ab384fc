//! Names and labels of a session's children (the conventions of shared/README.md).

use std::collections::BTreeMap;

use crds::CaptureSession;

pub const FIELD_MANAGER: &str = "trawl-operator";
pub const FINALIZER: &str = "trawl.dev/cleanup";

pub fn session_name(session: &CaptureSession) -> &str {
    session.metadata.name.as_deref().unwrap_or_default()
}

pub fn sniffer_name(session: &CaptureSession) -> String {
    format!("{}-sniffer", session_name(session))
}

pub fn credentials_name(session: &CaptureSession) -> String {
    format!("{}-credentials", session_name(session))
}

/// The ConfigMap of per-node target addresses, and the ServiceAccount (with its Role and
/// RoleBinding) that lets the sniffers watch it.
pub fn targets_name(session: &CaptureSession) -> String {
    format!("{}-targets", session_name(session))
}

pub fn parser_name(session: &CaptureSession) -> String {
    format!("{}-parser", session_name(session))
}

/// Labels of a child; the selector uses them all, so two sessions never share pods.
pub fn labels(session: &CaptureSession, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "trawl".to_owned()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), FIELD_MANAGER.to_owned()),
        ("trawl.dev/session".to_owned(), session_name(session).to_owned()),
    ])
}
