//! Host ports: how many rooms a scheduler's port ranges can hold at once. Every container
//! port of a room takes a host port from its range (the port's own `hostPortRange`, else the
//! scheduler's `portRange`), unique among the scheduler's live rooms.

use std::collections::BTreeMap;

use crate::Scheduler;
use crate::validation::ValidationErrors;

/// Rooms the ranges can hold at once; `None` when no port takes a host port.
pub fn host_port_capacity(scheduler: &Scheduler) -> Option<u64> {
    let mut ports_per_range: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for container in &scheduler.spec.containers {
        for port in &container.ports {
            if let Some(range) = port.host_port_range.or(scheduler.port_range) {
                *ports_per_range.entry((range.start, range.end)).or_default() += 1;
            }
        }
    }
    ports_per_range
        .into_iter()
        // Any i64 can arrive here (validation reports bad ranges, but counts them too).
        .map(|((start, end), per_room)| {
            u64::try_from(end.saturating_sub(start).saturating_add(1)).unwrap_or(0) / per_room
        })
        .min()
}

/// Refuses counts of rooms the ranges can never hold: such rooms would wait for a port
/// forever and fail every health round.
pub(crate) fn check_capacity(scheduler: &Scheduler, errs: &mut ValidationErrors) {
    let Some(capacity) = host_port_capacity(scheduler) else {
        return;
    };
    let too_many = |rooms: i64| u64::try_from(rooms).is_ok_and(|rooms| rooms > capacity);
    let explain = |rooms: i64| {
        format!(
            "{rooms} rooms do not fit: the host port ranges hold {capacity} rooms at once \
             (widen portRange or use fewer rooms)"
        )
    };
    if too_many(scheduler.rooms_replicas) {
        errs.push("roomsReplicas", explain(scheduler.rooms_replicas));
    }
    if let Some(autoscaling) = scheduler.autoscaling.as_ref().filter(|a| a.enabled) {
        if too_many(autoscaling.min) {
            errs.push("autoscaling.min", explain(autoscaling.min));
        }
        if too_many(autoscaling.max) {
            errs.push("autoscaling.max", explain(autoscaling.max));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::PortRange;
    use crate::scheduler::fixtures::scheduler;

    #[test]
    fn capacity_is_the_tightest_range_over_the_ports_drawing_from_it() {
        let mut s = scheduler();
        s.port_range = Some(PortRange {
            start: 45000,
            end: 45009,
        });
        let ports = s.spec.containers[0].ports.len() as u64;
        assert!(ports > 0, "the fixture has ports");
        assert_eq!(host_port_capacity(&s), Some(10 / ports));
        s.spec.containers[0].ports.clear();
        assert_eq!(host_port_capacity(&s), None, "no host ports, no limit");
    }

    #[test]
    fn extreme_ranges_neither_overflow_nor_panic() {
        let mut s = scheduler();
        for (start, end) in [(0, i64::MAX), (i64::MIN, i64::MAX), (i64::MAX, i64::MIN)] {
            s.port_range = Some(PortRange { start, end });
            let _ = host_port_capacity(&s);
            assert!(s.validate().is_err(), "{start}..{end} is not a port range");
        }
    }

    #[test]
    fn more_rooms_than_ports_are_refused_naming_the_field() {
        let mut s = scheduler();
        s.port_range = Some(PortRange {
            start: 45000,
            end: 45001,
        });
        s.spec.containers[0].ports.truncate(1);
        s.rooms_replicas = 3;
        let errs = s.validate().unwrap_err();
        assert!(errs.has_field("roomsReplicas"), "{errs}");
        if let Some(autoscaling) = s.autoscaling.as_mut() {
            autoscaling.enabled = true;
            autoscaling.min = 1;
            autoscaling.max = 5;
        }
        s.rooms_replicas = 2;
        let errs = s.validate().unwrap_err();
        assert!(!errs.has_field("roomsReplicas"), "{errs}");
        assert_eq!(
            s.autoscaling.is_some(),
            errs.has_field("autoscaling.max"),
            "{errs}"
        );
        s.autoscaling = None;
        s.validate().unwrap();
    }
}
