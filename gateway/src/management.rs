//! The management REST API: schedulers and their operations, with Maestro's paths and JSON.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;

use maestro_core::ChangeKind;
use maestro_core::room::rooms_to_remove;
use maestro_core::validation::check_scheduler_name;
use maestro_core::version::next_version;
use maestro_core::{Operation, OperationRequest, OperationStatus, Scheduler, Version};
use maestro_workflows::SchedulerSnapshot;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::GatewayState;
use crate::dry_run::{DryRun, planned};
use crate::error::ApiError;
use crate::json::{ValidJson, ValidQuery};
use crate::openapi::{
    BearerAuth, DryRunAnswer, OperationAcceptedDoc, OperationAnswer, OperationsPage, RoomAnswer,
    RoomList, SchedulerAnswer, SchedulerInfoList, SchedulerList, VersionList,
};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The management routes with their OpenAPI operations: registered together, so a route
/// cannot be served without being documented.
fn api_router() -> OpenApiRouter<GatewayState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_scheduler, list_schedulers))
        .routes(routes!(schedulers_info))
        .routes(routes!(
            get_scheduler,
            new_version,
            patch_scheduler,
            switch_version,
            delete_scheduler
        ))
        .routes(routes!(add_rooms))
        .routes(routes!(remove_rooms))
        .routes(routes!(list_operations))
        .routes(routes!(get_operation))
        .routes(routes!(cancel_operation))
        .routes(routes!(list_versions))
        .routes(routes!(list_rooms))
        .routes(routes!(get_room))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Maestro management API", description = "Schedulers, versions, rooms and operations (Maestro-compatible)."),
    modifiers(&BearerAuth),
    components(schemas(ApiError))
)]
struct ApiDoc;

pub fn router(state: GatewayState) -> Router {
    let (router, _) = api_router().split_for_parts();
    router.with_state(state)
}

/// The management API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// Says which source answered a read: `query` (the workflow) or `memo` (no worker answered).
pub const READ_SOURCE_HEADER: &str = "x-maestro-read-source";

fn checked_name(name: &str) -> Result<(), ApiError> {
    check_scheduler_name(name).map_err(|m| ApiError::invalid_field("name", m))
}

#[utoipa::path(post, path = "/schedulers", tag = "schedulers", request_body = Scheduler, params(("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing")), responses((status = 200, body = SchedulerAnswer), (status = 200, body = DryRunAnswer, description = "dry run"), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn create_scheduler(
    State(state): State<GatewayState>,
    DryRun(dry_run): DryRun,
    ValidJson(mut scheduler): ValidJson<Scheduler>,
) -> Result<Json<Value>, ApiError> {
    // Maestro owns these; a client's values are ignored, not trusted.
    scheduler.state = None;
    scheduler.created_at = None;
    scheduler.spec.version.clear();
    scheduler.validate()?;
    state.check_runnable(&scheduler)?;
    let name = scheduler.name.clone();
    if dry_run {
        match state.schedulers.snapshot(&name).await {
            Ok(_) => {
                return Err(ApiError::new(
                    crate::error::ErrorCode::AlreadyExists,
                    format!("scheduler {name} already exists"),
                ));
            }
            Err(e) if e.code == crate::error::ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        return Ok(planned(json!({
            "definitionName": "create_scheduler",
            "version": Version::FIRST,
            // The health controller creates them on its first run.
            "roomsToCreate": scheduler.rooms_replicas,
        })));
    }
    state.schedulers.create(scheduler.clone()).await?;
    // The workflow exists from here on: a failed read-back (no worker polling yet) must not
    // turn into an error the client would retry into a 409.
    let created = match state.schedulers.snapshot(&name).await {
        Ok(snapshot) => snapshot.scheduler,
        Err(e) => {
            tracing::warn!(scheduler = %name, error = %e, "created, but could not read it back yet");
            scheduler.state = Some(maestro_core::SchedulerState::Creating);
            scheduler.spec.version = Version::FIRST.to_string();
            scheduler
        }
    };
    Ok(Json(json!({ "scheduler": created })))
}

#[derive(Deserialize)]
struct ListQuery {
    name: Option<String>,
    game: Option<String>,
    version: Option<String>,
}

/// One scheduler as Maestro's list answers it (no spec).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SchedulerSummary {
    name: String,
    game: String,
    state: Option<maestro_core::SchedulerState>,
    version: String,
    port_range: Option<maestro_core::scheduler::PortRange>,
    created_at: Option<maestro_core::Timestamp>,
    max_surge: String,
    rooms_replicas: i64,
    match_allocation: Option<maestro_core::scheduler::MatchAllocation>,
}

#[utoipa::path(get, path = "/schedulers", tag = "schedulers", params(("name" = Option<String>, Query), ("game" = Option<String>, Query), ("version" = Option<String>, Query)), responses((status = 200, body = SchedulerList), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn list_schedulers(
    State(state): State<GatewayState>,
    ValidQuery(query): ValidQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let wanted = |filter: &Option<String>, value: &str| {
        filter.as_deref().is_none_or(|f| f.is_empty() || f == value)
    };
    let schedulers: Vec<SchedulerSummary> = state
        .schedulers
        .list()
        .await?
        .into_iter()
        .map(|snapshot| snapshot.scheduler)
        .filter(|s| {
            wanted(&query.name, &s.name)
                && wanted(&query.game, &s.game)
                && wanted(&query.version, &s.spec.version)
        })
        .map(|s| SchedulerSummary {
            name: s.name,
            game: s.game,
            state: s.state,
            version: s.spec.version,
            port_range: s.port_range,
            created_at: s.created_at,
            max_surge: s.max_surge,
            rooms_replicas: s.rooms_replicas,
            match_allocation: s.match_allocation,
        })
        .collect();
    Ok(Json(json!({ "schedulers": schedulers })))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<String>,
}

#[utoipa::path(get, path = "/schedulers/{name}", tag = "schedulers", params(("name" = String, Path, description = "scheduler name"), ("version" = Option<String>, Query)), responses((status = 200, body = SchedulerAnswer, headers(("x-maestro-read-source" = String, description = "query or memo"))), (status = 404, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn get_scheduler(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    ValidQuery(query): ValidQuery<VersionQuery>,
) -> Result<([(&'static str, &'static str); 1], Json<Value>), ApiError> {
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
        Json(json!({ "scheduler": scheduler })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AmountBody {
    amount: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OperationAccepted {
    operation_id: String,
}

use crate::schedulers::IDEMPOTENCY_KEY;
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

async fn submit(
    state: &GatewayState,
    name: &str,
    headers: &HeaderMap,
    request: OperationRequest,
) -> Result<Json<Value>, ApiError> {
    checked_name(name)?;
    let key = idempotency_key(headers)?;
    let operation_id = state.schedulers.submit(name, request, key).await?;
    Ok(Json(json!(OperationAccepted { operation_id })))
}

#[utoipa::path(post, path = "/schedulers/{name}/add-rooms", tag = "rooms", request_body = AmountBody, params(("name" = String, Path, description = "scheduler name"), ("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same operation")), responses((status = 200, body = OperationAcceptedDoc), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn add_rooms(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    DryRun(dry_run): DryRun,
    headers: HeaderMap,
    ValidJson(body): ValidJson<AmountBody>,
) -> Result<Json<Value>, ApiError> {
    let request = OperationRequest::AddRooms {
        amount: body.amount,
    };
    if dry_run {
        checked_name(&name)?;
        request.validate()?;
        let snapshot = state.schedulers.snapshot(&name).await?;
        return Ok(planned(json!({
            "definitionName": "add_rooms",
            "roomsToCreate": body.amount,
            "version": snapshot.scheduler.spec.version,
        })));
    }
    submit(&state, &name, &headers, request).await
}

#[utoipa::path(post, path = "/schedulers/{name}/remove-rooms", tag = "rooms", request_body = AmountBody, params(("name" = String, Path, description = "scheduler name"), ("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same operation")), responses((status = 200, body = OperationAcceptedDoc), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn remove_rooms(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    DryRun(dry_run): DryRun,
    headers: HeaderMap,
    ValidJson(body): ValidJson<AmountBody>,
) -> Result<Json<Value>, ApiError> {
    let request = OperationRequest::RemoveRooms {
        amount: body.amount,
        rooms_ids: Vec::new(),
    };
    if dry_run {
        checked_name(&name)?;
        request.validate()?;
        state.schedulers.snapshot(&name).await?;
        let rooms = state.store.list(&name).await?;
        let now = maestro_core::Timestamp::from_system_time(std::time::SystemTime::now());
        // The same choice the operation makes, from the rooms as they are now.
        let ping_timeout = maestro_core::health::Timeouts::default().ping;
        let picked = rooms_to_remove(&rooms, body.amount as usize, now, ping_timeout);
        return Ok(planned(json!({
            "definitionName": "remove_rooms",
            "roomsToRemove": picked,
        })));
    }
    submit(&state, &name, &headers, request).await
}

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
    scheduler.validate()?;
    Ok(scheduler)
}

async fn submit_version(
    state: &GatewayState,
    name: &str,
    headers: &HeaderMap,
    scheduler: Scheduler,
    dry_run: bool,
) -> Result<Json<Value>, ApiError> {
    if dry_run {
        let snapshot = state.schedulers.snapshot(name).await?;
        let (kind, version) = next_version(
            snapshot.versions.iter().map(|r| r.version),
            &snapshot.scheduler,
            &scheduler,
        );
        let kind = match kind {
            ChangeKind::None => "none",
            ChangeKind::Minor => "minor",
            ChangeKind::Major => "major",
        };
        return Ok(planned(json!({
            "definitionName": "create_new_scheduler_version",
            "changeKind": kind,
            "version": version,
            "from": snapshot.scheduler.spec.version,
            // A major change is validated by a room of the new version, then switched to;
            // the health controller then replaces the rooms in surges of maxSurge.
            "validationRoom": kind == "major",
            "roomsReplaced": kind == "major",
        })));
    }
    let request = OperationRequest::CreateNewSchedulerVersion {
        scheduler: Box::new(scheduler),
    };
    submit(state, name, headers, request).await
}

/// A new version from a whole scheduler document (Maestro: `POST /schedulers/{name}`).
#[utoipa::path(post, path = "/schedulers/{name}", tag = "versions", request_body = Scheduler, params(("name" = String, Path, description = "scheduler name"), ("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same operation")), responses((status = 200, body = OperationAcceptedDoc), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn new_version(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    DryRun(dry_run): DryRun,
    headers: HeaderMap,
    ValidJson(scheduler): ValidJson<Scheduler>,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    let scheduler = prepare_version(&name, scheduler)?;
    state.check_runnable(&scheduler)?;
    state.schedulers.snapshot(&name).await?;
    submit_version(&state, &name, &headers, scheduler, dry_run).await
}

/// RFC 7386 merge patch: objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// A new version from the active one plus the fields sent (Maestro: `PATCH`): any subset of
/// the scheduler's fields, nested objects merged, arrays replaced.
#[utoipa::path(patch, path = "/schedulers/{name}", tag = "versions", request_body(content = Object, description = "any subset of the scheduler, merged (RFC 7386)"), params(("name" = String, Path, description = "scheduler name"), ("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same operation")), responses((status = 200, body = OperationAcceptedDoc), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn patch_scheduler(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    DryRun(dry_run): DryRun,
    headers: HeaderMap,
    ValidJson(patch): ValidJson<Value>,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    if !patch.is_object() {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    }
    let SchedulerSnapshot { scheduler, .. } = state.schedulers.snapshot(&name).await?;
    let mut merged = serde_json::to_value(&scheduler)
        .map_err(|e| ApiError::new(crate::error::ErrorCode::Internal, e.to_string()))?;
    merge_patch(&mut merged, &patch);
    let bytes = serde_json::to_vec(&merged)
        .map_err(|e| ApiError::new(crate::error::ErrorCode::Internal, e.to_string()))?;
    let scheduler: Scheduler = crate::json::parse(&bytes)?;
    let scheduler = prepare_version(&name, scheduler)?;
    state.check_runnable(&scheduler)?;
    submit_version(&state, &name, &headers, scheduler, dry_run).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SwitchBody {
    version: String,
}

/// Makes a recorded version active (Maestro: `PUT /schedulers/{name}` with `{version}`).
#[utoipa::path(put, path = "/schedulers/{name}", tag = "versions", request_body = SwitchBody, params(("name" = String, Path, description = "scheduler name"), ("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same operation")), responses((status = 200, body = OperationAcceptedDoc), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn switch_version(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    DryRun(dry_run): DryRun,
    headers: HeaderMap,
    ValidJson(body): ValidJson<SwitchBody>,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    let version: Version =
        body.version
            .parse()
            .map_err(|e: maestro_core::version::VersionParseError| {
                ApiError::invalid_field("version", e.to_string())
            })?;
    let snapshot = state.schedulers.snapshot(&name).await?;
    match snapshot.versions.iter().find(|r| r.version == version) {
        None => {
            return Err(ApiError::not_found(format!(
                "scheduler {name} has no version {version}"
            )));
        }
        Some(record) if record.failed.is_some() => {
            return Err(ApiError::new(
                crate::error::ErrorCode::FailedPrecondition,
                format!("version {version} failed validation and cannot be active"),
            ));
        }
        Some(_) => {}
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
    submit(
        &state,
        &name,
        &headers,
        OperationRequest::SwitchActiveVersion { version },
    )
    .await
}

#[utoipa::path(delete, path = "/schedulers/{name}", tag = "schedulers", params(("name" = String, Path, description = "scheduler name"), ("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing"), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same operation")), responses((status = 200, body = OperationAcceptedDoc), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn delete_scheduler(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    DryRun(dry_run): DryRun,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
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
        return Ok(Json(json!(OperationAccepted { operation_id })));
    }
    submit(&state, &name, &headers, OperationRequest::DeleteScheduler).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationsQuery {
    stage: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
    /// `asc` or `desc` by creation time; by default the queue order, then newest finished.
    order_by: Option<String>,
}

const DEFAULT_PER_PAGE: u32 = 100;
const MAX_PER_PAGE: u32 = 1000;

/// One operation as Maestro's list answers it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OperationSummary {
    id: String,
    status: OperationStatus,
    definition_name: String,
    scheduler_name: String,
    created_at: maestro_core::Timestamp,
}

#[utoipa::path(get, path = "/schedulers/{name}/operations", tag = "operations", params(("name" = String, Path, description = "scheduler name"), ("stage" = Option<String>, Query, description = "pending, active or final"), ("page" = Option<u32>, Query), ("perPage" = Option<u32>, Query), ("orderBy" = Option<String>, Query, description = "asc or desc")), responses((status = 200, body = OperationsPage), (status = 404, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn list_operations(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    ValidQuery(query): ValidQuery<OperationsQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let summaries: Vec<OperationSummary> = operations
        .drain(start..end)
        .map(|op| OperationSummary {
            id: op.id,
            status: op.status,
            definition_name: op.definition_name,
            scheduler_name: op.scheduler_name,
            created_at: op.created_at,
        })
        .collect();
    Ok(Json(json!({
        "page": page,
        "pageSize": summaries.len(),
        "total": total,
        "operations": summaries,
    })))
}

/// One operation with its input and execution history, while the scheduler still keeps it
/// (pending, active, or among the last 100 finished).
#[utoipa::path(get, path = "/schedulers/{name}/operations/{id}", tag = "operations", params(("name" = String, Path, description = "scheduler name"), ("id" = String, Path)), responses((status = 200, body = OperationAnswer), (status = 404, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn get_operation(
    State(state): State<GatewayState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    let view = state.schedulers.operations(&name).await?;
    let operation = view
        .pending
        .into_iter()
        .chain(view.active)
        .chain(view.finished)
        .find(|op| op.id == id)
        .ok_or_else(|| ApiError::not_found(format!("scheduler {name} has no operation {id}")))?;
    Ok(Json(json!({ "operation": operation })))
}

/// Cancels a pending or running operation: `{}`; 404 unknown, 409 already final.
#[utoipa::path(post, path = "/schedulers/{name}/operations/{id}/cancel", tag = "operations", params(("name" = String, Path, description = "scheduler name"), ("id" = String, Path), ("dryRun" = Option<bool>, Query, description = "answer the plan, enqueue nothing")), responses((status = 200, description = "{}"), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn cancel_operation(
    State(state): State<GatewayState>,
    Path((name, id)): Path<(String, String)>,
    DryRun(dry_run): DryRun,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    if dry_run {
        let view = state.schedulers.operations(&name).await?;
        let pending = view.pending.iter().any(|op| op.id == id);
        let running = view.active.as_ref().is_some_and(|op| op.id == id);
        if !pending && !running {
            return Err(match view.finished.iter().any(|op| op.id == id) {
                true => ApiError::new(
                    crate::error::ErrorCode::FailedPrecondition,
                    format!("operation {id} is already final"),
                ),
                false => ApiError::not_found(format!("scheduler {name} has no operation {id}")),
            });
        }
        return Ok(planned(json!({
            "operationId": id,
            "stops": if running { "at its next heartbeat" } else { "now (leaves the queue)" },
        })));
    }
    state.schedulers.cancel(&name, &id).await?;
    Ok(Json(json!({})))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionSummary {
    version: Version,
    is_active: bool,
    created_at: maestro_core::Timestamp,
    /// Extension: why the version failed validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
}

/// The scheduler's versions, newest first.
#[utoipa::path(get, path = "/schedulers/{name}/versions", tag = "versions", params(("name" = String, Path, description = "scheduler name")), responses((status = 200, body = VersionList), (status = 404, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn list_versions(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    let snapshot = state.schedulers.snapshot(&name).await?;
    let active = snapshot.scheduler.spec.version;
    let versions: Vec<VersionSummary> = snapshot
        .versions
        .into_iter()
        .rev()
        .map(|record| VersionSummary {
            is_active: record.version.to_string() == active,
            version: record.version,
            created_at: record.created_at,
            failed: record.failed,
        })
        .collect();
    Ok(Json(json!({ "versions": versions })))
}

#[derive(Deserialize)]
struct RoomsQuery {
    status: Option<String>,
}

/// One room of the scheduler.
#[utoipa::path(get, path = "/schedulers/{name}/rooms/{room}", tag = "rooms", params(("name" = String, Path, description = "scheduler name"), ("room" = String, Path)), responses((status = 200, body = RoomAnswer), (status = 404, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn get_room(
    State(state): State<GatewayState>,
    Path((name, room)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    state.schedulers.snapshot(&name).await?;
    let found = state
        .store
        .get(&name, &room)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("scheduler {name} has no room {room}")))?;
    Ok(Json(json!({ "room": found })))
}

#[derive(Deserialize)]
struct InfoQuery {
    game: Option<String>,
}

/// Maestro's `GET /schedulers/info?game=`: each scheduler with its room counts.
#[utoipa::path(get, path = "/schedulers/info", tag = "schedulers", params(("game" = Option<String>, Query)), responses((status = 200, body = SchedulerInfoList), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn schedulers_info(
    State(state): State<GatewayState>,
    ValidQuery(query): ValidQuery<InfoQuery>,
) -> Result<Json<Value>, ApiError> {
    use maestro_core::RoomStatus;
    let game = query.game.filter(|g| !g.is_empty());
    let mut infos = Vec::new();
    for snapshot in state.schedulers.list().await? {
        let s = snapshot.scheduler;
        if game.as_ref().is_some_and(|g| *g != s.game) {
            continue;
        }
        let counts = state.store.count_by_status(&s.name).await?;
        let count = |status: RoomStatus| counts.get(&status).copied().unwrap_or(0);
        let autoscaling = s.autoscaling.as_ref().map(
            |a| json!({"enabled": a.enabled, "min": a.min, "max": a.max, "cooldown": a.cooldown}),
        );
        infos.push(json!({
            "name": s.name,
            "game": s.game,
            "state": s.state,
            "roomsReplicas": s.rooms_replicas,
            "roomsReady": count(RoomStatus::Ready),
            "roomsOccupied": count(RoomStatus::Occupied),
            "roomsPending": count(RoomStatus::Pending) + count(RoomStatus::Unready),
            "roomsTerminating": count(RoomStatus::Terminating),
            "autoscaling": autoscaling,
            "matchAllocation": s.match_allocation,
        }));
    }
    Ok(Json(json!({ "schedulers": infos })))
}

/// Extension: the scheduler's rooms with status, version, address and last ping.
#[utoipa::path(get, path = "/schedulers/{name}/rooms", tag = "rooms", params(("name" = String, Path, description = "scheduler name"), ("status" = Option<String>, Query)), responses((status = 200, body = RoomList), (status = 404, body = ApiError), (status = 400, body = ApiError, description = "invalid input, every bad field named"), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
async fn list_rooms(
    State(state): State<GatewayState>,
    Path(name): Path<String>,
    ValidQuery(query): ValidQuery<RoomsQuery>,
) -> Result<Json<Value>, ApiError> {
    checked_name(&name)?;
    let wanted = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(maestro_core::RoomStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_field("status", format!("unknown room status {s:?}"))
        })?),
    };
    state.schedulers.snapshot(&name).await?;
    let rooms: Vec<_> = state
        .store
        .list(&name)
        .await?
        .into_iter()
        .filter(|r| wanted.is_none_or(|w| r.status == w))
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}
