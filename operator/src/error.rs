//! The operator's errors: one variant per action, naming the object it was about, so that a
//! failed reconcile says what failed and the metric label says which step.

use crate::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the session has no namespace, name or uid yet")]
    Incomplete,
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("every sniffer port ({}..{}) is taken", crate::ports::SNIFFER_PORTS.start, crate::ports::SNIFFER_PORTS.end)]
    NoFreePort,
    #[error("cannot declare queue {name}: {source}")]
    DeclareQueue {
        name: String,
        #[source]
        source: QueueError,
    },
    #[error("cannot delete queue {name}: {source}")]
    DeleteQueue {
        name: String,
        #[source]
        source: QueueError,
    },
    #[error("cannot apply Secret {name}: {source}")]
    ApplySecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot apply DaemonSet {name}: {source}")]
    ApplyDaemonSet {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete DaemonSet {name}: {source}")]
    DeleteDaemonSet {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete the session's {what}: {source}")]
    DeleteChildren {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("cannot apply Deployment {name}: {source}")]
    ApplyDeployment {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot scale Deployment {name} to {replicas}: {source}")]
    ScaleDeployment {
        name: String,
        replicas: i32,
        #[source]
        source: kube::Error,
    },
    #[error("cannot apply ScaledObject {name}: {source}")]
    ApplyScaledObject {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status of {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the caches of pods, namespaces and nodes are not filled yet (is list/watch on them allowed?)")]
    CacheNotReady,
    #[error("cannot apply {what} (the sniffers' targets): {source}")]
    ApplyTargets {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot label node {name} for the sniffers: {source}")]
    LabelNode {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot mirror the session into PostgreSQL: {0}")]
    Mirror(#[source] database::MirrorError),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The label of `trawl_operator_reconcile_errors_total`: the action that failed. An error
    /// that comes back wrapped by the finalizer helper is labelled by what it wraps.
    pub fn kind(&self) -> &'static str {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            Self::Incomplete => "incomplete",
            Self::Read { .. } => "read",
            Self::NoFreePort => "ports",
            Self::DeclareQueue { .. } => "declare_queue",
            Self::DeleteQueue { .. } => "delete_queue",
            Self::ApplySecret { .. } => "apply_secret",
            Self::ApplyDaemonSet { .. } => "apply_daemonset",
            Self::DeleteDaemonSet { .. } => "delete_daemonset",
            Self::DeleteChildren { .. } => "delete_children",
            Self::ApplyDeployment { .. } => "apply_deployment",
            Self::ScaleDeployment { .. } => "scale_deployment",
            Self::ApplyScaledObject { .. } => "apply_scaledobject",
            Self::WriteStatus { .. } => "write_status",
            Self::CacheNotReady => "cache",
            Self::ApplyTargets { .. } => "apply_targets",
            Self::LabelNode { .. } => "label_node",
            Self::Mirror(_) => "mirror",
            Self::Finalizer(error) => match error.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner.kind(),
                Finalizer::AddFinalizer(_) | Finalizer::RemoveFinalizer(_) => "finalizer",
                Finalizer::UnnamedObject => "incomplete",
                Finalizer::InvalidFinalizer => "finalizer",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_are_labelled_by_the_action_that_failed() {
        let forbidden = || {
            kube::Error::Api(
                kube::core::Status::failure("forbidden", "Forbidden")
                    .with_code(403)
                    .boxed(),
            )
        };
        let apply = Error::ApplyDaemonSet {
            name: "web-sniffer".into(),
            source: forbidden(),
        };
        assert!(apply.to_string().contains("DaemonSet web-sniffer"), "{apply}");
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(apply)));
        assert_eq!(wrapped.kind(), "apply_daemonset");
        let finalizer = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(forbidden())));
        assert_eq!(finalizer.kind(), "finalizer");
    }
}
