//! The scheduler entity workflow (`scheduler:{name}`): owns the scheduler's versions and its
//! operation queue. The `submit_operation` update only appends to the queue; `run` is the
//! single loop that drains it, one child workflow at a time, so operations run strictly in
//! acceptance order.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use maestro_core::naming::operation_workflow_id;
use maestro_core::version::next_version;
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
    DEFAULT_CONTINUE_AS_NEW_EVERY, DEFAULT_HEALTH_CHECK_SECS, FINISHED_OPERATIONS_KEPT,
    OperationEffect, OperationInput, OperationOutcome, OperationsView, Rejection, RejectionCode,
    SchedulerSnapshot, SchedulerWorkflowInput, SubmitOperation, VERSIONS_KEPT, VersionRecord,
    names,
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
}

/// Workflow code changes that running workflows must replay around (`ctx.patched`).
mod patches {
    pub const MEMO_AT_START: &str = "memo-at-start";
    /// Periodic `health_controller` operations (a timer in the run loop).
    pub const HEALTH_CONTROLLER: &str = "health-controller";
}

fn timestamp(t: Option<SystemTime>) -> Timestamp {
    t.map(Timestamp::from_system_time).unwrap_or_default()
}

impl SchedulerWorkflow {
    fn snapshot(&self) -> SchedulerSnapshot {
        SchedulerSnapshot {
            scheduler: self.scheduler.clone(),
            versions: self.versions.clone(),
            deleted: self.deleted,
            generation: self.generation,
        }
    }

    fn operations(&self) -> OperationsView {
        OperationsView {
            deleted: self.deleted,
            pending: self.pending.iter().cloned().collect(),
            active: self.active.clone(),
            finished: self.finished.iter().cloned().collect(),
        }
    }

    /// The operation a submission with `request_id` already created, while it is still
    /// pending, active or among the finished ones kept.
    fn submitted(&self, request_id: &str) -> Option<&Operation> {
        if request_id.is_empty() {
            return None;
        }
        self.pending
            .iter()
            .chain(self.active.iter())
            .chain(self.finished.iter())
            .find(|op| op.request_id.as_deref() == Some(request_id))
    }

    fn enqueue(
        &mut self,
        id: String,
        request: OperationRequest,
        request_id: Option<String>,
        now: Timestamp,
    ) -> Operation {
        self.next_seq += 1;
        let operation = Operation {
            id,
            seq: self.next_seq,
            status: OperationStatus::Pending,
            definition_name: request.kind().definition_name().to_string(),
            scheduler_name: self.scheduler.name.clone(),
            created_at: now,
            started_at: None,
            finished_at: None,
            input: request,
            execution_history: Vec::new(),
            error: None,
            request_id,
        };
        self.pending.push_back(operation.clone());
        operation
    }

    fn accepts_operations(&self) -> bool {
        !self.deleted && self.scheduler.state != Some(SchedulerState::Terminating)
    }

    fn continue_as_new_input(&self) -> SchedulerWorkflowInput {
        SchedulerWorkflowInput {
            scheduler: self.scheduler.clone(),
            versions: self.versions.clone(),
            pending: self.pending.clone(),
            finished: self.finished.clone(),
            next_seq: self.next_seq,
            continue_as_new_every: self.continue_as_new_every,
            generation: self.generation + 1,
            health_check_secs: Some(self.health_check_secs),
            last_downscale_at: self.last_downscale_at,
            next_health_check: self.next_health_check,
            previous_active: self.previous_active,
        }
    }

    /// Makes a recorded version active; the scheduler keeps its state and creation time.
    fn activate(&mut self, version: Version) {
        let current: Option<Version> = self.scheduler.spec.version.parse().ok();
        if let Some(record) = self.versions.iter().find(|r| r.version == version) {
            if current.is_some_and(|c| c.major != version.major) {
                self.previous_active = current;
            }
            let (state, created_at) = (self.scheduler.state, self.scheduler.created_at);
            self.scheduler = record.scheduler.clone();
            self.scheduler.state = state;
            self.scheduler.created_at = created_at;
            self.scheduler.spec.version = version.to_string();
        }
    }

    fn record_version(&mut self, record: VersionRecord) {
        if !self.versions.iter().any(|r| r.version == record.version) {
            self.versions.push(record);
        }
        self.versions
            .drain(..self.versions.len().saturating_sub(VERSIONS_KEPT));
    }

    /// The version a `create_new_scheduler_version` gets when it starts: the latest recorded
    /// version bumped by the kind of change against the active one.
    fn assign_version(&self, proposed: &Scheduler) -> Version {
        next_version(
            self.versions.iter().map(|r| r.version),
            &self.scheduler,
            proposed,
        )
        .1
    }

    /// Applies what an operation asked for; a validated major version is followed by its
    /// `switch_active_version` operation (id derived from the operation's, so replay-stable).
    fn apply_effect(&mut self, operation: &Operation, effect: OperationEffect, now: Timestamp) {
        match effect {
            OperationEffect::RecordVersion { record, activate } => {
                let version = record.version;
                self.record_version(record);
                if activate {
                    self.activate(version);
                } else {
                    let id = format!("{}-switch", operation.id);
                    self.enqueue(
                        id,
                        OperationRequest::SwitchActiveVersion { version },
                        None,
                        now,
                    );
                }
            }
            OperationEffect::RecordFailedVersion { record } => self.record_version(record),
            OperationEffect::Activate { version } => self.activate(version),
            OperationEffect::Downscaled { at } => self.last_downscale_at = Some(at),
            OperationEffect::RollBack { to, .. } => {
                self.activate(to);
                // No rollback of the rollback: the old version is what ran before.
                self.previous_active = None;
            }
        }
    }

    /// Enqueues a health check when one is due and none is waiting or running; returns
    /// how long until the next one is due.
    fn schedule_health_check(&mut self, id: String, now: Timestamp) -> Option<Duration> {
        if self.health_check_secs == 0 || !self.accepts_operations() {
            return None;
        }
        let interval = Duration::from_secs(self.health_check_secs);
        let due = *self.next_health_check.get_or_insert(now);
        if now >= due {
            let queued = self
                .pending
                .iter()
                .chain(self.active.iter())
                .any(|op| op.input.kind() == OperationKind::HealthController);
            if !queued && self.scheduler.state == Some(SchedulerState::InSync) {
                let request = OperationRequest::HealthController {
                    last_downscale_at: self.last_downscale_at,
                    rollback_to: self.previous_active,
                };
                self.enqueue(id, request, None, now);
            }
            let next = Timestamp::from_unix_millis(
                now.unix_millis() + i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            );
            self.next_health_check = Some(next);
            return Some(interval);
        }
        Some(due.since(now))
    }

    /// Keeps a final operation among the last [`FINISHED_OPERATIONS_KEPT`].
    fn record_finished(&mut self, operation: Operation) {
        self.finished.push_back(operation);
        while self.finished.len() > FINISHED_OPERATIONS_KEPT {
            self.finished.pop_front();
        }
    }

    fn finish(&mut self, mut operation: Operation, outcome: OperationOutcome, now: Timestamp) {
        // A cancel that arrived after the work was done changes nothing: it finished.
        let cancelled = self.cancel_requested.take().as_deref() == Some(operation.id.as_str())
            && !outcome.succeeded;
        if !cancelled && let Some(effect) = outcome.effect.clone() {
            self.apply_effect(&operation, effect, now);
        }
        operation.status = if outcome.succeeded {
            OperationStatus::Finished
        } else if cancelled {
            OperationStatus::Canceled
        } else {
            OperationStatus::Error
        };
        if cancelled {
            operation.execution_history.push(HistoryEntry {
                created_at: now,
                event: "canceled while running".into(),
            });
        }
        operation.finished_at = Some(now);
        operation.execution_history.extend(outcome.history);
        operation.error = outcome.error;
        match (operation.input.kind(), outcome.succeeded) {
            (OperationKind::CreateScheduler, true) => {
                self.scheduler.state = Some(SchedulerState::InSync)
            }
            (OperationKind::CreateScheduler, false) => {
                self.scheduler.state = Some(SchedulerState::OnError)
            }
            (OperationKind::DeleteScheduler, true) => self.deleted = true,
            // A failed delete leaves the scheduler usable again; its rooms may be partly gone.
            (OperationKind::DeleteScheduler, false) => {
                self.scheduler.state = Some(SchedulerState::OnError)
            }
            _ => {}
        }
        self.active = None;
        self.record_finished(operation);
        self.run_operations += 1;
    }

    fn should_continue_as_new(&self) -> bool {
        let every = if self.continue_as_new_every == 0 {
            DEFAULT_CONTINUE_AS_NEW_EVERY
        } else {
            self.continue_as_new_every
        };
        self.run_operations >= every
    }
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
        fn reject(
            code: RejectionCode,
            message: String,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            Err(Box::new(Rejection { code, message }))
        }
        if self.submitted(&submit.request_id).is_some() {
            // A retry of an accepted submission: the handler answers with that operation.
            return Ok(());
        }
        if !self.accepts_operations() {
            return reject(
                RejectionCode::Conflict,
                format!("scheduler {} is being deleted", self.scheduler.name),
            );
        }
        if submit.request == OperationRequest::CreateScheduler {
            return reject(
                RejectionCode::Invalid,
                "create_scheduler runs only when the scheduler is created".into(),
            );
        }
        if matches!(submit.request, OperationRequest::HealthController { .. }) {
            return reject(
                RejectionCode::Invalid,
                "health_controller runs by itself on the scheduler's interval".into(),
            );
        }
        if let Err(errors) = submit.request.validate() {
            return reject(RejectionCode::Invalid, errors.to_string());
        }
        match &submit.request {
            OperationRequest::CreateNewSchedulerVersion { scheduler }
                if scheduler.name != self.scheduler.name =>
            {
                return reject(
                    RejectionCode::Invalid,
                    format!(
                        "the new version is for scheduler {:?}, not {}",
                        scheduler.name, self.scheduler.name
                    ),
                );
            }
            OperationRequest::SwitchActiveVersion { version } => {
                match self.versions.iter().find(|r| r.version == *version) {
                    None => {
                        return reject(
                            RejectionCode::Invalid,
                            format!("scheduler {} has no version {version}", self.scheduler.name),
                        );
                    }
                    Some(record) if record.failed.is_some() => {
                        return reject(
                            RejectionCode::Invalid,
                            format!("version {version} failed validation and cannot be active"),
                        );
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
        Ok(())
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
        let now = timestamp(ctx.workflow_time());
        if let Some(index) = self.pending.iter().position(|op| op.id == operation_id)
            && let Some(mut op) = self.pending.remove(index)
        {
            op.status = OperationStatus::Canceled;
            op.finished_at = Some(now);
            op.execution_history.push(HistoryEntry {
                created_at: now,
                event: "canceled while pending".into(),
            });
            self.record_finished(op.clone());
            return Some(op);
        }
        match &self.active {
            Some(op) if op.id == operation_id => {
                let op = op.clone();
                self.cancel_requested = Some(operation_id);
                Some(op)
            }
            // Finished between the validator and here: report it as it is.
            _ => self
                .finished
                .iter()
                .find(|op| op.id == operation_id)
                .cloned(),
        }
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
