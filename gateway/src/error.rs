//! The API error model, as grpc-gateway writes a gRPC status over HTTP (Maestro's management
//! and rooms APIs are grpc-gateway): `{"code": <gRPC code number>, "message", "details": []}`
//! with grpc-gateway's HTTP status for each code. Every bad field is named in a
//! `google.rpc.BadRequest` detail, which strict `google.rpc.Status` decoders accept.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maestro_core::{FieldError, ValidationErrors};
use serde::Serialize;

/// The gRPC status codes the API answers with (numbers are gRPC's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 2: Maestro answers it for failures it did not classify (e.g. allocate with no room).
    Unknown,
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    /// 9: the scheduler's state forbids the change now. grpc-gateway answers HTTP 400.
    FailedPrecondition,
    /// 10: a concurrent or repeated request conflicts (an Idempotency-Key reused): HTTP 409.
    Aborted,
    /// The body is larger than the API accepts: code 3 (InvalidArgument) with HTTP 413.
    PayloadTooLarge,
    /// Too much at once (a scheduler's queue, Temporal's rate limits): retry after a while.
    ResourceExhausted,
    /// 12: no such method on this path.
    Unimplemented,
    Unavailable,
    Internal,
}

/// Seconds a refused client should wait before retrying (the `Retry-After` of 429 and 503).
pub const RETRY_AFTER_SECS: u32 = 1;

impl ErrorCode {
    /// The gRPC code number written in `code`.
    pub fn grpc(self) -> i32 {
        self.tonic() as i32
    }

    /// The HTTP status, as grpc-gateway's `HTTPStatusFromCode` maps the gRPC code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidArgument | Self::FailedPrecondition => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists | Self::Aborted => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unknown | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn tonic(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::Unknown => Code::Unknown,
            Self::InvalidArgument | Self::PayloadTooLarge => Code::InvalidArgument,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::Aborted => Code::Aborted,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::Unimplemented => Code::Unimplemented,
            Self::Unavailable => Code::Unavailable,
            Self::Internal => Code::Internal,
        }
    }
}

/// An API error. On the wire it is a `google.rpc.Status` (see [`StatusBody`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub fields: Vec<FieldError>,
}

/// The body of every error answer: `google.rpc.Status` in protojson.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    /// The gRPC status code number (3 invalid argument, 5 not found, 9 failed precondition…).
    pub code: i32,
    pub message: String,
    /// `google.rpc.BadRequest` with one field violation per bad field, when fields are bad.
    pub details: Vec<BadRequestDetail>,
}

/// `google.protobuf.Any` holding a `google.rpc.BadRequest`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BadRequestDetail {
    /// Always `type.googleapis.com/google.rpc.BadRequest`.
    #[serde(rename = "@type")]
    pub type_url: &'static str,
    #[serde(rename = "fieldViolations")]
    pub field_violations: Vec<FieldViolation>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldViolation {
    /// The field's path in the request (`spec.containers[0].ports[0].protocol`).
    pub field: String,
    pub description: String,
}

pub const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

impl ApiError {
    /// The `google.rpc.Status` this error is written as.
    pub fn body(&self) -> StatusBody {
        let details = if self.fields.is_empty() {
            Vec::new()
        } else {
            vec![BadRequestDetail {
                type_url: BAD_REQUEST_TYPE,
                field_violations: self
                    .fields
                    .iter()
                    .map(|f| FieldViolation {
                        field: f.field.clone(),
                        description: f.message.clone(),
                    })
                    .collect(),
            }]
        };
        StatusBody {
            code: self.code.grpc(),
            message: self.message.clone(),
            details,
        }
    }

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
        if error.code == ErrorCode::Internal {
            tracing::error!(message = %error.message, "internal error");
        }
        let code = error.code.tonic();
        let mut message = error.message;
        for field in &error.fields {
            message.push_str(&format!("\n{}: {}", field.field, field.message));
        }
        tonic::Status::new(code, message)
    }
}

/// The reason of a 5xx answer, for the request log line (`metrics::TrackHttpLayer` writes it
/// with the method, path and status; the body alone would not say which request it was).
/// `None` for code 2 (Unknown): only Maestro's "no ready rooms" answer uses it, an
/// ordinary answer to a matchmaker, not a failure worth a line per request.
#[derive(Debug, Clone)]
pub struct ServerErrorReason(pub Option<std::sync::Arc<str>>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = matches!(
            self.code,
            ErrorCode::Unavailable | ErrorCode::ResourceExhausted
        );
        let status = self.code.status();
        let reason = status.is_server_error().then(|| {
            ServerErrorReason(
                (self.code != ErrorCode::Unknown).then(|| self.message.as_str().into()),
            )
        });
        let mut response = (status, Json(self.body())).into_response();
        if let Some(reason) = reason {
            response.extensions_mut().insert(reason);
        }
        if retry {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// Answers requests no route takes as grpc-gateway does: an unknown path is 404 with code 5,
/// a known path with another method 501 with code 12; both JSON like every other error.
pub fn answer_unrouted(router: axum::Router) -> axum::Router {
    router
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::Unimplemented, "Method Not Allowed")
        })
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "Not Found") })
}
