//! Steps the operations share: activity options and retries, the execution history an
//! operation writes, and the room activities in batches (create, delete, list).

use std::time::{Duration, SystemTime};

use maestro_activities::{CreateRoomsInput, DeleteRoomsInput, RoomActivities, SchedulerRef};
use maestro_core::naming::scheduler_workflow_id;
use maestro_core::operation::ROOM_BATCH_SIZE;
use maestro_core::time::parse_duration;
use maestro_core::{HistoryEntry, Scheduler, Timestamp, Version};
use temporalio_common::RetryPolicy;
use temporalio_common::error::ApplicationFailure;
use temporalio_sdk::error::ActivityExecutionError;
use temporalio_sdk::{
    ActivityOptions, SignalWorkflowOptions, WorkflowCancellationToken, WorkflowContext,
    WorkflowResult, WorkflowTermination,
};

use crate::search_attributes::{OUTCOME, OUTCOME_CANCELED, OUTCOME_FAILED, OUTCOME_SUCCEEDED};
use crate::{OperationEffect, OperationOutcome, ReportedOutcome, SchedulerWorkflow};

/// Patched: operations recorded before it ended completed whatever their outcome, with no
/// outcome search attribute and no report to the parent.
const OUTCOME_AS_STATUS: &str = "outcome-as-status";
/// Room creations go in batches of `ROOM_BATCH_SIZE`: one activity for a whole operation.
const OPERATION_SIZED_ROOM_BATCHES: &str = "operation-sized-room-batches";
/// Room creations went in batches of 200 (runs recorded between the two patches).
const LARGER_ROOM_BATCHES: &str = "larger-room-batches";
const LARGER_ROOM_BATCH_SIZE: usize = 200;
/// Maestro's rooms per creation batch (its `operations.rooms.add.batchSize` default): runs
/// recorded before [`LARGER_ROOM_BATCHES`] replay with it.
const MAESTRO_ROOM_BATCH_SIZE: usize = 40;

/// Rooms per `rooms.create` activity in this run. Ask once, before the first batch. The newest
/// patch is asked first: a run that has its marker never asks the older one.
pub(crate) fn room_batch_size<W>(ctx: &WorkflowContext<W>) -> usize {
    if ctx.patched(OPERATION_SIZED_ROOM_BATCHES) {
        ROOM_BATCH_SIZE
    } else if ctx.patched(LARGER_ROOM_BATCHES) {
        LARGER_ROOM_BATCH_SIZE
    } else {
        MAESTRO_ROOM_BATCH_SIZE
    }
}

/// The Temporal failure type of an operation that ended in error.
pub const OPERATION_FAILED: &str = "OperationFailed";

/// How every operation's workflow ends: as its outcome says, so the Temporal UI's status,
/// filters and Failures badge tell the truth. Succeeded: completed, with the outcome as its
/// result. Failed: a non-retryable `OperationFailed` application failure whose message is the
/// reason and whose details are the outcome. Cancelled: the outcome goes to the scheduler's
/// workflow by signal first (a cancellation carries no result to the parent), then the
/// workflow ends cancelled.
pub(crate) async fn conclude<W>(
    ctx: &WorkflowContext<W>,
    operation_id: &str,
    scheduler: &str,
    outcome: OperationOutcome,
) -> WorkflowResult<OperationOutcome> {
    if !ctx.patched(OUTCOME_AS_STATUS) {
        return Ok(outcome);
    }
    let cancelled = !outcome.succeeded && ctx.cancellation_token().is_cancelled();
    let verdict = if outcome.succeeded {
        OUTCOME_SUCCEEDED
    } else if cancelled {
        OUTCOME_CANCELED
    } else {
        OUTCOME_FAILED
    };
    // Started with Maestro's attributes: the namespace has them, this one too.
    if ctx
        .search_attributes()
        .get(&crate::search_attributes::SCHEDULER)
        .is_some()
    {
        ctx.upsert_search_attributes([OUTCOME.value_set(verdict.to_string())]);
    }
    if outcome.succeeded {
        ctx.set_current_details(verdict);
        return Ok(outcome);
    }
    let reason = outcome.error.clone().unwrap_or_else(|| verdict.to_string());
    ctx.set_current_details(format!("{verdict}: {reason}"));
    if cancelled {
        let report = ReportedOutcome {
            operation_id: operation_id.to_string(),
            outcome: outcome.clone(),
        };
        // A token nobody cancels: this workflow's own cancellation must not stop the report.
        let options = SignalWorkflowOptions::builder()
            .cancellation_token(WorkflowCancellationToken::new())
            .build();
        // A standalone operation (no scheduler workflow left) has nobody to tell.
        let _ = ctx
            .external_workflow(scheduler_workflow_id(scheduler), None)
            .signal(SchedulerWorkflow::operation_outcome, report, options)
            .await;
        Err(WorkflowTermination::cancelled_with_details(outcome))
    } else {
        Err(ApplicationFailure::builder(reason)
            .type_name(OPERATION_FAILED.to_string())
            .non_retryable(true)
            .details(outcome)
            .build()
            .into())
    }
}

/// Rooms deleted per activity call (Maestro's remove_rooms batch).
const DELETE_BATCH_SIZE: usize = 50;
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

pub(crate) fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .maximum_attempts(5)
        .build()
}

/// Why an activity failed, down to the runtime's own words: the top failure only says
/// "Activity task failed"; its causes say what the Kubernetes API or the store answered.
pub(crate) fn why(e: &ActivityExecutionError) -> String {
    let mut messages = Vec::new();
    let mut failure = e.failure();
    while let Some(f) = failure {
        if !f.message.is_empty() && messages.last() != Some(&f.message) {
            messages.push(f.message.clone());
        }
        failure = f.cause.as_deref();
    }
    if messages.is_empty() {
        e.to_string()
    } else {
        messages.join(": ")
    }
}

pub(crate) fn activity_options(start_to_close: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retry_policy())
        .build()
}

pub(crate) fn now<W>(ctx: &WorkflowContext<W>) -> Timestamp {
    ctx.workflow_time()
        .map(Timestamp::from_system_time)
        .unwrap_or_else(|| Timestamp::from_system_time(SystemTime::UNIX_EPOCH))
}

/// The execution history an operation builds as it goes.
pub(crate) struct History(Vec<HistoryEntry>);

impl History {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn push<W>(&mut self, ctx: &WorkflowContext<W>, event: impl Into<String>) {
        let event = event.into();
        // The latest step is what the Temporal UI shows as the operation's current details.
        ctx.set_current_details(event.clone());
        self.0.push(HistoryEntry {
            created_at: now(ctx),
            event,
        });
    }

    pub(crate) fn succeeded(self) -> OperationOutcome {
        self.succeeded_with(None)
    }

    pub(crate) fn succeeded_with(self, effect: Option<OperationEffect>) -> OperationOutcome {
        OperationOutcome {
            succeeded: true,
            history: self.0,
            error: None,
            effect,
            crash_backoff: None,
        }
    }

    pub(crate) fn failed(self, error: String, created_at: Timestamp) -> OperationOutcome {
        self.failed_with(error, created_at, None)
    }

    pub(crate) fn failed_with(
        mut self,
        error: String,
        created_at: Timestamp,
        effect: Option<OperationEffect>,
    ) -> OperationOutcome {
        self.0.push(HistoryEntry {
            created_at,
            event: format!("failed: {error}"),
        });
        OperationOutcome {
            succeeded: false,
            history: self.0,
            error: Some(error),
            effect,
            crash_backoff: None,
        }
    }
}

pub(crate) fn grace_of(scheduler: &Scheduler) -> Duration {
    parse_duration(&scheduler.spec.termination_grace_period).unwrap_or(DEFAULT_GRACE)
}

pub(crate) fn version_of(scheduler: &Scheduler) -> Version {
    scheduler.spec.version.parse().unwrap_or(Version::FIRST)
}

/// Whether deletions go on when the operation is cancelled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deletion {
    /// The operation's own work: a cancellation stops it.
    Work,
    /// Undoing what the operation did: runs to the end even when the operation was
    /// cancelled, so a cancelled operation leaves no room of its own behind.
    Cleanup,
}

/// Deletes rooms in batches; returns how many were deleted or the first error.
pub(crate) async fn delete_rooms<W>(
    ctx: &WorkflowContext<W>,
    scheduler: &Scheduler,
    room_ids: &[String],
    deletion: Deletion,
) -> Result<usize, String> {
    let grace = grace_of(scheduler);
    let mut deleted = 0;
    for batch in room_ids.chunks(DELETE_BATCH_SIZE) {
        let input = DeleteRoomsInput {
            scheduler: scheduler.name.clone(),
            room_ids: batch.to_vec(),
            grace_millis: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        };
        let mut options = activity_options(grace + Duration::from_secs(120));
        if deletion == Deletion::Cleanup {
            // A token nobody cancels: the workflow's cancellation does not reach it.
            options.cancellation_token = Some(WorkflowCancellationToken::new());
        }
        ctx.execute_activity(RoomActivities::delete_rooms, input, options)
            .await
            .map_err(|e| format!("deleting rooms failed: {}", why(&e)))?;
        deleted += batch.len();
    }
    Ok(deleted)
}

/// Creates one batch of rooms of `version` (ids chosen by the caller, deterministic);
/// returns how many, or why not.
pub(crate) async fn create_batch<W>(
    ctx: &WorkflowContext<W>,
    scheduler: &Scheduler,
    version: Version,
    batch: &[String],
) -> Result<usize, String> {
    ctx.execute_activity(
        RoomActivities::create_rooms,
        CreateRoomsInput {
            scheduler: scheduler.clone(),
            version,
            room_ids: batch.to_vec(),
        },
        activity_options(Duration::from_secs(300)),
    )
    .await
    .map(|done| done.len())
    .map_err(|e| format!("creating rooms failed: {}", why(&e)))
}

pub(crate) async fn list_room_ids<W>(
    ctx: &WorkflowContext<W>,
    scheduler: &Scheduler,
) -> Result<Vec<maestro_core::GameRoom>, String> {
    ctx.execute_activity(
        RoomActivities::list_rooms,
        SchedulerRef {
            scheduler: scheduler.name.clone(),
        },
        activity_options(Duration::from_secs(60)),
    )
    .await
    .map_err(|e| format!("listing rooms failed: {}", why(&e)))
}
