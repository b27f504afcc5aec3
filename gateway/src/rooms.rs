//! The game rooms API (HTTP): rooms report pings and status with Maestro's paths and JSON.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use maestro_core::{PingStatus, Timestamp};
use maestro_runtime::{PingUpdate, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::debug;

use crate::GatewayState;
use crate::error::{ApiError, ErrorCode};
use crate::json::ValidJson;

pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/scheduler/{scheduler}/rooms/{room}/ping", put(ping))
        .route("/scheduler/{scheduler}/rooms/{room}/status", put(ping))
        .route("/scheduler/{scheduler}/rooms/{room}/address", get(address))
        .with_state(state)
}

/// Maestro's ping/status message. `timestamp` is the room's clock (unix seconds); Maestro
/// records its own receive time, and so do we.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingRequest {
    pub status: String,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub running_matches: i64,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
}

impl PingRequest {
    pub fn into_update(self) -> Result<PingUpdate, ApiError> {
        let status = PingStatus::parse(&self.status).ok_or_else(|| {
            ApiError::invalid_field(
                "status",
                format!(
                    "{:?} is not one of ready, occupied, terminating, terminated",
                    self.status
                ),
            )
        })?;
        let running_matches = u32::try_from(self.running_matches).map_err(|_| {
            ApiError::invalid_field("runningMatches", "must be between 0 and 4294967295")
        })?;
        Ok(PingUpdate {
            status,
            running_matches,
            metadata: self.metadata,
        })
    }
}

async fn ping(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
    ValidJson(body): ValidJson<PingRequest>,
) -> Result<Json<Value>, ApiError> {
    let update = body.into_update()?;
    let now = Timestamp::from_system_time(SystemTime::now());
    let change = state
        .store
        .apply_ping(&scheduler, &room, update, now)
        .await
        .map_err(|e| match e {
            StoreError::RoomNotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::Unavailable(_) => ApiError::unavailable(e.to_string()),
        })?;
    if change.changed() {
        debug!(scheduler = %scheduler, room = %room, from = change.previous.as_str(), to = change.room.status.as_str(), "room status changed");
    }
    Ok(Json(json!({ "success": true })))
}

/// Where players connect: the host and one port per named container port.
async fn address(
    State(state): State<GatewayState>,
    Path((scheduler, room)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let found = state
        .store
        .get(&scheduler, &room)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| {
            ApiError::not_found(format!("room {room} of scheduler {scheduler} not found"))
        })?;
    let address = found.address.ok_or_else(|| {
        ApiError::new(
            ErrorCode::FailedPrecondition,
            format!(
                "room {room} has no address yet (status {})",
                found.status.as_str()
            ),
        )
    })?;
    Ok(Json(serde_json::to_value(address).map_err(|e| {
        ApiError::new(ErrorCode::Internal, e.to_string())
    })?))
}
