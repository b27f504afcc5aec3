//! Pure translations between Maestro's rooms and Kubernetes objects: the Pod a room becomes,
//! the instance status a Pod shows, and the address a room is reached at. No I/O here, so
//! the golden-file tests pin the exact wire shape.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Affinity, Container as PodContainer, ContainerPort as PodPort, ContainerStatus,
    EnvVar as PodEnvVar, EnvVarSource as PodEnvVarSource, Namespace, Node, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, Pod, PodSpec,
    ResourceRequirements, Secret, SecretKeySelector, Toleration,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use maestro_core::room::{RoomAddress, RoomPort};
use maestro_core::scheduler::{Container, Resources};
use maestro_core::time::parse_duration;
use maestro_core::{InstanceStatus, Scheduler, Version};

use crate::RoomInstance;
use crate::room_env::{ENV_ROOM_TOKEN, RoomsApiEndpoints, maestro_env};

/// Labels Maestro's own Kubernetes runtime puts on pods (kept for dashboards and tooling
/// written against it), plus the room id.
pub const LABEL_HERITAGE: &str = "heritage";
pub const HERITAGE: &str = "maestro";
pub const LABEL_SCHEDULER: &str = "maestro-scheduler";
pub const LABEL_VERSION: &str = "version";
pub const LABEL_ROOM: &str = "maestro-room";
/// Which Maestro process created the pod (a random id per process): its port rereads skip
/// its own pods, whose ports it holds already.
pub const LABEL_CREATOR: &str = "maestro-creator";
/// Selects every pod Maestro manages, in every namespace.
pub const MANAGED_SELECTOR: &str = "heritage=maestro";
/// Toleration key Maestro uses; the scheduler's `toleration` is its value.
const TOLERATION_KEY: &str = "dedicated";
const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// The pod's host ports ("20001,20002"), so the port book reads them from a metadata-only list
/// instead of every pod's spec.
pub const ANNOTATION_HOST_PORTS: &str = "maestro-host-ports";
/// The disruption budget of a scheduler's namespace.
pub const DISRUPTION_BUDGET_NAME: &str = "maestro-occupied-rooms";

/// Waiting reasons that mean the room will not start without a change.
const FATAL_WAITING_REASONS: [&str; 10] = [
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "ErrImagePullBackOff",
    "InvalidImageName",
    "ErrInvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The namespace of a scheduler, labelled so it can be told apart from others.
/// The label by which Pod Security admission enforces a level in a namespace.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// A scheduler's namespace, labelled as Maestro's (the only namespaces it changes or
/// deletes) and, when `pod_security` is given, with the Pod Security level its rooms need:
/// host ports are refused below `privileged`.
pub fn namespace(scheduler: &str, pod_security: Option<&str>) -> Namespace {
    let mut labels = BTreeMap::from([
        (LABEL_HERITAGE.to_string(), HERITAGE.to_string()),
        (LABEL_SCHEDULER.to_string(), scheduler.to_string()),
    ]);
    if let Some(level) = pod_security {
        labels.insert(POD_SECURITY_ENFORCE.to_string(), level.to_string());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(scheduler.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The key of a room's token in its Secret.
pub const TOKEN_KEY: &str = "token";

/// The Secret holding a room's token: `{room}-token` in the scheduler's namespace. Pods get
/// the token from it (`secretKeyRef`), so reading pods does not reveal tokens.
pub fn token_secret_name(room_id: &str) -> String {
    format!("{room_id}-token")
}

/// A room's token Secret; `None` when room tokens are off.
pub fn room_token_secret(
    scheduler: &str,
    room_id: &str,
    endpoints: &RoomsApiEndpoints,
) -> Option<Secret> {
    let token = endpoints.token_secret.as_ref()?.token(scheduler, room_id);
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(token_secret_name(room_id)),
            labels: Some(BTreeMap::from([
                (LABEL_HERITAGE.to_string(), HERITAGE.to_string()),
                (LABEL_SCHEDULER.to_string(), scheduler.to_string()),
                (LABEL_ROOM.to_string(), room_id.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token)])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// Every container port of the scheduler, in pod order (host ports are allocated for these).
pub fn container_ports(
    scheduler: &Scheduler,
) -> impl Iterator<Item = &maestro_core::scheduler::ContainerPort> {
    scheduler
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
}

/// The Pod of one room. `host_ports` holds one allocated port per [`container_ports`] entry,
/// in the same order.
pub fn room_pod(
    scheduler: &Scheduler,
    version: Version,
    room_id: &str,
    host_ports: &[RoomPort],
    endpoints: &RoomsApiEndpoints,
) -> Pod {
    let mut labels = scheduler.labels.clone();
    // Ours win: a scheduler label must not hide a pod from Maestro's selectors.
    labels.extend([
        (LABEL_HERITAGE.to_string(), HERITAGE.to_string()),
        (LABEL_SCHEDULER.to_string(), scheduler.name.clone()),
        (LABEL_VERSION.to_string(), version.to_string()),
        (LABEL_ROOM.to_string(), room_id.to_string()),
    ]);
    let mut annotations = BTreeMap::from([(SAFE_TO_EVICT.to_string(), "true".to_string())]);
    annotations.extend(scheduler.annotations.clone());
    let ports: Vec<String> = host_ports.iter().map(|p| p.port.to_string()).collect();
    annotations.insert(ANNOTATION_HOST_PORTS.to_string(), ports.join(","));
    let extra_env: Vec<PodEnvVar> =
        maestro_env(endpoints, &scheduler.name, version, room_id, host_ports)
            .into_iter()
            .map(|(name, value)| {
                // The token comes from the room's Secret, not the pod spec.
                let secret = (name == ENV_ROOM_TOKEN).then(|| PodEnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: token_secret_name(room_id),
                        key: TOKEN_KEY.to_string(),
                        optional: None,
                    }),
                    ..PodEnvVarSource::default()
                });
                PodEnvVar {
                    name,
                    value: if secret.is_some() { None } else { Some(value) },
                    value_from: secret,
                }
            })
            .collect();
    let mut remaining_ports = host_ports;
    let containers = scheduler
        .spec
        .containers
        .iter()
        .map(|container| {
            let (own, rest) =
                remaining_ports.split_at(container.ports.len().min(remaining_ports.len()));
            remaining_ports = rest;
            pod_container(container, own, &extra_env)
        })
        .collect();
    let grace = parse_duration(&scheduler.spec.termination_grace_period)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .filter(|s| *s > 0);
    Pod {
        metadata: ObjectMeta {
            name: Some(room_id.to_string()),
            namespace: Some(scheduler.name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers,
            restart_policy: Some(scheduler.restart_policy().to_string()),
            termination_grace_period_seconds: grace,
            tolerations: scheduler.spec.toleration.as_ref().map(|value| {
                vec![Toleration {
                    key: Some(TOLERATION_KEY.to_string()),
                    operator: Some("Equal".to_string()),
                    value: Some(value.clone()),
                    effect: Some("NoSchedule".to_string()),
                    toleration_seconds: None,
                }]
            }),
            affinity: scheduler.spec.affinity.as_ref().map(|label| Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: label.clone(),
                                operator: "In".to_string(),
                                values: Some(vec!["true".to_string()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    preferred_during_scheduling_ignored_during_execution: None,
                }),
                ..Affinity::default()
            }),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn pod_container(
    container: &Container,
    host_ports: &[RoomPort],
    extra_env: &[PodEnvVar],
) -> PodContainer {
    let mut env: Vec<PodEnvVar> = container
        .environment
        .iter()
        .map(|var| {
            let from = var.value_from.as_ref();
            let value_from = match (
                from.and_then(|f| f.field_ref.as_ref()),
                from.and_then(|f| f.secret_key_ref.as_ref()),
            ) {
                _ if var.value.is_some() => None,
                (Some(field), _) => Some(PodEnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: field.field_path.clone(),
                    }),
                    ..PodEnvVarSource::default()
                }),
                (None, Some(secret)) => Some(PodEnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: None,
                    }),
                    ..PodEnvVarSource::default()
                }),
                (None, None) => None,
            };
            PodEnvVar {
                name: var.name.clone(),
                value: if value_from.is_some() {
                    None
                } else {
                    Some(var.value.clone().unwrap_or_default())
                },
                value_from,
            }
        })
        .collect();
    env.extend(extra_env.iter().cloned());
    let ports = container
        .ports
        .iter()
        .zip(host_ports)
        .map(|(port, host)| PodPort {
            name: Some(port.name.clone()),
            protocol: Some(port.protocol.to_ascii_uppercase()),
            container_port: i32::try_from(port.port).unwrap_or_default(),
            host_port: Some(i32::from(host.port)),
            host_ip: None,
        })
        .collect::<Vec<_>>();
    PodContainer {
        name: container.name.clone(),
        image: Some(container.image.clone()),
        image_pull_policy: container.image_pull_policy.clone(),
        command: (!container.command.is_empty()).then(|| container.command.clone()),
        env: Some(env),
        ports: (!ports.is_empty()).then_some(ports),
        resources: Some(ResourceRequirements {
            requests: quantities(container.requests.as_ref()),
            limits: quantities(container.limits.as_ref()),
            claims: None,
        }),
        ..PodContainer::default()
    }
}

fn quantities(resources: Option<&Resources>) -> Option<BTreeMap<String, Quantity>> {
    let resources = resources?;
    let map: BTreeMap<String, Quantity> = [("cpu", &resources.cpu), ("memory", &resources.memory)]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), Quantity(value.clone()?))))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// A disruption budget keeping `min_available` of the scheduler's rooms from voluntary
/// eviction (node drains, cluster autoscaler).
pub fn disruption_budget(scheduler: &str, min_available: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(DISRUPTION_BUDGET_NAME.to_string()),
            namespace: Some(scheduler.to_string()),
            labels: Some(BTreeMap::from([(
                LABEL_HERITAGE.to_string(),
                HERITAGE.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (LABEL_HERITAGE.to_string(), HERITAGE.to_string()),
                    (LABEL_SCHEDULER.to_string(), scheduler.to_string()),
                ])),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// Rooms to protect for `occupied` busy rooms: Maestro keeps 5 % more than are occupied.
pub fn protected_rooms(occupied: u32) -> i32 {
    let with_margin = (u64::from(occupied) * 105).div_ceil(100);
    i32::try_from(with_margin).unwrap_or(i32::MAX)
}

/// What a pod's state means for the room in it (spec §8), with the reason when it is an error.
pub fn instance_status(pod: &Pod) -> (InstanceStatus, Option<String>) {
    if pod.metadata.deletion_timestamp.is_some() {
        return (InstanceStatus::Terminating, None);
    }
    let Some(status) = &pod.status else {
        return (InstanceStatus::Pending, None);
    };
    match status.phase.as_deref() {
        Some("Failed") => {
            let reason = status.reason.clone().unwrap_or_else(|| "Failed".into());
            return (InstanceStatus::Error, Some(format!("pod failed: {reason}")));
        }
        Some("Succeeded") => {
            return (
                InstanceStatus::Error,
                Some("the room's containers exited".into()),
            );
        }
        _ => {}
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    for container in status.container_statuses.iter().flatten() {
        let state = container.state.as_ref();
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
            && let Some(reason) = waiting.reason.as_deref()
            && FATAL_WAITING_REASONS.contains(&reason)
        {
            let message = waiting.message.clone().unwrap_or_default();
            return (InstanceStatus::Error, Some(format!("{reason}: {message}")));
        }
        let oom_now = state
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
        let oom_before = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
        if oom_now || (oom_before && !ready) {
            return (
                InstanceStatus::Error,
                Some(format!("container {} was OOMKilled", container.name)),
            );
        }
    }
    if ready {
        (InstanceStatus::Ready, None)
    } else {
        (InstanceStatus::Pending, None)
    }
}

/// How the pod's containers last ended, for a person reading a room's failure: "container
/// room exited with code 3 (Error)", the current termination before the previous one.
pub fn last_exits(pod: &Pod) -> Vec<String> {
    container_statuses(pod)
        .filter_map(|container| {
            let current = container.state.as_ref().and_then(|s| s.terminated.as_ref());
            let previous = container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref());
            let ended = current.or(previous)?;
            let reason = ended
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let restarts = match container.restart_count {
                0 => String::new(),
                1 => ", restarted once".into(),
                n => format!(", restarted {n} times"),
            };
            Some(format!(
                "container {} exited with code {}{reason}{restarts}",
                container.name, ended.exit_code
            ))
        })
        .collect()
}

/// Whether a container of the pod was restarted (its previous run's output is the one to read).
pub fn restarted(pod: &Pod) -> bool {
    container_statuses(pod).any(|c| c.restart_count > 0)
}

fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
}

/// Host ports a pod holds (for allocation: what live rooms already use).
pub fn host_ports(pod: &Pod) -> BTreeSet<u16> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| p.host_port.and_then(|h| u16::try_from(h).ok()))
        .collect()
}

/// The host ports a pod's metadata records; `None` for a pod made before the annotation or
/// whose annotation no longer parses (its spec then says).
pub fn annotated_host_ports(meta: &ObjectMeta) -> Option<BTreeSet<u16>> {
    let value = meta.annotations.as_ref()?.get(ANNOTATION_HOST_PORTS)?;
    value
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.trim().parse().ok())
        .collect()
}

/// The address players reach a node at: its external IP, else its internal IP, else its
/// host name.
pub fn node_address(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    ["ExternalIP", "InternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a.type_ == *kind && !a.address.is_empty())
                .map(|a| a.address.clone())
        })
}

/// The room a Maestro pod holds; `None` for pods without Maestro's labels.
pub fn room_instance(pod: &Pod, node_address: Option<String>) -> Option<RoomInstance> {
    let labels = pod.metadata.labels.as_ref()?;
    let scheduler = labels.get(LABEL_SCHEDULER)?.clone();
    let room_id = pod.metadata.name.clone()?;
    let version = labels
        .get(LABEL_VERSION)
        .and_then(|v| v.parse::<Version>().ok())
        .unwrap_or(Version::FIRST);
    let address = node_address.map(|host| RoomAddress {
        host,
        ports: pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(RoomPort {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: u16::try_from(p.host_port?).ok()?,
                })
            })
            .collect(),
        ipv6_label: String::new(),
    });
    Some(RoomInstance {
        scheduler,
        room_id,
        version,
        status: instance_status(pod).0,
        address,
    })
}

/// The node a pod was scheduled on, once it is.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}
