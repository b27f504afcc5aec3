//! The room store: composed room status, pings and metadata, per scheduler.

mod memory;

use std::collections::BTreeMap;

use async_trait::async_trait;
use maestro_core::room::RoomAddress;
use maestro_core::{GameRoom, InstanceStatus, PingStatus, RoomStatus, Timestamp, Version};

use crate::RoomInstance;

pub use memory::MemoryRoomStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("room {room_id} of scheduler {scheduler} not found")]
    RoomNotFound { scheduler: String, room_id: String },
    #[error("room store unavailable: {0}")]
    Unavailable(String),
}

/// What one ping carries.
#[derive(Debug, Clone, PartialEq)]
pub struct PingUpdate {
    pub status: PingStatus,
    pub running_matches: u32,
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
}

/// The room's status before and after an update, for forwarders and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub previous: RoomStatus,
    pub room: GameRoom,
}

impl StatusChange {
    pub fn changed(&self) -> bool {
        self.previous != self.room.status
    }
}

#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Ok when the store answers (readiness probes).
    async fn health(&self) -> Result<(), StoreError>;
    /// Records a new room; an existing record is kept as it is (retried creations).
    async fn insert_if_absent(&self, room: GameRoom) -> Result<(), StoreError>;
    async fn get(&self, scheduler: &str, room_id: &str) -> Result<Option<GameRoom>, StoreError>;
    async fn list(&self, scheduler: &str) -> Result<Vec<GameRoom>, StoreError>;
    /// Removes the record; returns whether it existed.
    async fn remove(&self, scheduler: &str, room_id: &str) -> Result<bool, StoreError>;
    /// Applies a ping to a known room.
    async fn apply_ping(
        &self,
        scheduler: &str,
        room_id: &str,
        ping: PingUpdate,
        now: Timestamp,
    ) -> Result<StatusChange, StoreError>;
    /// Applies the runtime's view; creates the record if the runtime knows a room the store
    /// does not (the store was rebuilt after a restart).
    async fn apply_instance(
        &self,
        scheduler: &str,
        room_id: &str,
        version: Version,
        status: InstanceStatus,
        address: Option<RoomAddress>,
        now: Timestamp,
    ) -> Result<StatusChange, StoreError>;

    /// [`RoomStore::apply_instance`] with what the runtime reported.
    async fn record_instance(
        &self,
        instance: &RoomInstance,
        now: Timestamp,
    ) -> Result<StatusChange, StoreError> {
        self.apply_instance(
            &instance.scheduler,
            &instance.room_id,
            instance.version,
            instance.status,
            instance.address.clone(),
            now,
        )
        .await
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every store backend must have; each backend runs these tests.
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    pub async fn insert_is_idempotent(store: &dyn RoomStore) {
        let room = GameRoom::new("r1", "s1", Version::FIRST, 1, t(1));
        store.insert_if_absent(room.clone()).await.unwrap();
        store
            .apply_instance(
                "s1",
                "r1",
                Version::FIRST,
                InstanceStatus::Ready,
                None,
                t(2),
            )
            .await
            .unwrap();
        store.insert_if_absent(room).await.unwrap();
        let got = store.get("s1", "r1").await.unwrap().unwrap();
        assert_eq!(
            got.instance_status,
            InstanceStatus::Ready,
            "retried insert kept state"
        );
        assert_eq!(store.list("s1").await.unwrap().len(), 1);
        assert!(store.list("other").await.unwrap().is_empty());
    }

    pub async fn ping_then_instance_composes_status(store: &dyn RoomStore) {
        store
            .insert_if_absent(GameRoom::new("r1", "s1", Version::FIRST, 1, t(1)))
            .await
            .unwrap();
        let ping = PingUpdate {
            status: PingStatus::Ready,
            running_matches: 0,
            metadata: None,
        };
        let change = store
            .apply_ping("s1", "r1", ping.clone(), t(2))
            .await
            .unwrap();
        assert_eq!(change.room.status, RoomStatus::Pending);
        assert!(!change.changed());
        let change = store
            .apply_instance(
                "s1",
                "r1",
                Version::FIRST,
                InstanceStatus::Ready,
                None,
                t(3),
            )
            .await
            .unwrap();
        assert_eq!(change.previous, RoomStatus::Pending);
        assert_eq!(change.room.status, RoomStatus::Ready);
        assert_eq!(change.room.last_ping_at, Some(t(2)));
    }

    pub async fn unknown_rooms(store: &dyn RoomStore) {
        let ping = PingUpdate {
            status: PingStatus::Ready,
            running_matches: 0,
            metadata: None,
        };
        let err = store
            .apply_ping("s1", "nope", ping, t(1))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::RoomNotFound { .. }), "{err}");
        assert!(!store.remove("s1", "nope").await.unwrap());
        // The runtime knows it: the record is rebuilt.
        let change = store
            .apply_instance(
                "s1",
                "seen",
                Version::FIRST,
                InstanceStatus::Ready,
                None,
                t(1),
            )
            .await
            .unwrap();
        assert_eq!(change.room.status, RoomStatus::Unready);
        assert!(store.remove("s1", "seen").await.unwrap());
        assert!(store.get("s1", "seen").await.unwrap().is_none());
    }
}
