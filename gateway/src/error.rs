//! The API error model: a JSON body with a machine code, a readable message and, for
//! validation, every bad field by its path.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maestro_core::{FieldError, ValidationErrors};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    /// The body is larger than the API accepts.
    PayloadTooLarge,
    /// The body is not JSON by its `Content-Type`.
    UnsupportedMediaType,
    /// Too much at once (a scheduler's queue, Temporal's rate limits): retry after a while.
    ResourceExhausted,
    Unavailable,
    Internal,
}

/// Seconds a refused client should wait before retrying (the `Retry-After` of 429 and 503).
pub const RETRY_AFTER_SECS: u32 = 1;

impl ErrorCode {
    fn status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists | Self::FailedPrecondition => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::from(ValidationErrors::single(field, message))
    }

    /// An error about one field (`body`, `Content-Type`) with its own code.
    pub fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            ..Self::invalid_field(field, message)
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, what)
    }

    pub fn unavailable(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, what)
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        Self {
            code: ErrorCode::InvalidArgument,
            message: errors.to_string(),
            fields: errors.errors,
        }
    }
}

/// A scheduler's refusal (`core::operation::Rejection`), with the status of its code.
impl From<maestro_core::operation::Rejection> for ApiError {
    fn from(r: maestro_core::operation::Rejection) -> Self {
        use maestro_core::operation::RejectionCode;
        let code = match r.code {
            RejectionCode::Invalid => ErrorCode::InvalidArgument,
            RejectionCode::Conflict => ErrorCode::FailedPrecondition,
            RejectionCode::NotFound => ErrorCode::NotFound,
        };
        Self::new(code, r.message)
    }
}

/// Room-store failures, the same way on every API: an unknown room is 404, an unreachable
/// store 503 (retry), an unreadable record 500.
impl From<maestro_runtime::StoreError> for ApiError {
    fn from(e: maestro_runtime::StoreError) -> Self {
        use maestro_runtime::StoreError;
        match e {
            StoreError::RoomNotFound { .. } => Self::not_found(e.to_string()),
            StoreError::Unavailable(_) => Self::unavailable(e.to_string()),
            StoreError::Corrupt(_) => Self::new(ErrorCode::Internal, e.to_string()),
        }
    }
}

/// The same error for gRPC callers: the status code that means the same, the message, and
/// the bad fields (as `field: message` lines) for validation errors.
impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        use tonic::Code;
        let code = match error.code {
            ErrorCode::InvalidArgument
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType => Code::InvalidArgument,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::ResourceExhausted => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        };
        if error.code == ErrorCode::Internal {
            tracing::error!(message = %error.message, "internal error");
        }
        let mut message = error.message;
        for field in &error.fields {
            message.push_str(&format!("\n{}: {}", field.field, field.message));
        }
        tonic::Status::new(code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code == ErrorCode::Internal {
            tracing::error!(message = %self.message, "internal error");
        }
        let retry = matches!(
            self.code,
            ErrorCode::Unavailable | ErrorCode::ResourceExhausted
        );
        let mut response = (self.code.status(), Json(self)).into_response();
        if retry {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
