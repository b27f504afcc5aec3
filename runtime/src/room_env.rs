//! What every room gets from its runtime, whatever the runtime: host ports from the
//! scheduler's range, and the environment variables that let it reach the rooms API.

use std::collections::BTreeSet;

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

/// Lowest free host port per named port (in the port's own range, else the scheduler's),
/// avoiding every port in `used` and every port given earlier in this call.
pub fn allocate_ports<'a>(
    scheduler: &Scheduler,
    ports: impl IntoIterator<Item = &'a ContainerPort>,
    used: &BTreeSet<u16>,
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
        let free = lowest_free(lo, hi, used, given).ok_or_else(|| {
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

/// The lowest port of `lo..=hi` neither in `used` nor `given`. Walks `used` in order from
/// `lo` instead of probing it per candidate: a scheduler with thousands of rooms has its ports
/// packed from the bottom of the range, and this runs once per room created.
fn lowest_free(lo: u16, hi: u16, used: &BTreeSet<u16>, given: impl Fn(u16) -> bool) -> Option<u16> {
    if lo > hi {
        return None;
    }
    let mut taken = used.range(lo..=hi).copied().peekable();
    let mut candidate = lo;
    loop {
        while taken.next_if(|&p| p < candidate).is_some() {}
        if taken.peek() != Some(&candidate) && !given(candidate) {
            return Some(candidate);
        }
        candidate = candidate.checked_add(1).filter(|&c| c <= hi)?;
    }
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
        let used = BTreeSet::from([40000, 40002]);
        let ports = [port("game", None), port("debug", None)];
        let got = allocate_ports(&scheduler, &ports, &used).unwrap();
        assert_eq!(
            got.iter().map(|p| p.port).collect::<Vec<_>>(),
            vec![40001, 40003]
        );
        let full = BTreeSet::from([40000, 40001, 40002, 40003]);
        let err = allocate_ports(&scheduler, &ports, &full).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let own = [port("game", Some((50000, 50000)))];
        assert_eq!(
            allocate_ports(&scheduler, &own, &full).unwrap()[0].port,
            50000
        );
    }

    /// The walk agrees with probing every candidate, on packed, sparse and full books.
    #[test]
    fn lowest_free_matches_probing_each_port() {
        let books: [Vec<u16>; 5] = [
            vec![],
            (100..200).collect(),
            (100..200).filter(|p| p % 7 != 3).collect(),
            vec![99, 100, 101, 150, 199, 200, 201],
            (90..=210).collect(),
        ];
        for book in books {
            let used: BTreeSet<u16> = book.into_iter().collect();
            for (lo, hi) in [
                (100, 199),
                (150, 160),
                (199, 199),
                (120, 110),
                (65530, 65535),
            ] {
                for given in [vec![], vec![100, 102], vec![103, 150, 151]] {
                    let probe = (lo..=hi).find(|p| !used.contains(p) && !given.contains(p));
                    let walk = lowest_free(lo, hi, &used, |p| given.contains(&p));
                    assert_eq!(walk, probe, "{lo}-{hi} given {given:?}");
                }
            }
        }
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
