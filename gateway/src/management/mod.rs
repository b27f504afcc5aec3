//! The management REST API (Maestro's :8080): schedulers, versions, rooms and operations,
//! with Maestro's paths and JSON, one file per resource. Every handler answers a typed
//! value, so the OpenAPI document (`/openapi.json`) is derived from what is served.

pub mod auth;
mod dry_run;
mod operations;
mod rooms;
mod schedulers;
mod versions;
mod wire;

use axum::Json;
use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maestro_core::OperationRequest;
use maestro_core::validation::check_scheduler_name;
use serde::Serialize;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::GatewayState;
use crate::docs::BearerAuth;
use crate::error::{ApiError, StatusBody};
use crate::schedulers::IDEMPOTENCY_KEY;
pub use dry_run::DryRunAnswer;
pub use wire::EXTENSIONS_HEADER;

/// The management routes with their OpenAPI operations: registered together, so a route
/// cannot be served without being documented.
fn api_router() -> OpenApiRouter<GatewayState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            schedulers::create_scheduler,
            schedulers::list_schedulers
        ))
        .routes(routes!(schedulers::schedulers_info))
        .routes(routes!(
            schedulers::get_scheduler,
            versions::new_version,
            versions::patch_scheduler,
            versions::switch_version,
            schedulers::delete_scheduler
        ))
        .routes(routes!(rooms::add_rooms))
        .routes(routes!(rooms::remove_rooms))
        .routes(routes!(operations::list_operations))
        .routes(routes!(operations::get_operation))
        .routes(routes!(operations::cancel_operation))
        .routes(routes!(versions::list_versions))
        .routes(routes!(rooms::list_rooms))
        .routes(routes!(rooms::get_room))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Maestro management API", description = "Schedulers, versions, rooms and operations (Maestro-compatible)."),
    modifiers(&BearerAuth),
    components(schemas(StatusBody))
)]
struct ApiDoc;

pub fn router(state: GatewayState) -> Router {
    let (router, _) = api_router().split_for_parts();
    router
        .layer(axum::middleware::from_fn(wire::shape_answers))
        .with_state(state)
}

/// The management API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// Says which source answered a read: `query` (the workflow) or `memo` (no worker answered).
pub const READ_SOURCE_HEADER: &str = "x-maestro-read-source";

/// The error answers of a read of one scheduler's resources (the shared response type of
/// the OpenAPI document; every error body is a [`StatusBody`], `google.rpc.Status`).
#[derive(utoipa::IntoResponses)]
pub enum ReadErrors {
    /// Invalid input, every bad field named.
    #[response(status = 400)]
    Invalid(StatusBody),
    /// No or a wrong bearer token.
    #[response(status = 401)]
    Unauthenticated(StatusBody),
    #[response(status = 403)]
    Forbidden(StatusBody),
    /// No such scheduler (or what the path names within it).
    #[response(status = 404)]
    NotFound(StatusBody),
    /// Temporal or the room store did not answer; retry.
    #[response(status = 503)]
    Unavailable(StatusBody),
}

/// The error answers of a listing across schedulers.
#[derive(utoipa::IntoResponses)]
pub enum ListErrors {
    /// Invalid input, every bad field named.
    #[response(status = 400)]
    Invalid(StatusBody),
    #[response(status = 401)]
    Unauthenticated(StatusBody),
    #[response(status = 403)]
    Forbidden(StatusBody),
    #[response(status = 503)]
    Unavailable(StatusBody),
}

/// The error answers of a change (an operation submitted).
#[derive(utoipa::IntoResponses)]
pub enum WriteErrors {
    /// Invalid input, every bad field named.
    #[response(status = 400)]
    Invalid(StatusBody),
    #[response(status = 401)]
    Unauthenticated(StatusBody),
    #[response(status = 403)]
    Forbidden(StatusBody),
    #[response(status = 404)]
    NotFound(StatusBody),
    /// The scheduler already exists, or the Idempotency-Key was used for another request.
    /// (A change the scheduler's state forbids now is 400, code 9, as in Maestro.)
    #[response(status = 409)]
    Conflict(StatusBody),
    /// Too many submissions are waiting for this scheduler; retry after `Retry-After`.
    #[response(status = 429)]
    Busy(StatusBody),
    #[response(status = 503)]
    Unavailable(StatusBody),
}

/// An operation accepted: its id, answered as soon as Temporal has it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationAccepted {
    pub operation_id: String,
}

/// An answer that is one of Maestro's messages (see [`wire`]): written as Maestro writes it.
pub trait MaestroAnswer: Serialize {
    const SHAPE: &'static wire::Message;
}

impl MaestroAnswer for OperationAccepted {
    const SHAPE: &'static wire::Message = &wire::OPERATION_ACCEPTED;
}

/// The JSON of `T`, marked as the Maestro message it is.
pub struct Maestro<T>(pub T);

impl<T: MaestroAnswer> IntoResponse for Maestro<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.0).into_response();
        response.extensions_mut().insert(wire::Shape(T::SHAPE));
        response
    }
}

/// A handler's answer, or with `?dryRun=true` the plan in its place (an extension, written
/// as it is).
pub enum OrPlan<T> {
    Done(T),
    Planned(DryRunAnswer),
}

impl<T: MaestroAnswer> IntoResponse for OrPlan<T> {
    fn into_response(self) -> Response {
        match self {
            Self::Done(answer) => Maestro(answer).into_response(),
            Self::Planned(plan) => Json(plan).into_response(),
        }
    }
}

/// A path's scheduler name: one that could never have been created cannot exist, so it is
/// 404 as any unknown scheduler (Maestro), without asking Temporal.
fn checked_name(name: &str) -> Result<(), ApiError> {
    check_scheduler_name(name).map_err(|_| crate::schedulers::scheduler_not_found(name))
}

const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// The client's `Idempotency-Key`, if any: a retried request with the same key returns the
/// first request's operation and enqueues nothing.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .ok_or_else(|| {
            ApiError::invalid_field(
                IDEMPOTENCY_KEY,
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            )
        })?;
    Ok(Some(key.to_string()))
}

/// Submits `request` to the scheduler's workflow: every change goes through here.
async fn submit(
    state: &GatewayState,
    name: &str,
    IdempotencyKey(key): IdempotencyKey,
    request: impl Into<OperationRequest>,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    checked_name(name)?;
    let operation_id = state.schedulers.submit(name, request.into(), key).await?;
    Ok(OrPlan::Done(OperationAccepted { operation_id }))
}

/// The scheduler a path names (`/schedulers/{name}…`).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SchedulerPath {
    /// The scheduler's name.
    pub name: String,
}

/// The `Idempotency-Key` header of a change, checked: a retry with the same key answers
/// the same operation and enqueues nothing.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        idempotency_key(&parts.headers).map(Self)
    }
}

impl utoipa::IntoParams for IdempotencyKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{Required, Type, schema::ObjectBuilder};
        vec![
            ParameterBuilder::new()
                .name(IDEMPOTENCY_KEY)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "a retry with the same key returns the same operation; another request \
                     under it is 400 (FailedPrecondition, code 9)",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}
