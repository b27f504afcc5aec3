//! Versions: a new one from a whole document (`POST`) or a merge patch (`PATCH`), switching
//! the active one (`PUT`), and the list.

use axum::extract::{Path, State};
use maestro_core::operation::{
    CreateNewSchedulerVersionInput, Rejection, SwitchActiveVersionInput,
};
use maestro_core::patch::SchedulerPatch;
use maestro_core::version::next_version;
use maestro_core::{ChangeKind, Scheduler, Timestamp, Version};
use maestro_workflows::SchedulerSnapshot;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dry_run::{DryRun, planned};
use super::{
    IdempotencyKey, Maestro, MaestroAnswer, OperationAccepted, OrPlan, ReadErrors, SchedulerPath,
    WriteErrors, checked_name, submit,
};
use crate::GatewayState;
use crate::error::{ApiError, ErrorCode};
use crate::json::ValidJson;

/// Clears what Maestro owns (a client's values are ignored) and checks the rest.
fn prepare_version(name: &str, mut scheduler: Scheduler) -> Result<Scheduler, ApiError> {
    if scheduler.name.is_empty() {
        scheduler.name = name.to_string();
    }
    if scheduler.name != name {
        return Err(ApiError::invalid_field(
            "name",
            format!("must be {name:?} (the path's scheduler); a scheduler cannot be renamed"),
        ));
    }
    scheduler.state = None;
    scheduler.created_at = None;
    scheduler.spec.version.clear();
    scheduler.validate_submission()?;
    Ok(scheduler)
}

async fn submit_version(
    state: &GatewayState,
    name: &str,
    key: IdempotencyKey,
    scheduler: Scheduler,
    dry_run: bool,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    if dry_run {
        let snapshot = state.schedulers.snapshot(name).await?;
        let (kind, version) = next_version(
            snapshot.versions.iter().map(|r| r.version),
            &snapshot.scheduler,
            &scheduler,
        );
        let major = kind == ChangeKind::Major;
        return Ok(planned(json!({
            "definitionName": "create_new_scheduler_version",
            "changeKind": kind.as_str(),
            "version": version,
            "from": snapshot.scheduler.spec.version,
            // A major change is validated by a room of the new version; either kind is then
            // switched to, and after a major one the health controller replaces the rooms
            // in surges of maxSurge.
            "validationRoom": major,
            "then": "switch_active_version",
            "roomsReplaced": major,
        })));
    }
    let request = CreateNewSchedulerVersionInput {
        scheduler: Box::new(scheduler),
    };
    submit(state, name, key, request).await
}

/// New version from a whole scheduler document
///
/// Maestro's `POST /schedulers/{name}`.
#[utoipa::path(post, path = "/schedulers/{name}", tag = "versions", request_body = Scheduler, params(SchedulerPath, DryRun, IdempotencyKey), responses((status = 200, body = OperationAccepted), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn new_version(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    DryRun(dry_run): DryRun,
    key: IdempotencyKey,
    ValidJson(scheduler): ValidJson<Scheduler>,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    checked_name(&name)?;
    let scheduler = prepare_version(&name, scheduler)?;
    state.check_runnable(&scheduler)?;
    state.schedulers.snapshot(&name).await?;
    submit_version(&state, &name, key, scheduler, dry_run).await
}

/// New version from the active one plus the fields sent
///
/// Merged as Maestro merges them (`maestro_core::patch`); nothing to change is 409
/// (AlreadyExists).
#[utoipa::path(patch, path = "/schedulers/{name}", tag = "versions", request_body(content = Object, description = "any of the scheduler's fields; spec, spec.containers[i] and autoscaling merge field by field, the rest replaces"), params(SchedulerPath, DryRun, IdempotencyKey), responses((status = 200, body = OperationAccepted), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn patch_scheduler(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    DryRun(dry_run): DryRun,
    key: IdempotencyKey,
    ValidJson(patch): ValidJson<SchedulerPatch>,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    checked_name(&name)?;
    if patch.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("no change found to scheduler {name}"),
        ));
    }
    let SchedulerSnapshot { scheduler, .. } = state.schedulers.snapshot(&name).await?;
    let scheduler = prepare_version(&name, patch.apply(scheduler))?;
    state.check_runnable(&scheduler)?;
    submit_version(&state, &name, key, scheduler, dry_run).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct SwitchBody {
    version: String,
}

/// Make a recorded version active
///
/// Maestro's `PUT /schedulers/{name}` with `{version}`.
#[utoipa::path(put, path = "/schedulers/{name}", tag = "versions", request_body = SwitchBody, params(SchedulerPath, DryRun, IdempotencyKey), responses((status = 200, body = OperationAccepted), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn switch_version(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
    DryRun(dry_run): DryRun,
    key: IdempotencyKey,
    ValidJson(body): ValidJson<SwitchBody>,
) -> Result<OrPlan<OperationAccepted>, ApiError> {
    checked_name(&name)?;
    let version: Version =
        body.version
            .parse()
            .map_err(|e: maestro_core::version::VersionParseError| {
                ApiError::invalid_field("version", e.to_string())
            })?;
    let snapshot = state.schedulers.snapshot(&name).await?;
    // The rule the workflow applies too, so both refuse alike.
    if let Some(refusal) = Rejection::of_switch(&name, &snapshot.versions, version) {
        return Err(refusal.into());
    }
    if dry_run {
        let from: Version = snapshot
            .scheduler
            .spec
            .version
            .parse()
            .unwrap_or(Version::FIRST);
        return Ok(planned(json!({
            "definitionName": "switch_active_version",
            "version": version,
            "from": from,
            "roomsReplaced": from.major != version.major,
        })));
    }
    submit(&state, &name, key, SwitchActiveVersionInput { version }).await
}

/// One recorded version, as Maestro lists them.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    version: Version,
    is_active: bool,
    created_at: Timestamp,
    /// Extension: why the version failed validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionSummary>,
}

impl MaestroAnswer for VersionList {
    const SHAPE: &'static super::wire::Message = &super::wire::VERSIONS;
}

/// The scheduler's versions, newest first
#[utoipa::path(get, path = "/schedulers/{name}/versions", tag = "versions", params(SchedulerPath), responses((status = 200, body = VersionList), ReadErrors))]
pub(super) async fn list_versions(
    State(state): State<GatewayState>,
    Path(SchedulerPath { name }): Path<SchedulerPath>,
) -> Result<Maestro<VersionList>, ApiError> {
    checked_name(&name)?;
    let snapshot = state.schedulers.snapshot(&name).await?;
    // Parsed: a memo written before semver says `v1.0` for `v1.0.0`.
    let active = snapshot.scheduler.spec.version.parse::<Version>().ok();
    let versions = snapshot
        .versions
        .into_iter()
        .rev()
        .map(|record| VersionSummary {
            is_active: active == Some(record.version),
            version: record.version,
            created_at: record.created_at,
            failed: record.failed,
        })
        .collect();
    Ok(Maestro(VersionList { versions }))
}
