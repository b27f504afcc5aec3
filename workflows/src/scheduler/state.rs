//! The scheduler workflow's state transitions: pure functions of its fields and their inputs
//! (no context but the sync one cancel needs for the time), called by the run loop and the
//! signal and update handlers in `scheduler.rs`.

use std::time::Duration;

use maestro_core::version::next_version;
use maestro_core::{
    HistoryEntry, Operation, OperationKind, OperationRequest, OperationStatus, Scheduler,
    SchedulerState, Timestamp, Version,
};
use temporalio_sdk::SyncWorkflowContext;

use super::{SchedulerWorkflow, timestamp};
use crate::{
    DEFAULT_CONTINUE_AS_NEW_EVERY, FINISHED_OPERATIONS_KEPT, MAX_PENDING_OPERATIONS,
    OperationEffect, OperationOutcome, OperationsView, Rejection, RejectionCode, SchedulerSnapshot,
    SchedulerWorkflowInput, SubmitOperation, VERSIONS_KEPT, VersionRecord,
};

impl SchedulerWorkflow {
    pub(super) fn snapshot(&self) -> SchedulerSnapshot {
        SchedulerSnapshot {
            scheduler: self.scheduler.clone(),
            versions: self.versions.clone(),
            deleted: self.deleted,
            generation: self.generation,
        }
    }

    pub(super) fn operations(&self) -> OperationsView {
        OperationsView {
            deleted: self.deleted,
            pending: self.pending.iter().cloned().collect(),
            active: self.active.clone(),
            finished: self.finished.iter().cloned().collect(),
        }
    }

    /// The operation a submission with `request_id` already created, while it is still
    /// pending, active or among the finished ones kept.
    pub(super) fn submitted(&self, request_id: &str) -> Option<&Operation> {
        if request_id.is_empty() {
            return None;
        }
        self.pending
            .iter()
            .chain(self.active.iter())
            .chain(self.finished.iter())
            .find(|op| op.request_id.as_deref() == Some(request_id))
    }

    pub(super) fn new_operation(
        &mut self,
        id: String,
        request: OperationRequest,
        request_id: Option<String>,
        now: Timestamp,
    ) -> Operation {
        self.next_seq += 1;
        Operation::pending(
            id,
            self.next_seq,
            &self.scheduler.name,
            request,
            request_id,
            now,
        )
    }

    pub(super) fn enqueue(
        &mut self,
        id: String,
        request: OperationRequest,
        request_id: Option<String>,
        now: Timestamp,
    ) -> Operation {
        let operation = self.new_operation(id, request, request_id, now);
        self.pending.push_back(operation.clone());
        operation
    }

    /// Records a submission the scheduler cannot run as a failed operation (what Maestro
    /// does with a conflicting one), so the id the client got answers why.
    pub(super) fn refuse(
        &mut self,
        id: String,
        request: OperationRequest,
        request_id: Option<String>,
        now: Timestamp,
        reason: String,
    ) {
        let mut operation = self.new_operation(id, request, request_id, now);
        operation.status = OperationStatus::Error;
        operation.finished_at = Some(now);
        operation.execution_history.push(HistoryEntry {
            created_at: now,
            event: format!("refused: {reason}"),
        });
        operation.error = Some(reason);
        self.record_finished(operation);
    }

    /// Any operation the workflow still holds with this id.
    pub(super) fn known(&self, operation_id: &str) -> Option<&Operation> {
        self.pending
            .iter()
            .chain(self.active.iter())
            .chain(self.finished.iter())
            .find(|op| op.id == operation_id)
    }

    /// Takes one submission: a known id is a retry and changes nothing; one the scheduler
    /// cannot run now is recorded as a failed operation with the reason; any other joins the
    /// queue.
    pub(super) fn accept(&mut self, submit: SubmitOperation, now: Timestamp) {
        let id = submit.operation_id;
        if self.known(&id).is_some() {
            return;
        }
        let request_id = Some(submit.request_id).filter(|key| !key.is_empty());
        // The gateway derives an id from the key and the request, so the same key with a
        // different request arrives under another id: refused, never silently dropped.
        let reused_key = request_id
            .as_deref()
            .and_then(|key| self.submitted(key))
            .map(|other| other.id.clone());
        let refusal = if let Some(other) = reused_key {
            Some(format!(
                "Idempotency-Key {:?} was already used for operation {other} with a different request",
                request_id.as_deref().unwrap_or_default()
            ))
        } else if self.pending.len() >= MAX_PENDING_OPERATIONS {
            Some(format!(
                "the queue is full ({MAX_PENDING_OPERATIONS} operations pending); retry later"
            ))
        } else {
            self.refusal(&submit.request).map(|r| r.message)
        };
        if let Some(reason) = refusal {
            self.refuse(id, submit.request, request_id, now, reason);
            return;
        }
        if submit.request == OperationRequest::DeleteScheduler {
            self.scheduler.state = Some(SchedulerState::Terminating);
        }
        self.enqueue(id, submit.request, request_id, now);
    }

    /// Why the scheduler refuses `request` now, if it does: the one check behind both the
    /// `enqueue_operations` signal and the legacy update's validator.
    pub(super) fn refusal(&self, request: &OperationRequest) -> Option<Rejection> {
        let reject = |code, message| Some(Rejection { code, message });
        if !self.accepts_operations() {
            return reject(
                RejectionCode::Conflict,
                format!("scheduler {} is being deleted", self.scheduler.name),
            );
        }
        if let Err(errors) = request.validate() {
            return reject(RejectionCode::Invalid, errors.to_string());
        }
        match request {
            OperationRequest::CreateScheduler => reject(
                RejectionCode::Invalid,
                "create_scheduler runs only when the scheduler is created".into(),
            ),
            OperationRequest::HealthController { .. } => reject(
                RejectionCode::Invalid,
                "health_controller runs by itself on the scheduler's interval".into(),
            ),
            OperationRequest::CreateNewSchedulerVersion { scheduler }
                if scheduler.name != self.scheduler.name =>
            {
                reject(
                    RejectionCode::Invalid,
                    format!(
                        "the new version is for scheduler {:?}, not {}",
                        scheduler.name, self.scheduler.name
                    ),
                )
            }
            OperationRequest::SwitchActiveVersion { version } => {
                match self.versions.iter().find(|r| r.version == *version) {
                    None => reject(
                        RejectionCode::NotFound,
                        format!("scheduler {} has no version {version}", self.scheduler.name),
                    ),
                    Some(record) if record.failed.is_some() => reject(
                        RejectionCode::Conflict,
                        format!("version {version} failed validation and cannot be active"),
                    ),
                    Some(_) => None,
                }
            }
            _ => None,
        }
    }

    pub(super) fn accepts_operations(&self) -> bool {
        !self.deleted && self.scheduler.state != Some(SchedulerState::Terminating)
    }

    pub(super) fn continue_as_new_input(&self) -> SchedulerWorkflowInput {
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
            crash_backoff: self.crash_backoff,
        }
    }

    /// Makes a recorded version active; the scheduler keeps its state and creation time.
    pub(super) fn activate(&mut self, version: Version) {
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

    pub(super) fn record_version(&mut self, record: VersionRecord) {
        if !self.versions.iter().any(|r| r.version == record.version) {
            self.versions.push(record);
        }
        self.versions
            .drain(..self.versions.len().saturating_sub(VERSIONS_KEPT));
    }

    /// The version a `create_new_scheduler_version` gets when it starts: the latest recorded
    /// version bumped by the kind of change against the active one.
    pub(super) fn assign_version(&self, proposed: &Scheduler) -> Version {
        next_version(
            self.versions.iter().map(|r| r.version),
            &self.scheduler,
            proposed,
        )
        .1
    }

    /// Applies what an operation asked for; a validated major version is followed by its
    /// `switch_active_version` operation (id derived from the operation's, so replay-stable).
    pub(super) fn apply_effect(
        &mut self,
        operation: &Operation,
        effect: OperationEffect,
        now: Timestamp,
    ) {
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
    pub(super) fn schedule_health_check(&mut self, id: String, now: Timestamp) -> Option<Duration> {
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
            // A scheduler on error because its rooms crash-loop keeps its health runs: they
            // are what replaces the rooms once the backoff allows, and what clears it.
            let crash_looping = self.crash_backoff.is_some_and(|b| b.is_looping());
            let healthy_enough = match self.scheduler.state {
                Some(SchedulerState::InSync) => true,
                Some(SchedulerState::OnError) => crash_looping,
                _ => false,
            };
            if !queued && healthy_enough {
                let request = OperationRequest::HealthController {
                    last_downscale_at: self.last_downscale_at,
                    rollback_to: self.previous_active,
                    crash_backoff: self.crash_backoff,
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

    /// Keeps a health run's crash-loop verdict; the scheduler is on error while its rooms
    /// crash-loop and in sync again once they serve.
    pub(super) fn record_crash_backoff(&mut self, backoff: maestro_core::health::CrashBackoff) {
        let was_looping = self.crash_backoff.is_some_and(|b| b.is_looping());
        match self.scheduler.state {
            Some(SchedulerState::InSync) if backoff.is_looping() => {
                self.scheduler.state = Some(SchedulerState::OnError)
            }
            Some(SchedulerState::OnError) if was_looping && !backoff.is_looping() => {
                self.scheduler.state = Some(SchedulerState::InSync)
            }
            _ => {}
        }
        self.crash_backoff = Some(backoff).filter(|b| *b != Default::default());
    }

    /// Keeps a final operation among the last [`FINISHED_OPERATIONS_KEPT`].
    pub(super) fn record_finished(&mut self, operation: Operation) {
        self.finished.push_back(operation);
        while self.finished.len() > FINISHED_OPERATIONS_KEPT {
            self.finished.pop_front();
        }
    }

    pub(super) fn finish(
        &mut self,
        mut operation: Operation,
        outcome: OperationOutcome,
        now: Timestamp,
    ) {
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
        if let Some(backoff) = outcome.crash_backoff {
            self.record_crash_backoff(backoff);
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

    /// Cancels an operation: a pending one leaves the queue at once (canceled); the running
    /// one is asked to stop and is recorded as canceled when its child workflow returns.
    pub(super) fn cancel(
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

    pub(super) fn should_continue_as_new(&self) -> bool {
        let every = if self.continue_as_new_every == 0 {
            DEFAULT_CONTINUE_AS_NEW_EVERY
        } else {
            self.continue_as_new_every
        };
        self.run_operations >= every
    }
}
