//! `maestro-workflows`: the scheduler entity workflow and one child workflow per operation.
//!
//! Owns the workflow types and their pinned names (`scheduler`, `add_rooms`, ...), the
//! signal/query contracts the gateway uses, and the operation queue semantics: operations
//! enter by signal, run strictly one at a time in acceptance order, and are carried across
//! continue-as-new. `scheduler/` is the entity workflow (its state and pure transitions in
//! `scheduler/state.rs`); `operations/` holds one module per operation.
//!
//! Must stay deterministic: no I/O, clocks, randomness, environment, `HashMap` iteration,
//! tokio timers or spawns. Time comes from `workflow_time`, ids from the workflow's own
//! deterministic uuid, and every side effect goes through an activity.

pub mod operations;
mod scheduler;
pub mod search_attributes;

use maestro_core::{Operation, OperationRequest, Scheduler, Timestamp, Version};
use serde::{Deserialize, Serialize};
pub use temporalio_sdk::WorkflowRegistrationError;

pub use maestro_core::operation::{Rejection, RejectionCode};
pub use maestro_core::version::VersionRecord;
pub use operations::{register_replayer_workflows, register_worker_workflows};
pub use scheduler::{SchedulerWorkflow, SchedulerWorkflowState, mark_created};

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
    /// A cancelled operation's workflow reports its outcome to its scheduler's workflow
    /// before it ends cancelled (a cancellation carries no result to the parent).
    pub const SIGNAL_OPERATION_OUTCOME: &str = "operation_outcome";
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
    /// Memo key holding the scheduler's [`crate::OperationsMark`].
    pub const MEMO_OPERATIONS: &str = "operations";
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

/// Workflows a worker keeps in memory by default: one per live scheduler avoids replaying
/// histories on every task.
pub const DEFAULT_MAX_CACHED_WORKFLOWS: usize = 2000;

/// Dynamic config for a single-node Temporal (the dev server `maestro dev` starts and
/// `make bench` measures on). Temporal's history service reads each shard's transfer queue at
/// most 20 times a second by default, and a dev server has one shard: every hand-off of an
/// operation (the signal's workflow task, the child's start, the child's first task) then
/// waits ~40 ms for that read, 4 of them before an operation's first room. Raised, an
/// `add_rooms(1)` goes from ~195 to ~55 ms (docs/benchmarks.md, row 4). A studio's own cluster
/// sets the same key (docs/operations.md).
pub const DEV_SERVER_DYNAMIC_CONFIG: &[&str] = &["history.transferProcessorMaxPollRPS=1000"];

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
    register_worker_workflows(&mut options)?;
    Ok(options)
}

/// Maestro's health controller interval.
pub const DEFAULT_HEALTH_CHECK_SECS: u64 = 60;

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

/// What the memo tells of a scheduler's operations: not the operations, only enough for a
/// reader to know nothing happened since it last looked. The Metrics Reporter then skips the
/// scheduler's `get_operations` query, which an idle fleet would otherwise answer for every
/// scheduler on every refresh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OperationsMark {
    /// An operation runs or waits.
    pub busy: bool,
    /// The operation that finished last (ids are never reused).
    pub last_finished: Option<String>,
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
    /// The namespace has Maestro's search attributes (the gateway checked): the scheduler's
    /// operations from now on carry them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub search_attributes: bool,
}

/// What the `operation_outcome` signal carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedOutcome {
    pub operation_id: String,
    pub outcome: OperationOutcome,
}

/// An operation as its workflow receives it: what was asked and when, not what became of
/// it (status, history and error live in the scheduler workflow), so the input the Temporal
/// UI shows never claims a status the operation has long left. Inputs recorded with the
/// whole [`Operation`] still decode: the fields not kept here are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedOperation {
    pub id: String,
    pub seq: u64,
    pub definition_name: String,
    pub scheduler_name: String,
    pub created_at: maestro_core::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<maestro_core::Timestamp>,
    pub input: OperationRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl From<&Operation> for StartedOperation {
    fn from(operation: &Operation) -> Self {
        Self {
            id: operation.id.clone(),
            seq: operation.seq,
            definition_name: operation.definition_name.clone(),
            scheduler_name: operation.scheduler_name.clone(),
            created_at: operation.created_at,
            started_at: operation.started_at,
            input: operation.input.clone(),
            request_id: operation.request_id.clone(),
        }
    }
}

/// A child operation workflow's input as it travels (and is recorded in histories).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationInput {
    pub operation: StartedOperation,
    /// The scheduler's active version when the operation starts.
    pub scheduler: Scheduler,
}

/// What an operation's workflow receives: the recorded [`OperationInput`], plus its own
/// input already typed (`request`), so no child re-matches the request its parent
/// dispatched on. Travels as `OperationInput`; decoding the input of another kind fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "OperationInput",
    into = "OperationInput",
    bound = "I: Clone + TryFrom<OperationRequest, Error = maestro_core::operation::WrongKind>"
)]
pub struct ChildInput<I> {
    pub operation: StartedOperation,
    pub scheduler: Scheduler,
    pub request: I,
}

impl<I> TryFrom<OperationInput> for ChildInput<I>
where
    I: TryFrom<OperationRequest, Error = maestro_core::operation::WrongKind>,
{
    type Error = maestro_core::operation::WrongKind;

    fn try_from(input: OperationInput) -> Result<Self, Self::Error> {
        Ok(Self {
            request: I::try_from(input.operation.input.clone())?,
            operation: input.operation,
            scheduler: input.scheduler,
        })
    }
}

impl<I> From<ChildInput<I>> for OperationInput {
    fn from(input: ChildInput<I>) -> Self {
        Self {
            operation: input.operation,
            scheduler: input.scheduler,
        }
    }
}

/// A child operation workflow's result. The workflow ends as the outcome says (completed,
/// failed or cancelled: what the Temporal UI shows), and the outcome still reaches the
/// parent whole: as the result, as the failure's details, or by the `operation_outcome`
/// signal before a cancellation. Workflows recorded before that end completed whatever
/// their outcome.
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
    /// Record a new version; a `switch_active_version` operation follows. `activate: true`
    /// (make it active at once) only appears in histories recorded before minor versions
    /// were switched to as Maestro does.
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
