//! Deterministic names: workflow ids and room ids. Room ids derive from the operation id and
//! the room's index in it, so a retried activity creates the same room, never a second one.

/// Room ids must stay valid Kubernetes label values (<= 63 characters).
const ROOM_PREFIX_MAX: usize = 54;

const SCHEDULER_WORKFLOW_PREFIX: &str = "scheduler:";

pub fn scheduler_workflow_id(scheduler: &str) -> String {
    format!("{SCHEDULER_WORKFLOW_PREFIX}{scheduler}")
}

/// The scheduler a `scheduler:{name}` workflow id belongs to.
pub fn scheduler_of_workflow_id(workflow_id: &str) -> Option<&str> {
    workflow_id.strip_prefix(SCHEDULER_WORKFLOW_PREFIX)
}

pub fn operation_workflow_id(scheduler: &str, operation_id: &str) -> String {
    format!("op:{scheduler}:{operation_id}")
}

/// `{scheduler}-{8 base36 chars}`, stable for a given operation and index.
pub fn room_id(scheduler: &str, operation_id: &str, index: u32) -> String {
    let prefix = &scheduler[..scheduler.len().min(ROOM_PREFIX_MAX)];
    let prefix = prefix.trim_end_matches('-');
    let hash = fnv1a64(format!("{scheduler}/{operation_id}/{index}").as_bytes());
    format!("{prefix}-{}", base36(hash, 8))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn scheduler_workflow_ids_round_trip() {
        let id = super::scheduler_workflow_id("my-game");
        assert_eq!(super::scheduler_of_workflow_id(&id), Some("my-game"));
        assert_eq!(super::scheduler_of_workflow_id("op:my-game:1"), None);
    }

    use super::*;
    use crate::validation::check_dns_label;
    use proptest::prelude::*;

    #[test]
    fn ids() {
        assert_eq!(scheduler_workflow_id("s1"), "scheduler:s1");
        assert_eq!(operation_workflow_id("s1", "abc"), "op:s1:abc");
        assert_eq!(room_id("s1", "op", 0), room_id("s1", "op", 0));
        assert_ne!(room_id("s1", "op", 0), room_id("s1", "op", 1));
        assert_ne!(room_id("s1", "op", 0), room_id("s1", "op2", 0));
    }

    proptest! {
        #[test]
        fn room_ids_are_dns_labels(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", op in ".{0,40}", i in any::<u32>()) {
            let id = room_id(&s, &op, i);
            prop_assert!(check_dns_label(&id).is_ok(), "{}", id);
        }

        #[test]
        fn no_collisions_within_an_operation(op in "[a-f0-9]{32}") {
            let ids: std::collections::BTreeSet<_> = (0..1000).map(|i| room_id("sched", &op, i)).collect();
            prop_assert_eq!(ids.len(), 1000);
        }
    }
}
