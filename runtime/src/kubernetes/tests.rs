use super::*;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, NodeAddress,
    NodeStatus, PodCondition, PodStatus,
};
use maestro_core::InstanceStatus;
use maestro_core::scheduler::{
    ContainerPort, EnvVar, EnvVarSource, FieldRef, PortRange, Resources, SecretKeyRef,
};

/// A scheduler using every field the pod mapping reads.
pub(crate) fn full_scheduler() -> Scheduler {
    let mut s = Scheduler::with_command("arena", "shooter", &["/bin/server", "--port", "7777"]);
    s.port_range = Some(PortRange {
        start: 40000,
        end: 40100,
    });
    s.spec.termination_grace_period = "100s".into();
    s.spec.toleration = Some("game-nodes".into());
    s.spec.affinity = Some("maestro-dedicated".into());
    s.labels.insert("team".into(), "arena".into());
    s.annotations
        .insert("owner".into(), "games@example.com".into());
    let c = &mut s.spec.containers[0];
    c.name = "server".into();
    c.image = "registry.example.com/arena:1.4".into();
    c.image_pull_policy = Some("IfNotPresent".into());
    c.environment = vec![
        EnvVar {
            name: "MODE".into(),
            value: Some("ranked".into()),
            value_from: None,
        },
        EnvVar {
            name: "POD_IP".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(FieldRef {
                    field_path: "status.podIP".into(),
                }),
                secret_key_ref: None,
            }),
        },
        EnvVar {
            name: "API_KEY".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: None,
                secret_key_ref: Some(SecretKeyRef {
                    name: "arena-secrets".into(),
                    key: "api-key".into(),
                }),
            }),
        },
    ];
    c.requests = Some(Resources {
        memory: Some("20Mi".into()),
        cpu: Some("100m".into()),
    });
    c.limits = Some(Resources {
        memory: Some("200Mi".into()),
        cpu: Some("200m".into()),
    });
    c.ports = vec![
        ContainerPort {
            name: "game".into(),
            protocol: "UDP".into(),
            port: 7777,
            host_port: 0,
            host_port_range: None,
        },
        ContainerPort {
            name: "metrics".into(),
            protocol: "TCP".into(),
            port: 9090,
            host_port: 0,
            host_port_range: Some(PortRange {
                start: 50000,
                end: 50010,
            }),
        },
    ];
    s
}

pub(crate) fn endpoints() -> RoomsApiEndpoints {
    RoomsApiEndpoints {
        http_url: "http://maestro-rooms.maestro.svc:8070".into(),
        grpc_url: Some("http://maestro-rooms.maestro.svc:8071".into()),
        token_secret: Some(maestro_core::RoomTokenSecret::new("golden-secret-0123456789").unwrap()),
    }
}

fn golden(name: &str, actual: &serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        pretty,
        expected,
        "{} differs; review and rerun with UPDATE_GOLDEN=1 if intended",
        path.display()
    );
}

#[test]
fn room_pod_matches_the_golden_wire_json() {
    let s = full_scheduler();
    let ports = allocate_ports(
        &s,
        pod::container_ports(&s),
        &crate::room_env::UsedPorts::from_iter([40000]),
    )
    .unwrap();
    let pod = pod::room_pod(
        &s,
        Version { major: 2, minor: 1 },
        "arena-7f3k",
        &ports,
        &endpoints(),
    );
    golden("room-pod.json", &serde_json::to_value(&pod).unwrap());
    assert_eq!(pod::host_ports(&pod), BTreeSet::from([40001, 50000]));
}

#[test]
fn disruption_budget_matches_the_golden_wire_json() {
    golden(
        "disruption-budget.json",
        &serde_json::to_value(pod::disruption_budget("arena", 21)).unwrap(),
    );
    // Maestro keeps 5 % more than the occupied rooms, rounded up.
    assert_eq!(pod::protected_rooms(0), 0);
    assert_eq!(pod::protected_rooms(1), 2);
    assert_eq!(pod::protected_rooms(20), 21);
    assert_eq!(pod::protected_rooms(100), 105);
}

fn pod_with(status: PodStatus) -> Pod {
    let s = full_scheduler();
    let mut pod = pod::room_pod(&s, Version::FIRST, "r1", &[], &endpoints());
    pod.status = Some(status);
    pod
}

fn ready_condition(value: &str) -> Vec<PodCondition> {
    vec![PodCondition {
        type_: "Ready".into(),
        status: value.into(),
        ..PodCondition::default()
    }]
}

fn container(state: ContainerState, last: Option<ContainerState>) -> Vec<ContainerStatus> {
    vec![ContainerStatus {
        name: "server".into(),
        state: Some(state),
        last_state: last,
        ..ContainerStatus::default()
    }]
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some("m".into()),
        }),
        ..ContainerState::default()
    }
}

fn oom() -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            reason: Some("OOMKilled".into()),
            exit_code: 137,
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

#[test]
fn pod_states_map_to_instance_statuses() {
    use InstanceStatus as I;
    let phase = |p: &str| PodStatus {
        phase: Some(p.into()),
        ..PodStatus::default()
    };
    let cases: Vec<(&str, PodStatus, I)> = vec![
        ("no status yet", PodStatus::default(), I::Pending),
        ("pending", phase("Pending"), I::Pending),
        (
            "running, not ready",
            PodStatus {
                conditions: Some(ready_condition("False")),
                ..phase("Running")
            },
            I::Pending,
        ),
        (
            "ready",
            PodStatus {
                conditions: Some(ready_condition("True")),
                ..phase("Running")
            },
            I::Ready,
        ),
        (
            "crash loop",
            PodStatus {
                container_statuses: Some(container(waiting("CrashLoopBackOff"), None)),
                ..phase("Running")
            },
            I::Error,
        ),
        (
            "image pull",
            PodStatus {
                container_statuses: Some(container(waiting("ImagePullBackOff"), None)),
                ..phase("Pending")
            },
            I::Error,
        ),
        (
            "bad image name",
            PodStatus {
                container_statuses: Some(container(waiting("InvalidImageName"), None)),
                ..phase("Pending")
            },
            I::Error,
        ),
        (
            "creating",
            PodStatus {
                container_statuses: Some(container(waiting("ContainerCreating"), None)),
                ..phase("Pending")
            },
            I::Pending,
        ),
        (
            "oom now",
            PodStatus {
                container_statuses: Some(container(oom(), None)),
                ..phase("Running")
            },
            I::Error,
        ),
        (
            "oom before, restarting",
            PodStatus {
                container_statuses: Some(container(waiting("ContainerCreating"), Some(oom()))),
                ..phase("Running")
            },
            I::Error,
        ),
        (
            "oom before, ready again",
            PodStatus {
                conditions: Some(ready_condition("True")),
                container_statuses: Some(container(ContainerState::default(), Some(oom()))),
                ..phase("Running")
            },
            I::Ready,
        ),
        ("failed", phase("Failed"), I::Error),
        ("succeeded", phase("Succeeded"), I::Error),
    ];
    for (name, status, want) in cases {
        assert_eq!(pod::instance_status(&pod_with(status)).0, want, "{name}");
    }
    let mut deleting = pod_with(PodStatus {
        conditions: Some(ready_condition("True")),
        ..phase("Running")
    });
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
    );
    assert_eq!(pod::instance_status(&deleting).0, I::Terminating);
}

#[test]
fn node_address_prefers_external_then_internal() {
    let node = |kinds: &[(&str, &str)]| Node {
        status: Some(NodeStatus {
            addresses: Some(
                kinds
                    .iter()
                    .map(|(t, a)| NodeAddress {
                        type_: (*t).into(),
                        address: (*a).into(),
                    })
                    .collect(),
            ),
            ..NodeStatus::default()
        }),
        ..Node::default()
    };
    assert_eq!(
        pod::node_address(&node(&[
            ("InternalIP", "10.0.0.5"),
            ("ExternalIP", "203.0.113.7")
        ]))
        .as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(
        pod::node_address(&node(&[("Hostname", "n1"), ("InternalIP", "10.0.0.5")])).as_deref(),
        Some("10.0.0.5")
    );
    assert_eq!(pod::node_address(&node(&[])), None);
}

fn named(scheduler: &str, name: &str) -> Pod {
    let s = Scheduler::with_command(scheduler, "g", &["x"]);
    pod::room_pod(&s, Version::FIRST, name, &[], &endpoints())
}

#[test]
fn a_relist_reports_pods_deleted_while_nobody_watched() {
    let mut relist = Relist::default();
    let deleted = |changes: Vec<PodChange>| -> Vec<String> {
        changes
            .into_iter()
            .filter_map(|c| match c {
                PodChange::Deleted { room_id, .. } => Some(room_id),
                PodChange::Upserted(_) => None,
            })
            .collect()
    };
    relist.apply(Event::Init);
    for name in ["a", "b", "c"] {
        relist.apply(Event::InitApply(named("s", name)));
    }
    assert!(deleted(relist.apply(Event::InitDone)).is_empty());
    relist.apply(Event::Apply(named("s", "d")));
    assert_eq!(
        deleted(relist.apply(Event::Delete(named("s", "a")))),
        vec!["a"]
    );
    // The watch expired (410); meanwhile b and d were deleted and e created.
    relist.apply(Event::Init);
    relist.apply(Event::InitApply(named("s", "c")));
    relist.apply(Event::InitApply(named("s", "e")));
    assert_eq!(deleted(relist.apply(Event::InitDone)), vec!["b", "d"]);
    assert_eq!(relist.known.len(), 2);
}

#[test]
fn the_watch_backoff_stays_within_a_second_and_starts_over_after_an_event() {
    use kube::runtime::utils::Backoff;
    let mut backoff = WatchBackoff::default();
    // A long outage: a thousand failed attempts never pause more than a second.
    let pauses: Vec<Duration> = (0..1000).map_while(|_| backoff.next()).collect();
    assert_eq!(pauses.len(), 1000, "the backoff must never give up");
    assert!(
        pauses.iter().all(|p| *p <= Duration::from_secs(1)),
        "{pauses:?}"
    );
    // An event got through: the next failure is retried after a short pause again.
    backoff.reset();
    assert!(backoff.next().unwrap() <= Duration::from_millis(200));
}

#[test]
fn the_namespace_carries_maestros_labels_and_the_pod_security_level() {
    let ns = pod::namespace("game", Some("privileged"));
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels["heritage"], "maestro");
    assert_eq!(labels["maestro-scheduler"], "game");
    assert_eq!(labels[pod::POD_SECURITY_ENFORCE], "privileged");
    let bare = pod::namespace("game", None).metadata.labels.unwrap();
    assert!(!bare.contains_key(pod::POD_SECURITY_ENFORCE));
}
