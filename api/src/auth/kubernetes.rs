//! `--auth kubernetes`: callers are whoever the cluster says their bearer token belongs to
//! (TokenReview), and may see a session's data when the cluster's RBAC lets them `get` its
//! CaptureSession (SubjectAccessReview in the session's namespace); stored payload and pcap
//! export need `get` on `capturesessions/payload` and `capturesessions/pcap`, subresources that
//! exist only in RBAC rules, as `pods/log` grants logs.
//!
//! Both reviews are cached briefly (bounded, [`TTL`]), so a page of requests costs at most one
//! review per caller and namespace, and a revoked binding stops working within the TTL. When the
//! API server cannot be asked, requests fail (503), never pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Api;
use kube::api::PostParams;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::Scope;
use crate::metrics::OutcomeLabel;

/// How long a review's answer is reused.
pub const TTL: Duration = Duration::from_secs(15);
/// How long a rejected token is answered from memory: long enough that a client retrying a bad
/// token in a loop costs the API server one review per few seconds, short enough that a token
/// minted a moment after its first use (clock skew, a race with its Secret) soon works.
pub const REJECTED_TTL: Duration = Duration::from_secs(5);
/// Cached answers at most, per cache.
const CAPACITY: u64 = 10_000;

/// Who the cluster says a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the cluster does not accept this token{}", .0.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    Rejected(Option<String>),
    #[error("cannot ask the Kubernetes API server ({0}); access is refused until it answers")]
    Unreachable(String),
}

pub struct Reviewer {
    client: kube::Client,
    audiences: Vec<String>,
    identities: moka::future::Cache<String, Arc<Identity>>,
    rejected: moka::future::Cache<String, Option<String>>,
    /// TokenReviews sent, by outcome (`authenticated`, `rejected`, `unreachable`).
    reviews: Family<OutcomeLabel, Counter>,
    decisions: moka::future::Cache<(Arc<Identity>, Scope, String), bool>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer").field("audiences", &self.audiences).finish()
    }
}

fn bounded<K, V>(ttl: Duration) -> moka::future::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::future::Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(ttl)
        .build()
}

impl Reviewer {
    pub fn new(client: kube::Client, audiences: Vec<String>, reviews: Family<OutcomeLabel, Counter>) -> Self {
        Self {
            client,
            audiences,
            identities: bounded(TTL),
            rejected: bounded(REJECTED_TTL),
            reviews,
            decisions: bounded(TTL),
        }
    }

    fn count(&self, outcome: &'static str) {
        self.reviews.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The token's owner, from the cache or a TokenReview.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, ReviewError> {
        if let Some(identity) = self.identities.get(token).await {
            return Ok(identity);
        }
        if let Some(reason) = self.rejected.get(token).await {
            return Err(ReviewError::Rejected(reason));
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|error| {
                self.count("unreachable");
                ReviewError::Unreachable(error.to_string())
            })?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            self.count("rejected");
            let reason = status.error.filter(|e| !e.is_empty());
            self.rejected.insert(token.to_owned(), reason.clone()).await;
            return Err(ReviewError::Rejected(reason));
        }
        self.count("authenticated");
        let user = status.user.unwrap_or_default();
        let identity = Arc::new(Identity {
            username: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        });
        self.identities.insert(token.to_owned(), identity.clone()).await;
        Ok(identity)
    }

    /// Whether `identity` may do what `scope` needs in `namespace` (`""`: in every namespace).
    pub async fn allowed(&self, identity: &Arc<Identity>, scope: Scope, namespace: &str) -> Result<bool, ReviewError> {
        let key = (identity.clone(), scope, namespace.to_owned());
        if let Some(allowed) = self.decisions.get(&key).await {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(identity.username.clone()),
                uid: Some(identity.uid.clone()).filter(|uid| !uid.is_empty()),
                groups: Some(identity.groups.clone()),
                extra: Some(identity.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("trawl.dev".into()),
                    resource: Some("capturesessions".into()),
                    subresource: scope.subresource().map(str::to_owned),
                    verb: Some("get".into()),
                    namespace: Some(namespace.to_owned()).filter(|ns| !ns.is_empty()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|error| ReviewError::Unreachable(error.to_string()))?;
        let allowed = reviewed
            .status
            .is_some_and(|status| status.allowed && status.denied != Some(true));
        self.decisions.insert(key, allowed).await;
        Ok(allowed)
    }
}
