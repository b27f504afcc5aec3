//! The game rooms API over HTTP, with Maestro's paths and JSON. Behaviour lives in
//! [`RoomService`]; this module only decodes and encodes, and documents each route
//! (OpenAPI, registered with its handler so no route goes undocumented).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use maestro_core::room::{RoomAddress, RoomPort};
use serde::Serialize;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{EventMessage, PingMessage};
use crate::GatewayState;
use crate::docs::BearerAuth;
use crate::error::{ApiError, StatusBody};
use crate::json::ValidJson;
use maestro_proto::http::{AllocateRequest, EventRequest, PingRequest};

fn api_router() -> OpenApiRouter<GatewayState> {
    OpenApiRouter::with_openapi(RoomsDoc::openapi())
        .routes(routes!(ping))
        .routes(routes!(status))
        .routes(routes!(room_event))
        .routes(routes!(player_event))
        .routes(routes!(address))
        .routes(routes!(allocate))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Maestro game rooms API",
        description = "What game rooms call (pings, events, their address) and what \
                       matchmakers call (allocate), with Maestro's paths and messages. A room \
                       sends its own token (`MAESTRO_ROOM_TOKEN`); allocate takes a matchmaker \
                       or admin token of the management API's list."
    ),
    modifiers(&BearerAuth),
    components(schemas(StatusBody))
)]
struct RoomsDoc;

pub fn router(state: GatewayState) -> Router {
    api_router().split_for_parts().0.with_state(state)
}

/// The rooms API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// `{"success": …}`: Maestro's PingResponse and UpdateRoomStatusResponse.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Success {
    /// False when the scheduler has no such room (Maestro answers so, not 404).
    pub success: bool,
}

/// Maestro's room and player event answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventAnswer {
    pub success: bool,
    /// Why the event was not forwarded, when it was not.
    pub message: String,
}

/// A room handed to a player: Maestro's allocation answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Allocated {
    pub room_id: String,
    pub success: bool,
    pub message: String,
    pub ports: Vec<RoomPort>,
    pub host: String,
}

/// The error answers of a room's call (every body a `google.rpc.Status`).
#[derive(utoipa::IntoResponses)]
pub enum RoomErrors {
    /// A field of the body is invalid; it is named.
    #[response(status = 400)]
    Invalid(StatusBody),
    /// No room token (when tokens are required).
    #[response(status = 401)]
    Unauthenticated(StatusBody),
    /// The token is not this room's.
    #[response(status = 403)]
    Forbidden(StatusBody),
    /// The room store did not answer; retry.
    #[response(status = 503)]
    Unavailable(StatusBody),
}

/// The room a path names.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RoomPath {
    /// The scheduler's name.
    pub scheduler: String,
    /// The room's id (`MAESTRO_ROOM_ID`).
    pub room: String,
}

/// The room's token, from `Authorization: Bearer <token>` (none when absent or not a
/// bearer token). Only that header is read: taking the whole `HeaderMap` copies it for
/// every ping.
pub struct RoomToken(Option<String>);

impl RoomToken {
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RoomToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION);
        let token = header
            .and_then(|value| value.to_str().ok())
            .and_then(crate::credentials::bearer_token);
        Ok(Self(token.map(str::to_string)))
    }
}

/// A room's ping: its status, running matches and metadata
///
/// Rooms ping every few seconds; a room that stops pinging is replaced by the health
/// controller. An unknown room answers `success: false`.
#[utoipa::path(put, path = "/scheduler/{scheduler}/rooms/{room}/ping", tag = "rooms",
    params(RoomPath), request_body = PingRequest,
    responses((status = 200, body = Success), RoomErrors))]
async fn ping(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    token: RoomToken,
    ValidJson(body): ValidJson<PingRequest>,
) -> Result<Json<Success>, ApiError> {
    let message = PingMessage {
        status: body.status,
        running_matches: body.running_matches,
        metadata: body.metadata,
    };
    let success = state
        .rooms
        .ping(&scheduler, &room, token.get(), message)
        .await?;
    Ok(Json(Success { success }))
}

/// Forward a room's status to the scheduler's forwarders
///
/// Maestro v9's route: it changes nothing in Maestro's own record of the room.
#[utoipa::path(put, path = "/scheduler/{scheduler}/rooms/{room}/status", tag = "rooms",
    params(RoomPath), request_body = PingRequest,
    responses((status = 200, body = Success), RoomErrors))]
async fn status(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    token: RoomToken,
    ValidJson(body): ValidJson<PingRequest>,
) -> Result<Json<Success>, ApiError> {
    let outcome = state
        .rooms
        .status(
            &scheduler,
            &room,
            token.get(),
            body.status,
            body.metadata.unwrap_or_default(),
        )
        .await?;
    Ok(Json(Success {
        success: outcome.success,
    }))
}

/// A room event, forwarded to the scheduler's forwarders
#[utoipa::path(post, path = "/scheduler/{scheduler}/rooms/{room}/roomevent", tag = "rooms",
    params(RoomPath), request_body = EventRequest,
    responses((status = 200, body = EventAnswer), RoomErrors))]
async fn room_event(
    state: State<GatewayState>,
    path: Path<(String, String)>,
    token: RoomToken,
    body: ValidJson<EventRequest>,
) -> Result<Json<EventAnswer>, ApiError> {
    event(state, path, token, body, false).await
}

/// A player event (`playerJoin`, `playerLeft`), forwarded to the scheduler's forwarders
#[utoipa::path(post, path = "/scheduler/{scheduler}/rooms/{room}/playerevent", tag = "rooms",
    params(RoomPath), request_body = EventRequest,
    responses((status = 200, body = EventAnswer), RoomErrors))]
async fn player_event(
    state: State<GatewayState>,
    path: Path<(String, String)>,
    token: RoomToken,
    body: ValidJson<EventRequest>,
) -> Result<Json<EventAnswer>, ApiError> {
    event(state, path, token, body, true).await
}

async fn event(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    token: RoomToken,
    ValidJson(body): ValidJson<EventRequest>,
    player: bool,
) -> Result<Json<EventAnswer>, ApiError> {
    let message = EventMessage {
        event: body.event,
        metadata: body.metadata,
    };
    let outcome = state
        .rooms
        .event(&scheduler, &room, token.get(), message, player)
        .await?;
    Ok(Json(EventAnswer {
        success: outcome.success,
        message: outcome.message,
    }))
}

/// Where players connect to a room: its host and one port per named container port
///
/// Called by the room itself (its token) or by a matchmaker (a matchmaker or admin token).
#[utoipa::path(get, path = "/scheduler/{scheduler}/rooms/{room}/address", tag = "matchmakers",
    params(RoomPath),
    responses((status = 200, body = RoomAddress),
        (status = 404, description = "No such scheduler or room.", body = StatusBody),
        RoomErrors))]
async fn address(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    token: RoomToken,
) -> Result<Json<RoomAddress>, ApiError> {
    let address = state.rooms.address(&scheduler, &room, token.get()).await?;
    // `RoomAddress` serialises as Maestro's GetRoomAddressResponse (`ipv6Label` included).
    Ok(Json(address))
}

/// The scheduler a rooms API path names.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SchedulerOfRooms {
    /// The scheduler's name.
    pub scheduler: String,
}

/// Hand a ready room to a player (a matchmaker's call)
///
/// The room shows `allocated` until it reports occupied, or for 5 minutes. With no ready
/// room (matching `metadataSelector`) the answer is Maestro's: 500, code 2. The body may
/// be empty (`{}`).
#[utoipa::path(post, path = "/scheduler/{scheduler}/rooms/allocate", tag = "matchmakers",
    params(SchedulerOfRooms), request_body(content = AllocateRequest, description = "optional"),
    responses((status = 200, body = Allocated),
        (status = 500, description = "No ready room to allocate (code 2).", body = StatusBody),
        RoomErrors))]
async fn allocate(
    State(state): State<GatewayState>,
    Path(scheduler): Path<String>,
    token: RoomToken,
    body: Bytes,
) -> Result<Json<Allocated>, ApiError> {
    // Some clients send no body at all; that is `{}`.
    let body: AllocateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AllocateRequest::default()
    } else {
        crate::json::parse(&body)?
    };
    let allocation = state
        .rooms
        .allocate(&scheduler, &body.metadata_selector, token.get())
        .await?;
    match allocation {
        Some(a) => Ok(Json(Allocated {
            room_id: a.room_id,
            success: true,
            message: String::new(),
            ports: a.address.ports,
            host: a.address.host,
        })),
        // Maestro's answer: gRPC Unknown (HTTP 500) with its storage's reason.
        None => Err(ApiError::new(
            crate::error::ErrorCode::Unknown,
            format!("no ready rooms available for scheduler {scheduler}"),
        )),
    }
}
