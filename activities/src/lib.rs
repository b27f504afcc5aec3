//! `maestro-activities`: the Temporal activities that carry out runtime and room-store actions.
//!
//! Owns the activity implementations and their input/output types, with pinned names
//! (`rooms.create`, ...). Every activity is idempotent — room ids are deterministic, "already
//! exists" and "not found" are success — and heartbeats while it works on a batch, so a
//! retry after a worker crash neither duplicates nor loses a room.
//!
//! Must not decide policy (how many rooms, which ones): the workflows and `core` decide and
//! pass explicit room ids.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod metered;

pub use metered::MeteredRuntime;

use futures::StreamExt;
use futures::future::join_all;
use maestro_core::{GameRoom, InstanceStatus, RoomStatus, Scheduler, Timestamp, Version};
use maestro_runtime::{RoomStore, Runtime, RuntimeError, StoreError};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::{info, warn};

/// Rooms of one `rooms.create` batch created at once: Maestro creates every room of its
/// batch of 40 at once; our batch is the whole operation (`ROOM_BATCH_SIZE`), the
/// concurrency the same.
pub const ROOMS_IN_FLIGHT: usize = 40;

/// How often a long activity reports liveness while it waits on the runtime.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// The dependencies activities act on.
pub struct RoomActivities {
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn RoomStore>,
    /// Per scheduler, the last `rooms.create` batch this worker finished: (operation
    /// workflow run id, activity id). See [`RoomActivities::follows_own_batch`].
    last_batch: Mutex<HashMap<String, (String, u64)>>,
}

impl RoomActivities {
    pub fn new(runtime: Arc<dyn Runtime>, store: Arc<dyn RoomStore>) -> Self {
        Self {
            runtime,
            store,
            last_batch: Mutex::new(HashMap::new()),
        }
    }

    fn follows_own_batch(&self, scheduler: &str, ctx: &ActivityContext) -> bool {
        let info = ctx.info();
        let last = self.last_batch.lock().unwrap_or_else(|p| p.into_inner());
        follows_own_batch(
            last.get(scheduler),
            info.workflow_run_id.as_deref(),
            &info.activity_id,
            info.attempt,
        )
    }

    fn remember_batch(&self, scheduler: &str, ctx: &ActivityContext) {
        let info = ctx.info();
        let mut last = self.last_batch.lock().unwrap_or_else(|p| p.into_inner());
        match (&info.workflow_run_id, info.activity_id.parse::<u64>()) {
            (Some(run), Ok(id)) => {
                last.insert(scheduler.to_string(), (run.clone(), id));
            }
            _ => {
                last.remove(scheduler);
            }
        }
    }
}

/// Whether a `rooms.create` batch is the first attempt of the activity right after a batch
/// of the same operation run that this worker finished (`last`). The runtime's record of
/// allocated host ports is then exact — a scheduler's operations run one at a time, that
/// batch went through this record, and activity ids are the run's command sequence, so no
/// batch of another worker came in between — and rereading every pod of the scheduler can be
/// skipped. That reread grows with the scheduler and took half of a 1 000-room add_rooms
/// (`docs/benchmarks.md`). Any other case (a retry, another run, a gap, an id that is not a
/// number) rereads.
fn follows_own_batch(
    last: Option<&(String, u64)>,
    run: Option<&str>,
    activity_id: &str,
    attempt: u32,
) -> bool {
    let (Some(run), Ok(id), Some((last_run, last_id))) = (run, activity_id.parse::<u64>(), last)
    else {
        return false;
    };
    attempt == 1 && last_run == run && last_id.checked_add(1) == Some(id)
}

#[cfg(test)]
mod tests {
    use super::follows_own_batch;

    #[test]
    fn host_ports_are_reread_unless_this_worker_ran_the_batch_just_before() {
        let last = ("run-1".to_string(), 4);
        assert!(follows_own_batch(Some(&last), Some("run-1"), "5", 1));
        // Another worker ran batch 5: this worker's record misses its ports.
        assert!(!follows_own_batch(Some(&last), Some("run-1"), "6", 1));
        // A retry may follow a partial attempt elsewhere.
        assert!(!follows_own_batch(Some(&last), Some("run-1"), "5", 2));
        // Another operation, or a reset run of the same one.
        assert!(!follows_own_batch(Some(&last), Some("run-2"), "5", 1));
        assert!(!follows_own_batch(None, Some("run-1"), "5", 1));
        assert!(!follows_own_batch(Some(&last), None, "5", 1));
        assert!(!follows_own_batch(Some(&last), Some("run-1"), "batch-5", 1));
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerRef {
    pub scheduler: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRoomsInput {
    pub scheduler: Scheduler,
    pub version: Version,
    pub room_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitReadyInput {
    pub scheduler: String,
    pub room_id: String,
    pub timeout_millis: u64,
}

/// How a room's start went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum Readiness {
    Ready,
    /// It failed (error status, stopped, disappeared): the reason says how.
    Failed(String),
    TimedOut,
}

/// How often `rooms.await_ready` looks at the room.
const READY_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteRoomsInput {
    pub scheduler: String,
    pub room_ids: Vec<String>,
    /// How long each room may take to stop by itself before it is killed.
    pub grace_millis: u64,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The operation an activity works for: its workflow is `op:{scheduler}:{operation id}`.
fn operation_id(ctx: &ActivityContext) -> String {
    ctx.info()
        .workflow_id
        .as_deref()
        .and_then(|id| id.rsplit(':').next())
        .unwrap_or_default()
        .to_string()
}

fn runtime_failure(e: RuntimeError) -> ActivityError {
    if e.is_retryable() {
        ActivityError::from(anyhow::anyhow!(e))
    } else {
        ActivityError::application(ApplicationFailure::non_retryable(e))
    }
}

fn store_failure(e: StoreError) -> ActivityError {
    ActivityError::from(anyhow::anyhow!(e))
}

/// Runs `work`, heartbeating every [`HEARTBEAT_EVERY`] until it finishes, and gives up
/// (as cancelled) when the workflow cancels the activity.
async fn with_heartbeats<T>(
    ctx: &ActivityContext,
    progress: usize,
    work: impl Future<Output = T>,
) -> Result<T, ActivityError> {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            _ = ctx.cancelled() => return Err(ActivityError::cancelled()),
            _ = ticker.tick() => {
                ctx.record_heartbeat(progress).await.map_err(|e| ActivityError::from(anyhow::anyhow!(e)))?;
            }
        }
    }
}

impl RoomActivities {
    /// A room's record, before its instance exists, so there is never a room without one.
    async fn record_room(
        &self,
        scheduler: &Scheduler,
        version: Version,
        max_matches: u32,
        room_id: &str,
    ) -> Result<(), ActivityError> {
        let room = GameRoom::new(room_id, &scheduler.name, version, max_matches, now());
        self.store
            .insert_if_absent(room)
            .await
            .map_err(store_failure)
    }

    /// A recorded room's instance. A refusal for good removes the record made for it, which
    /// would otherwise be a room with no instance (a retryable failure keeps it for the retry).
    async fn start_instance(
        &self,
        scheduler: &Scheduler,
        version: Version,
        room_id: &str,
    ) -> Result<maestro_runtime::RoomInstance, ActivityError> {
        match self.runtime.create_room(scheduler, version, room_id).await {
            Ok(instance) => Ok(instance),
            Err(e) => {
                if !e.is_retryable() {
                    self.store
                        .remove(&scheduler.name, room_id)
                        .await
                        .map_err(store_failure)?;
                    warn!(scheduler = %scheduler.name, room = %room_id, error = %e, "room cannot be created");
                }
                Err(runtime_failure(e))
            }
        }
    }
}

#[activities]
impl RoomActivities {
    /// Prepares the scheduler's runtime resources (a namespace on Kubernetes). Heartbeats:
    /// it may wait for an earlier namespace of the same name to finish terminating.
    #[activity(name = "runtime.create_scheduler")]
    pub async fn create_scheduler(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SchedulerRef,
    ) -> Result<(), ActivityError> {
        with_heartbeats(&ctx, 0, self.runtime.create_scheduler(&input.scheduler))
            .await?
            .map_err(runtime_failure)
    }

    /// Removes the scheduler's runtime resources; its rooms are already gone.
    #[activity(name = "runtime.delete_scheduler")]
    pub async fn delete_scheduler(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SchedulerRef,
    ) -> Result<(), ActivityError> {
        self.runtime
            .delete_scheduler(&input.scheduler)
            .await
            .map_err(runtime_failure)
    }

    /// Creates the given rooms, each recorded in the store before its instance exists so
    /// there is never a room without a record. Resumes after the last heartbeat on retry.
    #[activity(name = "rooms.create")]
    pub async fn create_rooms(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: CreateRoomsInput,
    ) -> Result<Vec<String>, ActivityError> {
        let done: usize = ctx.heartbeat_details().deserialize()?.unwrap_or(0);
        let operation = operation_id(&ctx);
        let scheduler = &input.scheduler;
        let max_matches = u32::try_from(scheduler.max_matches()).unwrap_or(1);
        if done > 0 || !self.follows_own_batch(&scheduler.name, &ctx) {
            self.runtime
                .refresh_room_allocations(&scheduler.name)
                .await
                .map_err(runtime_failure)?;
        }
        // Each room goes record → instance → instance recorded, in three stages so the
        // runtime always has `ROOMS_IN_FLIGHT` creations in flight (as Maestro creates a
        // batch, a goroutine per room) while the store round trips of the rooms before and
        // after them overlap. Records run at most `ROOMS_IN_FLIGHT` ahead of the instances.
        // The heartbeat says how many leading rooms are done, so a retry resumes there
        // (redoing a finished room is a no-op).
        let attempt = ctx.info().attempt;
        let this = &*self;
        let (version, operation) = (input.version, operation.as_str());
        // Owned ids: a closure over borrowed items is not general enough for `Send`.
        let pending = input.room_ids.iter().cloned().enumerate().skip(done);
        let mut creations = futures::stream::iter(pending)
            .map(|(index, room_id)| async move {
                this.record_room(scheduler, version, max_matches, &room_id)
                    .await?;
                Ok::<_, ActivityError>((index, room_id))
            })
            .buffered(ROOMS_IN_FLIGHT)
            .map(|recorded| async move {
                let (index, room_id) = recorded?;
                let instance = this.start_instance(scheduler, version, &room_id).await?;
                Ok::<_, ActivityError>((index, room_id, instance))
            })
            .buffer_unordered(ROOMS_IN_FLIGHT)
            .map(|started| async move {
                let (index, room_id, instance) = started?;
                this.store
                    .record_instance(&instance, now())
                    .await
                    .map_err(store_failure)?;
                info!(scheduler = %scheduler.name, room = %room_id, operation = %operation, attempt, "room created");
                Ok::<_, ActivityError>(index)
            })
            .buffer_unordered(ROOMS_IN_FLIGHT);
        let mut finished = std::collections::BTreeSet::new();
        let mut leading = done;
        loop {
            let next = tokio::select! {
                next = creations.next() => next,
                _ = ctx.cancelled() => return Err(ActivityError::cancelled()),
            };
            let Some(index) = next.transpose()? else {
                break;
            };
            finished.insert(index);
            while finished.remove(&leading) {
                leading += 1;
            }
            ctx.record_heartbeat(leading).await?;
        }
        drop(creations);
        self.remember_batch(&scheduler.name, &ctx);
        Ok(input.room_ids)
    }

    /// Deletes the given rooms concurrently; rooms already gone count as deleted.
    #[activity(name = "rooms.delete")]
    pub async fn delete_rooms(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DeleteRoomsInput,
    ) -> Result<Vec<String>, ActivityError> {
        let grace = Duration::from_millis(input.grace_millis);
        let scheduler = input.scheduler.as_str();
        let operation = operation_id(&ctx);
        let operation = operation.as_str();
        let deletions = input.room_ids.iter().map(|room_id| {
            let this = self.clone();
            async move {
                if let Some(room) = this
                    .store
                    .get(scheduler, room_id)
                    .await
                    .map_err(|e| (e.to_string(), store_failure(e)))?
                {
                    this.store
                        .apply_instance(
                            scheduler,
                            room_id,
                            room.version,
                            InstanceStatus::Terminating,
                            None,
                            now(),
                        )
                        .await
                        .map_err(|e| (e.to_string(), store_failure(e)))?;
                }
                this.runtime
                    .delete_room(scheduler, room_id, grace)
                    .await
                    .map_err(|e| (e.to_string(), runtime_failure(e)))?;
                this.store
                    .remove(scheduler, room_id)
                    .await
                    .map_err(|e| (e.to_string(), store_failure(e)))?;
                info!(scheduler = %scheduler, room = %room_id, operation = %operation, "room deleted");
                Ok::<_, (String, ActivityError)>(())
            }
        });
        let results = with_heartbeats(&ctx, 0, join_all(deletions)).await?;
        let mut first_error = None;
        for (room_id, result) in input.room_ids.iter().zip(results) {
            if let Err((why, e)) = result {
                warn!(scheduler = %scheduler, room = %room_id, operation = %operation, error = %why, "room deletion failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            // The retry deletes again; rooms already gone succeed at once.
            Some(e) => Err(e),
            None => Ok(input.room_ids),
        }
    }

    /// Waits until the room reports ready (or fails, or `timeout` passes), heartbeating.
    #[activity(name = "rooms.await_ready")]
    pub async fn await_ready(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AwaitReadyInput,
    ) -> Result<Readiness, ActivityError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(input.timeout_millis);
        let mut heartbeat = tokio::time::Instant::now();
        loop {
            if ctx.is_cancelled() {
                return Err(ActivityError::cancelled());
            }
            let room = self
                .store
                .get(&input.scheduler, &input.room_id)
                .await
                .map_err(store_failure)?;
            let room_id = &input.room_id;
            let failure = match room.as_ref().map(|r| r.status) {
                None => Some(format!("room {room_id} disappeared")),
                Some(status) if status.is_serving() => {
                    info!(scheduler = %input.scheduler, room = %room_id, "room start settled: ready");
                    return Ok(Readiness::Ready);
                }
                Some(RoomStatus::Error) => Some(
                    match self.runtime.failure_reason(&input.scheduler, room_id).await {
                        Some(why) => format!("room {room_id} is in error: {why}"),
                        None => {
                            format!("room {room_id} is in error (it crashed or could not start)")
                        }
                    },
                ),
                Some(status @ (RoomStatus::Terminating | RoomStatus::Terminated)) => {
                    Some(format!("room {room_id} stopped ({})", status.as_str()))
                }
                Some(_) => None,
            };
            if let Some(failure) = failure {
                info!(scheduler = %input.scheduler, room = %room_id, reason = %failure, "room start settled: failed");
                return Ok(Readiness::Failed(failure));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Readiness::TimedOut);
            }
            if heartbeat.elapsed() >= HEARTBEAT_EVERY {
                ctx.record_heartbeat(()).await?;
                heartbeat = tokio::time::Instant::now();
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The scheduler's rooms as the store knows them, with any room the runtime has but the
    /// store lost (after a restart) recorded again first, and any record whose instance is
    /// gone marked error.
    #[activity(name = "rooms.list")]
    pub async fn list_rooms(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SchedulerRef,
    ) -> Result<Vec<GameRoom>, ActivityError> {
        let known = self
            .store
            .list(&input.scheduler)
            .await
            .map_err(store_failure)?;
        let instances = self
            .runtime
            .list_rooms(&input.scheduler)
            .await
            .map_err(runtime_failure)?;
        let mut rebuilt = false;
        let live: std::collections::BTreeSet<&str> =
            instances.iter().map(|i| i.room_id.as_str()).collect();
        // A record with no instance is a room that can never serve (it failed to start, or
        // its instance vanished): marked error, so this health run removes it. Operations of
        // a scheduler run one at a time, so no creation of this scheduler is under way now.
        for room in &known {
            let gone = !live.contains(room.id.as_str())
                && !matches!(
                    room.status,
                    RoomStatus::Error | RoomStatus::Terminating | RoomStatus::Terminated
                );
            if gone {
                warn!(scheduler = %input.scheduler, room = %room.id, status = room.status.as_str(), "room has no instance; marked error");
                self.store
                    .apply_instance(
                        &input.scheduler,
                        &room.id,
                        room.version,
                        InstanceStatus::Error,
                        None,
                        now(),
                    )
                    .await
                    .map_err(store_failure)?;
                rebuilt = true;
            }
        }
        for instance in instances {
            if !known.iter().any(|r| r.id == instance.room_id) {
                self.store
                    .record_instance(&instance, now())
                    .await
                    .map_err(store_failure)?;
                rebuilt = true;
            }
        }
        if rebuilt {
            return self
                .store
                .list(&input.scheduler)
                .await
                .map_err(store_failure);
        }
        Ok(known)
    }
}
