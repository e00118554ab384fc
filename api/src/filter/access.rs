//! Access by construction (issue #31): a filter renders SQL only as a [`Narrowed`], and a
//! `Narrowed` exists only once the caller's access was applied to it. A data route takes it as an
//! extractor (or, when its path names the session, builds it with [`Narrowed::for_session`]), so
//! no route can be written that reads rows without narrowing them to what its caller may see.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

use super::{Columns, Filter, FilterParams};
use crate::auth::{Caller, Scope, Visible};
use crate::error::ApiError;
use crate::input::Query;
use crate::state::AppState;

/// A checked filter narrowed to what its caller may see: a named session the caller may read, or
/// (without one) only the sessions it may see.
#[derive(Debug, Clone)]
pub struct Narrowed {
    filter: Filter,
    /// Who asked: for audit lines and per-caller limits.
    pub caller: Caller,
    /// The `q` expression as given, for audit lines.
    pub q: Option<String>,
}

impl Narrowed {
    /// The filter of `params`, narrowed for `caller`.
    pub async fn new(pool: &sqlx::PgPool, caller: Caller, params: &FilterParams) -> Result<Self, ApiError> {
        let mut filter = params.check()?;
        if let Some(session) = &filter.session {
            let namespace = session.split_once('/').map_or("", |(namespace, _)| namespace);
            caller.require_in(namespace, Scope::Read).await?;
        } else if let Visible::Sessions(sessions) = caller.visible(pool).await? {
            filter.sessions = Some(sessions);
        }
        Ok(Self {
            filter,
            caller,
            q: params.q.clone(),
        })
    }

    /// For a route whose path names the session (`namespace/name`): the filter of `params` for
    /// that session alone, which the caller must be allowed to read. A `session` parameter naming
    /// another session is a 400.
    pub async fn for_session(
        caller: Caller,
        params: &FilterParams,
        namespace: &str,
        name: &str,
    ) -> Result<Self, ApiError> {
        let mut filter = params.check()?;
        let session = database::session_key(namespace, name);
        if filter.session.as_ref().is_some_and(|given| *given != session) {
            return Err(ApiError::bad("session", "the path already names the session"));
        }
        caller.require_in(namespace, Scope::Read).await?;
        filter.session = Some(session);
        Ok(Self {
            filter,
            caller,
            q: params.q.clone(),
        })
    }

    /// The filter's conditions as SQL (see [`Filter`]), narrowed.
    pub fn push_sql(&self, query: &mut QueryBuilder<Postgres>, columns: &Columns) {
        self.filter.push_sql(query, columns);
    }

    /// Sets the time range (a route's default range); what the caller may see stays as it is.
    pub fn set_range(&mut self, since: DateTime<Utc>, until: DateTime<Utc>) {
        (self.filter.since, self.filter.until) = (Some(since), Some(until));
    }
}

/// Read access to the narrowed filter's fields; changing them goes through [`Narrowed`]'s methods.
impl Deref for Narrowed {
    type Target = Filter;

    fn deref(&self) -> &Filter {
        &self.filter
    }
}

impl FromRequestParts<AppState> for Narrowed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Query(params) = Query::<FilterParams>::from_request_parts(parts, state).await?;
        Self::new(&state.pool, caller, &params).await
    }
}
