//! The scheduler spec: what kind of room to run and how many.
//!
//! JSON field names follow Maestro's API (lowerCamelCase), so Maestro clients can send the
//! same documents. Numeric fields that Maestro constrains (`roomsReplicas >= 0`, ...) are
//! signed here on purpose: a `-1` deserialises and is then rejected by validation with the
//! field's path, instead of failing as an opaque type error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

/// One kind of game room, as Maestro's API describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scheduler {
    pub name: String,
    pub game: String,
    /// Set by Maestro; ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SchedulerState>,
    /// Set by Maestro; ignored on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "created_at")]
    pub created_at: Option<Timestamp>,
    #[serde(alias = "max_surge")]
    pub max_surge: String,
    #[serde(default)]
    #[serde(alias = "rooms_replicas")]
    #[serde(deserialize_with = "proto_int")]
    pub rooms_replicas: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "port_range")]
    pub port_range: Option<PortRange>,
    pub spec: Spec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    #[serde(default)]
    pub forwarders: Vec<Forwarder>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "match_allocation")]
    pub match_allocation: Option<MatchAllocation>,
    /// Extension: rooms must send their per-room token (the default). `false` lets game rooms
    /// written for Maestro, which send none, keep working; a wrong token is refused anyway.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub room_token_required: bool,
    /// Extension: roll a failing rollout back (defaults apply when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<AutoRollback>,
}

/// Extension: during a rollout, when at least `minRooms` rooms of the new version have been
/// seen and `errorShare` of them failed (error, or not ready in time), the previous version
/// is made active again and the new rooms are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollback {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_error_share")]
    pub error_share: f64,
    #[serde(default = "default_min_rooms")]
    pub min_rooms: u32,
}

impl Default for AutoRollback {
    fn default() -> Self {
        Self {
            enabled: true,
            error_share: default_error_share(),
            min_rooms: default_min_rooms(),
        }
    }
}

fn default_error_share() -> f64 {
    0.5
}

fn default_min_rooms() -> u32 {
    3
}

/// protojson reads an integer field from a JSON number or from a string holding one
/// (`"roomsReplicas": "6"`, `"timeout": "1000"`, as Go clients write int64).
pub(crate) fn proto_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Int;
    impl serde::de::Visitor<'_> for Int {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer, or a string holding one")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
            v.parse()
                .map_err(|_| E::custom(format!("{v:?} is not an integer")))
        }
    }
    d.deserialize_any(Int)
}

/// [`proto_int`] for a field that may be absent or `null`.
pub(crate) fn proto_int_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "proto_int")] i64);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Scheduler {
    /// A minimal valid scheduler whose rooms run one container with `command`, no ports and
    /// no replicas; callers adjust what they need (the dev sample, tests).
    pub fn with_command(name: &str, game: &str, command: &[&str]) -> Self {
        Self {
            name: name.into(),
            game: game.into(),
            state: None,
            created_at: None,
            max_surge: "1".into(),
            rooms_replicas: 0,
            port_range: None,
            spec: Spec {
                version: String::new(),
                termination_grace_period: "30s".into(),
                toleration: None,
                affinity: None,
                restart_policy: None,
                containers: vec![Container {
                    name: "room".into(),
                    image: "local".into(),
                    image_pull_policy: Some("IfNotPresent".into()),
                    command: command.iter().map(|s| s.to_string()).collect(),
                    environment: Vec::new(),
                    requests: Some(Resources::of("100m", "64Mi")),
                    limits: Some(Resources::of("500m", "256Mi")),
                    ports: Vec::new(),
                }],
            },
            autoscaling: None,
            forwarders: Vec::new(),
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            match_allocation: None,
            room_token_required: true,
            auto_rollback: None,
        }
    }

    /// The pod restart policy: Maestro's default, `Never`, when none was sent (a room that
    /// exits is replaced, not restarted in place); what Maestro answers in either case.
    pub fn restart_policy(&self) -> &str {
        self.spec.restart_policy.as_deref().unwrap_or("Never")
    }

    /// Matches a room can host at once (Maestro's default is 1).
    pub fn max_matches(&self) -> i64 {
        self.match_allocation().max_matches
    }

    /// The match allocation, Maestro's default (`maxMatches: 1`) when none was sent; what
    /// Maestro answers in either case.
    pub fn match_allocation(&self) -> MatchAllocation {
        self.match_allocation
            .unwrap_or(MatchAllocation { max_matches: 1 })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerState {
    Creating,
    InSync,
    OnError,
    Terminating,
}

impl SchedulerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::InSync => "in-sync",
            Self::OnError => "on-error",
            Self::Terminating => "terminating",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortRange {
    #[serde(deserialize_with = "proto_int")]
    pub start: i64,
    #[serde(deserialize_with = "proto_int")]
    pub end: i64,
}

/// Everything under `spec`: a change here is a major version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Computed by Maestro, never trusted from clients.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(alias = "termination_grace_period")]
    pub termination_grace_period: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    pub containers: Vec<Container>,
    /// The pod's restart policy (Maestro: `Never` when absent).
    #[serde(
        default,
        alias = "restart_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "image_pull_policy")]
    pub image_pull_policy: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub environment: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "value_from")]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "field_ref")]
    pub field_ref: Option<FieldRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "secret_key_ref")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    #[serde(alias = "field_path")]
    pub field_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// Kubernetes quantities, kept as the strings the user wrote (`"100m"`, `"20Mi"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

impl Resources {
    pub fn of(cpu: &str, memory: &str) -> Self {
        Self {
            memory: Some(memory.into()),
            cpu: Some(cpu.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: String,
    pub protocol: String,
    #[serde(deserialize_with = "proto_int")]
    pub port: i64,
    /// A fixed host port (Maestro's `hostPort`; 0 = allocated from the port range).
    #[serde(default, alias = "host_port")]
    #[serde(deserialize_with = "proto_int")]
    pub host_port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "host_port_range")]
    pub host_port_range: Option<PortRange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Autoscaling {
    #[serde(default)]
    pub enabled: bool,
    #[serde(deserialize_with = "proto_int")]
    pub min: i64,
    #[serde(deserialize_with = "proto_int")]
    pub max: i64,
    #[serde(default)]
    #[serde(deserialize_with = "proto_int")]
    pub cooldown: i64,
    pub policy: AutoscalingPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AutoscalingPolicy {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub parameters: PolicyParameters,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "room_occupancy")]
    pub room_occupancy: Option<RoomOccupancyParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(alias = "fixed_buffer")]
    pub fixed_buffer: Option<FixedBufferParams>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomOccupancyParams {
    #[serde(alias = "ready_target")]
    pub ready_target: f64,
    #[serde(default = "default_down_threshold")]
    #[serde(alias = "down_threshold")]
    pub down_threshold: f64,
}

fn default_down_threshold() -> f64 {
    0.99
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FixedBufferParams {
    #[serde(deserialize_with = "proto_int")]
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Forwarder {
    pub name: String,
    #[serde(default)]
    pub enable: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ForwarderOptions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForwarderOptions {
    /// Milliseconds.
    #[serde(default)]
    #[serde(deserialize_with = "proto_int")]
    pub timeout: i64,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchAllocation {
    #[serde(alias = "max_matches")]
    #[serde(deserialize_with = "proto_int")]
    pub max_matches: i64,
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A valid scheduler as a Maestro client would send it.
    pub fn scheduler_json() -> serde_json::Value {
        serde_json::json!({
            "name": "scheduler-test",
            "game": "game-test",
            "maxSurge": "30%",
            "roomsReplicas": 2,
            "portRange": {"start": 40000, "end": 60000},
            "spec": {
                "terminationGracePeriod": "100s",
                "toleration": "maestro",
                "affinity": "maestro-dedicated",
                "containers": [{
                    "name": "server",
                    "image": "registry/game:1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/server", "--port", "7777"],
                    "environment": [
                        {"name": "A", "value": "b"},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                    ],
                    "requests": {"memory": "20Mi", "cpu": "100m"},
                    "limits": {"memory": "200Mi", "cpu": "200m"},
                    "ports": [{"name": "game", "protocol": "udp", "port": 7777, "hostPort": 0}]
                }]
            },
            "autoscaling": {
                "enabled": true, "min": 1, "max": 10, "cooldown": 60,
                "policy": {"type": "roomOccupancy",
                           "parameters": {"roomOccupancy": {"readyTarget": 0.5, "downThreshold": 0.99}}}
            },
            "forwarders": [{"name": "matchmaker", "enable": true, "type": "gRPC",
                            "address": "mm:80", "options": {"timeout": 1000, "metadata": {"k": "v"}}}],
            "annotations": {"a": "1"},
            "labels": {"l": "2"},
            "matchAllocation": {"maxMatches": 1}
        })
    }

    pub fn scheduler() -> Scheduler {
        serde_json::from_value(scheduler_json()).expect("fixture parses")
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn maestro_json_round_trips_with_the_same_field_names() {
        let json = scheduler_json();
        let parsed: Scheduler = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(parsed.spec.containers[0].environment.len(), 3);
        assert_eq!(
            parsed.autoscaling.as_ref().unwrap().policy.kind,
            "roomOccupancy"
        );
        let back = serde_json::to_value(&parsed).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn state_serialises_in_kebab_case() {
        assert_eq!(
            serde_json::to_value(SchedulerState::InSync).unwrap(),
            "in-sync"
        );
        assert_eq!(SchedulerState::OnError.as_str(), "on-error");
    }

    #[test]
    fn with_command_is_valid() {
        let s = Scheduler::with_command("s1", "g", &["game-room"]);
        s.validate().unwrap();
        assert_eq!(s.spec.containers[0].command, ["game-room"]);
    }

    #[test]
    fn max_matches_defaults_to_one() {
        let mut s = scheduler();
        s.match_allocation = None;
        assert_eq!(s.max_matches(), 1);
    }
}
