//! Who the API takes the caller for, so that the UI can show it and a user can check a token.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// The tokens file's name for the token, the Kubernetes username, or `anonymous`.
    pub name: String,
    /// The caller's Kubernetes groups (empty in tokens mode).
    pub groups: Vec<String>,
}

/// The caller's identity.
#[utoipa::path(get, path = "/api/v1/whoami", operation_id = "whoAmI", tag = "access",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(caller: Caller) -> Result<Json<WhoAmI>, ApiError> {
    Ok(Json(WhoAmI {
        name: caller.name.to_string(),
        groups: caller.groups.to_vec(),
    }))
}
