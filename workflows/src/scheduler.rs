//! The scheduler entity workflow (`scheduler:{name}`): owns the scheduler's versions and its
//! operation queue ([`SchedulerWorkflowState`]). The `enqueue_operations` signal only
//! appends to the queue; `run` is the single loop that drains it, one child workflow at a
//! time, so operations run strictly in acceptance order.

use std::time::SystemTime;

use maestro_core::naming::operation_workflow_id;
use maestro_core::{Operation, OperationRequest, Scheduler, Timestamp};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    CancellableFuture, CancellableFutureWithReason, ChildWorkflowCancellationType,
    ChildWorkflowOptions, ContinueAsNewOptions, MemoValue, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use crate::{
    ChildInput, OperationOutcome, OperationsMark, OperationsView, ReportedOutcome,
    SchedulerSnapshot, SubmitOperation, names, search_attributes,
};

pub use state::{SchedulerWorkflowState, mark_created};

#[workflow]
pub struct SchedulerWorkflow {
    state: SchedulerWorkflowState,
}

/// Workflow code changes that running workflows must replay around (`ctx.patched`).
mod patches {
    pub const MEMO_AT_START: &str = "memo-at-start";
    /// The memo is also written when an operation starts, so listings (which read memos)
    /// show a running delete as terminating, as a query does.
    pub const MEMO_AT_OPERATION_START: &str = "memo-at-operation-start";
    /// A delete accepted while another operation runs is written to the memo by the signal
    /// that brought it, so listings say terminating before the delete's turn comes.
    pub const MEMO_AT_DELETE_ACCEPTED: &str = "memo-at-delete-accepted";
    /// Periodic `health_controller` operations (a timer in the run loop).
    pub const HEALTH_CONTROLLER: &str = "health-controller";
    /// The memo is written at every operation's start, so its [`crate::OperationsMark`]
    /// says busy while the operation runs.
    pub const OPERATIONS_MARK: &str = "operations-mark";
}

mod state;

fn timestamp(t: Option<SystemTime>) -> Timestamp {
    t.map(Timestamp::from_system_time).unwrap_or_default()
}

/// Starts `$operation` as the child workflow of its kind and waits for its outcome.
macro_rules! dispatch {
    (($ctx:ident, $operation:ident, $scheduler:ident, $options:ident) $($kind:ident($input:ty) = $name:literal),* $(,)?) => {
        match &$operation.input {
            $(
                OperationRequest::$kind(request) => {
                    let input = ChildInput {
                        operation: crate::StartedOperation::from($operation),
                        scheduler: $scheduler.clone(),
                        request: request.clone(),
                    };
                    start_and_wait($ctx, crate::operations::$kind::run, input, $options).await
                }
            )*
        }
    };
}

/// Runs one operation as its own child workflow; any failure becomes an error outcome.
async fn run_child(
    ctx: &WorkflowContext<SchedulerWorkflow>,
    operation: &Operation,
    scheduler: &Scheduler,
) -> OperationOutcome {
    let indexed = ctx.state(|s| s.state.search_attributes);
    let options = ChildWorkflowOptions::builder()
        .workflow_id(operation_workflow_id(&scheduler.name, &operation.id))
        // Wait for a cancelled operation to finish its cleanup before the next one starts.
        .cancel_type(ChildWorkflowCancellationType::WaitCancellationCompleted)
        .static_summary(format!(
            "{} #{} of {}",
            operation.definition_name, operation.seq, scheduler.name
        ))
        .static_details(operation_details(operation))
        .maybe_search_attributes(indexed.then(|| {
            search_attributes::of_operation(
                &scheduler.name,
                &scheduler.game,
                &operation.definition_name,
            )
        }))
        .build();
    let result = maestro_core::for_each_operation!(dispatch; ctx, operation, scheduler, options);
    result.unwrap_or_else(|error| OperationOutcome {
        succeeded: false,
        history: Vec::new(),
        error: Some(error),
        effect: None,
        crash_backoff: None,
    })
}

async fn start_and_wait<WD, I>(
    ctx: &WorkflowContext<SchedulerWorkflow>,
    workflow: WD,
    input: ChildInput<I>,
    options: ChildWorkflowOptions,
) -> Result<OperationOutcome, String>
where
    WD: temporalio_common::WorkflowDefinition<Input = ChildInput<I>, Output = OperationOutcome>
        + 'static,
{
    let operation_id = input.operation.id.clone();
    let started = ctx
        .start_child_workflow(workflow, input, options)
        .await
        .map_err(|e| format!("could not start the operation: {e}"))?;
    let result = started.result();
    let cancel = ctx.wait_condition(|s| s.state.cancel_requested.as_deref() == Some(&operation_id));
    futures::pin_mut!(result, cancel);
    temporalio_sdk::workflows::select! {
        outcome = &mut result => {
            return outcome.or_else(|e| carried_outcome(&e).ok_or_else(|| format!("the operation failed: {e}")));
        }
        _ = &mut cancel => {}
    }
    // The child stops at its activities' next heartbeat and cleans up after itself; its
    // outcome (or its cancellation, its outcome reported by signal first) comes back here.
    result.cancel_with_reason("cancel requested through the API".into());
    match result.await {
        Ok(outcome) => Ok(outcome),
        Err(e) => carried_outcome(&e)
            .or_else(|| {
                ctx.state_mut(|s| s.state.reported_outcome.take())
                    .filter(|reported| reported.operation_id == operation_id)
                    .map(|reported| reported.outcome)
            })
            .ok_or_else(|| format!("the operation was canceled: {e}")),
    }
}

/// The outcome a failed operation's workflow carries in its failure's details.
fn carried_outcome(
    error: &temporalio_sdk::error::ChildWorkflowExecutionError,
) -> Option<OperationOutcome> {
    match error.cause()? {
        temporalio_common::error::IncomingError::Application(failure) => {
            failure.details::<OperationOutcome>().ok().flatten()
        }
        _ => None,
    }
}

/// The memo a scheduler workflow keeps: its snapshot, what listings and query-less reads
/// show, and its operations' mark. Core compares only the command, not the memo, on replay.
fn memo_of(
    snapshot: SchedulerSnapshot,
    mark: OperationsMark,
) -> [(&'static str, Option<MemoValue>); 2] {
    [
        (names::MEMO_SNAPSHOT, Some(MemoValue::new(snapshot))),
        (names::MEMO_OPERATIONS, Some(MemoValue::new(mark))),
    ]
}

/// The snapshot and the operations' mark, read together.
fn memo_parts(state: &SchedulerWorkflowState) -> (SchedulerSnapshot, OperationsMark) {
    (state.snapshot(), state.operations_mark())
}

/// What the Temporal UI shows as an operation's details: its request, as the API took it.
fn operation_details(operation: &Operation) -> String {
    let request = serde_json::to_string(&operation.input).unwrap_or_default();
    format!(
        "operation {} ({}), requested {}: {request}",
        operation.id, operation.definition_name, operation.created_at
    )
}

#[workflow_methods]
impl SchedulerWorkflow {
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: SchedulerWorkflowState) -> Self {
        let now = timestamp(ctx.start_time());
        let id = ctx.first_execution_run_id().to_string();
        Self {
            state: input.started(id, now),
        }
    }

    #[run(name = "scheduler")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<SchedulerSnapshot> {
        // The snapshot last written to the memo: at an operation's start it is written again
        // only when it changed.
        let mut recorded = None;
        // Readable from the first moment, not only after the first operation. Patched: runs
        // recorded before this change have no such command and must replay unchanged.
        if ctx.patched(patches::MEMO_AT_START) {
            let (snapshot, mark) = ctx.state(|s| memo_parts(&s.state));
            ctx.upsert_memo(memo_of(snapshot.clone(), mark))?;
            recorded = Some(snapshot);
        }
        // Patched: runs recorded before health checks existed have no timers to replay.
        let health_checks = ctx.patched(patches::HEALTH_CONTROLLER);
        loop {
            let wake_in = if health_checks {
                let now = timestamp(ctx.workflow_time());
                let id = ctx.uuid4();
                ctx.state_mut(|s| s.state.schedule_health_check(id, now))
            } else {
                None
            };
            let work = ctx.wait_condition(|s| {
                !s.state.pending.is_empty() || s.state.should_continue_as_new()
            });
            match wake_in {
                None => work.await?,
                Some(delay) => {
                    let timer = ctx.timer(delay);
                    futures::pin_mut!(work, timer);
                    temporalio_sdk::workflows::select! {
                        woke = &mut work => {
                            timer.cancel();
                            woke?;
                        }
                        _ = &mut timer => continue,
                    }
                }
            }
            if ctx.state(|s| s.state.should_continue_as_new()) || ctx.continue_as_new_suggested() {
                let next = ctx.state(|s| s.state.continue_as_new_input());
                ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
            }
            let now = timestamp(ctx.workflow_time());
            let Some((operation, scheduler)) = ctx.state_mut(|s| s.state.start_next(now)) else {
                continue;
            };
            // A delete accepted since the last write shows in listings while it runs.
            let (snapshot, mark) = ctx.state(|s| memo_parts(&s.state));
            // Since `operations-mark`, always: the snapshot may be the same, the mark is busy.
            // The order of the `patched` calls is the one recorded histories replay.
            if (recorded.as_ref() != Some(&snapshot)
                && ctx.patched(patches::MEMO_AT_OPERATION_START))
                || ctx.patched(patches::OPERATIONS_MARK)
            {
                ctx.upsert_memo(memo_of(snapshot, mark))?;
            }
            let waiting = ctx.state(|s| s.state.pending.len());
            ctx.set_current_details(format!(
                "running {} #{} ({}); {waiting} waiting",
                operation.definition_name, operation.seq, operation.id
            ));
            let outcome = run_child(ctx, &operation, &scheduler).await;
            let now = timestamp(ctx.workflow_time());
            let (snapshot, mark, last) = ctx.state_mut(|s| {
                s.state.finish(operation, outcome, now);
                let (snapshot, mark) = memo_parts(&s.state);
                (snapshot, mark, s.state.finished.back().cloned())
            });
            // What was recorded, canceled included, not a second reading of the outcome.
            if let Some(last) = last {
                let error = last.error.map(|e| format!(": {e}")).unwrap_or_default();
                ctx.set_current_details(format!(
                    "idle; last: {} #{} {}{error}",
                    last.definition_name, last.seq, last.status
                ));
            }
            // The memo answers reads while no worker is up to answer queries.
            ctx.upsert_memo(memo_of(snapshot.clone(), mark))?;
            if snapshot.deleted {
                return Ok(snapshot);
            }
            recorded = Some(snapshot);
        }
    }

    /// How operations enter: a gateway's batch of submissions, appended to the queue in
    /// signal order and, within a signal, in the order the gateway received them (together,
    /// the acceptance order), each under the id the gateway already answered.
    #[signal(name = "enqueue_operations")]
    pub fn enqueue_operations(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        submissions: Vec<SubmitOperation>,
    ) {
        let now = timestamp(ctx.workflow_time());
        let was_terminating = self.state.terminating();
        for mut submit in submissions {
            if submit.operation_id.is_empty() {
                submit.operation_id = ctx.uuid4();
            }
            self.state.accept(submit, now);
        }
        // With nothing running the run loop starts the delete and writes the memo then.
        if !was_terminating
            && self.state.terminating()
            && self.state.active.is_some()
            && ctx.patched(patches::MEMO_AT_DELETE_ACCEPTED)
        {
            // A memo that cannot be encoded leaves the old one; the next write catches up.
            let (snapshot, mark) = memo_parts(&self.state);
            let _ = ctx.upsert_memo(memo_of(snapshot, mark));
        }
    }

    /// Cancels an operation, as the legacy `cancel_operation` update does; one it cannot
    /// cancel is left as it is (the gateway answers 404/409 from the same rule before
    /// signalling).
    #[signal(name = "request_cancel")]
    pub fn request_cancel(&mut self, ctx: &mut SyncWorkflowContext<Self>, operation_id: String) {
        if self.state.cancel_refusal(&operation_id).is_none() {
            let now = timestamp(ctx.workflow_time());
            self.state.cancel(operation_id, now);
        }
    }

    /// A cancelled operation's outcome, reported by its workflow just before it ends
    /// cancelled; `start_and_wait` takes it when the cancellation arrives.
    #[signal(name = "operation_outcome")]
    pub fn operation_outcome(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        reported: ReportedOutcome,
    ) {
        if self.state.active.as_ref().map(|op| op.id.as_str())
            == Some(reported.operation_id.as_str())
        {
            self.state.reported_outcome = Some(reported);
        }
    }

    #[query(name = "get_scheduler")]
    pub fn get_scheduler(&self, _ctx: &WorkflowContextView) -> SchedulerSnapshot {
        self.state.snapshot()
    }

    #[query(name = "get_operations")]
    pub fn get_operations(&self, _ctx: &WorkflowContextView) -> OperationsView {
        self.state.operations()
    }

    /// Legacy: operations entered by this update before signals did. Registered only so
    /// that histories recorded with it replay.
    #[update_validator(submit_operation)]
    fn validate_submit_operation(
        &self,
        _ctx: &WorkflowContextView,
        submit: &SubmitOperation,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.state.submitted(&submit.request_id).is_some() {
            // A retry of an accepted submission: the handler answers with that operation.
            return Ok(());
        }
        match self.state.refusal(&submit.request) {
            Some(rejection) => Err(Box::new(rejection)),
            None => Ok(()),
        }
    }

    #[update(name = "submit_operation")]
    pub fn submit_operation(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        submit: SubmitOperation,
    ) -> Operation {
        if let Some(existing) = self.state.submitted(&submit.request_id) {
            return existing.clone();
        }
        let now = timestamp(ctx.workflow_time());
        self.state.mark_if_deleting(&submit.request);
        let request_id = Some(submit.request_id).filter(|id| !id.is_empty());
        self.state
            .enqueue(ctx.uuid4(), submit.request, request_id, now)
    }

    /// Legacy, like `submit_operation`: replaced by the `request_cancel` signal.
    #[update_validator(cancel_operation)]
    // The SDK hands a validator a reference to the update's input type.
    #[allow(clippy::ptr_arg)]
    fn validate_cancel_operation(
        &self,
        _ctx: &WorkflowContextView,
        operation_id: &String,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self.state.cancel_refusal(operation_id) {
            Some(rejection) => Err(Box::new(rejection)),
            None => Ok(()),
        }
    }

    #[update(name = "cancel_operation")]
    pub fn cancel_operation(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        operation_id: String,
    ) -> Option<Operation> {
        let now = timestamp(ctx.workflow_time());
        self.state.cancel(operation_id, now)
    }
}
