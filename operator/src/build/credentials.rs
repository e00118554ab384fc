//! The session's credentials Secret: the URLs its pods connect with.

use std::collections::BTreeMap;

use crds::CaptureSession;
use k8s_openapi::api::core::v1::Secret;

use super::{PodConfig, child_metadata};
use crate::names;

/// Keys of the session's credentials Secret.
pub const AMQP_URL_KEY: &str = "amqp-url";
pub const DATABASE_URL_KEY: &str = "database-url";

/// The URLs the session's pods connect with, in a Secret of the session's own namespace: so that
/// passwords never appear in a DaemonSet or Deployment (readable by anyone who may list
/// workloads), and so that sessions work in any namespace without copying Secrets by hand.
pub fn credentials_secret(session: &CaptureSession, config: &PodConfig) -> Secret {
    let mut data = BTreeMap::from([(AMQP_URL_KEY.to_owned(), config.pod_amqp_url.clone())]);
    if let Some(url) = &config.pod_database_url {
        data.insert(DATABASE_URL_KEY.to_owned(), url.clone());
    }
    let mut labels = names::labels(session, "credentials");
    labels.remove("app.kubernetes.io/component");
    Secret {
        metadata: child_metadata(&config.namespace, names::credentials_name(session), &labels),
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.into_iter()
                .map(|(key, value)| (key, k8s_openapi::ByteString(value.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture::{pod_config, session};
    use crate::build::{parser_deployment, sniffer_daemonset};

    #[test]
    fn urls_with_passwords_live_only_in_the_session_secret() {
        let session = session();
        let secret = credentials_secret(&session, &pod_config());
        assert_eq!(secret.metadata.name.as_deref(), Some("team-a-web-and-dns-credentials"));
        assert_eq!(
            secret.metadata.namespace.as_deref(),
            Some("trawl-system"),
            "in the operator's namespace, not the session's"
        );
        assert_eq!(
            secret.metadata.labels.unwrap()["trawl.dev/session-uid"],
            "0123456789abcdef"
        );
        let data = secret.data.unwrap();
        assert_eq!(data[DATABASE_URL_KEY].0, b"postgres://trawl:secret@postgresql/trawl");
        assert_eq!(data[AMQP_URL_KEY].0, b"amqp://rabbitmq:5672/%2f");
        let children = [
            serde_json::to_string(&sniffer_daemonset(&session, &pod_config(), "q", 20_001)).unwrap(),
            serde_json::to_string(&parser_deployment(&session, &pod_config(), "q")).unwrap(),
        ];
        for child in children {
            assert!(!child.contains("amqp://") && !child.contains("postgres://"), "{child}");
            assert!(child.contains(r#""name":"TRAWL_AMQP_URL","valueFrom""#), "{child}");
        }
    }
}
