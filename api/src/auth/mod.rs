//! Bearer tokens with scopes, from a file (a mounted Secret in a cluster):
//!
//! ```yaml
//! tokens:
//!   - name: alice            # who, for the audit log
//!     token: "s3cret"
//!     scopes: [read, payload, pcap]
//! ```
//!
//! `read` covers sessions, packets, flows, stats and the live stream; `payload` the stored bytes
//! of packets that kept their payload; `pcap` the export. Without a tokens file the API is open
//! (the local run). Browsers' EventSource cannot send headers, so `access_token` in the query
//! string is accepted as well.
//!
//! Or, with `--auth kubernetes`, the cluster's own identities and RBAC per session namespace
//! ([`kubernetes`]): the same scopes, asked of the cluster for each namespace.

pub mod kubernetes;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde::Deserialize;

use crate::aggregated::Proxied;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Payload,
    Pcap,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Payload => "payload",
            Self::Pcap => "pcap",
        }
    }

    /// The CaptureSession subresource whose `get` grants this scope under `--auth kubernetes`.
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Self::Read => None,
            Self::Payload => Some("payload"),
            Self::Pcap => Some("pcap"),
        }
    }

    fn resource(self) -> &'static str {
        match self {
            Self::Read => "capturesessions",
            Self::Payload => "capturesessions/payload",
            Self::Pcap => "capturesessions/pcap",
        }
    }
}

/// How callers are told apart.
#[derive(Debug)]
pub enum Auth {
    /// A tokens file, or none (open).
    Tokens(Tokens),
    /// The cluster's TokenReview and SubjectAccessReview.
    Kubernetes(Arc<kubernetes::Reviewer>),
}

impl Auth {
    /// Every request is let in (no tokens file).
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Tokens(tokens) if tokens.is_open())
    }
}

impl From<Tokens> for Auth {
    fn from(tokens: Tokens) -> Self {
        Self::Tokens(tokens)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: String,
    scopes: Vec<Scope>,
}

#[derive(Debug, Default)]
pub struct Tokens {
    /// `None`: no tokens configured, the API is open.
    entries: Option<Vec<TokenEntry>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a tokens file (tokens: [{{name, token, scopes: [read, payload, pcap]}}]): {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: token {name:?} is shorter than 16 characters")]
    Weak { path: String, name: String },
}

impl Tokens {
    pub fn open() -> Self {
        Self { entries: None }
    }

    /// No tokens file: every request is let in.
    pub fn is_open(&self) -> bool {
        self.entries.is_none()
    }

    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: display.clone(),
            source,
        })?;
        let file: TokensFile = serde_yaml::from_str(&text).map_err(|source| TokensError::Parse {
            path: display.clone(),
            source,
        })?;
        if let Some(weak) = file.tokens.iter().find(|t| t.token.len() < 16) {
            return Err(TokensError::Weak {
                path: display,
                name: weak.name.clone(),
            });
        }
        Ok(Self {
            entries: Some(file.tokens),
        })
    }

    fn find(&self, presented: &str) -> Option<&TokenEntry> {
        let entries = self.entries.as_ref()?;
        // Compare with every entry, in constant time each, so timing tells nothing.
        let mut found = None;
        for entry in entries {
            if constant_time_eq::constant_time_eq(entry.token.as_bytes(), presented.as_bytes()) {
                found = Some(entry);
            }
        }
        found
    }
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: Option<String>,
}

/// Who is calling; extracting it requires the `read` scope (in tokens mode) or an identity the
/// cluster accepts (in Kubernetes mode, where `read` is decided per namespace).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: Arc<str>,
    pub groups: Arc<[String]>,
    access: Access,
}

#[derive(Debug, Clone)]
enum Access {
    Open,
    Scopes(Vec<Scope>),
    Kubernetes {
        identity: Arc<kubernetes::Identity>,
        reviewer: Arc<kubernetes::Reviewer>,
        /// Kept to ask again during a long request (a live stream) whether it still holds; none
        /// when the API server vouched for the caller (the aggregated API).
        token: Option<Arc<str>>,
    },
}

/// The sessions a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    All,
    /// These sessions' keys (`namespace/name`) only.
    Sessions(Vec<String>),
}

impl Caller {
    /// `scope` everywhere: the tokens file's scopes. Under Kubernetes auth use [`Self::require_in`].
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match &self.access {
            Access::Scopes(scopes) if !scopes.contains(&scope) => Err(ApiError::Forbidden(scope.name())),
            _ => Ok(()),
        }
    }

    /// For a long request: whether the caller's token still stands for the same identity and it may
    /// still read `namespace` (answers are cached for [`kubernetes::TTL`], so asked again after it).
    pub async fn recheck(&self, namespace: &str) -> Result<(), ApiError> {
        if let Access::Kubernetes {
            identity,
            reviewer,
            token,
        } = &self.access
            && let Some(token) = token
        {
            let now = reviewer.authenticate(token).await.map_err(review_error)?;
            if now != *identity {
                return Err(ApiError::Rejected("the token now stands for someone else".into()));
            }
        }
        self.require_in(namespace, Scope::Read).await
    }

    /// The namespaces among `sessions`' (`namespace/name`) whose stored payload this caller may
    /// see. The payload rule: `read` shows addresses, ports, protocol fields, DNS names, TLS hello
    /// fields and an HTTP request's method, host and path without its query, and a response's
    /// status; query strings, header values (the user agent), bodies, and Info lines dissected
    /// from kept payload need `payload`.
    pub async fn payload_namespaces<'a>(
        &self,
        sessions: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeSet<String>, ApiError> {
        let namespaces: BTreeSet<&str> = sessions
            .into_iter()
            .map(|session| session.split_once('/').map_or("", |(namespace, _)| namespace))
            .collect();
        let mut allowed = BTreeSet::new();
        for namespace in namespaces {
            match self.require_in(namespace, Scope::Payload).await {
                Ok(()) => {
                    allowed.insert(namespace.to_owned());
                }
                Err(ApiError::Forbidden(_) | ApiError::Denied(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(allowed)
    }

    /// `scope` for the sessions of `namespace`.
    pub async fn require_in(&self, namespace: &str, scope: Scope) -> Result<(), ApiError> {
        match &self.access {
            Access::Open => Ok(()),
            Access::Scopes(_) => self.require(scope),
            Access::Kubernetes { identity, reviewer, .. } => {
                if reviewer
                    .allowed(identity, scope, namespace)
                    .await
                    .map_err(review_error)?
                {
                    Ok(())
                } else {
                    Err(ApiError::Denied(format!(
                        "{} may not get {} in namespace {namespace}",
                        self.name,
                        scope.resource()
                    )))
                }
            }
        }
    }

    /// The sessions this caller may see: all of them, or those of the namespaces where the
    /// cluster lets it `get` CaptureSessions (asked once per namespace that has sessions, or once
    /// for all namespaces when that is allowed).
    pub async fn visible(&self, pool: &sqlx::PgPool) -> Result<Visible, ApiError> {
        let Access::Kubernetes { identity, reviewer, .. } = &self.access else {
            return Ok(Visible::All);
        };
        if reviewer
            .allowed(identity, Scope::Read, "")
            .await
            .map_err(review_error)?
        {
            return Ok(Visible::All);
        }
        let namespaces: Vec<String> = sqlx::query_scalar("SELECT DISTINCT namespace FROM sessions")
            .fetch_all(pool)
            .await?;
        let decisions = futures::future::join_all(
            namespaces
                .iter()
                .map(|namespace| reviewer.allowed(identity, Scope::Read, namespace)),
        )
        .await;
        let mut allowed = BTreeSet::new();
        for (namespace, decision) in namespaces.into_iter().zip(decisions) {
            if decision.map_err(review_error)? {
                allowed.insert(namespace);
            }
        }
        let allowed: Vec<String> = allowed.into_iter().collect();
        let sessions: Vec<String> =
            sqlx::query_scalar("SELECT namespace || '/' || name FROM sessions WHERE namespace = ANY($1) ORDER BY 1")
                .bind(&allowed)
                .fetch_all(pool)
                .await?;
        Ok(Visible::Sessions(sessions))
    }
}

fn review_error(error: kubernetes::ReviewError) -> ApiError {
    match error {
        kubernetes::ReviewError::Rejected(_) => ApiError::Rejected(error.to_string()),
        kubernetes::ReviewError::Unreachable(_) => {
            tracing::warn!(%error, "authorization unavailable");
            ApiError::AuthUnavailable(error.to_string())
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Auth>::from_ref(state);
        if let Auth::Tokens(tokens) = auth.as_ref()
            && tokens.entries.is_none()
        {
            return Ok(Self {
                name: "anonymous".into(),
                groups: Arc::new([]),
                access: Access::Open,
            });
        }
        // Set only on the aggregated listener, behind the front proxy's client certificate.
        if let (Auth::Kubernetes(reviewer), Some(Proxied(identity))) =
            (auth.as_ref(), parts.extensions.get::<Proxied>())
        {
            return Ok(Self {
                name: identity.username.as_str().into(),
                groups: identity.groups.clone().into(),
                access: Access::Kubernetes {
                    identity: identity.clone(),
                    reviewer: reviewer.clone(),
                    token: None,
                },
            });
        }
        let from_header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::to_owned);
        let from_query = || {
            axum::extract::Query::<AccessToken>::try_from_uri(&parts.uri)
                .ok()?
                .0
                .access_token
        };
        let presented = from_header.or_else(from_query).ok_or(ApiError::Unauthenticated)?;
        match auth.as_ref() {
            Auth::Tokens(tokens) => {
                let entry = tokens.find(presented.trim()).ok_or(ApiError::Unauthenticated)?;
                let caller = Self {
                    name: entry.name.as_str().into(),
                    groups: Arc::new([]),
                    access: Access::Scopes(entry.scopes.clone()),
                };
                caller.require(Scope::Read)?;
                Ok(caller)
            }
            Auth::Kubernetes(reviewer) => {
                let identity = reviewer.authenticate(presented.trim()).await.map_err(review_error)?;
                Ok(Self {
                    name: identity.username.as_str().into(),
                    groups: identity.groups.clone().into(),
                    access: Access::Kubernetes {
                        identity,
                        reviewer: reviewer.clone(),
                        token: Some(presented.trim().into()),
                    },
                })
            }
        }
    }
}

/// One line per access to payload bytes or a pcap export: who, what, when (the log's timestamp).
pub fn audit(caller: &Caller, action: &str, target: &str) {
    let groups = caller.groups.join(",");
    tracing::info!(target: "trawl_api::audit", who = %caller.name, %groups, action, target, "audit");
}
