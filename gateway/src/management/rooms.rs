//! A scheduler's rooms: add and remove them (operations), list them and read one.

use axum::Json;
use axum::extract::{Path, State};
use maestro_core::operation::{AddRoomsInput, RemoveRoomsInput};
use maestro_core::room::rooms_to_remove;
use maestro_core::{GameRoom, OperationRequest, RoomStatus, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dry_run::{DryRun, planned};
use super::{
    IdempotencyKey, OperationAccepted, OrPlan, ReadErrors, SchedulerPath, WriteErrors,
    checked_name, submit,
};
use crate::GatewayState;
use crate::error::ApiError;
use crate::json::{ValidJson, ValidQuery};

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct AmountBody {
    amount: u32,
}

/// Add rooms now (operation `add_rooms`)
///
/// The next health check converges the count back to the desired one, as in Maestro.
#[utoipa::path(post, path = "/schedulers/{name}/add-rooms", tag = "rooms", request_body = AmountBody, params(SchedulerPath, DryRun, IdempotencyKey), responses((status = 200, body = OperationAccepted), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn add_rooms(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    DryRun(dry_run): DryRun,
    key: IdempotencyKey,
    ValidJson(body): ValidJson<AmountBody>,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    let request = AddRoomsInput {
        amount: body.amount,
    };
    if dry_run {
        checked_name(&name)?;
        OperationRequest::from(request).validate()?;
        let snapshot = state.schedulers.snapshot(&name).await?;
        return Ok(planned(json!({
            "definitionName": "add_rooms",
            "roomsToCreate": body.amount,
            "version": snapshot.scheduler.spec.version,
        })));
    }
    submit(&state, &name, key, request).await
}

/// Remove rooms now (operation `remove_rooms`)
///
/// `amount` rooms by Maestro's deletion priority (occupied rooms last). The next health
/// check converges the count back to the desired one, as in Maestro.
#[utoipa::path(post, path = "/schedulers/{name}/remove-rooms", tag = "rooms", request_body = AmountBody, params(SchedulerPath, DryRun, IdempotencyKey), responses((status = 200, body = OperationAccepted), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn remove_rooms(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    DryRun(dry_run): DryRun,
    key: IdempotencyKey,
    ValidJson(body): ValidJson<AmountBody>,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    let request = RemoveRoomsInput {
        amount: body.amount,
        rooms_ids: Vec::new(),
    };
    if dry_run {
        checked_name(&name)?;
        OperationRequest::from(request).validate()?;
        state.schedulers.snapshot(&name).await?;
        let rooms = state.store.list(&name).await?;
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        // The same choice the operation makes, from the rooms as they are now.
        let ping_timeout = maestro_core::health::Timeouts::default().ping;
        let picked = rooms_to_remove(&rooms, body.amount as usize, now, ping_timeout);
        return Ok(planned(json!({
            "definitionName": "remove_rooms",
            "roomsToRemove": picked,
        })));
    }
    submit(&state, &name, key, request).await
}

/// The scheduler and room a path names.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RoomPath {
    /// The scheduler's name.
    name: String,
    /// The room's id.
    room: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoomAnswer {
    pub room: GameRoom,
}

/// One room of the scheduler
#[utoipa::path(get, path = "/schedulers/{name}/rooms/{room}", tag = "rooms", params(RoomPath), responses((status = 200, body = RoomAnswer), ReadErrors))]
pub(super) async fn get_room(
    State(state): State<GatewayState>,
    Path(RoomPath { name, room }): Path<RoomPath>,
) -> Result<Json<RoomAnswer>, ApiError> {
    checked_name(&name)?;
    state.schedulers.snapshot(&name).await?;
    let found = state
        .store
        .get(&name, &room)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("scheduler {name} has no room {room}")))?;
    Ok(Json(RoomAnswer { room: found }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RoomsQuery {
    /// Only rooms in this status.
    status: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoomList {
    pub rooms: Vec<GameRoom>,
}

/// The scheduler's rooms (extension)
///
/// Each with its status, version, address and last ping.
#[utoipa::path(get, path = "/schedulers/{name}/rooms", tag = "rooms", params(SchedulerPath, RoomsQuery), responses((status = 200, body = RoomList), ReadErrors))]
pub(super) async fn list_rooms(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    ValidQuery(query): ValidQuery<RoomsQuery>,
) -> Result<Json<RoomList>, ApiError> {
    checked_name(&name)?;
    let wanted = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RoomStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_field("status", format!("unknown room status {s:?}"))
        })?),
    };
    state.schedulers.snapshot(&name).await?;
    let rooms = state
        .store
        .list(&name)
        .await?
        .into_iter()
        .filter(|r| wanted.is_none_or(|w| r.status == w))
        .collect();
    Ok(Json(RoomList { rooms }))
}
