//! In-memory room store: the embedded default for single-process `maestro dev`.
//! State is lost on restart and rebuilt from the runtime and the next pings.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;
use maestro_core::room::RoomAddress;
use maestro_core::{GameRoom, InstanceStatus, RoomStatus, Timestamp, Version};

use super::{AllocatedRoom, PingOutcome, PingUpdate, RoomStore, StatusChange, StoreError};

#[derive(Default)]
pub struct MemoryRoomStore {
    /// scheduler → room id → room. Sorted per scheduler so listings are stable.
    rooms: RwLock<HashMap<String, BTreeMap<String, GameRoom>>>,
}

impl MemoryRoomStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, BTreeMap<String, GameRoom>>> {
        // A panic while holding the lock cannot leave a room half-written (every update is
        // a single assignment), so a poisoned lock is still consistent.
        self.rooms.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, BTreeMap<String, GameRoom>>> {
        self.rooms.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl RoomStore for MemoryRoomStore {
    async fn health(&self) -> Result<(), StoreError> {
        // In-process: answering at all is being healthy.
        Ok(())
    }

    async fn insert_if_absent(&self, room: GameRoom) -> Result<(), StoreError> {
        self.write()
            .entry(room.scheduler.clone())
            .or_default()
            .entry(room.id.clone())
            .or_insert(room);
        Ok(())
    }

    async fn get(&self, scheduler: &str, room_id: &str) -> Result<Option<GameRoom>, StoreError> {
        Ok(self
            .read()
            .get(scheduler)
            .and_then(|rooms| rooms.get(room_id))
            .cloned())
    }

    async fn list(&self, scheduler: &str) -> Result<Vec<GameRoom>, StoreError> {
        Ok(self
            .read()
            .get(scheduler)
            .map(|rooms| rooms.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn remove(&self, scheduler: &str, room_id: &str) -> Result<bool, StoreError> {
        let mut all = self.write();
        let Some(rooms) = all.get_mut(scheduler) else {
            return Ok(false);
        };
        let existed = rooms.remove(room_id).is_some();
        if rooms.is_empty() {
            all.remove(scheduler);
        }
        Ok(existed)
    }

    async fn apply_ping(
        &self,
        scheduler: &str,
        room_id: &str,
        ping: PingUpdate,
        now: Timestamp,
    ) -> Result<PingOutcome, StoreError> {
        let mut all = self.write();
        let room = all
            .get_mut(scheduler)
            .and_then(|rooms| rooms.get_mut(room_id))
            .ok_or_else(|| StoreError::RoomNotFound {
                scheduler: scheduler.to_string(),
                room_id: room_id.to_string(),
            })?;
        let previous = room.status;
        room.apply_ping(ping.status, ping.running_matches, ping.metadata, now);
        if room.status == previous {
            return Ok(PingOutcome::Unchanged(previous));
        }
        Ok(PingOutcome::Changed(Box::new(StatusChange {
            previous,
            room: room.clone(),
        })))
    }

    async fn apply_instance(
        &self,
        scheduler: &str,
        room_id: &str,
        version: Version,
        status: InstanceStatus,
        address: Option<RoomAddress>,
        now: Timestamp,
    ) -> Result<StatusChange, StoreError> {
        let mut all = self.write();
        let room = all
            .entry(scheduler.to_string())
            .or_default()
            .entry(room_id.to_string())
            .or_insert_with(|| GameRoom::new(room_id, scheduler, version, 1, now));
        let previous = room.status;
        if address.is_some() {
            room.address = address;
        }
        room.apply_instance(status, now);
        Ok(StatusChange {
            previous,
            room: room.clone(),
        })
    }

    async fn allocate(
        &self,
        scheduler: &str,
        selector: &BTreeMap<String, String>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<AllocatedRoom>, StoreError> {
        Ok(self.allocate_now(scheduler, selector, until, now))
    }

    async fn stale_rooms(
        &self,
        scheduler: &str,
        pinged_before: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        // In process a scan is cheap; the Redis store keeps an index instead.
        Ok(self
            .read()
            .get(scheduler)
            .map(|rooms| {
                rooms
                    .values()
                    .filter(|r| r.last_ping_at.is_some_and(|t| t < pinged_before))
                    .map(|r| r.id.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn count_by_status(
        &self,
        scheduler: &str,
    ) -> Result<BTreeMap<RoomStatus, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        if let Some(rooms) = self.read().get(scheduler) {
            for room in rooms.values() {
                *counts.entry(room.status).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

impl MemoryRoomStore {
    fn allocate_now(
        &self,
        scheduler: &str,
        selector: &BTreeMap<String, String>,
        until: Timestamp,
        now: Timestamp,
    ) -> Option<AllocatedRoom> {
        // One write lock for pick-and-mark: that is what makes allocation exclusive.
        let mut all = self.write();
        let room = all
            .get_mut(scheduler)?
            .values_mut()
            .find(|room| room.is_allocatable(now) && room.metadata_matches(selector))?;
        room.allocate(until, now).then(|| AllocatedRoom {
            id: room.id.clone(),
            address: room.address.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;

    #[tokio::test]
    async fn insert_is_idempotent() {
        contract::insert_is_idempotent(&MemoryRoomStore::new()).await;
    }

    #[tokio::test]
    async fn ping_then_instance_composes_status() {
        contract::ping_then_instance_composes_status(&MemoryRoomStore::new()).await;
    }

    #[tokio::test]
    async fn unknown_rooms() {
        contract::unknown_rooms(&MemoryRoomStore::new()).await;
    }

    #[tokio::test]
    async fn status_matches_core_for_every_combination() {
        contract::status_matches_core_for_every_combination(&MemoryRoomStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn allocation_is_exclusive() {
        contract::allocation_is_exclusive(std::sync::Arc::new(MemoryRoomStore::new())).await;
    }

    #[tokio::test]
    async fn allocation_ttl_and_selector() {
        contract::allocation_ttl_and_selector(&MemoryRoomStore::new()).await;
    }

    #[tokio::test]
    async fn stale_rooms_and_counts() {
        contract::stale_rooms_and_counts(&MemoryRoomStore::new()).await;
    }
}
