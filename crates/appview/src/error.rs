//! The XRPC error type: what a client sees when a request fails.
//!
//! Bodies are always `{"error": <name>, "message": <text>}`. Internal failures are logged
//! with their detail and answered with a fixed message, so no SQL, path or stack trace ever
//! reaches a client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An XRPC error as clients see it.
#[derive(Debug, thiserror::Error)]
pub enum XrpcError {
    /// The request is malformed (400 `InvalidRequest`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The request is malformed in a way the method's lexicon names (400 with that name,
    /// e.g. `InvalidCursor`, `InvalidCapability`).
    #[error("{message}")]
    Invalid {
        /// The lexicon's error name.
        error: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The caller is not authenticated (401 with the service-auth error name, e.g.
    /// `BadJwtSignature`; see [`crate::auth`]).
    #[error("{message}")]
    Unauthorized {
        /// The XRPC error name.
        error: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The method exists but this instance does not offer it (501 `MethodNotImplemented`:
    /// no DID for service auth, no ledger).
    #[error("{0}")]
    NotImplemented(String),
    /// Nothing matches (404 `NotFound`).
    #[error("{0}")]
    NotFound(String),
    /// The caller's address is over its request budget (429 `RateLimitExceeded`).
    #[error("too many requests")]
    RateLimitExceeded,
    /// The request took longer than the configured limit (503 `RequestTimeout`).
    #[error("request timed out")]
    Timeout,
    /// The request body is larger than the configured limit (413 `PayloadTooLarge`).
    #[error("request body too large")]
    PayloadTooLarge,
    /// The method exists but not for this HTTP verb (405 `InvalidRequest`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Something failed on our side (500); the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl XrpcError {
    /// A 400 with a lexicon-declared error name.
    pub fn invalid(error: &'static str, message: impl Into<String>) -> Self {
        XrpcError::Invalid {
            error,
            message: message.into(),
        }
    }

    /// Status code and XRPC error name.
    pub fn status_and_name(&self) -> (StatusCode, &'static str) {
        match self {
            XrpcError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            XrpcError::Invalid { error, .. } => (StatusCode::BAD_REQUEST, error),
            XrpcError::Unauthorized { error, .. } => (StatusCode::UNAUTHORIZED, error),
            XrpcError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "MethodNotImplemented"),
            XrpcError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            XrpcError::RateLimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "RateLimitExceeded"),
            XrpcError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "RequestTimeout"),
            XrpcError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
            XrpcError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "InvalidRequest"),
            XrpcError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        }
    }
}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        let (status, name) = self.status_and_name();
        let message = match &self {
            XrpcError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering XRPC");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        (status, Json(json!({"error": name, "message": message}))).into_response()
    }
}

impl From<guildhall_store::StoreError> for XrpcError {
    fn from(e: guildhall_store::StoreError) -> Self {
        XrpcError::Internal(e.to_string())
    }
}

impl From<crate::trust_index::TrustIndexError> for XrpcError {
    fn from(e: crate::trust_index::TrustIndexError) -> Self {
        XrpcError::Internal(e.to_string())
    }
}
