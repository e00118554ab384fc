//! Opaque keyset-pagination cursors: the sort key of the last row of a page, as base64url JSON.
//! Paging by key rather than by offset neither skips nor repeats rows while new ones arrive.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub fn encode<T: Serialize>(key: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("cursor keys serialise"))
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| ApiError::bad("cursor", "not a cursor this API returned"))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::bad(
            "cursor",
            "not a cursor this API returned (or one for another sort order)",
        )
    })
}

/// `limit` checked against the configured maximum.
pub fn page_size(limit: Option<u32>, max: u32) -> Result<i64, ApiError> {
    match limit {
        None => Ok(i64::from(max.min(100))),
        Some(0) => Err(ApiError::bad("limit", "must be at least 1")),
        Some(n) if n > max => Err(ApiError::bad("limit", format!("must be at most {max}"))),
        Some(n) => Ok(i64::from(n)),
    }
}
