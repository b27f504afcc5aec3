//! The health controller's plan for one run, as a pure function of the rooms it sees:
//! which rooms to remove (unhealthy ones, surplus ones, replaced ones) and how many to create.
//!
//! 1. Unhealthy rooms go: in error; no ping for the ping timeout; pending/unready past the
//!    initialization timeout; terminating past the deletion timeout (deleted again, forced).
//! 2. While rooms of another major version exist (older after a switch, newer after a
//!    rollback), replace them the way a Kubernetes
//!    deployment with `maxUnavailable: 0` does: add up to `surge = maxSurge(desired) −
//!    (total − desired)` rooms of the active version, and remove old rooms only as far as the
//!    serving count (ready, active, allocated, occupied) stays at or above `desired`; old rooms
//!    that serve nobody go first, occupied ones last.
//! 3. Otherwise converge to `desired`: create the missing rooms, or remove the surplus, never
//!    an occupied, active or allocated room, pending/unready before ready, oldest first.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::room::{GameRoom, RoomStatus, rooms_to_remove};
use crate::time::Timestamp;
use crate::validation::MaxSurge;

/// Maestro's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub ping: Duration,
    pub initialization: Duration,
    pub deletion: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            ping: Duration::from_secs(240),
            initialization: Duration::from_secs(120),
            deletion: Duration::from_secs(120),
        }
    }
}

/// Why a room is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Removal {
    Error,
    PingTimeout,
    InitializationTimeout,
    DeletionTimeout,
    /// Replaced by a room of the active major version.
    Replaced,
    /// More rooms than desired.
    Surplus,
}

impl Removal {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Error => "in error",
            Self::PingTimeout => "no ping within the ping timeout",
            Self::InitializationTimeout => "not ready within the initialization timeout",
            Self::DeletionTimeout => "still terminating after the deletion timeout",
            Self::Replaced => "replaced by the active version",
            Self::Surplus => "above the desired count",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub remove: Vec<(String, Removal)>,
    pub create: u64,
    /// Rooms of other major versions still left after this run.
    pub old_left: u64,
    /// During a rollout: rooms of the active version seen, and how many of them failed.
    pub new_seen: u64,
    pub new_failed: u64,
}

impl Plan {
    /// Whether the rollout should be rolled back: enough new rooms seen and too many failed.
    pub fn should_roll_back(&self, min_rooms: u32, error_share: f64) -> bool {
        self.new_seen >= u64::from(min_rooms.max(1))
            && (self.new_failed as f64) >= error_share * (self.new_seen as f64)
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.create == 0
    }

    pub fn count(&self, reason: Removal) -> usize {
        self.remove.iter().filter(|(_, r)| *r == reason).count()
    }
}

fn unhealthy(room: &GameRoom, now: Timestamp, t: &Timeouts) -> Option<Removal> {
    match room.status {
        RoomStatus::Error => Some(Removal::Error),
        RoomStatus::Terminating | RoomStatus::Terminated => {
            (now.since(room.status_changed_at) > t.deletion).then_some(Removal::DeletionTimeout)
        }
        _ if room.ping_expired(now, t.ping) => Some(Removal::PingTimeout),
        RoomStatus::Pending | RoomStatus::Unready => (now.since(room.created_at)
            > t.initialization)
            .then_some(Removal::InitializationTimeout),
        _ => None,
    }
}

/// The plan for one run. `desired` is `roomsReplicas` or the autoscaler's target;
/// `active_major` the active version's major number.
pub fn plan(
    rooms: &[GameRoom],
    desired: u64,
    max_surge: MaxSurge,
    active_major: u32,
    now: Timestamp,
    timeouts: &Timeouts,
) -> Plan {
    let mut plan = Plan::default();
    let mut live: Vec<&GameRoom> = Vec::new();
    let rollout = rooms.iter().any(|r| r.version.major != active_major);
    for room in rooms {
        let verdict = unhealthy(room, now, timeouts);
        if rollout && room.version.major == active_major {
            plan.new_seen += 1;
            if matches!(
                verdict,
                Some(Removal::Error | Removal::InitializationTimeout)
            ) {
                plan.new_failed += 1;
            }
        }
        match verdict {
            Some(reason) => plan.remove.push((room.id.clone(), reason)),
            // Terminating rooms are on their way out: neither counted nor removed again yet.
            None if matches!(
                room.status,
                RoomStatus::Terminating | RoomStatus::Terminated
            ) => {}
            None => live.push(room),
        }
    }
    let total = live.len() as u64;
    let (old, current): (Vec<&GameRoom>, Vec<&GameRoom>) = live
        .iter()
        // Rooms of any other major version: older ones after a switch, newer ones after a
        // rollback.
        .partition(|room| room.version.major != active_major);
    plan.old_left = old.len() as u64;
    if !old.is_empty() {
        let surge = max_surge.rooms(desired);
        let above = total.saturating_sub(desired);
        let missing_current = desired.saturating_sub(current.len() as u64);
        plan.create = surge.saturating_sub(above).min(missing_current);
        let serving = live.iter().filter(|r| r.status.is_serving()).count() as u64;
        let mut budget = serving.saturating_sub(desired);
        // Old rooms serving nobody first (no serving count lost), then serving ones by the
        // removal priority: ready before occupied.
        let old_rooms: Vec<GameRoom> = old.iter().map(|r| (*r).clone()).collect();
        let ordered = rooms_to_remove(&old_rooms, old_rooms.len(), now, timeouts.ping);
        for id in ordered {
            let Some(room) = old_rooms.iter().find(|r| r.id == id) else {
                continue;
            };
            if room.status.is_serving() {
                if budget == 0 {
                    continue;
                }
                budget -= 1;
            }
            plan.remove.push((id, Removal::Replaced));
            plan.old_left -= 1;
        }
        return plan;
    }
    if total < desired {
        plan.create = desired - total;
    } else if total > desired {
        // Never a room that hosts or is promised a match.
        let candidates: Vec<GameRoom> = live
            .iter()
            .filter(|r| !r.status.is_busy())
            .map(|r| (*r).clone())
            .collect();
        let surplus = (total - desired) as usize;
        for id in rooms_to_remove(&candidates, surplus, now, timeouts.ping) {
            plan.remove.push((id, Removal::Surplus));
        }
    }
    plan
}

/// The first wait before crashed rooms are replaced, doubled for each run in a row that
/// finds crashed rooms (Kubernetes' CrashLoopBackOff: 10 s, 20 s, 40 s …).
pub const CRASH_BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest wait.
pub const CRASH_BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Crash-loop backoff for a scheduler's rooms, carried from one health run to the next: while
/// it holds, rooms that crashed are removed but not replaced, so a room that cannot run is not
/// restarted every health round forever. Cleared by a run that sees rooms serving and none
/// crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrashBackoff {
    /// Health runs in a row that found crashed rooms.
    pub crashes_in_a_row: u32,
    /// No replacement is created before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_after: Option<Timestamp>,
}

impl CrashBackoff {
    /// The wait after `n` runs in a row with crashes.
    pub fn delay(n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(16);
        CRASH_BACKOFF_BASE
            .saturating_mul(1 << doublings)
            .min(CRASH_BACKOFF_CAP)
    }

    /// Rooms are crash-looping (the scheduler is unhealthy) while this is set.
    pub fn is_looping(&self) -> bool {
        self.crashes_in_a_row > 0
    }

    /// Whether replacements must wait at `now`.
    pub fn holds(&self, now: Timestamp) -> bool {
        self.replace_after.is_some_and(|until| now < until)
    }

    /// The backoff after a run that found `crashed` rooms in error and `serving` rooms of the
    /// active version: longer after crashes, unchanged while nothing can be judged (no room
    /// serving yet), cleared once rooms serve with none crashed.
    pub fn after_run(self, crashed: usize, serving: usize, now: Timestamp) -> Self {
        if crashed > 0 {
            let n = self.crashes_in_a_row.saturating_add(1);
            let wait = i64::try_from(Self::delay(n).as_millis()).unwrap_or(i64::MAX);
            return Self {
                crashes_in_a_row: n,
                replace_after: Some(Timestamp::from_unix_millis(
                    now.unix_millis().saturating_add(wait),
                )),
            };
        }
        if serving > 0 { Self::default() } else { self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{InstanceStatus, PingStatus};
    use crate::version::Version;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    fn room(id: &str, major: u32, status: PingStatus) -> GameRoom {
        let version = Version { major, minor: 0 };
        let mut r = GameRoom::new(id, "s", version, 1, t(0));
        r.apply_instance(InstanceStatus::Ready, t(1));
        r.apply_ping(
            status,
            u32::from(status == PingStatus::Occupied),
            None,
            t(100),
        );
        r
    }

    fn ids(plan: &Plan, reason: Removal) -> Vec<String> {
        let mut ids: Vec<String> = plan
            .remove
            .iter()
            .filter(|(_, r)| *r == reason)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn unhealthy_rooms_go() {
        let now = t(200);
        let mut error = room("err", 1, PingStatus::Ready);
        error.apply_instance(InstanceStatus::Error, t(150));
        let mut silent = room("silent", 1, PingStatus::Ready);
        silent.last_ping_at = Some(t(-100));
        let stuck = GameRoom::new("stuck", "s", Version::FIRST, 1, t(0));
        let young = GameRoom::new("young", "s", Version::FIRST, 1, t(150));
        let mut leaving = room("leaving", 1, PingStatus::Terminating);
        leaving.status_changed_at = t(10);
        let mut leaving_now = room("leaving-now", 1, PingStatus::Terminating);
        leaving_now.status_changed_at = t(190);
        let ok = room("ok", 1, PingStatus::Ready);
        let rooms = [error, silent, stuck, young, leaving, leaving_now, ok];
        let plan = plan(
            &rooms,
            2,
            MaxSurge::Absolute(1),
            1,
            now,
            &Timeouts::default(),
        );
        assert_eq!(ids(&plan, Removal::Error), ["err"]);
        assert_eq!(ids(&plan, Removal::PingTimeout), ["silent"]);
        assert_eq!(ids(&plan, Removal::InitializationTimeout), ["stuck"]);
        assert_eq!(ids(&plan, Removal::DeletionTimeout), ["leaving"]);
        assert_eq!(plan.create, 0, "young + ok = 2 live rooms = desired");
    }

    #[test]
    fn converges_without_touching_busy_rooms() {
        let now = t(200);
        let rooms: Vec<GameRoom> = (0..5)
            .map(|i| {
                let status = if i < 3 {
                    PingStatus::Occupied
                } else {
                    PingStatus::Ready
                };
                room(&format!("r{i}"), 1, status)
            })
            .collect();
        let p = plan(
            &rooms,
            8,
            MaxSurge::Absolute(1),
            1,
            now,
            &Timeouts::default(),
        );
        assert_eq!((p.create, p.remove.len()), (3, 0));
        let p = plan(
            &rooms,
            1,
            MaxSurge::Absolute(1),
            1,
            now,
            &Timeouts::default(),
        );
        assert_eq!(p.create, 0);
        assert_eq!(
            ids(&p, Removal::Surplus),
            ["r3", "r4"],
            "only the ready ones"
        );
    }

    /// 10 rooms, 2 occupied, maxSurge 3: run after run (new rooms become ready in between),
    /// the serving count never drops below 10, occupied rooms go last, and it ends with 10
    /// rooms of the new version.
    #[test]
    fn rolling_replacement_keeps_the_serving_count() {
        let now = t(200);
        let mut rooms: Vec<GameRoom> = (0..10)
            .map(|i| {
                let status = if i < 2 {
                    PingStatus::Occupied
                } else {
                    PingStatus::Ready
                };
                room(&format!("old-{i}"), 1, status)
            })
            .collect();
        let mut created = 0;
        let mut occupied_removed_while_ready_old_left = false;
        for _run in 0..20 {
            let p = plan(
                &rooms,
                10,
                MaxSurge::Absolute(3),
                2,
                now,
                &Timeouts::default(),
            );
            let removed: Vec<&str> = p.remove.iter().map(|(id, _)| id.as_str()).collect();
            let removes_occupied = removed.iter().any(|id| *id == "old-0" || *id == "old-1");
            let ready_old_left = rooms.iter().any(|r| {
                r.version.major == 1
                    && r.status == RoomStatus::Ready
                    && !removed.contains(&r.id.as_str())
            });
            occupied_removed_while_ready_old_left |= removes_occupied && ready_old_left;
            rooms.retain(|r| !removed.contains(&r.id.as_str()));
            let serving = rooms.iter().filter(|r| r.status.is_serving()).count();
            assert!(serving >= 10, "serving dropped to {serving}");
            for _ in 0..p.create {
                rooms.push(room(&format!("new-{created}"), 2, PingStatus::Ready));
                created += 1;
            }
            assert!(rooms.len() <= 13, "at most maxSurge above desired");
            if p.is_empty() {
                break;
            }
        }
        assert!(
            !occupied_removed_while_ready_old_left,
            "occupied rooms go last"
        );
        assert_eq!(rooms.len(), 10);
        assert!(rooms.iter().all(|r| r.version.major == 2), "{rooms:?}");
        assert_eq!(created, 10);
    }

    /// New rooms that fail during a rollout are counted for the rollback decision.
    #[test]
    fn failing_new_rooms_count_toward_a_rollback() {
        let now = t(200);
        let mut rooms: Vec<GameRoom> = (0..4)
            .map(|i| room(&format!("old-{i}"), 1, PingStatus::Ready))
            .collect();
        for i in 0..3 {
            let mut r = room(&format!("new-{i}"), 2, PingStatus::Ready);
            if i < 2 {
                r.apply_instance(InstanceStatus::Error, t(150));
            }
            rooms.push(r);
        }
        let p = plan(
            &rooms,
            4,
            MaxSurge::Absolute(3),
            2,
            now,
            &Timeouts::default(),
        );
        assert_eq!((p.new_seen, p.new_failed), (3, 2));
        assert!(p.should_roll_back(3, 0.5));
        assert!(!p.should_roll_back(4, 0.5), "too few seen");
        assert!(!p.should_roll_back(3, 0.9), "below the share");
        // After the rollback the active major is 1 again: the v2 rooms are the ones replaced.
        let back = plan(
            &rooms,
            4,
            MaxSurge::Absolute(3),
            1,
            now,
            &Timeouts::default(),
        );
        assert_eq!(ids(&back, Removal::Error), ["new-0", "new-1"]);
        assert_eq!(
            ids(&back, Removal::Replaced),
            ["new-2"],
            "4 v1 rooms still serve"
        );
        assert_eq!((back.old_left, back.create), (0, 0));
    }

    #[test]
    fn crash_backoff_doubles_to_a_cap_waits_and_clears_when_rooms_serve() {
        assert_eq!(CrashBackoff::delay(1), Duration::from_secs(10));
        assert_eq!(CrashBackoff::delay(2), Duration::from_secs(20));
        assert_eq!(CrashBackoff::delay(4), Duration::from_secs(80));
        assert_eq!(CrashBackoff::delay(9), CRASH_BACKOFF_CAP);
        assert_eq!(CrashBackoff::delay(u32::MAX), CRASH_BACKOFF_CAP);

        let first = CrashBackoff::default().after_run(3, 0, t(100));
        assert_eq!(first.crashes_in_a_row, 1);
        assert!(first.holds(t(109)) && !first.holds(t(110)));
        // Nothing to judge (the crashed rooms are gone, none replaced yet): kept.
        assert_eq!(first.after_run(0, 0, t(105)), first);
        let second = first.after_run(3, 0, t(120));
        assert_eq!(second.crashes_in_a_row, 2);
        assert!(second.holds(t(139)) && !second.holds(t(140)));
        assert!(second.is_looping());
        // Replacements serve and none crashed: healthy again.
        assert_eq!(second.after_run(0, 3, t(200)), CrashBackoff::default());
        assert!(!CrashBackoff::default().is_looping());
    }
}
