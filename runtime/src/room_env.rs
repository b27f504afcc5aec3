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
    let mut taken = used.clone();
    let mut allocated = Vec::new();
    for port in ports {
        let range: PortRange = port
            .host_port_range
            .or(scheduler.port_range)
            .ok_or_else(|| {
                RuntimeError::Invalid(format!("port {} has no port range", port.name))
            })?;
        let lo = u16::try_from(range.start.max(1)).unwrap_or(u16::MAX);
        let hi = u16::try_from(range.end.min(65535)).unwrap_or(u16::MAX);
        let free = (lo..=hi).find(|p| !taken.contains(p)).ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "no free host port in {}-{} for port {}",
                range.start, range.end, port.name
            ))
        })?;
        taken.insert(free);
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
