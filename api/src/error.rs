//! One error type for every handler: bad input is a 400 naming the parameter, an unknown session a
//! 404, and only our own failures are 500s (logged, never shown in detail).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{parameter}: {message}")]
    BadParameter { parameter: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("a bearer token is required")]
    Unauthenticated,
    #[error("this token lacks the `{0}` scope")]
    Forbidden(&'static str),
    /// Kubernetes RBAC said no.
    #[error("{0}")]
    Denied(String),
    /// The cluster did not accept the token.
    #[error("{0}")]
    Rejected(String),
    /// The cluster could not be asked: refused rather than let through.
    #[error("{0}")]
    AuthUnavailable(String),
    /// Too many long requests (exports, streams) of this caller or in all (see `crate::limits`).
    #[error("{0}")]
    TooMany(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("the query ran longer than the API allows (its statement timeout)")]
    TimedOut,

    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl ApiError {
    pub fn bad(parameter: &'static str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            parameter,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => Self::Unavailable(error),
            // query_canceled: the statement timeout ended it.
            sqlx::Error::Database(database) if database.code().as_deref() == Some("57014") => Self::TimedOut,
            _ => Self::Database(error),
        }
    }
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The query or path parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'static str>,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, parameter, message) = match &self {
            Self::BadParameter { parameter, message } => (StatusCode::BAD_REQUEST, Some(*parameter), message.clone()),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, None, self.to_string()),
            Self::Unauthenticated | Self::Rejected(_) => (StatusCode::UNAUTHORIZED, None, self.to_string()),
            Self::Forbidden(_) | Self::Denied(_) => (StatusCode::FORBIDDEN, None, self.to_string()),
            Self::AuthUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None, self.to_string()),
            Self::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, None, self.to_string()),
            Self::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the database is unavailable; retry shortly".into(),
                )
            }
            Self::TimedOut => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("{self}; narrow the time range or add filters"),
            ),
            Self::Database(source) => {
                tracing::error!(error = %source, "database error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "internal error; see the API's log".into(),
                )
            }
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail { parameter, message },
            }),
        )
            .into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Long requests end within seconds of their client going away: worth a retry soon.
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("2"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The 500 a panicking handler gets: the same body as every other internal error.
pub fn internal_error_response() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            parameter: None,
            message: "internal error; see the API's log".into(),
        },
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
