//! The autoscaler: how many rooms a scheduler should have, by Maestro's formulas.
//!
//! - `roomOccupancy`: `desiredMatches = ceil(runningMatches / (1 - readyTarget))`,
//!   `desiredRooms = ceil(desiredMatches / maxMatches)`; an allocated room counts as one
//!   running match. Scaling down is allowed only when
//!   `ceil(desiredRooms × maxMatches × readyTarget) / freeSlots <= downThreshold`.
//! - `fixedBuffer`: `desired = occupied + amount`.
//!
//! Both are clamped to `[min, max]` (`max = -1`: no upper limit), and a scale-down waits for
//! the cooldown since the last one. Fractions are resolved to millionths and computed in
//! integers, so `5 / (1 - 0.9)` is 50, not the 51 that floating point gives.

use std::time::Duration;

use crate::room::{GameRoom, RoomStatus};
use crate::scheduler::Autoscaling;
use crate::validation::{POLICY_FIXED_BUFFER, POLICY_ROOM_OCCUPANCY};

const MILLION: u128 = 1_000_000;

/// What the autoscaler looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fleet {
    /// Rooms of the scheduler in any status but terminating/terminated.
    pub current_rooms: u64,
    /// Rooms reporting occupied (for `fixedBuffer`).
    pub occupied_rooms: u64,
    /// Matches running across rooms, plus one per allocated room.
    pub running_matches: u64,
}

impl Fleet {
    /// The autoscaler's view of `rooms`: rooms not on their way out; an allocated room
    /// counts as a running match.
    pub fn of_rooms(rooms: &[GameRoom]) -> Self {
        let mut fleet = Fleet::default();
        for room in rooms {
            match room.status {
                RoomStatus::Terminating | RoomStatus::Terminated => continue,
                RoomStatus::Occupied => fleet.occupied_rooms += 1,
                RoomStatus::Allocated => fleet.running_matches += 1,
                _ => {}
            }
            fleet.current_rooms += 1;
            fleet.running_matches += u64::from(room.running_matches);
        }
        fleet
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The room count to converge to, within `[min, max]`.
    pub desired: u64,
    /// Whether removing rooms is allowed now (policy and cooldown); when false and
    /// `desired < current`, keep the current count.
    pub downscale_allowed: bool,
}

impl Decision {
    /// The count to act on: `desired`, except that a disallowed scale-down keeps `current`.
    pub fn target(self, current: u64) -> u64 {
        if self.desired < current && !self.downscale_allowed {
            current
        } else {
            self.desired
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoscaleError {
    #[error("autoscaling policy {0:?} is not supported")]
    UnknownPolicy(String),
    #[error("autoscaling policy {0} has no parameters")]
    MissingParameters(&'static str),
}

/// `fraction` (in (0,1)) in millionths, rounded.
fn millionths(fraction: f64) -> u128 {
    (fraction.clamp(0.0, 1.0) * 1e6).round() as u128
}

fn div_ceil(a: u128, b: u128) -> u128 {
    if b == 0 { 0 } else { a.div_ceil(b) }
}

/// Rooms needed so that `ready_target` of all match slots are free, for `running_matches`.
pub fn room_occupancy_desired(running_matches: u64, ready_target: f64, max_matches: u64) -> u64 {
    let target = millionths(ready_target).min(MILLION - 1);
    let desired_matches = div_ceil(u128::from(running_matches) * MILLION, MILLION - target);
    let rooms = div_ceil(desired_matches, u128::from(max_matches.max(1)));
    u64::try_from(rooms).unwrap_or(u64::MAX)
}

/// Maestro's room-occupancy downscale rule, evaluated at the desired size.
pub fn room_occupancy_may_downscale(
    fleet: Fleet,
    desired_rooms: u64,
    ready_target: f64,
    down_threshold: f64,
    max_matches: u64,
) -> bool {
    let max_matches = u128::from(max_matches.max(1));
    let slots = u128::from(fleet.current_rooms) * max_matches;
    let free_slots = slots.saturating_sub(u128::from(fleet.running_matches));
    if free_slots == 0 {
        return false;
    }
    let needed_ready = div_ceil(
        u128::from(desired_rooms) * max_matches * millionths(ready_target),
        MILLION,
    );
    // needed_ready / free_slots <= down_threshold, in millionths.
    needed_ready * MILLION <= millionths(down_threshold) * free_slots
}

fn clamp(desired: u64, autoscaling: &Autoscaling) -> u64 {
    let min = u64::try_from(autoscaling.min).unwrap_or(0);
    let desired = desired.max(min);
    match u64::try_from(autoscaling.max) {
        Ok(max) => desired.min(max.max(min)),
        // -1: no upper limit.
        Err(_) => desired,
    }
}

/// How many rooms a scheduler should have now: the one rule behind the health controller
/// (what it converges to) and the Metrics Reporter (what it reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRooms {
    pub decision: Decision,
    /// Autoscaling is on but its policy could not be evaluated: `roomsReplicas` stands in,
    /// and this says why.
    pub fallback: Option<AutoscaleError>,
}

/// The autoscaler's decision when autoscaling is enabled, else `roomsReplicas` (any
/// scale-down allowed). A policy that cannot be evaluated falls back to `roomsReplicas` as
/// well: the fleet keeps the size it was given rather than none.
pub fn desired_rooms(
    scheduler: &crate::Scheduler,
    fleet: Fleet,
    since_last_downscale: Option<Duration>,
) -> DesiredRooms {
    let replicas = Decision {
        desired: u64::try_from(scheduler.rooms_replicas).unwrap_or(0),
        downscale_allowed: true,
    };
    let Some(autoscaling) = scheduler.autoscaling.as_ref().filter(|a| a.enabled) else {
        return DesiredRooms {
            decision: replicas,
            fallback: None,
        };
    };
    let max_matches = u64::try_from(scheduler.max_matches()).unwrap_or(1);
    match decide(autoscaling, max_matches, fleet, since_last_downscale) {
        Ok(decision) => DesiredRooms {
            decision,
            fallback: None,
        },
        Err(e) => DesiredRooms {
            decision: replicas,
            fallback: Some(e),
        },
    }
}

/// The autoscaler's decision for `fleet`. `since_last_downscale` is `None` when the
/// scheduler never scaled down.
pub fn decide(
    autoscaling: &Autoscaling,
    max_matches: u64,
    fleet: Fleet,
    since_last_downscale: Option<Duration>,
) -> Result<Decision, AutoscaleError> {
    let params = &autoscaling.policy.parameters;
    let (unclamped, policy_allows_down) = match autoscaling.policy.kind.as_str() {
        POLICY_ROOM_OCCUPANCY => {
            let p = params
                .room_occupancy
                .as_ref()
                .ok_or(AutoscaleError::MissingParameters(POLICY_ROOM_OCCUPANCY))?;
            let desired =
                room_occupancy_desired(fleet.running_matches, p.ready_target, max_matches);
            let allowed = room_occupancy_may_downscale(
                fleet,
                desired,
                p.ready_target,
                p.down_threshold,
                max_matches,
            );
            (desired, allowed)
        }
        POLICY_FIXED_BUFFER => {
            let p = params
                .fixed_buffer
                .as_ref()
                .ok_or(AutoscaleError::MissingParameters(POLICY_FIXED_BUFFER))?;
            let amount = u64::try_from(p.amount).unwrap_or(0);
            (fleet.occupied_rooms.saturating_add(amount), true)
        }
        other => return Err(AutoscaleError::UnknownPolicy(other.to_string())),
    };
    let cooldown = Duration::from_secs(u64::try_from(autoscaling.cooldown).unwrap_or(0));
    let cooled_down = since_last_downscale.is_none_or(|elapsed| elapsed >= cooldown);
    Ok(Decision {
        desired: clamp(unclamped, autoscaling),
        downscale_allowed: policy_allows_down && cooled_down,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::scheduler::{
        AutoscalingPolicy, FixedBufferParams, PolicyParameters, RoomOccupancyParams,
    };

    fn occupancy(ready_target: f64, down_threshold: f64, min: i64, max: i64) -> Autoscaling {
        Autoscaling {
            enabled: true,
            min,
            max,
            cooldown: 60,
            policy: AutoscalingPolicy {
                kind: POLICY_ROOM_OCCUPANCY.into(),
                parameters: PolicyParameters {
                    room_occupancy: Some(RoomOccupancyParams {
                        ready_target,
                        down_threshold,
                    }),
                    fixed_buffer: None,
                },
            },
        }
    }

    fn busy(running: u64) -> Fleet {
        Fleet {
            current_rooms: running,
            occupied_rooms: running,
            running_matches: running,
        }
    }

    /// The spec's worked examples (maxMatches 1).
    #[test]
    fn the_spec_examples() {
        assert_eq!(room_occupancy_desired(80, 0.5, 1), 160);
        assert_eq!(room_occupancy_desired(40, 0.3, 1), 58);
        assert_eq!(
            room_occupancy_desired(5, 0.9, 1),
            50,
            "not 51 from floating point"
        );
        let decision = decide(&occupancy(0.5, 0.99, 1, -1), 1, busy(80), None).unwrap();
        assert_eq!(decision.desired, 160);
    }

    #[test]
    fn several_matches_per_room() {
        // 10 matches, half the slots free → 20 slots → 4 rooms of 5.
        assert_eq!(room_occupancy_desired(10, 0.5, 5), 4);
        assert_eq!(room_occupancy_desired(11, 0.5, 5), 5);
        assert_eq!(room_occupancy_desired(0, 0.5, 5), 0);
    }

    #[test]
    fn clamped_to_min_and_max() {
        let a = occupancy(0.5, 0.99, 3, 100);
        assert_eq!(decide(&a, 1, busy(0), None).unwrap().desired, 3);
        assert_eq!(decide(&a, 1, busy(80), None).unwrap().desired, 100);
        let unbounded = occupancy(0.5, 0.99, 3, -1);
        assert_eq!(decide(&unbounded, 1, busy(80), None).unwrap().desired, 160);
    }

    #[test]
    fn downscale_waits_for_policy_and_cooldown() {
        let a = occupancy(0.5, 0.9, 1, -1);
        // 100 rooms, 10 busy: desired 20; needed ready ceil(20×0.5)=10 of 90 free → allowed.
        let quiet = Fleet {
            current_rooms: 100,
            occupied_rooms: 10,
            running_matches: 10,
        };
        let d = decide(&a, 1, quiet, Some(Duration::from_secs(61))).unwrap();
        assert_eq!((d.desired, d.downscale_allowed), (20, true));
        assert_eq!(d.target(100), 20);
        let d = decide(&a, 1, quiet, Some(Duration::from_secs(10))).unwrap();
        assert!(!d.downscale_allowed, "within the cooldown");
        assert_eq!(d.target(100), 100, "keeps the current count");
        assert_eq!(d.target(5), 20, "scaling up ignores the cooldown");
        // No free slot at all: never down.
        assert!(!room_occupancy_may_downscale(busy(10), 5, 0.5, 0.9, 1));
    }

    #[test]
    fn fixed_buffer() {
        let a = Autoscaling {
            enabled: true,
            min: 1,
            max: 30,
            cooldown: 0,
            policy: AutoscalingPolicy {
                kind: POLICY_FIXED_BUFFER.into(),
                parameters: PolicyParameters {
                    room_occupancy: None,
                    fixed_buffer: Some(FixedBufferParams { amount: 5 }),
                },
            },
        };
        let fleet = Fleet {
            current_rooms: 12,
            occupied_rooms: 7,
            running_matches: 7,
        };
        assert_eq!(decide(&a, 1, fleet, None).unwrap().desired, 12);
        assert_eq!(decide(&a, 1, busy(40), None).unwrap().desired, 30, "max");
    }

    #[test]
    fn unknown_policy_is_an_error() {
        let mut a = occupancy(0.5, 0.9, 1, -1);
        a.policy.kind = "magic".into();
        assert_eq!(
            decide(&a, 1, busy(1), None),
            Err(AutoscaleError::UnknownPolicy("magic".into()))
        );
        let mut a = occupancy(0.5, 0.9, 1, -1);
        a.policy.parameters.room_occupancy = None;
        assert!(decide(&a, 1, busy(1), None).is_err());
    }

    #[test]
    fn desired_rooms_are_replicas_unless_the_autoscaler_decides() {
        let mut s = crate::Scheduler::with_command("s", "g", &["run"]);
        s.rooms_replicas = 7;
        assert_eq!(desired_rooms(&s, busy(80), None).decision.desired, 7);
        s.autoscaling = Some(occupancy(0.5, 0.9, 1, -1));
        let autoscaled = desired_rooms(&s, busy(80), None);
        assert_eq!(
            (autoscaled.decision.desired, autoscaled.fallback),
            (160, None)
        );
        s.autoscaling.as_mut().unwrap().policy.kind = "magic".into();
        let fallback = desired_rooms(&s, busy(80), None);
        assert_eq!(fallback.decision.desired, 7, "falls back to roomsReplicas");
        assert_eq!(
            fallback.fallback,
            Some(AutoscaleError::UnknownPolicy("magic".into()))
        );
    }

    proptest! {
        /// Enough rooms: at the desired size, the free share of slots is at least the
        /// ready target (up to the millionth rounding), and one room fewer would not be.
        #[test]
        fn occupancy_meets_the_ready_target_minimally(
            running in 0u64..100_000,
            target_ppm in 1u64..999_999,
            max_matches in 1u64..10,
        ) {
            let target = target_ppm as f64 / 1e6;
            let rooms = room_occupancy_desired(running, target, max_matches);
            let slots = u128::from(rooms * max_matches);
            let free = slots - u128::from(running).min(slots);
            prop_assert!(slots >= u128::from(running));
            // free / slots >= target  ⇔  free × 1e6 >= target_ppm × slots
            prop_assert!(free * MILLION >= u128::from(target_ppm) * slots);
            if rooms > 0 && running > 0 {
                let fewer = u128::from((rooms - 1) * max_matches);
                let ok_fewer = fewer >= u128::from(running)
                    && (fewer - u128::from(running)) * MILLION >= u128::from(target_ppm) * fewer;
                prop_assert!(!ok_fewer, "{} rooms would do", rooms - 1);
            }
        }

        /// The decision is always within [min, max].
        #[test]
        fn always_within_bounds(
            running in 0u64..10_000,
            min in 1i64..50,
            span in 0i64..200,
            unbounded in any::<bool>(),
        ) {
            let max = if unbounded { -1 } else { min + span };
            let d = decide(&occupancy(0.3, 0.9, min, max), 1, busy(running), None).unwrap();
            prop_assert!(d.desired >= min as u64);
            if !unbounded {
                prop_assert!(d.desired <= max as u64);
            }
        }
    }
}
