//! The scheduler workflow's state, one serialisable struct (the workflow's input, and what
//! continue-as-new passes on whole), and its transitions: pure functions of the state, the
//! time and their inputs, called by the run loop and the signal handlers in `scheduler.rs`
//! and unit-tested here without a Temporal server.

use std::collections::VecDeque;
use std::time::Duration;

use maestro_core::operation::{
    CreateSchedulerInput, HealthControllerInput, Rejection, RejectionCode, SwitchActiveVersionInput,
};
use maestro_core::version::next_version;
use maestro_core::{
    HistoryEntry, Operation, OperationKind, OperationRequest, OperationStatus, Scheduler,
    SchedulerState, Timestamp, Version, VersionRecord,
};
use serde::{Deserialize, Serialize};

use crate::{
    DEFAULT_CONTINUE_AS_NEW_EVERY, DEFAULT_HEALTH_CHECK_SECS, FINISHED_OPERATIONS_KEPT,
    MAX_PENDING_OPERATIONS, OperationEffect, OperationOutcome, OperationsMark, OperationsView,
    SchedulerSnapshot, SubmitOperation, VERSIONS_KEPT,
};

/// Everything the scheduler workflow knows. For a new scheduler only `scheduler` is set;
/// a continue-as-new carries all of it (the fields marked run-local start afresh: a run
/// continues as new only between operations, with nothing running or cancelling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerWorkflowState {
    /// The active version, with `state` and `createdAt`.
    pub scheduler: Scheduler,
    #[serde(default)]
    pub versions: Vec<VersionRecord>,
    #[serde(default)]
    pub pending: VecDeque<Operation>,
    /// Most recent last, at most [`FINISHED_OPERATIONS_KEPT`].
    #[serde(default)]
    pub finished: VecDeque<Operation>,
    #[serde(default)]
    pub next_seq: u64,
    /// 0 means [`DEFAULT_CONTINUE_AS_NEW_EVERY`].
    #[serde(default)]
    pub continue_as_new_every: u32,
    #[serde(default)]
    pub generation: u32,
    /// Seconds between health checks; `None` is [`DEFAULT_HEALTH_CHECK_SECS`], 0 turns them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_downscale_at: Option<Timestamp>,
    /// When the next health check is due (carried so a continue-as-new does not run one
    /// early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_health_check: Option<Timestamp>,
    /// The version active before the last switch to another major version (the rollback
    /// target while that rollout goes on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_active: Option<Version>,
    /// Crash-loop backoff of the scheduler's rooms (see `core::health::CrashBackoff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_backoff: Option<maestro_core::health::CrashBackoff>,
    /// The namespace has Maestro's search attributes (`crate::search_attributes`): operations
    /// start with them and record their outcome in them. Set by the gateway, at creation or
    /// with any later submission; never unset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub search_attributes: bool,
    /// Run-local: the running operation.
    #[serde(skip)]
    pub active: Option<Operation>,
    /// Run-local: the running operation's id once a cancel was asked for it.
    #[serde(skip)]
    pub cancel_requested: Option<String>,
    /// Run-local: the outcome a cancelled operation reported before it ended.
    #[serde(skip)]
    pub reported_outcome: Option<crate::ReportedOutcome>,
    /// Run-local: operations run by this run.
    #[serde(skip)]
    pub run_operations: u32,
    /// Run-local: the scheduler was deleted (the workflow ends).
    #[serde(skip)]
    pub deleted: bool,
}

/// A new scheduler as its first version holds it: `creating`, at `v1.0.0`, created when its
/// input says (the gateway stamps it, so its answer needs no read-back) or else at `now`
/// (inputs from before the stamp; replay gives them the same `now`).
pub fn mark_created(scheduler: &mut Scheduler, now: Timestamp) {
    scheduler.state = Some(SchedulerState::Creating);
    scheduler.created_at = Some(scheduler.created_at.unwrap_or(now));
    scheduler.spec.version = Version::FIRST.to_string();
}

impl SchedulerWorkflowState {
    pub fn new(scheduler: Scheduler) -> Self {
        Self {
            scheduler,
            versions: Vec::new(),
            pending: VecDeque::new(),
            finished: VecDeque::new(),
            next_seq: 0,
            continue_as_new_every: 0,
            generation: 0,
            health_check_secs: None,
            last_downscale_at: None,
            next_health_check: None,
            previous_active: None,
            crash_backoff: None,
            search_attributes: false,
            active: None,
            cancel_requested: None,
            reported_outcome: None,
            run_operations: 0,
            deleted: false,
        }
    }

    /// The state a run starts from: a new scheduler gets its first version and its
    /// `create_scheduler` operation (`id`) here, before any signal can be handled, so
    /// `create_scheduler` is always operation #1.
    pub fn started(mut self, id: String, now: Timestamp) -> Self {
        self.health_check_secs = Some(self.health_check_secs());
        if self.versions.is_empty() {
            mark_created(&mut self.scheduler, now);
            let created_at = self.scheduler.created_at.unwrap_or(now);
            self.versions.push(VersionRecord {
                version: Version::FIRST,
                created_at,
                scheduler: self.scheduler.clone(),
                failed: None,
            });
            self.enqueue(id, CreateSchedulerInput {}.into(), None, now);
        }
        self.versions
            .drain(..self.versions.len().saturating_sub(VERSIONS_KEPT));
        self
    }

    fn health_check_secs(&self) -> u64 {
        self.health_check_secs.unwrap_or(DEFAULT_HEALTH_CHECK_SECS)
    }

    pub fn snapshot(&self) -> SchedulerSnapshot {
        SchedulerSnapshot {
            scheduler: self.scheduler.clone(),
            versions: self.versions.clone(),
            deleted: self.deleted,
            generation: self.generation,
        }
    }

    pub fn operations_mark(&self) -> OperationsMark {
        OperationsMark {
            busy: self.active.is_some() || !self.pending.is_empty(),
            last_finished: self.finished.back().map(|o| o.id.clone()),
        }
    }

    pub fn operations(&self) -> OperationsView {
        OperationsView {
            deleted: self.deleted,
            pending: self.pending.iter().cloned().collect(),
            active: self.active.clone(),
            finished: self.finished.iter().cloned().collect(),
        }
    }

    /// The operation a submission with `request_id` already created, while it is still
    /// pending, active or among the finished ones kept.
    pub fn submitted(&self, request_id: &str) -> Option<&Operation> {
        if request_id.is_empty() {
            return None;
        }
        self.pending
            .iter()
            .chain(self.active.iter())
            .chain(self.finished.iter())
            .find(|op| op.request_id.as_deref() == Some(request_id))
    }

    fn new_operation(
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

    pub fn enqueue(
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
    fn refuse(
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
    fn known(&self, operation_id: &str) -> Option<&Operation> {
        self.pending
            .iter()
            .chain(self.active.iter())
            .chain(self.finished.iter())
            .find(|op| op.id == operation_id)
    }

    /// Takes one submission: a known id is a retry and changes nothing; one the scheduler
    /// cannot run now is recorded as a failed operation with the reason; any other joins the
    /// queue.
    pub fn accept(&mut self, submit: SubmitOperation, now: Timestamp) {
        self.search_attributes |= submit.search_attributes;
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
        self.mark_if_deleting(&submit.request);
        self.enqueue(id, submit.request, request_id, now);
    }

    /// A delete was accepted: the scheduler is going.
    pub fn terminating(&self) -> bool {
        self.scheduler.state == Some(SchedulerState::Terminating)
    }

    /// A delete marks the scheduler terminating as soon as it is accepted: nothing else is
    /// accepted after it.
    pub fn mark_if_deleting(&mut self, request: &OperationRequest) {
        if request.kind() == OperationKind::DeleteScheduler {
            self.scheduler.state = Some(SchedulerState::Terminating);
        }
    }

    /// Why `operation_id` cannot be cancelled now, if it cannot (the rule the gateway
    /// answers 404/409 from).
    pub fn cancel_refusal(&self, operation_id: &str) -> Option<Rejection> {
        Rejection::of_cancel(
            &self.scheduler.name,
            operation_id,
            self.pending.iter().chain(self.active.iter()),
            self.finished.iter(),
        )
    }

    /// Takes the next operation off the queue and marks it running; a new version gets its
    /// number now. Returns it with the active version it runs against.
    pub fn start_next(&mut self, now: Timestamp) -> Option<(Operation, Scheduler)> {
        let mut op = self.pending.pop_front()?;
        if let OperationRequest::CreateNewSchedulerVersion(version) = &mut op.input {
            version.scheduler.spec.version = self.assign_version(&version.scheduler).to_string();
        }
        op.status = OperationStatus::InProgress;
        op.started_at = Some(now);
        op.execution_history.push(HistoryEntry {
            created_at: now,
            event: "operation started".into(),
        });
        self.active = Some(op.clone());
        Some((op, self.scheduler.clone()))
    }

    /// Why the scheduler refuses `request` now, if it does: the one check behind both the
    /// `enqueue_operations` signal and the legacy update's validator.
    pub fn refusal(&self, request: &OperationRequest) -> Option<Rejection> {
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
            OperationRequest::CreateScheduler(_) => reject(
                RejectionCode::Invalid,
                "create_scheduler runs only when the scheduler is created".into(),
            ),
            OperationRequest::HealthController(_) => reject(
                RejectionCode::Invalid,
                "health_controller runs by itself on the scheduler's interval".into(),
            ),
            OperationRequest::CreateNewSchedulerVersion(version)
                if version.scheduler.name != self.scheduler.name =>
            {
                reject(
                    RejectionCode::Invalid,
                    format!(
                        "the new version is for scheduler {:?}, not {}",
                        version.scheduler.name, self.scheduler.name
                    ),
                )
            }
            OperationRequest::SwitchActiveVersion(SwitchActiveVersionInput { version }) => {
                Rejection::of_switch(&self.scheduler.name, &self.versions, *version)
            }
            _ => None,
        }
    }

    pub fn accepts_operations(&self) -> bool {
        !self.deleted && !self.terminating()
    }

    /// What the next run starts from: this state whole, one generation on.
    pub fn continue_as_new_input(&self) -> SchedulerWorkflowState {
        SchedulerWorkflowState {
            generation: self.generation + 1,
            active: None,
            cancel_requested: None,
            reported_outcome: None,
            run_operations: 0,
            deleted: false,
            ..self.clone()
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
    pub fn assign_version(&self, proposed: &Scheduler) -> Version {
        next_version(
            self.versions.iter().map(|r| r.version),
            &self.scheduler,
            proposed,
        )
        .1
    }

    /// Applies what an operation asked for; a recorded version is followed by its
    /// `switch_active_version` operation (id derived from the operation's, so replay-stable).
    /// `activate: true` is what minor versions carried before they were switched to as
    /// Maestro does; stored histories still hold it.
    fn apply_effect(&mut self, operation: &Operation, effect: OperationEffect, now: Timestamp) {
        match effect {
            OperationEffect::RecordVersion { record, activate } => {
                let version = record.version;
                self.record_version(record);
                if activate {
                    self.activate(version);
                } else {
                    let id = format!("{}-switch", operation.id);
                    self.enqueue(id, SwitchActiveVersionInput { version }.into(), None, now);
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
    pub fn schedule_health_check(&mut self, id: String, now: Timestamp) -> Option<Duration> {
        if self.health_check_secs() == 0 || !self.accepts_operations() {
            return None;
        }
        let interval = Duration::from_secs(self.health_check_secs());
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
                let request = HealthControllerInput {
                    last_downscale_at: self.last_downscale_at,
                    rollback_to: self.previous_active,
                    crash_backoff: self.crash_backoff,
                };
                self.enqueue(id, request.into(), None, now);
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
    fn record_crash_backoff(&mut self, backoff: maestro_core::health::CrashBackoff) {
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
    fn record_finished(&mut self, operation: Operation) {
        self.finished.push_back(operation);
        while self.finished.len() > FINISHED_OPERATIONS_KEPT {
            self.finished.pop_front();
        }
    }

    pub fn finish(&mut self, mut operation: Operation, outcome: OperationOutcome, now: Timestamp) {
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
        if let Some(backoff) = outcome.crash_backoff {
            self.record_crash_backoff(backoff);
        }
        operation.finished_at = Some(now);
        // In time order: what the operation did (its cleanup too), then the cancellation.
        operation.execution_history.extend(outcome.history);
        if cancelled {
            operation.execution_history.push(HistoryEntry {
                created_at: now,
                event: "canceled while running".into(),
            });
        }
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
    pub fn cancel(&mut self, operation_id: String, now: Timestamp) -> Option<Operation> {
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

    pub fn should_continue_as_new(&self) -> bool {
        let every = if self.continue_as_new_every == 0 {
            DEFAULT_CONTINUE_AS_NEW_EVERY
        } else {
            self.continue_as_new_every
        };
        self.run_operations >= every
    }
}

#[cfg(test)]
mod tests;
