//! Game rooms and their status: the composition of what the room says (its last ping) and
//! what the runtime says (its instance), per Maestro's table, plus the removal priority.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;
use crate::version::Version;

/// What the room reported in its last ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PingStatus {
    Ready,
    Occupied,
    Terminating,
    Terminated,
}

impl PingStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Occupied => "occupied",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
        }
    }

    /// The statuses a room may send, as an error message lists them.
    pub fn expected() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    pub const ALL: [PingStatus; 4] = [
        Self::Ready,
        Self::Occupied,
        Self::Terminating,
        Self::Terminated,
    ];
}

/// What the runtime (Kubernetes pod, local process) says about the room's instance.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    #[default]
    Unknown,
    Pending,
    Ready,
    Terminating,
    Error,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Terminating => "terminating",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub const ALL: [InstanceStatus; 5] = [
        Self::Unknown,
        Self::Pending,
        Self::Ready,
        Self::Terminating,
        Self::Error,
    ];
}

/// The status Maestro shows for a room.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RoomStatus {
    Pending,
    Unready,
    Ready,
    Active,
    Occupied,
    Allocated,
    Terminating,
    Error,
    Terminated,
}

impl RoomStatus {
    pub const ALL: [RoomStatus; 9] = [
        Self::Pending,
        Self::Unready,
        Self::Ready,
        Self::Active,
        Self::Occupied,
        Self::Allocated,
        Self::Terminating,
        Self::Error,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Unready => "unready",
            Self::Ready => "ready",
            Self::Active => "active",
            Self::Occupied => "occupied",
            Self::Allocated => "allocated",
            Self::Terminating => "terminating",
            Self::Error => "error",
            Self::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Rooms that have players now or are about to: occupied rooms (Maestro protects
    /// them), active rooms (some matches running) and allocated rooms (a match is on its
    /// way). Never removed to scale down; kept from voluntary eviction.
    pub fn is_busy(self) -> bool {
        matches!(self, Self::Occupied | Self::Active | Self::Allocated)
    }

    /// Rooms that host or may host a match right now.
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            Self::Ready | Self::Active | Self::Occupied | Self::Allocated
        )
    }
}

/// Maestro's status table: ping status × instance status, refined by running matches when a
/// room can host several matches (`maxMatches > 1`).
pub fn compose_status(
    ping: Option<PingStatus>,
    instance: InstanceStatus,
    running_matches: u32,
    max_matches: u32,
) -> RoomStatus {
    use InstanceStatus as I;
    use PingStatus as P;
    if instance == I::Error {
        return RoomStatus::Error;
    }
    match ping {
        Some(P::Terminated) => RoomStatus::Terminated,
        Some(P::Terminating) => RoomStatus::Terminating,
        _ if instance == I::Terminating => RoomStatus::Terminating,
        _ if matches!(instance, I::Unknown | I::Pending) => RoomStatus::Pending,
        None => RoomStatus::Unready,
        Some(status @ (P::Ready | P::Occupied)) => {
            if max_matches > 1 {
                match running_matches {
                    0 => RoomStatus::Ready,
                    n if n >= max_matches => RoomStatus::Occupied,
                    _ => RoomStatus::Active,
                }
            } else if status == P::Occupied {
                RoomStatus::Occupied
            } else {
                RoomStatus::Ready
            }
        }
    }
}

/// How long an allocated room is held for the player who got it (Maestro: 5 min).
pub const ALLOCATION_TTL: Duration = Duration::from_secs(5 * 60);

/// A ready room that was allocated shows `allocated` until the allocation ends.
pub fn status_with_allocation(
    composed: RoomStatus,
    allocated_until: Option<Timestamp>,
    now: Timestamp,
) -> RoomStatus {
    match (composed, allocated_until) {
        (RoomStatus::Ready, Some(until)) if until > now => RoomStatus::Allocated,
        _ => composed,
    }
}

/// A room's network address as the rooms API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomAddress {
    pub host: String,
    pub ports: Vec<RoomPort>,
    #[serde(default)]
    pub ipv6_label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoomPort {
    pub name: String,
    pub protocol: String,
    pub port: u16,
}

/// What Maestro knows about one room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GameRoom {
    pub id: String,
    pub scheduler: String,
    pub version: Version,
    pub status: RoomStatus,
    pub ping_status: Option<PingStatus>,
    pub instance_status: InstanceStatus,
    pub running_matches: u32,
    pub max_matches: u32,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub created_at: Timestamp,
    pub last_ping_at: Option<Timestamp>,
    pub status_changed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<RoomAddress>,
    /// Set by an allocation: the room shows `allocated` until then, unless it reports
    /// occupied or leaves ready first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_until: Option<Timestamp>,
}

impl GameRoom {
    /// A room the worker just asked the runtime for: nothing has been heard from it yet.
    pub fn new(
        id: impl Into<String>,
        scheduler: impl Into<String>,
        version: Version,
        max_matches: u32,
        now: Timestamp,
    ) -> Self {
        Self {
            id: id.into(),
            scheduler: scheduler.into(),
            version,
            status: RoomStatus::Pending,
            ping_status: None,
            instance_status: InstanceStatus::Unknown,
            running_matches: 0,
            max_matches: max_matches.max(1),
            metadata: BTreeMap::new(),
            created_at: now,
            last_ping_at: None,
            status_changed_at: now,
            address: None,
            allocated_until: None,
        }
    }

    /// Records a ping and recomputes the status. Returns true when the status changed.
    pub fn apply_ping(
        &mut self,
        status: PingStatus,
        running_matches: u32,
        metadata: Option<BTreeMap<String, serde_json::Value>>,
        now: Timestamp,
    ) -> bool {
        self.ping_status = Some(status);
        self.running_matches = running_matches;
        if let Some(m) = metadata {
            self.metadata = m;
        }
        self.last_ping_at = Some(now);
        self.recompute(now)
    }

    /// Records the runtime's view and recomputes the status. Returns true when it changed.
    pub fn apply_instance(&mut self, instance: InstanceStatus, now: Timestamp) -> bool {
        self.instance_status = instance;
        self.recompute(now)
    }

    /// Marks the room allocated until `until`. Returns false (and changes nothing) when the
    /// room cannot be allocated now.
    pub fn allocate(&mut self, until: Timestamp, now: Timestamp) -> bool {
        if !self.is_allocatable(now) {
            return false;
        }
        self.allocated_until = Some(until);
        self.recompute(now);
        true
    }

    /// Ready, or allocated by an allocation whose time has passed.
    pub fn is_allocatable(&self, now: Timestamp) -> bool {
        match self.status {
            RoomStatus::Ready => true,
            RoomStatus::Allocated => self.allocated_until.is_none_or(|t| t <= now),
            _ => false,
        }
    }

    /// True when every `selector` entry equals the room's reported metadata value (string
    /// values compare as strings, others by their JSON text).
    pub fn metadata_matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(key, want)| match self.metadata.get(key) {
                Some(serde_json::Value::String(s)) => s == want,
                Some(other) => {
                    let text = other.to_string();
                    text == *want
                }
                None => false,
            })
    }

    fn recompute(&mut self, now: Timestamp) -> bool {
        let status = status_with_allocation(
            compose_status(
                self.ping_status,
                self.instance_status,
                self.running_matches,
                self.max_matches,
            ),
            self.allocated_until,
            now,
        );
        if status != RoomStatus::Allocated {
            // Reporting occupied, leaving ready or outliving the TTL ends the allocation.
            self.allocated_until = None;
        }
        let changed = status != self.status;
        if changed {
            self.status = status;
            self.status_changed_at = now;
        }
        changed
    }

    /// True when the room has pinged once but not within `ping_timeout`.
    pub fn ping_expired(&self, now: Timestamp, ping_timeout: Duration) -> bool {
        self.last_ping_at
            .is_some_and(|t| now.since(t) > ping_timeout)
    }
}

/// Removal priority (lower goes first): error, no recent ping, pending/unready, ready,
/// occupied last. Terminating rooms are removed again first of all (their delete may be lost).
pub fn removal_rank(room: &GameRoom, now: Timestamp, ping_timeout: Duration) -> u8 {
    match room.status {
        RoomStatus::Terminating | RoomStatus::Terminated => 0,
        RoomStatus::Error => 1,
        _ if room.ping_expired(now, ping_timeout) => 2,
        RoomStatus::Pending | RoomStatus::Unready => 3,
        RoomStatus::Ready => 4,
        RoomStatus::Active => 5,
        RoomStatus::Allocated => 6,
        RoomStatus::Occupied => 7,
    }
}

/// The ids of the `amount` rooms to remove first, oldest first within a priority.
pub fn rooms_to_remove(
    rooms: &[GameRoom],
    amount: usize,
    now: Timestamp,
    ping_timeout: Duration,
) -> Vec<String> {
    let mut ranked: Vec<&GameRoom> = rooms.iter().collect();
    ranked.sort_by(|a, b| {
        removal_rank(a, now, ping_timeout)
            .cmp(&removal_rank(b, now, ping_timeout))
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.cmp(&b.id))
    });
    ranked
        .into_iter()
        .take(amount)
        .map(|r| r.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ready_room() -> GameRoom {
        let mut room = GameRoom::new("r", "s", Version::FIRST, 1, Timestamp::from_unix_millis(0));
        room.apply_instance(InstanceStatus::Ready, Timestamp::from_unix_millis(1));
        room.apply_ping(PingStatus::Ready, 0, None, Timestamp::from_unix_millis(2));
        room
    }

    #[test]
    fn allocation_holds_until_ttl_or_occupied() {
        let t = Timestamp::from_unix_millis;
        let mut room = ready_room();
        assert!(room.allocate(t(100), t(10)));
        assert_eq!(room.status, RoomStatus::Allocated);
        assert!(!room.is_allocatable(t(50)), "held within the TTL");
        assert!(!room.clone().allocate(t(200), t(50)));
        // A ready ping within the TTL keeps it allocated.
        room.apply_ping(PingStatus::Ready, 0, None, t(60));
        assert_eq!(room.status, RoomStatus::Allocated);
        // Past the TTL it may be handed out again, and the next ping shows ready.
        assert!(room.is_allocatable(t(101)));
        room.apply_ping(PingStatus::Ready, 0, None, t(120));
        assert_eq!(room.status, RoomStatus::Ready);
        assert_eq!(room.allocated_until, None);
        // Reporting occupied ends an allocation at once.
        assert!(room.allocate(t(500), t(130)));
        room.apply_ping(PingStatus::Occupied, 1, None, t(140));
        assert_eq!(room.status, RoomStatus::Occupied);
        assert_eq!(room.allocated_until, None);
        room.apply_ping(PingStatus::Ready, 0, None, t(150));
        assert_eq!(
            room.status,
            RoomStatus::Ready,
            "not allocated again by itself"
        );
    }

    #[test]
    fn only_ready_rooms_are_allocatable() {
        let t = Timestamp::from_unix_millis;
        let mut room = GameRoom::new("r", "s", Version::FIRST, 1, t(0));
        assert!(!room.allocate(t(100), t(1)), "pending");
        room.apply_instance(InstanceStatus::Ready, t(2));
        assert!(!room.allocate(t(100), t(3)), "unready");
        room.apply_ping(PingStatus::Occupied, 1, None, t(4));
        assert!(!room.allocate(t(100), t(5)), "occupied");
    }

    #[test]
    fn metadata_selector() {
        let mut room = ready_room();
        room.metadata =
            serde_json::from_value(serde_json::json!({"region": "eu", "slots": 4})).unwrap();
        let sel = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(room.metadata_matches(&sel(&[])));
        assert!(room.metadata_matches(&sel(&[("region", "eu")])));
        assert!(room.metadata_matches(&sel(&[("region", "eu"), ("slots", "4")])));
        assert!(!room.metadata_matches(&sel(&[("region", "us")])));
        assert!(!room.metadata_matches(&sel(&[("mode", "ranked")])));
    }

    /// Maestro's table, row by row (maxMatches 1).
    #[test]
    fn the_status_table() {
        use InstanceStatus as I;
        use RoomStatus as R;
        let cols = [I::Unknown, I::Pending, I::Ready, I::Terminating, I::Error];
        let rows: [(Option<PingStatus>, [R; 5]); 5] = [
            (
                None,
                [R::Pending, R::Pending, R::Unready, R::Terminating, R::Error],
            ),
            (
                Some(PingStatus::Ready),
                [R::Pending, R::Pending, R::Ready, R::Terminating, R::Error],
            ),
            (
                Some(PingStatus::Occupied),
                [
                    R::Pending,
                    R::Pending,
                    R::Occupied,
                    R::Terminating,
                    R::Error,
                ],
            ),
            (
                Some(PingStatus::Terminating),
                [R::Terminating; 4]
                    .into_iter()
                    .chain([R::Error])
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap(),
            ),
            (
                Some(PingStatus::Terminated),
                [R::Terminated; 4]
                    .into_iter()
                    .chain([R::Error])
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap(),
            ),
        ];
        for (ping, expected) in rows {
            for (instance, want) in cols.into_iter().zip(expected) {
                assert_eq!(
                    compose_status(ping, instance, 0, 1),
                    want,
                    "{ping:?} x {instance:?}"
                );
            }
        }
    }

    #[test]
    fn multi_match_rooms_are_ready_active_or_occupied_by_running_matches() {
        let st = |ping, n| compose_status(Some(ping), InstanceStatus::Ready, n, 3);
        assert_eq!(st(PingStatus::Ready, 0), RoomStatus::Ready);
        assert_eq!(st(PingStatus::Occupied, 1), RoomStatus::Active);
        assert_eq!(st(PingStatus::Ready, 2), RoomStatus::Active);
        assert_eq!(st(PingStatus::Occupied, 3), RoomStatus::Occupied);
    }

    #[test]
    fn apply_ping_and_instance_report_changes() {
        let t0 = Timestamp::from_unix_millis(1_000);
        let t1 = Timestamp::from_unix_millis(2_000);
        let mut room = GameRoom::new("r1", "s", Version::FIRST, 1, t0);
        assert!(
            !room.apply_ping(PingStatus::Ready, 0, None, t1),
            "still pending: no instance yet"
        );
        assert!(room.apply_instance(InstanceStatus::Ready, t1));
        assert_eq!(room.status, RoomStatus::Ready);
        assert_eq!(room.status_changed_at, t1);
        assert!(!room.apply_ping(PingStatus::Ready, 0, None, t1));
        assert!(room.apply_ping(PingStatus::Occupied, 1, None, t1));
        assert_eq!(room.status, RoomStatus::Occupied);
    }

    fn room(id: &str, status: RoomStatus, created: i64, last_ping: Option<i64>) -> GameRoom {
        let mut r = GameRoom::new(
            id,
            "s",
            Version::FIRST,
            1,
            Timestamp::from_unix_millis(created),
        );
        r.status = status;
        r.last_ping_at = last_ping.map(Timestamp::from_unix_millis);
        r
    }

    #[test]
    fn removal_order_follows_maestro_priority() {
        let now = Timestamp::from_unix_millis(1_000_000);
        let timeout = Duration::from_secs(240);
        let rooms = vec![
            room("occupied", RoomStatus::Occupied, 1, Some(999_000)),
            room("ready-new", RoomStatus::Ready, 5, Some(999_000)),
            room("ready-old", RoomStatus::Ready, 2, Some(999_000)),
            room("pending", RoomStatus::Pending, 3, None),
            room("silent", RoomStatus::Ready, 4, Some(1)),
            room("error", RoomStatus::Error, 6, Some(999_000)),
        ];
        assert_eq!(
            rooms_to_remove(&rooms, 10, now, timeout),
            [
                "error",
                "silent",
                "pending",
                "ready-old",
                "ready-new",
                "occupied"
            ]
        );
        assert_eq!(
            rooms_to_remove(&rooms, 2, now, timeout),
            ["error", "silent"]
        );
    }

    fn any_ping() -> impl Strategy<Value = Option<PingStatus>> {
        prop_oneof![
            Just(None),
            proptest::sample::select(PingStatus::ALL.to_vec()).prop_map(Some)
        ]
    }

    proptest! {
        #[test]
        fn error_instance_always_wins(ping in any_ping(), n in 0u32..10, max in 1u32..5) {
            prop_assert_eq!(compose_status(ping, InstanceStatus::Error, n, max), RoomStatus::Error);
        }

        #[test]
        fn serving_needs_a_ready_instance_and_a_serving_ping(
            ping in any_ping(),
            instance in proptest::sample::select(InstanceStatus::ALL.to_vec()),
            n in 0u32..10, max in 1u32..5,
        ) {
            let status = compose_status(ping, instance, n, max);
            if status.is_serving() {
                prop_assert_eq!(instance, InstanceStatus::Ready);
                prop_assert!(matches!(ping, Some(PingStatus::Ready | PingStatus::Occupied)));
            }
        }

        #[test]
        fn removal_takes_exactly_min_amount_distinct_rooms(
            statuses in proptest::collection::vec(proptest::sample::select(RoomStatus::ALL.to_vec()), 0..40),
            amount in 0usize..50,
        ) {
            let rooms: Vec<GameRoom> = statuses.iter().enumerate()
                .map(|(i, s)| room(&format!("r{i}"), *s, i as i64, Some(0))).collect();
            let picked = rooms_to_remove(&rooms, amount, Timestamp::from_unix_millis(0), Duration::from_secs(1));
            prop_assert_eq!(picked.len(), amount.min(rooms.len()));
            let unique: std::collections::BTreeSet<_> = picked.iter().collect();
            prop_assert_eq!(unique.len(), picked.len());
            // An occupied room is only picked when nothing of lower priority is left.
            if let Some(first_occupied) = picked.iter().position(|id| rooms.iter().any(|r| &r.id == id && r.status == RoomStatus::Occupied)) {
                let lower = rooms.iter().filter(|r| r.status != RoomStatus::Occupied).count();
                prop_assert!(first_occupied >= lower);
            }
        }
    }
}
