//! The game rooms API over HTTP, with Maestro's paths and JSON. Behaviour lives in
//! [`RoomService`]; this module only decodes and encodes.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::service::{EventMessage, PingMessage};
use crate::GatewayState;
use crate::error::ApiError;
use crate::json::ValidJson;
use maestro_proto::http::{AllocateRequest, EventRequest, PingRequest};

pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/scheduler/{scheduler}/rooms/{room}/ping", put(ping))
        .route("/scheduler/{scheduler}/rooms/{room}/status", put(status))
        .route(
            "/scheduler/{scheduler}/rooms/{room}/roomevent",
            post(room_event),
        )
        .route(
            "/scheduler/{scheduler}/rooms/{room}/playerevent",
            post(player_event),
        )
        .route("/scheduler/{scheduler}/rooms/{room}/address", get(address))
        .route("/scheduler/{scheduler}/rooms/allocate", post(allocate))
        .with_state(state)
}

/// The room's token, from `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::credentials::bearer_token(headers.get(AUTHORIZATION)?.to_str().ok()?)
}

async fn ping(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    headers: HeaderMap,
    ValidJson(body): ValidJson<PingRequest>,
) -> Result<Json<Value>, ApiError> {
    let message = PingMessage {
        status: body.status,
        running_matches: body.running_matches,
        metadata: body.metadata,
    };
    let success = state
        .rooms
        .ping(&scheduler, &room, bearer(&headers), message)
        .await?;
    Ok(Json(json!({ "success": success })))
}

/// Maestro v9's route: forwards the status to the scheduler's forwarders, changes nothing.
async fn status(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    headers: HeaderMap,
    ValidJson(body): ValidJson<PingRequest>,
) -> Result<Json<Value>, ApiError> {
    let outcome = state
        .rooms
        .status(
            &scheduler,
            &room,
            bearer(&headers),
            body.status,
            body.metadata.unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({ "success": outcome.success })))
}

async fn room_event(
    state: State<GatewayState>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: ValidJson<EventRequest>,
) -> Result<Json<Value>, ApiError> {
    event(state, path, headers, body, false).await
}

async fn player_event(
    state: State<GatewayState>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: ValidJson<EventRequest>,
) -> Result<Json<Value>, ApiError> {
    event(state, path, headers, body, true).await
}

async fn event(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    headers: HeaderMap,
    ValidJson(body): ValidJson<EventRequest>,
    player: bool,
) -> Result<Json<Value>, ApiError> {
    let message = EventMessage {
        event: body.event,
        metadata: body.metadata,
    };
    let outcome = state
        .rooms
        .event(&scheduler, &room, bearer(&headers), message, player)
        .await?;
    Ok(Json(
        json!({ "success": outcome.success, "message": outcome.message }),
    ))
}

/// Where players connect: the host and one port per named container port.
async fn address(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let address = state
        .rooms
        .address(&scheduler, &room, bearer(&headers))
        .await?;
    // `RoomAddress` serialises as Maestro's GetRoomAddressResponse (`ipv6Label` included).
    Ok(Json(json!(address)))
}

async fn allocate(
    State(state): State<GatewayState>,
    Path(scheduler): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // Some clients send no body at all; that is `{}`.
    let body: AllocateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AllocateRequest::default()
    } else {
        crate::json::parse(&body)?
    };
    let allocation = state
        .rooms
        .allocate(&scheduler, &body.metadata_selector, bearer(&headers))
        .await?;
    match allocation {
        Some(a) => Ok(Json(json!({
            "roomId": a.room_id,
            "success": true,
            "message": "",
            "ports": a.address.ports,
            "host": a.address.host,
        }))),
        // Maestro's answer: gRPC Unknown (HTTP 500) with its storage's reason.
        None => Err(ApiError::new(
            crate::error::ErrorCode::Unknown,
            format!("no ready rooms available for scheduler {scheduler}"),
        )),
    }
}
