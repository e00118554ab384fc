//! Names and labels of a session's children (the conventions of shared/README.md).

use std::collections::BTreeMap;

use crds::CaptureSession;

pub const FIELD_MANAGER: &str = "trawl-operator";
pub const FINALIZER: &str = "trawl.dev/cleanup";

pub fn session_name(session: &CaptureSession) -> &str {
    session.metadata.name.as_deref().unwrap_or_default()
}

/// A child's name, unique in the operator's namespace across every session's: the session's
/// namespace and name, then what the child is. Cut to a DNS label's 63 characters less room for
/// the suffixes controllers add (a DaemonSet's `controller-revision-hash` label is the name plus
/// 11), with a hash of the whole so that two long names stay apart.
fn child_name(session: &CaptureSession, what: &str) -> String {
    const MAX: usize = 52;
    let namespace = session.metadata.namespace.as_deref().unwrap_or_default();
    let full = format!("{namespace}-{}-{what}", session_name(session));
    if full.len() <= MAX {
        return full;
    }
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let keep = MAX - what.len() - 10;
    let head: String = full.chars().take(keep).collect();
    format!("{}-{:08x}-{what}", head.trim_end_matches(['-', '.']), hash as u32)
}

pub fn sniffer_name(session: &CaptureSession) -> String {
    child_name(session, "sniffer")
}

pub fn credentials_name(session: &CaptureSession) -> String {
    child_name(session, "credentials")
}

/// The ConfigMap of per-node target addresses, and the ServiceAccount (with its Role and
/// RoleBinding) that lets the sniffers watch it.
pub fn targets_name(session: &CaptureSession) -> String {
    child_name(session, "targets")
}

pub fn parser_name(session: &CaptureSession) -> String {
    child_name(session, "parser")
}

/// Labels of a child; the selector uses them all, so two sessions never share pods. The
/// session's uid is what the finalizer deletes the children by.
pub fn labels(session: &CaptureSession, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "trawl".to_owned()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), FIELD_MANAGER.to_owned()),
        (SESSION_LABEL.to_owned(), session_name(session).to_owned()),
        (
            SESSION_NAMESPACE_LABEL.to_owned(),
            session.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            SESSION_UID_LABEL.to_owned(),
            session.metadata.uid.clone().unwrap_or_default(),
        ),
    ])
}

pub const SESSION_LABEL: &str = "trawl.dev/session";
pub const SESSION_NAMESPACE_LABEL: &str = "trawl.dev/session-namespace";
pub const SESSION_UID_LABEL: &str = "trawl.dev/session-uid";

/// The label selector of every child of `session`.
pub fn children_selector(session: &CaptureSession) -> String {
    format!(
        "{SESSION_UID_LABEL}={}",
        session.metadata.uid.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(namespace: &str, name: &str) -> CaptureSession {
        let mut session = crate::build::fixture::session();
        session.metadata.namespace = Some(namespace.into());
        session.metadata.name = Some(name.into());
        session
    }

    #[test]
    fn children_of_sessions_in_two_namespaces_have_different_names() {
        assert_eq!(sniffer_name(&named("team-a", "web")), "team-a-web-sniffer");
        assert_ne!(
            parser_name(&named("team-a", "web")),
            parser_name(&named("team-b", "web"))
        );
    }

    #[test]
    fn long_names_are_cut_and_kept_apart_by_a_hash() {
        let long = "a".repeat(60);
        let (one, two) = (
            named("team-a", &format!("{long}1")),
            named("team-a", &format!("{long}2")),
        );
        for session in [&one, &two] {
            for name in [sniffer_name(session), credentials_name(session), targets_name(session)] {
                assert!(name.len() <= 52, "{name}");
            }
        }
        assert_ne!(sniffer_name(&one), sniffer_name(&two));
        assert!(sniffer_name(&one).ends_with("-sniffer"));
    }
}
