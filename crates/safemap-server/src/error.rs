//! The one error type of the HTTP layer: every failure becomes
//! `{"error": {"code": "<snake_case>", "message": "<human text>", "details": {...}}}`
//! with a fitting status (http-api.md, "Conventions").

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API error: status, machine-readable code, human message and details.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Stable snake_case code (`not_found`, `reason_required`, ...).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Structured details (an object; `{}` when there are none).
    pub details: Value,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// Whether the answer must close an HTTP/1 connection (the request body
    /// was refused unread, so the connection cannot carry another request).
    pub close_connection: bool,
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with empty details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
            close_connection: false,
        }
    }

    /// Replaces the details object.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Adds a `Retry-After` header (seconds, at least 1).
    /// Closes the HTTP/1 connection after this answer (`Connection: close`, RFC 9112 §9.6).
    pub fn closing_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 `storage_unavailable`: the write was not made durable and is not acknowledged.
    pub fn storage_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "storage is unavailable (a durable commit failed); writes are refused, see the server log",
        )
        .with_retry_after(5)
    }

    /// 500 `internal` (never for bad input; only for faults of the server itself).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close_connection {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// The error code of a response, kept as an extension for logs.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_code_message_details() {
        let e = ApiError::bad_request("reason_required", "X-Reason is required")
            .with_details(json!({"header": "X-Reason"}));
        let b = e.body();
        assert_eq!(b["error"]["code"], "reason_required");
        assert_eq!(b["error"]["details"]["header"], "X-Reason");
        let r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "delete_breaker_open", "x")
            .with_retry_after(0)
            .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
