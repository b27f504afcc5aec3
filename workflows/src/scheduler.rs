//! The scheduler entity workflow (`scheduler:{name}`): owns the scheduler's versions and its
//! operation queue. The `submit_operation` update only appends to the queue; `run` is the
//! single loop that drains it, one child workflow at a time, so operations run strictly in
//! acceptance order.

use std::collections::VecDeque;
use std::time::SystemTime;

use maestro_core::naming::operation_workflow_id;
use maestro_core::{
    HistoryEntry, Operation, OperationKind, OperationRequest, OperationStatus, Scheduler,
    SchedulerState, Timestamp, Version,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    CancellableFuture, CancellableFutureWithReason, ChildWorkflowCancellationType,
    ChildWorkflowOptions, ContinueAsNewOptions, MemoValue, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use crate::health::HealthControllerWorkflow;
use crate::operations::{
    AddRoomsWorkflow, CreateSchedulerWorkflow, DeleteSchedulerWorkflow, RemoveRoomsWorkflow,
};
use crate::versions::{CreateNewSchedulerVersionWorkflow, SwitchActiveVersionWorkflow};
use crate::{
    DEFAULT_HEALTH_CHECK_SECS, OperationInput, OperationOutcome, OperationsView, Rejection,
    RejectionCode, SchedulerSnapshot, SchedulerWorkflowInput, SubmitOperation, VERSIONS_KEPT,
    VersionRecord, names,
};

#[workflow]
pub struct SchedulerWorkflow {
    scheduler: Scheduler,
    versions: Vec<VersionRecord>,
    pending: VecDeque<Operation>,
    active: Option<Operation>,
    finished: VecDeque<Operation>,
    next_seq: u64,
    continue_as_new_every: u32,
    generation: u32,
    /// Operations run by this run (not carried across continue-as-new).
    run_operations: u32,
    deleted: bool,
    /// The running operation's id once a cancel was asked for it.
    cancel_requested: Option<String>,
    /// 0: no health checks.
    health_check_secs: u64,
    /// When the next health check is due.
    next_health_check: Option<Timestamp>,
    last_downscale_at: Option<Timestamp>,
    previous_active: Option<Version>,
    /// What the last health run said about crash-looping rooms.
    crash_backoff: Option<maestro_core::health::CrashBackoff>,
}

/// Workflow code changes that running workflows must replay around (`ctx.patched`).
mod patches {
    pub const MEMO_AT_START: &str = "memo-at-start";
    /// Periodic `health_controller` operations (a timer in the run loop).
    pub const HEALTH_CONTROLLER: &str = "health-controller";
}

mod state;

fn timestamp(t: Option<SystemTime>) -> Timestamp {
    t.map(Timestamp::from_system_time).unwrap_or_default()
}

/// Runs one operation as its own child workflow; any failure becomes an error outcome.
async fn run_child(
    ctx: &WorkflowContext<SchedulerWorkflow>,
    operation: &Operation,
    scheduler: &Scheduler,
) -> OperationOutcome {
    let input = OperationInput {
        operation: operation.clone(),
        scheduler: scheduler.clone(),
    };
    let options = ChildWorkflowOptions::builder()
        .workflow_id(operation_workflow_id(&scheduler.name, &operation.id))
        // Wait for a cancelled operation to finish its cleanup before the next one starts.
        .cancel_type(ChildWorkflowCancellationType::WaitCancellationCompleted)
        .static_summary(format!(
            "{} #{} of {}",
            operation.definition_name, operation.seq, scheduler.name
        ))
        .build();
    let result = match operation.input.kind() {
        OperationKind::CreateScheduler => {
            start_and_wait(ctx, CreateSchedulerWorkflow::run, input, options).await
        }
        OperationKind::AddRooms => start_and_wait(ctx, AddRoomsWorkflow::run, input, options).await,
        OperationKind::RemoveRooms => {
            start_and_wait(ctx, RemoveRoomsWorkflow::run, input, options).await
        }
        OperationKind::DeleteScheduler => {
            start_and_wait(ctx, DeleteSchedulerWorkflow::run, input, options).await
        }
        OperationKind::CreateNewSchedulerVersion => {
            start_and_wait(ctx, CreateNewSchedulerVersionWorkflow::run, input, options).await
        }
        OperationKind::SwitchActiveVersion => {
            start_and_wait(ctx, SwitchActiveVersionWorkflow::run, input, options).await
        }
        OperationKind::HealthController => {
            start_and_wait(ctx, HealthControllerWorkflow::run, input, options).await
        }
    };
    result.unwrap_or_else(|error| OperationOutcome {
        succeeded: false,
        history: Vec::new(),
        error: Some(error),
        effect: None,
        crash_backoff: None,
    })
}

async fn start_and_wait<WD>(
    ctx: &WorkflowContext<SchedulerWorkflow>,
    workflow: WD,
    input: OperationInput,
    options: ChildWorkflowOptions,
) -> Result<OperationOutcome, String>
where
    WD: temporalio_common::WorkflowDefinition<Output = OperationOutcome> + 'static,
    OperationInput: Into<WD::Input>,
{
    let operation_id = input.operation.id.clone();
    let started = ctx
        .start_child_workflow(workflow, input, options)
        .await
        .map_err(|e| format!("could not start the operation: {e}"))?;
    let result = started.result();
    let cancel = ctx.wait_condition(|s| s.cancel_requested.as_deref() == Some(&operation_id));
    futures::pin_mut!(result, cancel);
    temporalio_sdk::workflows::select! {
        outcome = &mut result => {
            return outcome.map_err(|e| format!("the operation failed: {e}"));
        }
        _ = &mut cancel => {}
    }
    // The child stops at its activities' next heartbeat and cleans up after itself; its
    // outcome (or its cancellation) comes back here.
    result.cancel_with_reason("cancel requested through the API".into());
    result
        .await
        .map_err(|e| format!("the operation was cancelled: {e}"))
}

#[workflow_methods]
impl SchedulerWorkflow {
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: SchedulerWorkflowInput) -> Self {
        let mut this = Self {
            scheduler: input.scheduler,
            versions: input.versions,
            pending: input.pending,
            active: None,
            finished: input.finished,
            next_seq: input.next_seq,
            continue_as_new_every: input.continue_as_new_every,
            generation: input.generation,
            run_operations: 0,
            deleted: false,
            cancel_requested: None,
            health_check_secs: input.health_check_secs.unwrap_or(DEFAULT_HEALTH_CHECK_SECS),
            next_health_check: input.next_health_check,
            last_downscale_at: input.last_downscale_at,
            previous_active: input.previous_active,
            crash_backoff: input.crash_backoff,
        };
        if this.versions.is_empty() {
            // A new scheduler: its first version and the create operation come before any
            // update can be handled, so create_scheduler is always operation #1.
            let now = timestamp(ctx.start_time());
            this.scheduler.state = Some(SchedulerState::Creating);
            this.scheduler.created_at = Some(now);
            this.scheduler.spec.version = Version::FIRST.to_string();
            this.versions.push(VersionRecord {
                version: Version::FIRST,
                created_at: now,
                scheduler: this.scheduler.clone(),
                failed: None,
            });
            let id = ctx.first_execution_run_id().to_string();
            this.enqueue(id, OperationRequest::CreateScheduler, None, now);
        }
        this.versions
            .drain(..this.versions.len().saturating_sub(VERSIONS_KEPT));
        this
    }

    #[run(name = "scheduler")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<SchedulerSnapshot> {
        // Readable from the first moment, not only after the first operation. Patched: runs
        // recorded before this change have no such command and must replay unchanged.
        if ctx.patched(patches::MEMO_AT_START) {
            let snapshot = ctx.state(|s| s.snapshot());
            ctx.upsert_memo([(names::MEMO_SNAPSHOT, Some(MemoValue::new(snapshot)))])?;
        }
        // Patched: runs recorded before health checks existed have no timers to replay.
        let health_checks = ctx.patched(patches::HEALTH_CONTROLLER);
        loop {
            let wake_in = if health_checks {
                let now = timestamp(ctx.workflow_time());
                let id = ctx.uuid4();
                ctx.state_mut(|s| s.schedule_health_check(id, now))
            } else {
                None
            };
            let work = ctx.wait_condition(|s| !s.pending.is_empty() || s.should_continue_as_new());
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
            if ctx.state(|s| s.should_continue_as_new()) || ctx.continue_as_new_suggested() {
                let next = ctx.state(|s| s.continue_as_new_input());
                ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
            }
            let now = timestamp(ctx.workflow_time());
            let Some((operation, scheduler)) = ctx.state_mut(|s| {
                let mut op = s.pending.pop_front()?;
                if let OperationRequest::CreateNewSchedulerVersion { scheduler } = &mut op.input {
                    scheduler.spec.version = s.assign_version(scheduler).to_string();
                }
                op.status = OperationStatus::InProgress;
                op.started_at = Some(now);
                op.execution_history.push(HistoryEntry {
                    created_at: now,
                    event: "operation started".into(),
                });
                s.active = Some(op.clone());
                Some((op, s.scheduler.clone()))
            }) else {
                continue;
            };
            let outcome = run_child(ctx, &operation, &scheduler).await;
            let now = timestamp(ctx.workflow_time());
            let snapshot = ctx.state_mut(|s| {
                s.finish(operation, outcome, now);
                s.snapshot()
            });
            // The memo answers reads while no worker is up to answer queries.
            ctx.upsert_memo([(names::MEMO_SNAPSHOT, Some(MemoValue::new(snapshot.clone())))])?;
            if snapshot.deleted {
                return Ok(snapshot);
            }
        }
    }

    #[update_validator(submit_operation)]
    fn validate_submit_operation(
        &self,
        _ctx: &WorkflowContextView,
        submit: &SubmitOperation,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.submitted(&submit.request_id).is_some() {
            // A retry of an accepted submission: the handler answers with that operation.
            return Ok(());
        }
        match self.refusal(&submit.request) {
            Some(rejection) => Err(Box::new(rejection)),
            None => Ok(()),
        }
    }

    /// Accepts an operation: appends it to the queue and returns it with its id. A repeated
    /// `request_id` returns the operation it created the first time.
    #[update(name = "submit_operation")]
    pub fn submit_operation(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        submit: SubmitOperation,
    ) -> Operation {
        if let Some(existing) = self.submitted(&submit.request_id) {
            return existing.clone();
        }
        let now = timestamp(ctx.workflow_time());
        if submit.request == OperationRequest::DeleteScheduler {
            self.scheduler.state = Some(SchedulerState::Terminating);
        }
        let request_id = Some(submit.request_id).filter(|id| !id.is_empty());
        self.enqueue(ctx.uuid4(), submit.request, request_id, now)
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
        for mut submit in submissions {
            if submit.operation_id.is_empty() {
                submit.operation_id = ctx.uuid4();
            }
            self.accept(submit, now);
        }
    }

    /// Cancels an operation, as the legacy `cancel_operation` update does; an unknown or
    /// final operation is left as it is (the gateway answers 404/409 before signalling).
    #[signal(name = "request_cancel")]
    pub fn request_cancel(&mut self, ctx: &mut SyncWorkflowContext<Self>, operation_id: String) {
        let running = self.active.as_ref().is_some_and(|op| op.id == operation_id);
        if running || self.pending.iter().any(|op| op.id == operation_id) {
            self.cancel(ctx, operation_id);
        }
    }

    #[update_validator(cancel_operation)]
    fn validate_cancel_operation(
        &self,
        _ctx: &WorkflowContextView,
        operation_id: &String,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let running = self
            .active
            .as_ref()
            .is_some_and(|op| &op.id == operation_id);
        if running || self.pending.iter().any(|op| &op.id == operation_id) {
            return Ok(());
        }
        let (code, message) = match self.finished.iter().find(|op| &op.id == operation_id) {
            Some(op) => (
                RejectionCode::Conflict,
                format!(
                    "operation {operation_id} is already final ({:?})",
                    op.status
                ),
            ),
            None => (
                RejectionCode::NotFound,
                format!(
                    "scheduler {} has no pending or running operation {operation_id}",
                    self.scheduler.name
                ),
            ),
        };
        Err(Box::new(Rejection { code, message }))
    }

    /// Cancels an operation: a pending one leaves the queue at once (canceled); the running
    /// one is asked to stop and is recorded as canceled when its child workflow returns.
    #[update(name = "cancel_operation")]
    pub fn cancel_operation(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        operation_id: String,
    ) -> Option<Operation> {
        self.cancel(ctx, operation_id)
    }

    #[query(name = "get_scheduler")]
    pub fn get_scheduler(&self, _ctx: &WorkflowContextView) -> SchedulerSnapshot {
        self.snapshot()
    }

    #[query(name = "get_operations")]
    pub fn get_operations(&self, _ctx: &WorkflowContextView) -> OperationsView {
        self.operations()
    }
}
