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

use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde::Deserialize;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

/// Who is calling; extracting it requires the `read` scope.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: Arc<str>,
    scopes: Option<Vec<Scope>>,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match &self.scopes {
            Some(scopes) if !scopes.contains(&scope) => Err(ApiError::Forbidden(scope.name())),
            _ => Ok(()),
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Tokens>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let tokens = Arc::<Tokens>::from_ref(state);
        if tokens.entries.is_none() {
            return Ok(Self {
                name: "anonymous".into(),
                scopes: None,
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
        let entry = tokens.find(presented.trim()).ok_or(ApiError::Unauthenticated)?;
        let caller = Self {
            name: entry.name.as_str().into(),
            scopes: Some(entry.scopes.clone()),
        };
        caller.require(Scope::Read)?;
        Ok(caller)
    }
}

/// One line per access to payload bytes or a pcap export: who, what, when (the log's timestamp).
pub fn audit(caller: &Caller, action: &str, target: &str) {
    tracing::info!(target: "trawl_api::audit", who = %caller.name, action, target, "audit");
}
