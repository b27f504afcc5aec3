//! Operations: the queue and history of one scheduler, one operation in full, and cancel.

use axum::Json;
use axum::extract::{Path, State};
use maestro_core::operation::Rejection;
use maestro_core::{Operation, OperationStatus, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dry_run::{DryRun, planned};
use super::{OrPlan, ReadErrors, WriteErrors, checked_name};
use crate::GatewayState;
use crate::error::ApiError;
use crate::json::ValidQuery;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(super) struct OperationsQuery {
    /// `pending`, `active` or `final`; all of them by default.
    stage: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
    /// `asc` or `desc` by creation time; by default the queue order, then newest finished.
    order_by: Option<String>,
}

const DEFAULT_PER_PAGE: u32 = 100;
const MAX_PER_PAGE: u32 = 1000;

/// One operation as Maestro's list answers it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationSummary {
    id: String,
    status: OperationStatus,
    definition_name: String,
    scheduler_name: String,
    created_at: Timestamp,
}

impl From<Operation> for OperationSummary {
    fn from(op: Operation) -> Self {
        Self {
            id: op.id,
            status: op.status,
            definition_name: op.definition_name,
            scheduler_name: op.scheduler_name,
            created_at: op.created_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationsPage {
    pub page: u32,
    pub page_size: u32,
    pub total: u32,
    pub operations: Vec<OperationSummary>,
}

#[utoipa::path(get, path = "/schedulers/{name}/operations", tag = "operations", params(super::SchedulerPath, OperationsQuery), responses((status = 200, body = OperationsPage), ReadErrors))]
pub(super) async fn list_operations(
    State(state): State<GatewayState>,
    Path(super::SchedulerPath { name }): Path<super::SchedulerPath>,
    ValidQuery(query): ValidQuery<OperationsQuery>,
) -> Result<Json<OperationsPage>, ApiError> {
    checked_name(&name)?;
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if page == 0 {
        return Err(ApiError::invalid_field("page", "must be >= 1"));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::invalid_field(
            "perPage",
            format!("must be between 1 and {MAX_PER_PAGE}"),
        ));
    }
    let view = state.schedulers.operations(&name).await?;
    let mut operations: Vec<Operation> = match query.stage.as_deref() {
        None | Some("") => view
            .pending
            .into_iter()
            .chain(view.active)
            .chain(view.finished.into_iter().rev())
            .collect(),
        Some("pending") => view.pending,
        Some("active") => view.active.into_iter().collect(),
        // Most recent first, as Maestro lists history.
        Some("final") => view.finished.into_iter().rev().collect(),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "stage",
                "must be pending, active or final",
            ));
        }
    };
    match query.order_by.as_deref() {
        None | Some("") => {}
        // Acceptance order is creation order; seq breaks ties within a millisecond.
        Some("asc") => operations.sort_by_key(|op| (op.created_at, op.seq)),
        Some("desc") => {
            operations.sort_by_key(|op| std::cmp::Reverse((op.created_at, op.seq)));
        }
        Some(_) => return Err(ApiError::invalid_field("orderBy", "must be asc or desc")),
    }
    let total = operations.len();
    let start = ((page - 1) as usize)
        .saturating_mul(per_page as usize)
        .min(total);
    let end = start.saturating_add(per_page as usize).min(total);
    let operations: Vec<OperationSummary> = operations
        .drain(start..end)
        .map(OperationSummary::from)
        .collect();
    Ok(Json(OperationsPage {
        page,
        page_size: u32::try_from(operations.len()).unwrap_or(u32::MAX),
        total: u32::try_from(total).unwrap_or(u32::MAX),
        operations,
    }))
}

/// The scheduler and operation a path names.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct OperationPath {
    /// The scheduler's name.
    name: String,
    /// The operation's id.
    id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OperationAnswer {
    pub operation: Operation,
}

/// One operation with its input and execution history, while the scheduler still keeps it
/// (pending, active, or among the last 100 finished).
#[utoipa::path(get, path = "/schedulers/{name}/operations/{id}", tag = "operations", params(OperationPath), responses((status = 200, body = OperationAnswer), ReadErrors))]
pub(super) async fn get_operation(
    State(state): State<GatewayState>,
    Path(OperationPath { name, id }): Path<OperationPath>,
) -> Result<Json<OperationAnswer>, ApiError> {
    checked_name(&name)?;
    let view = state.schedulers.operations(&name).await?;
    let operation = view
        .pending
        .into_iter()
        .chain(view.active)
        .chain(view.finished)
        .find(|op| op.id == id)
        .ok_or_else(|| ApiError::not_found(format!("scheduler {name} has no operation {id}")))?;
    Ok(Json(OperationAnswer { operation }))
}

/// What a cancel answers: nothing (`{}`), as Maestro.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Cancelled {}

/// Cancels a pending or running operation: `{}`; 404 unknown, 400 (code 9) already final.
#[utoipa::path(post, path = "/schedulers/{name}/operations/{id}/cancel", tag = "operations", params(OperationPath, DryRun), responses((status = 200, body = Cancelled), (status = 200, body = super::DryRunAnswer, description = "dry run"), WriteErrors))]
pub(super) async fn cancel_operation(
    State(state): State<GatewayState>,
    Path(OperationPath { name, id }): Path<OperationPath>,
    DryRun(dry_run): DryRun,
) -> Result<OrPlan<Cancelled>, ApiError> {
    checked_name(&name)?;
    if dry_run {
        let view = state.schedulers.operations(&name).await?;
        let open = view.pending.iter().chain(view.active.iter());
        if let Some(refusal) = Rejection::of_cancel(&name, &id, open, view.finished.iter()) {
            return Err(refusal.into());
        }
        let running = view.active.as_ref().is_some_and(|op| op.id == id);
        return Ok(planned(json!({
            "operationId": id,
            "stops": if running { "at its next heartbeat" } else { "now (leaves the queue)" },
        })));
    }
    state.schedulers.cancel(&name, &id).await?;
    Ok(OrPlan::Done(Cancelled {}))
}
