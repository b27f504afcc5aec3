//! Operations: the queue and history of one scheduler, one operation in full, and cancel.

use axum::extract::{Path, State};
use maestro_core::operation::Rejection;
use maestro_core::{HistoryEntry, Operation, OperationStatus, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::dry_run::{DryRun, planned};
use super::{Maestro, MaestroAnswer, OrPlan, ReadErrors, WriteErrors, checked_name, wire};
use crate::GatewayState;
use crate::error::ApiError;
use crate::json::ValidQuery;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(super) struct OperationsQuery {
    /// `pending`, `active` or `final` (required, as in Maestro).
    stage: Option<String>,
    /// Only with `stage=final`: 1 by default.
    page: Option<u32>,
    /// Only with `stage=final`: 1 to 100, 15 by default (also `per_page`).
    #[serde(alias = "per_page")]
    per_page: Option<u32>,
    /// `createdAt [asc|desc]`, `createdAt desc` by default (also `order_by`).
    #[serde(alias = "order_by")]
    order_by: Option<String>,
}

/// Maestro's page size when none is asked for, and the largest it serves.
const DEFAULT_PER_PAGE: u32 = 15;
const MAX_PER_PAGE: u32 = 100;

/// Maestro's `orderBy`: `[createdAt [asc|desc]]`; true for ascending.
fn ascending(order_by: Option<&str>) -> Result<bool, ApiError> {
    let words: Vec<&str> = order_by.unwrap_or_default().split_whitespace().collect();
    let (field, order) = match words.as_slice() {
        [] => ("createdAt", "desc"),
        [field] => (*field, "desc"),
        [field, order] => (*field, *order),
        _ => {
            return Err(ApiError::invalid_field(
                "orderBy",
                "must be a field and an order at most, e.g. \"createdAt asc\"",
            ));
        }
    };
    if field != "createdAt" {
        return Err(ApiError::invalid_field(
            "orderBy",
            format!("invalid sorting field {field:?}: only createdAt sorts"),
        ));
    }
    match order {
        "asc" => Ok(true),
        "desc" => Ok(false),
        _ => Err(ApiError::invalid_field(
            "orderBy",
            format!("invalid sorting order {order:?}: asc or desc"),
        )),
    }
}

/// A running operation's lease: when it counts as lost unless renewed (Maestro's `Lease`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Lease {
    ttl: Timestamp,
}

/// The lease of `op` if it is the running one.
async fn lease_of(state: &GatewayState, op: &Operation) -> Option<Lease> {
    if op.status != OperationStatus::InProgress {
        return None;
    }
    let ttl = state
        .schedulers
        .operation_lease(&op.scheduler_name, &op.id)
        .await?;
    Some(Lease { ttl })
}

/// One operation as Maestro's list answers it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationSummary {
    id: String,
    status: OperationStatus,
    definition_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<Lease>,
    scheduler_name: String,
    created_at: Timestamp,
}

impl OperationSummary {
    fn of(op: Operation, lease: Option<Lease>) -> Self {
        Self {
            id: op.id,
            status: op.status,
            definition_name: op.definition_name,
            lease,
            scheduler_name: op.scheduler_name,
            created_at: op.created_at,
        }
    }
}

/// One operation in full, as Maestro's `Operation`, with our extensions (`seq`,
/// `startedAt`, `finishedAt`, `error`, `requestId`) for clients that ask for them.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationDetail {
    id: String,
    status: OperationStatus,
    definition_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<Lease>,
    scheduler_name: String,
    created_at: Timestamp,
    /// As Maestro stores it: `{"amount": 3}`, `{"newActiveVersion": "v1.1.0"}`, …
    #[schema(value_type = Object)]
    input: serde_json::Value,
    execution_history: Vec<HistoryEntry>,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl OperationDetail {
    fn of(op: Operation, lease: Option<Lease>) -> Self {
        Self {
            input: op.input.maestro_input(),
            id: op.id,
            status: op.status,
            definition_name: op.definition_name,
            lease,
            scheduler_name: op.scheduler_name,
            created_at: op.created_at,
            execution_history: op.execution_history,
            seq: op.seq,
            started_at: op.started_at,
            finished_at: op.finished_at,
            error: op.error,
            request_id: op.request_id,
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

impl MaestroAnswer for OperationsPage {
    const SHAPE: &'static wire::Message = &wire::LIST_OPERATIONS;
}

/// The scheduler's operations: pending, active and final, paged
#[utoipa::path(get, path = "/schedulers/{name}/operations", tag = "operations", params(super::SchedulerPath, OperationsQuery), responses((status = 200, body = OperationsPage), ReadErrors))]
pub(super) async fn list_operations(
    State(state): State<GatewayState>,
    Path(super::SchedulerPath { name }): Path<super::SchedulerPath>,
    ValidQuery(query): ValidQuery<OperationsQuery>,
) -> Result<Maestro<OperationsPage>, ApiError> {
    checked_name(&name)?;
    let ascending = ascending(query.order_by.as_deref())?;
    let stage = query.stage.unwrap_or_default();
    if !matches!(stage.as_str(), "pending" | "active" | "final") {
        return Err(ApiError::invalid_field(
            "stage",
            format!("invalid stage filter {stage:?}: pending, active or final"),
        ));
    }
    if stage != "final" && (query.page.is_some() || query.per_page.is_some()) {
        return Err(ApiError::invalid_field(
            "page",
            format!("there is no pagination for the {stage} stage (only for final)"),
        ));
    }
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if page == 0 {
        return Err(ApiError::invalid_field("page", "must be greater than 0"));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::invalid_field(
            "perPage",
            format!("must be between 1 and {MAX_PER_PAGE}"),
        ));
    }
    let view = state.schedulers.operations(&name).await?;
    let mut operations: Vec<Operation> = match stage.as_str() {
        "pending" => view.pending,
        "active" => view.active.into_iter().collect(),
        _ => view.finished,
    };
    // Acceptance order is creation order; seq breaks ties within a millisecond.
    operations.sort_by_key(|op| (op.created_at, op.seq));
    if !ascending {
        operations.reverse();
    }
    let total = u32::try_from(operations.len()).unwrap_or(u32::MAX);
    // Maestro pages only the history; the other stages answer whole, their size the total.
    let (page_size, operations) = if stage == "final" {
        let start = ((page - 1) as usize)
            .saturating_mul(per_page as usize)
            .min(operations.len());
        let end = start
            .saturating_add(per_page as usize)
            .min(operations.len());
        (per_page, operations.drain(start..end).collect())
    } else {
        (total, operations)
    };
    let mut summaries = Vec::with_capacity(operations.len());
    for op in operations {
        let lease = lease_of(&state, &op).await;
        summaries.push(OperationSummary::of(op, lease));
    }
    Ok(Maestro(OperationsPage {
        page,
        page_size,
        total,
        operations: summaries,
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
    pub operation: OperationDetail,
}

impl MaestroAnswer for OperationAnswer {
    const SHAPE: &'static wire::Message = &wire::GET_OPERATION;
}

/// One operation with its input and execution history
///
/// While the scheduler still keeps it: pending, active, or among the last 100 finished.
#[utoipa::path(get, path = "/schedulers/{name}/operations/{id}", tag = "operations", params(OperationPath), responses((status = 200, body = OperationAnswer), ReadErrors))]
pub(super) async fn get_operation(
    State(state): State<GatewayState>,
    Path(OperationPath { name, id }): Path<OperationPath>,
) -> Result<Maestro<OperationAnswer>, ApiError> {
    checked_name(&name)?;
    let view = state.schedulers.operations(&name).await?;
    let operation = view
        .pending
        .into_iter()
        .chain(view.active)
        .chain(view.finished)
        .find(|op| op.id == id)
        .ok_or_else(|| ApiError::not_found(format!("scheduler {name} has no operation {id}")))?;
    let lease = lease_of(&state, &operation).await;
    Ok(Maestro(OperationAnswer {
        operation: OperationDetail::of(operation, lease),
    }))
}

/// What a cancel answers: nothing (`{}`), as Maestro.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Cancelled {}

impl MaestroAnswer for Cancelled {
    const SHAPE: &'static wire::Message = &wire::CANCEL_OPERATION;
}

/// Cancel a pending or running operation
///
/// Answers `{}`; 404 when unknown, 400 (code 9) when already final.
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
