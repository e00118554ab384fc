//! Checks every request's raw input before any handler sees it. PostgreSQL rejects a NUL byte in
//! text, so a `%00` anywhere in the path or a query value would reach it as a 500; it is a 400
//! naming the parameter instead. Query strings that do not deserialize (a parameter given twice)
//! get the same JSON error body as every other 400, not axum's plain-text one.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Query parameters the API reads, for naming the one at fault (the error names a `&'static str`).
const PARAMETERS: [&str; 15] = [
    "session",
    "since",
    "until",
    "src",
    "dst",
    "host",
    "port",
    "protocol",
    "q",
    "limit",
    "cursor",
    "sort",
    "bucket",
    "last_event_id",
    "access_token",
];

/// axum's `Query`, with its rejections as the API's 400 naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                let message = rejection.body_text();
                let parameter = PARAMETERS
                    .iter()
                    .find(|name| message.contains(&format!("`{name}`")))
                    .copied()
                    .unwrap_or("query");
                let message = message
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&message);
                Err(ApiError::bad(parameter, message.to_owned()))
            }
        }
    }
}

/// axum's `Path`, with its rejections (a segment that is not UTF-8 once decoded) as the API's 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad("path", rejection.body_text())),
        }
    }
}

pub async fn reject_nul(request: Request, next: Next) -> Response {
    if let Some(parameter) = nul_in(request.uri().path(), request.uri().query()) {
        return ApiError::bad(parameter, "contains a NUL byte (%00)").into_response();
    }
    next.run(request).await
}

fn has_nul(encoded: &str) -> bool {
    encoded.to_ascii_lowercase().contains("%00")
}

/// The parameter (or `path`) whose percent-encoded text holds a NUL byte, if any.
fn nul_in(path: &str, query: Option<&str>) -> Option<&'static str> {
    if has_nul(path) {
        return Some("path");
    }
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if has_nul(name) || has_nul(value) {
            return Some(
                PARAMETERS
                    .iter()
                    .find(|known| **known == name)
                    .copied()
                    .unwrap_or("query"),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::nul_in;

    #[test]
    fn the_parameter_holding_a_nul_is_named() {
        assert_eq!(
            nul_in("/api/v1/packets", Some("session=local/demo%00")),
            Some("session")
        );
        assert_eq!(nul_in("/api/v1/sessions/a%00/b", None), Some("path"));
        assert_eq!(nul_in("/api/v1/packets", Some("limit=5&odd%00=1")), Some("query"));
        assert_eq!(nul_in("/api/v1/packets", Some("q=port%2053&limit=100")), None);
    }
}
