use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every REST error: JSON `{"error": {"code", "message", "field"?}}` with a matching status. Internal details are
/// logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    /// `min_block` was not indexed within the wait: 503 with `Retry-After`.
    #[error("{0}")]
    NotYet(String),
    #[error(transparent)]
    Store(#[from] chainmux_store::StoreError),
}

/// The body of every REST error (and of the gateway's own refusals: 401, 403, 429).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable and machine-readable: `bad_request`, `not_found`, `payload_too_large`, `unavailable`,
    /// `store_unavailable`, `not_indexed_yet`, `unauthorized`, `forbidden`, `rate_limited`, `too_many_connections`.
    pub(crate) code: String,
    /// For humans; may change.
    pub(crate) message: String,
    /// The request field (query parameter, path segment, `body`) that was refused, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
}

impl AppError {
    pub(crate) fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest { field: field.into(), message: message.into() }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Self::NotYet(message) = &self {
            return crate::consistency::not_yet_response(message);
        }
        let (status, code, field) = match &self {
            Self::BadRequest { field, .. } => (StatusCode::BAD_REQUEST, "bad_request", Some(field.clone())),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            Self::Unavailable(_) | Self::NotYet(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            Self::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", None),
        };
        let message = match &self {
            Self::Store(err) => {
                tracing::error!(%err, "store error while serving a request");
                "the index store is unavailable".to_owned()
            }
            other => other.to_string(),
        };
        let error = ErrorDetail { code: code.to_owned(), message, field };
        (status, Json(ErrorBody { error })).into_response()
    }
}
