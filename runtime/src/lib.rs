//! `maestro-runtime`: where rooms run and where their state is kept.
//!
//! Owns the [`Runtime`] trait (create/delete/list/watch room instances) with the `process`
//! backend (each room a local OS process: the embedded default) and the `kubernetes` backend
//! (kube-rs: a namespace per scheduler, a Pod per room), and the [`RoomStore`] trait
//! (rooms' composed status, pings, metadata, allocation) with in-memory and Redis backends.
//!
//! Must not decide policy (how many rooms, which to remove: that is `core` and the
//! workflows) and must not talk to Temporal.

pub mod kubernetes;
pub mod process;
pub mod room_env;
pub mod store;

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use maestro_core::room::RoomAddress;
use maestro_core::{InstanceStatus, Scheduler, Version};

pub use kubernetes::{KubernetesRuntime, KubernetesRuntimeConfig};
pub use process::{ProcessRuntime, ProcessRuntimeConfig};
pub use room_env::RoomsApiEndpoints;
pub use store::{
    AllocatedRoom, MemoryRoomStore, PingOutcome, PingUpdate, RedisRoomStore, RedisStoreConfig,
    RoomStore, StoreError,
};

/// One room instance as the runtime sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomInstance {
    pub scheduler: String,
    pub room_id: String,
    pub version: Version,
    pub status: InstanceStatus,
    pub address: Option<RoomAddress>,
}

/// A change the runtime reports, mirrored into the room store by the runtime watcher.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// The instance exists with this status.
    Upserted(RoomInstance),
    /// The instance is gone.
    Deleted { scheduler: String, room_id: String },
    /// Events were missed (slow consumer, watch expiry): list everything again.
    Resync,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request can never succeed as given (bad spec for this runtime): do not retry.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The runtime refused it for good (a permission, an admission policy, a resource that
    /// is not Maestro's): do not retry; the message says what an operator can change.
    #[error("refused: {0}")]
    Refused(String),
    /// The runtime could not do it now; retrying may help.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
}

impl RuntimeError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Where rooms run. Every method is idempotent: creating an existing room returns it,
/// deleting a missing one succeeds.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Prepares per-scheduler resources (a Kubernetes namespace; nothing for processes).
    async fn create_scheduler(&self, scheduler: &str) -> Result<(), RuntimeError>;
    /// Removes per-scheduler resources; rooms must already be gone.
    async fn delete_scheduler(&self, scheduler: &str) -> Result<(), RuntimeError>;
    /// Rereads what the runtime needs to place new rooms of this scheduler (the host ports
    /// live rooms hold); called before each batch of creations, which may run on another
    /// worker than the previous batch.
    async fn refresh_room_allocations(&self, _scheduler: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Keeps `occupied` busy rooms (plus a margin) from voluntary eviction (spec §8); a
    /// no-op where nothing evicts rooms.
    async fn guard_disruptions(
        &self,
        _scheduler: &str,
        _occupied: u32,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn create_room(
        &self,
        scheduler: &Scheduler,
        version: Version,
        room_id: &str,
    ) -> Result<RoomInstance, RuntimeError>;
    /// Deletes the room, waiting up to `grace` for it to stop by itself.
    async fn delete_room(
        &self,
        scheduler: &str,
        room_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError>;
    async fn list_rooms(&self, scheduler: &str) -> Result<Vec<RoomInstance>, RuntimeError>;
    /// Why the room's instance is in error, as the runtime knows it, for an operation's
    /// failure reason: a process's exit status and log file, a pod's container state.
    /// `None` when it knows nothing more (or cannot ask now): the reason is a courtesy.
    async fn failure_reason(&self, _scheduler: &str, _room_id: &str) -> Option<String> {
        None
    }
    /// Every room of every scheduler this runtime manages (for watcher resyncs).
    async fn list_all_rooms(&self) -> Result<Vec<RoomInstance>, RuntimeError>;
    /// Changes from now on; a [`RuntimeEvent::Resync`] asks the consumer to list again.
    fn watch(&self) -> BoxStream<'static, RuntimeEvent>;
    /// What this runtime could never run in `scheduler`, by field (a local process needs a
    /// command that exists); the gateway refuses such a scheduler or version with 400 instead
    /// of accepting rooms that cannot start. Looks at local files at most, never the network.
    fn check_scheduler(
        &self,
        _scheduler: &Scheduler,
    ) -> Result<(), maestro_core::ValidationErrors> {
        Ok(())
    }
}
