//! The room store: composed room status, pings and metadata, per scheduler.

mod memory;
mod redis;
#[cfg(test)]
mod redis_deployments;
mod redis_link;

use std::collections::BTreeMap;

use async_trait::async_trait;
use maestro_core::room::RoomAddress;
use maestro_core::{GameRoom, InstanceStatus, PingStatus, RoomStatus, Timestamp, Version};

use crate::RoomInstance;

pub use memory::MemoryRoomStore;
pub use redis::{RedisRoomStore, RedisStoreConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("room {room_id} of scheduler {scheduler} not found")]
    RoomNotFound { scheduler: String, room_id: String },
    #[error("room store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back (written by an incompatible version?).
    #[error("room store record is corrupt: {0}")]
    Corrupt(String),
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

/// What an allocation hands a matchmaker: the room and where to reach it. Not the whole
/// record: reading it back and decoding it cost the Redis store more than the claim itself
/// (docs/benchmarks.md, row 10); the record is what `get` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedRoom {
    pub id: String,
    pub address: Option<RoomAddress>,
}

/// What a ping did to a room's record. Most pings change nothing but the ping's own fields;
/// then the store does not read the record back (nobody needs it: forwarders hear only of
/// changes).
#[derive(Debug, Clone, PartialEq)]
pub enum PingOutcome {
    /// The room's status is still this one.
    Unchanged(RoomStatus),
    /// The status changed; the record as it is now (boxed: the rare, large case).
    Changed(Box<StatusChange>),
}

impl PingOutcome {
    /// The room's status after the ping.
    pub fn status(&self) -> RoomStatus {
        match self {
            Self::Unchanged(status) => *status,
            Self::Changed(change) => change.room.status,
        }
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
    ) -> Result<PingOutcome, StoreError>;
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

    /// Atomically picks one allocatable room (ready, or allocated past its TTL) whose
    /// metadata matches `selector`, marks it allocated until `until`, and returns its id and
    /// address; `None` when no room qualifies. Two concurrent calls never get the same room.
    async fn allocate(
        &self,
        scheduler: &str,
        selector: &BTreeMap<String, String>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<AllocatedRoom>, StoreError>;

    /// Ids of rooms whose last ping is older than `pinged_before` (rooms that never pinged
    /// are not listed: the initialization timeout covers them).
    async fn stale_rooms(
        &self,
        scheduler: &str,
        pinged_before: Timestamp,
    ) -> Result<Vec<String>, StoreError>;

    /// How many rooms of the scheduler are in each status (statuses with none are absent).
    async fn count_by_status(
        &self,
        scheduler: &str,
    ) -> Result<BTreeMap<RoomStatus, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for room in self.list(scheduler).await? {
            *counts.entry(room.status).or_insert(0) += 1;
        }
        Ok(counts)
    }

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
        let outcome = store
            .apply_ping("s1", "r1", ping.clone(), t(2))
            .await
            .unwrap();
        assert_eq!(outcome, PingOutcome::Unchanged(RoomStatus::Pending));
        let recorded = store.get("s1", "r1").await.unwrap().unwrap();
        assert_eq!(
            (recorded.ping_status, recorded.last_ping_at),
            (Some(PingStatus::Ready), Some(t(2))),
            "an unchanged status still records the ping"
        );
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

    fn ready_ping() -> PingUpdate {
        PingUpdate {
            status: PingStatus::Ready,
            running_matches: 0,
            metadata: None,
        }
    }

    /// A room that is ready (instance ready, pinged ready) with `metadata`.
    async fn ready_room(
        store: &dyn RoomStore,
        scheduler: &str,
        id: &str,
        metadata: serde_json::Value,
    ) {
        store
            .insert_if_absent(GameRoom::new(id, scheduler, Version::FIRST, 1, t(1)))
            .await
            .unwrap();
        store
            .apply_instance(
                scheduler,
                id,
                Version::FIRST,
                InstanceStatus::Ready,
                None,
                t(2),
            )
            .await
            .unwrap();
        let ping = PingUpdate {
            metadata: serde_json::from_value(metadata).unwrap(),
            ..ready_ping()
        };
        let outcome = store.apply_ping(scheduler, id, ping, t(3)).await.unwrap();
        assert_eq!(outcome.status(), RoomStatus::Ready);
    }

    /// Every combination of what the runtime and the room report gives the same record as
    /// core's `GameRoom` logic (for Redis: the Lua scripts agree with Rust).
    pub async fn status_matches_core_for_every_combination(store: &dyn RoomStore) {
        let pings = [None]
            .into_iter()
            .chain(PingStatus::ALL.into_iter().map(Some));
        let mut n = 0;
        for ping in pings {
            for instance in InstanceStatus::ALL {
                for max_matches in [1, 3] {
                    for matches in [0, 1, 3] {
                        n += 1;
                        let id = format!("room-{n}");
                        let mut expected =
                            GameRoom::new(&id, "combo", Version::FIRST, max_matches, t(1));
                        store.insert_if_absent(expected.clone()).await.unwrap();
                        let change = store
                            .apply_instance("combo", &id, Version::FIRST, instance, None, t(2))
                            .await
                            .unwrap();
                        let before = expected.status;
                        expected.apply_instance(instance, t(2));
                        assert_eq!(change.previous, before);
                        assert_eq!(change.room, expected, "{ping:?} x {instance:?} (instance)");
                        let Some(ping) = ping else {
                            store.remove("combo", &id).await.unwrap();
                            continue;
                        };
                        let metadata: BTreeMap<String, serde_json::Value> = serde_json::from_value(
                            serde_json::json!({"n": n, "tags": [], "m": {}}),
                        )
                        .unwrap();
                        let update = PingUpdate {
                            status: ping,
                            running_matches: matches,
                            metadata: Some(metadata.clone()),
                        };
                        let outcome = store.apply_ping("combo", &id, update, t(3)).await.unwrap();
                        let before = expected.status;
                        expected.apply_ping(ping, matches, Some(metadata), t(3));
                        let case = format!("{ping:?} x {instance:?} x {matches}/{max_matches}");
                        match outcome {
                            PingOutcome::Changed(change) => {
                                assert_eq!(change.previous, before, "{case}");
                                assert_eq!(change.room, expected, "{case}");
                            }
                            PingOutcome::Unchanged(status) => {
                                assert_eq!(
                                    (before, status),
                                    (expected.status, expected.status),
                                    "{case}"
                                );
                            }
                        }
                        let recorded = store.get("combo", &id).await.unwrap();
                        assert_eq!(recorded.as_ref(), Some(&expected), "{case} (recorded)");
                        // Allocation follows the same rule in both.
                        let allocated = store
                            .allocate("combo", &BTreeMap::new(), t(100), t(4))
                            .await
                            .unwrap();
                        let allocatable = expected.allocate(t(100), t(4));
                        assert_eq!(
                            allocated.is_some(),
                            allocatable,
                            "{ping:?} x {instance:?} x {matches}/{max_matches}"
                        );
                        if let Some(room) = allocated {
                            assert_eq!(room.id, expected.id);
                            assert_eq!(room.address, expected.address);
                        }
                        assert_eq!(
                            store.get("combo", &id).await.unwrap().as_ref(),
                            Some(&expected)
                        );
                        store.remove("combo", &id).await.unwrap();
                    }
                }
            }
        }
        assert!(store.list("combo").await.unwrap().is_empty());
    }

    /// 100 concurrent allocations against 50 ready rooms: exactly 50 distinct rooms.
    pub async fn allocation_is_exclusive(store: std::sync::Arc<dyn RoomStore>) {
        for i in 0..50 {
            ready_room(
                store.as_ref(),
                "alloc",
                &format!("r{i:02}"),
                serde_json::json!({}),
            )
            .await;
        }
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .allocate("alloc", &BTreeMap::new(), t(1_000), t(10))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut none = 0;
        for task in tasks {
            match task.await.unwrap() {
                Some(room) => {
                    let recorded = store.get("alloc", &room.id).await.unwrap().unwrap();
                    assert_eq!(recorded.status, RoomStatus::Allocated);
                    assert_eq!(room.address, recorded.address);
                    got.push(room.id);
                }
                None => none += 1,
            }
        }
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 50, "every ready room handed out once");
        assert_eq!(none, 50);
        let counts = store.count_by_status("alloc").await.unwrap();
        assert_eq!(counts.get(&RoomStatus::Allocated), Some(&50));
        assert_eq!(counts.get(&RoomStatus::Ready), None);
    }

    /// The TTL frees a room; a selector picks only matching rooms.
    pub async fn allocation_ttl_and_selector(store: &dyn RoomStore) {
        ready_room(
            store,
            "sel",
            "eu-1",
            serde_json::json!({"region": "eu", "slots": 4}),
        )
        .await;
        ready_room(store, "sel", "us-1", serde_json::json!({"region": "us"})).await;
        let select = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let eu = store
            .allocate(
                "sel",
                &select(&[("region", "eu"), ("slots", "4")]),
                t(100),
                t(10),
            )
            .await
            .unwrap()
            .expect("the eu room");
        assert_eq!(eu.id, "eu-1");
        assert!(
            store
                .allocate("sel", &select(&[("region", "eu")]), t(100), t(20))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .allocate("sel", &select(&[("region", "ap")]), t(100), t(20))
                .await
                .unwrap()
                .is_none()
        );
        // After the TTL the eu room can be allocated again, even before its next ping.
        let again = store
            .allocate("sel", &select(&[("region", "eu")]), t(300), t(101))
            .await
            .unwrap()
            .expect("TTL passed");
        assert_eq!(again.id, "eu-1");
        let recorded = store.get("sel", "eu-1").await.unwrap().unwrap();
        assert_eq!(recorded.allocated_until, Some(t(300)));
        let us = store
            .allocate("sel", &BTreeMap::new(), t(300), t(102))
            .await
            .unwrap();
        assert_eq!(us.map(|r| r.id).as_deref(), Some("us-1"));
        assert!(
            store
                .allocate("sel", &BTreeMap::new(), t(300), t(103))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .allocate("nobody", &BTreeMap::new(), t(300), t(103))
                .await
                .unwrap()
                .is_none()
        );
    }

    /// Stale rooms come from the last-ping index; counts follow every change.
    pub async fn stale_rooms_and_counts(store: &dyn RoomStore) {
        for id in ["a", "b", "c"] {
            ready_room(store, "st", id, serde_json::json!({})).await;
        }
        store
            .insert_if_absent(GameRoom::new("never", "st", Version::FIRST, 1, t(1)))
            .await
            .unwrap();
        store
            .apply_ping("st", "b", ready_ping(), t(50))
            .await
            .unwrap();
        let mut stale = store.stale_rooms("st", t(10)).await.unwrap();
        stale.sort();
        assert_eq!(
            stale,
            ["a", "c"],
            "pinged before t=10; `never` never pinged"
        );
        assert!(
            store.stale_rooms("st", t(3)).await.unwrap().is_empty(),
            "strictly before"
        );
        let counts = store.count_by_status("st").await.unwrap();
        assert_eq!(counts.get(&RoomStatus::Ready), Some(&3));
        assert_eq!(counts.get(&RoomStatus::Pending), Some(&1));
        store.remove("st", "a").await.unwrap();
        let occupied = PingUpdate {
            status: PingStatus::Occupied,
            ..ready_ping()
        };
        store.apply_ping("st", "c", occupied, t(60)).await.unwrap();
        assert_eq!(
            store.stale_rooms("st", t(10)).await.unwrap(),
            Vec::<String>::new()
        );
        let counts = store.count_by_status("st").await.unwrap();
        assert_eq!(counts.get(&RoomStatus::Ready), Some(&1));
        assert_eq!(counts.get(&RoomStatus::Occupied), Some(&1));
        assert_eq!(counts.values().sum::<u64>(), 3);
        let ids: Vec<String> = store
            .list("st")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["b", "c", "never"], "listed by id");
    }
}
