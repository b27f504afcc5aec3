//! `maestro-workflows`: the scheduler entity workflow and one child workflow per operation.
//!
//! Owns the workflow types and their pinned names (`scheduler`, `add_rooms`, ...), the
//! update/query contracts the gateway uses, and the operation queue semantics: operations
//! are accepted by a validated update, run strictly one at a time in acceptance order, and
//! carried across continue-as-new.
//!
//! Must stay deterministic: no I/O, clocks, randomness, environment, `HashMap` iteration,
//! tokio timers or spawns. Time comes from `workflow_time`, ids from the workflow's own
//! deterministic uuid, and every side effect goes through an activity.

mod health;
mod operations;
mod scheduler;
mod versions;

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use maestro_core::{Operation, OperationRequest, Scheduler, Timestamp, Version};
use serde::{Deserialize, Serialize};
pub use temporalio_sdk::WorkflowRegistrationError;

pub use health::HealthControllerWorkflow;
pub use operations::{
    AddRoomsWorkflow, CreateSchedulerWorkflow, DeleteSchedulerWorkflow, RemoveRoomsWorkflow,
};
pub use scheduler::SchedulerWorkflow;
pub use versions::{CreateNewSchedulerVersionWorkflow, SwitchActiveVersionWorkflow};

/// Pinned names: part of every stored history; renaming a Rust item must not change them.
/// The macros take these as string literals; `tests/scheduler_workflow.rs` checks that the
/// stored histories carry exactly these names.
pub mod names {
    pub const SCHEDULER_WORKFLOW: &str = "scheduler";
    /// How operations enter the workflow: a signal carrying a gateway's batch of
    /// [`crate::SubmitOperation`]s.
    pub const SIGNAL_ENQUEUE_OPERATIONS: &str = "enqueue_operations";
    /// Asks the workflow to cancel a pending or running operation (the operation id).
    pub const SIGNAL_CANCEL_OPERATION: &str = "request_cancel";
    /// Updates that carried operations before signals did; handled only so that histories
    /// recorded with them replay (see `docs/reliability.md`, "Why signals").
    pub const UPDATE_SUBMIT_OPERATION: &str = "submit_operation";
    pub const UPDATE_CANCEL_OPERATION: &str = "cancel_operation";
    pub const QUERY_SCHEDULER: &str = "get_scheduler";
    pub const QUERY_OPERATIONS: &str = "get_operations";
    pub const ACTIVITY_CREATE_ROOMS: &str = "rooms.create";
    pub const ACTIVITY_DELETE_ROOMS: &str = "rooms.delete";
    pub const ACTIVITY_LIST_ROOMS: &str = "rooms.list";
    pub const ACTIVITY_AWAIT_READY: &str = "rooms.await_ready";
    /// Memo key holding the latest [`crate::SchedulerSnapshot`], for reads with no worker up.
    pub const MEMO_SNAPSHOT: &str = "snapshot";
}

/// Operations run before a continue-as-new, unless the server suggests one earlier.
pub const DEFAULT_CONTINUE_AS_NEW_EVERY: u32 = 200;
/// Operations waiting in one scheduler's queue at most; a submission past it is recorded as
/// failed ("queue full"). Bounds the continue-as-new input, which carries the queue.
pub const MAX_PENDING_OPERATIONS: usize = 1000;
/// Finished operations kept in the workflow state (older ones live in their own closed
/// child workflows).
pub const FINISHED_OPERATIONS_KEPT: usize = 100;
/// Versions kept in the workflow state.
pub const VERSIONS_KEPT: usize = 50;

/// Registers every workflow type on built `WorkerOptions` or `WorkflowReplayerOptions` (the
/// SDK gives both a `register_workflow` but no shared trait). Evaluates to
/// `Result<(), WorkflowRegistrationError>`.
#[macro_export]
macro_rules! register_workflows {
    ($options:expr) => {{
        let options = &mut $options;
        (|| -> Result<(), $crate::WorkflowRegistrationError> {
            options.register_workflow::<$crate::SchedulerWorkflow>()?;
            options.register_workflow::<$crate::CreateSchedulerWorkflow>()?;
            options.register_workflow::<$crate::AddRoomsWorkflow>()?;
            options.register_workflow::<$crate::RemoveRoomsWorkflow>()?;
            options.register_workflow::<$crate::DeleteSchedulerWorkflow>()?;
            options.register_workflow::<$crate::CreateNewSchedulerVersionWorkflow>()?;
            options.register_workflow::<$crate::SwitchActiveVersionWorkflow>()?;
            options.register_workflow::<$crate::HealthControllerWorkflow>()?;
            Ok(())
        })()
    }};
}

/// Workflows a worker keeps in memory by default: one per live scheduler avoids replaying
/// histories on every task.
pub const DEFAULT_MAX_CACHED_WORKFLOWS: usize = 2000;

/// Worker options with every workflow and the room activities registered on `task_queue`.
/// `max_cached_workflows` 0 turns the sticky cache off: every workflow task then replays the
/// whole history (what a restarted or memory-starved worker does).
pub fn worker_options(
    task_queue: &str,
    activities: maestro_activities::RoomActivities,
    max_cached_workflows: usize,
) -> Result<temporalio_sdk::WorkerOptions, WorkflowRegistrationError> {
    let mut options = temporalio_sdk::WorkerOptions::new(task_queue)
        .register_activities(activities)
        .max_cached_workflows(max_cached_workflows)
        .graceful_shutdown_period(std::time::Duration::from_secs(5))
        .build();
    register_workflows!(options)?;
    Ok(options)
}

/// One recorded version of a scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub version: Version,
    pub created_at: Timestamp,
    pub scheduler: Scheduler,
    /// Set when the version failed validation: why. A failed version cannot be activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// The scheduler workflow's input: for a new scheduler only `scheduler` is set; a
/// continue-as-new carries everything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerWorkflowInput {
    pub scheduler: Scheduler,
    #[serde(default)]
    pub versions: Vec<VersionRecord>,
    #[serde(default)]
    pub pending: VecDeque<Operation>,
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
}

/// Maestro's health controller interval.
pub const DEFAULT_HEALTH_CHECK_SECS: u64 = 60;

impl SchedulerWorkflowInput {
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
        }
    }
}

/// What the `get_scheduler` query (and the memo) answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSnapshot {
    /// The active version, with `state` and `createdAt` set.
    pub scheduler: Scheduler,
    pub versions: Vec<VersionRecord>,
    /// The scheduler was deleted: reads answer 404.
    pub deleted: bool,
    /// Continue-as-new runs so far (visible progress for operators and tests).
    pub generation: u32,
}

/// What the `get_operations` query answers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OperationsView {
    /// The scheduler was deleted: its operations answer 404 like the scheduler.
    #[serde(default)]
    pub deleted: bool,
    pub pending: Vec<Operation>,
    pub active: Option<Operation>,
    /// Most recent last.
    pub finished: Vec<Operation>,
}

/// One submission in an `enqueue_operations` signal (and the legacy `submit_operation`
/// update's argument).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitOperation {
    pub request: OperationRequest,
    /// The client's idempotency key, kept on the operation; empty when none was sent.
    #[serde(default)]
    pub request_id: String,
    /// The id the gateway answered the client with. A signal carrying an id the workflow
    /// already knows is a retry and changes nothing. Empty only in legacy updates.
    #[serde(default)]
    pub operation_id: String,
}

/// Why the workflow refused an operation; travels as the update failure's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The request itself is invalid (HTTP 400).
    Invalid,
    /// The scheduler's state forbids it now, e.g. it is being deleted (HTTP 409).
    Conflict,
    /// What the request names does not exist, e.g. an unknown operation (HTTP 404).
    NotFound,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&json)
    }
}

impl std::error::Error for Rejection {}

impl FromStr for Rejection {
    type Err = serde_json::Error;

    /// Parses an update failure's message back into the rejection the validator gave.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(s)
    }
}

/// A child operation workflow's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationInput {
    pub operation: Operation,
    /// The scheduler's active version when the operation starts.
    pub scheduler: Scheduler,
}

/// A child operation workflow's result. Business failures are results, not workflow
/// failures, so the parent always gets the execution history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationOutcome {
    pub succeeded: bool,
    pub history: Vec<maestro_core::HistoryEntry>,
    pub error: Option<String>,
    /// What the scheduler workflow must record (versions); none for room operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<OperationEffect>,
    /// A health run's verdict on crash-looping rooms, kept for the next run (absent: other
    /// operations, and health runs recorded before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_backoff: Option<maestro_core::health::CrashBackoff>,
}

/// A change to the scheduler's own state that an operation asks its parent to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationEffect {
    /// Record a new version; `activate`: make it active at once (a minor change), else a
    /// `switch_active_version` operation follows (a validated major change).
    RecordVersion {
        record: VersionRecord,
        activate: bool,
    },
    /// Record a version that failed validation, with the reason; the active one stays.
    RecordFailedVersion { record: VersionRecord },
    /// Make this recorded version the active one.
    Activate { version: Version },
    /// The health controller removed rooms to scale down (the autoscaler's cooldown starts).
    Downscaled { at: Timestamp },
    /// The rollout failed: make `to` (the version before it) active again.
    RollBack { to: Version, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_round_trip_through_the_failure_message() {
        let r = Rejection {
            code: RejectionCode::Conflict,
            message: "scheduler is being deleted".into(),
        };
        assert_eq!(r.to_string().parse::<Rejection>().unwrap(), r);
        assert!("plain text".parse::<Rejection>().is_err());
    }
}
