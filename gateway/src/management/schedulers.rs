//! Schedulers: create, list, read, delete, and Maestro's `info` with room counts.

use axum::extract::{Path, State};
use maestro_core::operation::DeleteSchedulerInput;
use maestro_core::scheduler::{MatchAllocation, PortRange};
use maestro_core::{RoomStatus, Scheduler, SchedulerState, Timestamp, Version};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dry_run::{DryRun, planned};
use super::wire::{self, Message};
use super::{
    IdempotencyKey, ListErrors, Maestro, MaestroAnswer, OperationAccepted, OrPlan,
    READ_SOURCE_HEADER, ReadErrors, SchedulerPath, WriteErrors, checked_name, submit,
};
use crate::GatewayState;
use crate::error::{ApiError, ErrorCode};
use crate::json::{ValidJson, ValidQuery};

#[derive(Serialize, utoipa::ToSchema)]
pub struct SchedulerAnswer {
    pub scheduler: Scheduler,
}

impl SchedulerAnswer {
    /// The scheduler as Maestro answers it: its default match allocation and restart policy
    /// filled in.
    fn of(mut scheduler: Scheduler) -> Self {
        scheduler.match_allocation = Some(scheduler.match_allocation());
        scheduler.spec.restart_policy = Some(scheduler.restart_policy().to_string());
        Self { scheduler }
    }
}

impl MaestroAnswer for SchedulerAnswer {
    const SHAPE: &'static Message = &wire::GET_SCHEDULER;
}

impl MaestroAnswer for SchedulerList {
    const SHAPE: &'static Message = &wire::LIST_SCHEDULERS;
}

impl MaestroAnswer for SchedulerInfoList {
    const SHAPE: &'static Message = &wire::SCHEDULERS_INFO;
}

/// Create a scheduler
///
/// Its workflow starts and runs `create_scheduler` as operation #1.
#[utoipa::path(post, path = "/schedulers", tag = "schedulers", request_body = Scheduler, params(DryRun), responses((status = 200, body = SchedulerAnswer), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn create_scheduler(
    State(state): State<GatewayState>,
    DryRun(dry_run): DryRun,
    ValidJson(mut scheduler): ValidJson<Scheduler>,
) -> Result<OrPlan<SchedulerAnswer>, ApiError> {
    // Maestro owns these; a client's values are ignored, not trusted.
    scheduler.state = None;
    scheduler.created_at = None;
    scheduler.spec.version.clear();
    scheduler.validate_creation()?;
    state.check_runnable(&scheduler)?;
    let name = scheduler.name.clone();
    if dry_run {
        match state.schedulers.snapshot(&name).await {
            Ok(_) => {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("scheduler {name} already exists"),
                ));
            }
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        return Ok(planned(json!({
            "definitionName": "create_scheduler",
            "version": Version::FIRST,
            // The health controller creates them on its first run.
            "roomsToCreate": scheduler.rooms_replicas,
        })));
    }
    let created = state.schedulers.create(scheduler).await?;
    Ok(OrPlan::Done(SchedulerAnswer::of(created)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    name: Option<String>,
    game: Option<String>,
    version: Option<String>,
}

/// One scheduler as Maestro's list answers it (no spec).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerSummary {
    name: String,
    game: String,
    state: Option<SchedulerState>,
    version: String,
    port_range: Option<PortRange>,
    created_at: Option<Timestamp>,
    max_surge: String,
    rooms_replicas: i64,
    match_allocation: Option<MatchAllocation>,
}

impl From<Scheduler> for SchedulerSummary {
    fn from(s: Scheduler) -> Self {
        let match_allocation = Some(s.match_allocation());
        Self {
            name: s.name,
            game: s.game,
            state: s.state,
            version: s.spec.version,
            port_range: s.port_range,
            created_at: s.created_at,
            max_surge: s.max_surge,
            rooms_replicas: s.rooms_replicas,
            match_allocation,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SchedulerList {
    pub schedulers: Vec<SchedulerSummary>,
}

/// List schedulers
#[utoipa::path(get, path = "/schedulers", tag = "schedulers", params(ListQuery), responses((status = 200, body = SchedulerList), ListErrors))]
pub(super) async fn list_schedulers(
    State(state): State<GatewayState>,
    ValidQuery(query): ValidQuery<ListQuery>,
) -> Result<Maestro<SchedulerList>, ApiError> {
    let wanted = |filter: &Option<String>, value: &str| {
        filter.as_deref().is_none_or(|f| f.is_empty() || f == value)
    };
    // `v1.0` and `v1.0.0` name the same version.
    let same_version = |filter: &Option<String>, value: &str| {
        wanted(filter, value)
            || filter
                .as_deref()
                .and_then(|f| f.parse::<Version>().ok())
                .is_some_and(|f| value.parse() == Ok(f))
    };
    let schedulers = state
        .schedulers
        .list()
        .await?
        .into_iter()
        .map(|snapshot| snapshot.scheduler)
        .filter(|s| {
            wanted(&query.name, &s.name)
                && wanted(&query.game, &s.game)
                && same_version(&query.version, &s.spec.version)
        })
        .map(SchedulerSummary::from)
        .collect();
    Ok(Maestro(SchedulerList { schedulers }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct VersionQuery {
    /// A recorded version to read instead of the active one.
    version: Option<String>,
}

/// One scheduler: its active version, or `?version=` a recorded one
#[utoipa::path(get, path = "/schedulers/{name}", tag = "schedulers", params(SchedulerPath, VersionQuery), responses((status = 200, body = SchedulerAnswer, headers(("x-maestro-read-source" = String, description = "query or memo"))), ReadErrors))]
pub(super) async fn get_scheduler(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    ValidQuery(query): ValidQuery<VersionQuery>,
) -> Result<([(&'static str, &'static str); 1], Maestro<SchedulerAnswer>), ApiError> {
    checked_name(&name)?;
    let (snapshot, source) = state.schedulers.read_snapshot(&name).await?;
    let scheduler = match query.version.filter(|v| !v.is_empty()) {
        None => snapshot.scheduler,
        Some(v) => {
            let wanted: Version =
                v.parse()
                    .map_err(|e: maestro_core::version::VersionParseError| {
                        ApiError::invalid_field("version", e.to_string())
                    })?;
            let mut record = snapshot
                .versions
                .into_iter()
                .find(|r| r.version == wanted)
                .ok_or_else(|| ApiError::not_found(format!("scheduler {name} has no version {v}")))?
                .scheduler;
            record.state = snapshot.scheduler.state;
            record
        }
    };
    Ok((
        [(READ_SOURCE_HEADER, source.as_str())],
        Maestro(SchedulerAnswer::of(scheduler)),
    ))
}

/// Delete the scheduler and its rooms (operation `delete_scheduler`)
#[utoipa::path(delete, path = "/schedulers/{name}", tag = "schedulers", params(SchedulerPath, DryRun, IdempotencyKey), responses((status = 200, body = OperationAccepted), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn delete_scheduler(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    DryRun(dry_run): DryRun,
    key: IdempotencyKey,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    // 404 for a scheduler that never existed or is already deleted.
    checked_name(&name)?;
    let snapshot = state.schedulers.snapshot(&name).await?;
    if dry_run {
        let rooms = state.store.list(&name).await?;
        let ids: Vec<String> = rooms.into_iter().map(|r| r.id).collect();
        return Ok(planned(json!({
            "definitionName": "delete_scheduler",
            "roomsToRemove": ids,
        })));
    }
    // A workflow that cannot run would never get to the delete: its rooms go without it.
    if let Some(problem) = state.schedulers.workflow_problem(&name).await? {
        let operation_id = state
            .schedulers
            .delete_bypassing_workflow(snapshot.scheduler, &problem)
            .await?;
        return Ok(OrPlan::Done(OperationAccepted { operation_id }));
    }
    submit(&state, &name, key, DeleteSchedulerInput {}).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InfoQuery {
    game: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AutoscalingInfo {
    enabled: bool,
    min: i64,
    max: i64,
    cooldown: i64,
}

/// One scheduler with its room counts, as Maestro's `info` answers it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerInfo {
    name: String,
    game: String,
    state: Option<SchedulerState>,
    rooms_replicas: i64,
    rooms_ready: u64,
    rooms_occupied: u64,
    rooms_pending: u64,
    rooms_terminating: u64,
    autoscaling: Option<AutoscalingInfo>,
    match_allocation: Option<MatchAllocation>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SchedulerInfoList {
    pub schedulers: Vec<SchedulerInfo>,
}

/// A game's schedulers with their room counts
///
/// Maestro's `GET /schedulers/info?game=`.
#[utoipa::path(get, path = "/schedulers/info", tag = "schedulers", params(InfoQuery), responses((status = 200, body = SchedulerInfoList), ListErrors))]
pub(super) async fn schedulers_info(
    State(state): State<GatewayState>,
    ValidQuery(query): ValidQuery<InfoQuery>,
) -> Result<Maestro<SchedulerInfoList>, ApiError> {
    let game = query.game.filter(|g| !g.is_empty());
    let mut schedulers = Vec::new();
    for snapshot in state.schedulers.list().await? {
        let s = snapshot.scheduler;
        if game.as_ref().is_some_and(|g| *g != s.game) {
            continue;
        }
        let counts = state.store.count_by_status(&s.name).await?;
        let match_allocation = Some(s.match_allocation());
        let count = |status: RoomStatus| counts.get(&status).copied().unwrap_or(0);
        schedulers.push(SchedulerInfo {
            rooms_ready: count(RoomStatus::Ready),
            rooms_occupied: count(RoomStatus::Occupied),
            rooms_pending: count(RoomStatus::Pending) + count(RoomStatus::Unready),
            rooms_terminating: count(RoomStatus::Terminating),
            autoscaling: s.autoscaling.as_ref().map(|a| AutoscalingInfo {
                enabled: a.enabled,
                min: a.min,
                max: a.max,
                cooldown: a.cooldown,
            }),
            name: s.name,
            game: s.game,
            state: s.state,
            rooms_replicas: s.rooms_replicas,
            match_allocation,
        });
    }
    Ok(Maestro(SchedulerInfoList { schedulers }))
}
