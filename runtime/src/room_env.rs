//! What every room gets from its runtime, whatever the runtime: host ports from the
//! scheduler's range, and the environment variables that let it reach the rooms API.

use fixedbitset::FixedBitSet;
use maestro_core::room::RoomPort;
use maestro_core::scheduler::{ContainerPort, PortRange};
use maestro_core::{RoomTokenSecret, Scheduler, Version};

use crate::RuntimeError;

/// Environment variables every room gets, like a pod's.
pub const ENV_SCHEDULER: &str = "MAESTRO_SCHEDULER_NAME";
pub const ENV_ROOM_ID: &str = "MAESTRO_ROOM_ID";
pub const ENV_ROOMS_API: &str = "MAESTRO_ROOMS_API_URL";
pub const ENV_VERSION: &str = "MAESTRO_ROOM_VERSION";
pub const ENV_ROOMS_GRPC: &str = "MAESTRO_ROOMS_GRPC_URL";
pub const ENV_ROOM_TOKEN: &str = "MAESTRO_ROOM_TOKEN";
/// Prefix of one variable per named port: `MAESTRO_PORT_GAME=40001`.
pub const ENV_PORT_PREFIX: &str = "MAESTRO_PORT_";

/// How rooms reach Maestro: the same for every room a runtime starts.
#[derive(Debug, Clone, Default)]
pub struct RoomsApiEndpoints {
    /// Base URL of the rooms API the rooms ping (`http://127.0.0.1:8070`).
    pub http_url: String,
    /// The rooms API's gRPC address, for rooms that speak gRPC.
    pub grpc_url: Option<String>,
    /// Gives each room its token (`MAESTRO_ROOM_TOKEN`); `None` when tokens are off.
    pub token_secret: Option<RoomTokenSecret>,
}

/// The variables Maestro adds to a room's own environment, in a stable order.
pub fn maestro_env(
    endpoints: &RoomsApiEndpoints,
    scheduler: &str,
    version: Version,
    room_id: &str,
    ports: &[RoomPort],
) -> Vec<(String, String)> {
    let mut env = vec![
        (ENV_SCHEDULER.to_string(), scheduler.to_string()),
        (ENV_ROOM_ID.to_string(), room_id.to_string()),
        (ENV_VERSION.to_string(), version.to_string()),
        (ENV_ROOMS_API.to_string(), endpoints.http_url.clone()),
    ];
    if let Some(url) = &endpoints.grpc_url {
        env.push((ENV_ROOMS_GRPC.to_string(), url.clone()));
    }
    if let Some(secret) = &endpoints.token_secret {
        env.push((ENV_ROOM_TOKEN.to_string(), secret.token(scheduler, room_id)));
    }
    for port in ports {
        env.push((
            format!("{ENV_PORT_PREFIX}{}", env_suffix(&port.name)),
            port.port.to_string(),
        ));
    }
    env
}

fn env_suffix(port_name: &str) -> String {
    port_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The host ports a scheduler's rooms hold: one bit per port (8 KiB), so the lowest free
/// port is found a word (64 ports) at a time. A `BTreeSet` walked port by port made each
/// creation cost as many steps as the scheduler had rooms packed at the bottom of its range
/// (~0.25 s of a 10 000-room scale-up, under the port book's lock; docs/benchmarks.md).
#[derive(Clone)]
pub struct UsedPorts(FixedBitSet);

impl Default for UsedPorts {
    fn default() -> Self {
        Self(FixedBitSet::with_capacity(usize::from(u16::MAX) + 1))
    }
}

impl std::fmt::Debug for UsedPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.ones()).finish()
    }
}

impl UsedPorts {
    pub fn insert(&mut self, port: u16) {
        self.0.insert(usize::from(port));
    }

    pub fn remove(&mut self, port: u16) {
        self.0.remove(usize::from(port));
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.contains(usize::from(port))
    }

    /// Adds every port `other` holds.
    pub fn union_with(&mut self, other: &UsedPorts) {
        self.0.union_with(&other.0);
    }

    /// The lowest port of `lo..=hi` not used and not `given`.
    fn lowest_free(&self, lo: u16, hi: u16, given: impl Fn(u16) -> bool) -> Option<u16> {
        let words = self.0.as_slice();
        let bits = usize::BITS as usize;
        let (mut candidate, hi) = (usize::from(lo), usize::from(hi));
        while candidate <= hi {
            let word = words.get(candidate / bits).copied().unwrap_or(0);
            // The free ports of this word from `candidate` up, lowest first.
            let free = !word >> (candidate % bits);
            if free == 0 {
                candidate = (candidate / bits + 1) * bits;
                continue;
            }
            candidate += free.trailing_zeros() as usize;
            let port = u16::try_from(candidate).ok().filter(|_| candidate <= hi)?;
            if !given(port) {
                return Some(port);
            }
            candidate += 1;
        }
        None
    }
}

impl Extend<u16> for UsedPorts {
    fn extend<I: IntoIterator<Item = u16>>(&mut self, ports: I) {
        for port in ports {
            self.insert(port);
        }
    }
}

impl FromIterator<u16> for UsedPorts {
    fn from_iter<I: IntoIterator<Item = u16>>(ports: I) -> Self {
        let mut used = Self::default();
        used.extend(ports);
        used
    }
}

/// Lowest free host port per named port (in the port's own range, else the scheduler's),
/// avoiding every port in `used` and every port given earlier in this call.
pub fn allocate_ports<'a>(
    scheduler: &Scheduler,
    ports: impl IntoIterator<Item = &'a ContainerPort>,
    used: &UsedPorts,
) -> Result<Vec<RoomPort>, RuntimeError> {
    let mut allocated: Vec<RoomPort> = Vec::new();
    for port in ports {
        let range: PortRange = port
            .host_port_range
            .or(scheduler.port_range)
            .ok_or_else(|| {
                RuntimeError::Invalid(format!("port {} has no port range", port.name))
            })?;
        let lo = u16::try_from(range.start.max(1)).unwrap_or(u16::MAX);
        let hi = u16::try_from(range.end.min(65535)).unwrap_or(u16::MAX);
        let given = |p: u16| allocated.iter().any(|a| a.port == p);
        let free = used.lowest_free(lo, hi, given).ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "no free host port in {}-{} for port {}",
                range.start, range.end, port.name
            ))
        })?;
        allocated.push(RoomPort {
            name: port.name.clone(),
            // Addresses carry the protocol as Kubernetes writes it (Maestro reads it back
            // from the pod: `UDP`), whatever case the scheduler used.
            protocol: port.protocol.to_ascii_uppercase(),
            port: free,
        });
    }
    Ok(allocated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, range: Option<(i64, i64)>) -> ContainerPort {
        ContainerPort {
            name: name.into(),
            protocol: "UDP".into(),
            port: 7777,
            host_port: 0,
            host_port_range: range.map(|(start, end)| PortRange { start, end }),
        }
    }

    #[test]
    fn ports_skip_used_and_each_other_and_fail_when_the_range_is_full() {
        let mut scheduler = Scheduler::with_command("s", "g", &["x"]);
        scheduler.port_range = Some(PortRange {
            start: 40000,
            end: 40003,
        });
        let used = UsedPorts::from_iter([40000, 40002]);
        let ports = [port("game", None), port("debug", None)];
        let got = allocate_ports(&scheduler, &ports, &used).unwrap();
        assert_eq!(
            got.iter().map(|p| p.port).collect::<Vec<_>>(),
            vec![40001, 40003]
        );
        let full = UsedPorts::from_iter([40000, 40001, 40002, 40003]);
        let err = allocate_ports(&scheduler, &ports, &full).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let own = [port("game", Some((50000, 50000)))];
        assert_eq!(
            allocate_ports(&scheduler, &own, &full).unwrap()[0].port,
            50000
        );
    }

    /// The word scan agrees with probing every candidate, on packed, sparse and full books,
    /// across word boundaries and up to port 65535.
    #[test]
    fn lowest_free_matches_probing_each_port() {
        let books: [Vec<u16>; 8] = [
            vec![],
            (100..200).collect(),
            (100..200).filter(|p| p % 7 != 3).collect(),
            vec![99, 100, 101, 150, 199, 200, 201],
            (90..=210).collect(),
            (0..=191).collect(),
            (60..=70).chain(127..=129).collect(),
            (65400..=65535).collect(),
        ];
        for book in books {
            let used: UsedPorts = book.iter().copied().collect();
            for (lo, hi) in [
                (100, 199),
                (150, 160),
                (199, 199),
                (120, 110),
                (63, 65),
                (64, 64),
                (1, 300),
                (65530, 65535),
                (65535, 65535),
                (65000, 65535),
            ] {
                for given in [
                    vec![],
                    vec![100, 102],
                    vec![103, 150, 151],
                    vec![65, 71, 130],
                ] {
                    let probe = (lo..=hi).find(|p| !book.contains(p) && !given.contains(p));
                    let scan = used.lowest_free(lo, hi, |p| given.contains(&p));
                    assert_eq!(scan, probe, "{lo}-{hi} given {given:?}");
                }
            }
        }
    }

    #[test]
    fn used_ports_insert_remove_and_contain() {
        let mut used = UsedPorts::default();
        used.extend([1, 64, 65535]);
        assert!(used.contains(64) && used.contains(65535) && !used.contains(63));
        used.remove(64);
        assert!(!used.contains(64));
        assert_eq!(format!("{used:?}"), "{1, 65535}");
    }

    #[test]
    fn env_names_each_port_and_carries_the_token() {
        let endpoints = RoomsApiEndpoints {
            http_url: "http://rooms:8070".into(),
            grpc_url: None,
            token_secret: Some(RoomTokenSecret::new("0123456789abcdef0123").unwrap()),
        };
        let ports = [RoomPort {
            name: "game-udp".into(),
            protocol: "UDP".into(),
            port: 40001,
        }];
        let env = maestro_env(&endpoints, "s", Version::FIRST, "r1", &ports);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("MAESTRO_PORT_GAME_UDP").as_deref(), Some("40001"));
        assert_eq!(get(ENV_ROOM_ID).as_deref(), Some("r1"));
        let secret = endpoints.token_secret.as_ref().unwrap();
        assert_eq!(get(ENV_ROOM_TOKEN), Some(secret.token("s", "r1")));
        assert_eq!(get(ENV_ROOMS_GRPC), None);
    }
}
