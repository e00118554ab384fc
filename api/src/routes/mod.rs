//! The `/api/v1` handlers, one file per resource.

pub mod events;
pub mod flows;
pub mod packets;
pub mod pcap;
pub mod service_map;
pub mod sessions;
pub mod stats;
pub mod stream;
pub mod whoami;

use serde::Deserialize;
use utoipa::IntoParams;

/// Keyset paging: `cursor` from the previous page's `next_cursor`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Rows per page (default 100, at most the configured maximum, which the served document states).
    #[param(value_type = Option<u32>, minimum = 1)]
    pub limit: Option<String>,
}

impl PageParams {
    pub fn limit(&self, max: u32) -> Result<i64, crate::error::ApiError> {
        let limit = self
            .limit
            .as_deref()
            .map(|l| {
                l.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| l.parse::<u32>().ok())
                    .flatten()
                    .ok_or_else(|| crate::error::ApiError::bad("limit", format!("{l:?} is not a number")))
            })
            .transpose()?;
        crate::cursor::page_size(limit, max)
    }
}

/// Fails with 404 unless the session is mirrored by the operator or has stored batches.
pub async fn ensure_session_known(pool: &sqlx::PgPool, session: &str) -> Result<(), crate::error::ApiError> {
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE namespace || '/' || name = $1) \
             OR EXISTS (SELECT 1 FROM batches WHERE session = $1)",
    )
    .bind(session)
    .fetch_one(pool)
    .await?;
    if known {
        Ok(())
    } else {
        Err(crate::error::ApiError::NotFound(format!(
            "session {session} is not known"
        )))
    }
}
