//! The Kubernetes runtime against an API server: the in-test fake by default, or the real
//! cluster `KUBECONFIG` points at (then the tests that inject faults into the API server
//! say they were skipped). Every test prints which one it used. What Maestro may and may
//! not do to a cluster (namespaces it does not own, Pod Security, refusals, restarts) is in
//! `boundaries.rs`.

mod boundaries;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::Client;
use maestro_core::scheduler::{ContainerPort, PortRange};
use maestro_core::{InstanceStatus, Scheduler, Version};
use maestro_runtime::kubernetes::pod::DISRUPTION_BUDGET_NAME;
use maestro_runtime::{
    KubernetesRuntime, KubernetesRuntimeConfig, RoomsApiEndpoints, Runtime, RuntimeEvent,
};
use maestro_testkit::eventually;
use maestro_testkit::fake_kube::{FakeKube, Kubelet};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    client: Client,
    fake: Option<FakeKube>,
}

impl Cluster {
    /// The real cluster when `KUBECONFIG` is set, else a fake with a kubelet.
    async fn start(test: &str) -> Cluster {
        if std::env::var_os("KUBECONFIG").is_some() {
            println!("{test}: KUBECONFIG is set: running against the real cluster");
            let client = Client::try_default()
                .await
                .expect("KUBECONFIG is set but unusable");
            return Cluster { client, fake: None };
        }
        println!(
            "{test}: KUBECONFIG not set: running against the in-test fake API server (real-cluster run skipped)"
        );
        Self::start_fake(test).await
    }

    /// Always the fake (for tests that inject API faults a real cluster cannot be made to show).
    async fn start_fake(test: &str) -> Cluster {
        if std::env::var_os("KUBECONFIG").is_some() {
            println!(
                "{test}: needs fault injection: runs against the fake API server even though KUBECONFIG is set"
            );
        }
        let fake = FakeKube::start_with_kubelet(Kubelet::default())
            .await
            .unwrap();
        let config = kube::Config::new(fake.url().parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Cluster {
            client,
            fake: Some(fake),
        }
    }

    fn runtime(&self) -> KubernetesRuntime {
        self.runtime_with(|_| {})
    }

    /// A runtime with the tests' settings, changed by `adjust`.
    fn runtime_with(&self, adjust: impl FnOnce(&mut KubernetesRuntimeConfig)) -> KubernetesRuntime {
        let mut config = KubernetesRuntimeConfig {
            rooms_api: RoomsApiEndpoints {
                http_url: "http://maestro-rooms:8070".into(),
                ..RoomsApiEndpoints::default()
            },
            api_retries: 3,
            api_retry_delay: Duration::from_millis(10),
            ..KubernetesRuntimeConfig::default()
        };
        adjust(&mut config);
        KubernetesRuntime::new(self.client.clone(), config)
    }

    fn fake(&self) -> &FakeKube {
        self.fake
            .as_ref()
            .expect("this test runs on the fake API server")
    }
}

/// A scheduler whose namespace name is unique per run (real clusters keep namespaces a while).
fn scheduler(test: &str, ports: (i64, i64)) -> Scheduler {
    let name = format!(
        "it-{test}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let mut s = Scheduler::with_command(&name, "game", &["/pause"]);
    s.spec.containers[0].image = "registry.k8s.io/pause:3.10".into();
    s.spec.termination_grace_period = "1s".into();
    s.port_range = Some(PortRange {
        start: ports.0,
        end: ports.1,
    });
    s.spec.containers[0].ports = vec![ContainerPort {
        name: "game".into(),
        protocol: "UDP".into(),
        port: 7777,
        host_port: 0,
        host_port_range: None,
    }];
    s
}

/// The host port of the pod's first container's first port (each test room has one).
fn first_host_port(pod: &Pod) -> Option<i32> {
    pod.spec
        .as_ref()?
        .containers
        .first()?
        .ports
        .as_ref()?
        .first()?
        .host_port
}

#[tokio::test]
async fn rooms_become_pods_with_distinct_host_ports_and_node_addresses() {
    let cluster = Cluster::start("rooms_become_pods").await;
    let runtime = cluster.runtime();
    let s = scheduler("pods", (40000, 40002));
    runtime.create_scheduler(&s.name).await.unwrap();
    runtime.create_scheduler(&s.name).await.unwrap(); // idempotent

    let mut ports = BTreeSet::new();
    for room in ["r1", "r2", "r3"] {
        let instance = runtime.create_room(&s, Version::FIRST, room).await.unwrap();
        assert_eq!(
            (instance.scheduler.as_str(), instance.room_id.as_str()),
            (s.name.as_str(), room)
        );
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &s.name);
        let pod = pods.get(room).await.unwrap();
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["heritage"], "maestro");
        assert_eq!(labels["maestro-scheduler"], s.name);
        assert_eq!(labels["maestro-room"], room);
        assert_eq!(labels["version"], "v1.0.0");
        let port = first_host_port(&pod).unwrap();
        assert!(ports.insert(port), "host port {port} given twice");
    }
    assert_eq!(ports, BTreeSet::from([40000, 40001, 40002]));
    // A retried creation returns the same pod with the same port.
    let again = runtime.create_room(&s, Version::FIRST, "r2").await.unwrap();
    assert_eq!(runtime.list_rooms(&s.name).await.unwrap().len(), 3);
    let _ = again;
    // The range is full: retryable (rooms may be deleted), and nothing was created.
    let full = runtime
        .create_room(&s, Version::FIRST, "r4")
        .await
        .unwrap_err();
    assert!(full.is_retryable(), "{full}");

    // Scheduled and ready: the address is the node's (external) address and the host port.
    let rooms = eventually(WAIT, "rooms ready with addresses", || async {
        let rooms = runtime.list_rooms(&s.name).await.ok()?;
        (rooms.len() == 3
            && rooms
                .iter()
                .all(|r| r.status == InstanceStatus::Ready && r.address.is_some()))
        .then_some(rooms)
    })
    .await
    .unwrap();
    if cluster.fake.is_some() {
        let r1 = rooms.iter().find(|r| r.room_id == "r1").unwrap();
        let address = r1.address.as_ref().unwrap();
        assert_eq!(address.host, "203.0.113.10");
        assert_eq!(
            (
                address.ports[0].name.as_str(),
                address.ports[0].protocol.as_str()
            ),
            ("game", "UDP")
        );
    }

    // Deleting frees the port for the next room; deleting again is fine.
    runtime
        .delete_room(&s.name, "r2", Duration::from_secs(1))
        .await
        .unwrap();
    runtime
        .delete_room(&s.name, "r2", Duration::from_secs(1))
        .await
        .unwrap();
    let r4 = runtime.create_room(&s, Version::FIRST, "r4").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &s.name);
    let pod = pods.get(&r4.room_id).await.unwrap();
    assert_eq!(first_host_port(&pod), Some(40001));

    runtime.delete_scheduler(&s.name).await.unwrap();
    runtime.delete_scheduler(&s.name).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let gone_or_terminating = match namespaces.get_opt(&s.name).await.unwrap() {
        None => true,
        Some(ns) => ns.metadata.deletion_timestamp.is_some(),
    };
    assert!(gone_or_terminating);
}

#[tokio::test]
async fn a_batch_on_another_worker_sees_ports_taken_by_this_one() {
    let cluster = Cluster::start("ports_across_workers").await;
    let (worker_a, worker_b) = (cluster.runtime(), cluster.runtime());
    let s = scheduler("workers", (41000, 41010));
    worker_a.create_scheduler(&s.name).await.unwrap();
    worker_a
        .create_room(&s, Version::FIRST, "a1")
        .await
        .unwrap();
    worker_b
        .create_room(&s, Version::FIRST, "b1")
        .await
        .unwrap();
    // Worker A's book is stale (it never saw b1); the batch start rereads it.
    worker_a.refresh_room_allocations(&s.name).await.unwrap();
    worker_a
        .create_room(&s, Version::FIRST, "a2")
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &s.name);
    let used: Vec<i32> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| first_host_port(p).unwrap())
        .collect();
    let distinct: BTreeSet<i32> = used.iter().copied().collect();
    assert_eq!(distinct.len(), used.len(), "host ports collide: {used:?}");
    worker_a.delete_scheduler(&s.name).await.unwrap();
}

/// A reread between full ones skips the pods this process created, so a port another worker
/// freed still looks taken here; when the range looks full, every pod is read and it is
/// handed out again.
#[tokio::test]
async fn a_port_freed_by_another_worker_is_reused_when_the_range_looks_full() {
    let cluster = Cluster::start("ports_freed_elsewhere").await;
    let (worker_a, worker_b) = (cluster.runtime(), cluster.runtime());
    let s = scheduler("freed-ports", (41200, 41202));
    worker_a.create_scheduler(&s.name).await.unwrap();
    for room in ["a1", "a2", "a3"] {
        worker_a
            .create_room(&s, Version::FIRST, room)
            .await
            .unwrap();
    }
    worker_b
        .delete_room(&s.name, "a2", Duration::from_secs(1))
        .await
        .unwrap();
    worker_a.refresh_room_allocations(&s.name).await.unwrap();
    worker_a
        .create_room(&s, Version::FIRST, "a4")
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &s.name);
    let a4 = pods.get("a4").await.unwrap();
    assert_eq!(
        first_host_port(&a4),
        Some(41201),
        "a2's port, freed by worker B, goes to a4"
    );
    // Still full for real: the next creation is refused, not given a taken port.
    assert!(
        worker_a
            .create_room(&s, Version::FIRST, "a5")
            .await
            .is_err()
    );
    worker_a.delete_scheduler(&s.name).await.unwrap();
}

/// A pod made before pods carried the `maestro-host-ports` annotation: the book, read from a
/// metadata-only list, falls back to the pods' specs and still never hands its port out again.
#[tokio::test]
async fn a_pod_without_the_ports_annotation_keeps_its_host_port() {
    let cluster = Cluster::start("ports_without_annotation").await;
    let runtime = cluster.runtime();
    let s = scheduler("legacy-ports", (41100, 41110));
    runtime.create_scheduler(&s.name).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &s.name);
    let legacy: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "legacy", "labels": {
            "heritage": "maestro", "maestro-scheduler": s.name, "maestro-room": "legacy"}},
        "spec": {"containers": [{"name": "room", "image": "registry.k8s.io/pause:3.10",
            "ports": [{"name": "game", "containerPort": 7777, "hostPort": 41100, "protocol": "UDP"}]}]}
    }))
    .unwrap();
    pods.create(&Default::default(), &legacy).await.unwrap();
    runtime.refresh_room_allocations(&s.name).await.unwrap();
    runtime
        .create_room(&s, Version::FIRST, "new")
        .await
        .unwrap();
    let created = pods.get("new").await.unwrap();
    assert_eq!(
        first_host_port(&created),
        Some(41101),
        "the legacy pod's port stays taken"
    );
    // The new pod records its ports for the next metadata-only read.
    let annotations = created.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("maestro-host-ports").map(String::as_str),
        Some("41101")
    );
    runtime.delete_scheduler(&s.name).await.unwrap();
}

async fn next_event(
    events: &mut futures::stream::BoxStream<'static, RuntimeEvent>,
    what: &str,
    wanted: impl Fn(&RuntimeEvent) -> bool,
) -> RuntimeEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.next().await.expect("the watch ended");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event: {what}"))
}

fn upserted(room: &str, status: InstanceStatus) -> impl Fn(&RuntimeEvent) -> bool + '_ {
    move |e| matches!(e, RuntimeEvent::Upserted(i) if i.room_id == room && i.status == status)
}

fn deleted(room: &str) -> impl Fn(&RuntimeEvent) -> bool + '_ {
    move |e| matches!(e, RuntimeEvent::Deleted { room_id, .. } if room_id == room)
}

#[tokio::test]
async fn the_watch_maps_pod_states_and_relists_after_410_gone() {
    let cluster = Cluster::start_fake("watch_and_relist").await;
    let fake = cluster.fake();
    let runtime = cluster.runtime();
    let s = scheduler("watch", (42000, 42010));
    runtime.create_scheduler(&s.name).await.unwrap();
    let mut events = runtime.watch();

    runtime.create_room(&s, Version::FIRST, "w1").await.unwrap();
    next_event(
        &mut events,
        "w1 pending",
        upserted("w1", InstanceStatus::Pending),
    )
    .await;
    let ready = next_event(
        &mut events,
        "w1 ready",
        upserted("w1", InstanceStatus::Ready),
    )
    .await;
    let RuntimeEvent::Upserted(instance) = ready else {
        unreachable!()
    };
    assert_eq!(instance.address.unwrap().host, "203.0.113.10");

    // The kubelet reports a crash loop, then an image that cannot be pulled, then an OOM kill.
    let waiting = |reason: &str| json!({"phase": "Running", "containerStatuses": [{"name": "room", "image": "x", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": reason, "message": "back-off"}}}]});
    assert!(fake.set_pod_status(&s.name, "w1", waiting("CrashLoopBackOff")));
    next_event(
        &mut events,
        "w1 crash loop",
        upserted("w1", InstanceStatus::Error),
    )
    .await;
    runtime.create_room(&s, Version::FIRST, "w2").await.unwrap();
    next_event(
        &mut events,
        "w2 ready",
        upserted("w2", InstanceStatus::Ready),
    )
    .await;
    assert!(fake.set_pod_status(&s.name, "w2", waiting("ImagePullBackOff")));
    next_event(
        &mut events,
        "w2 image pull",
        upserted("w2", InstanceStatus::Error),
    )
    .await;
    assert!(fake.set_pod_status(&s.name, "w2", json!({"phase": "Running", "containerStatuses": [{"name": "room", "image": "x", "ready": false, "restartCount": 1, "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]})));
    next_event(
        &mut events,
        "w2 OOMKilled",
        upserted("w2", InstanceStatus::Error),
    )
    .await;

    // Graceful deletion: terminating, then deleted.
    let deleting = tokio::spawn({
        let runtime = cluster.runtime();
        let name = s.name.clone();
        async move {
            runtime
                .delete_room(&name, "w1", Duration::from_secs(1))
                .await
        }
    });
    next_event(
        &mut events,
        "w1 terminating",
        upserted("w1", InstanceStatus::Terminating),
    )
    .await;
    next_event(&mut events, "w1 deleted", deleted("w1")).await;
    deleting.await.unwrap().unwrap();

    // The apiserver restarts and forgets its history while w2 vanishes (node lost): the watch
    // cannot resume (410 Gone), relists, and reports w2 deleted.
    let lists_before = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"))
        .count();
    fake.fail_next(Method::GET, "watch=true", 503, 2);
    fake.drop_watches();
    assert!(fake.remove_pod(&s.name, "w2"));
    fake.compact();
    next_event(&mut events, "w2 deleted after relist", deleted("w2")).await;
    let lists_after = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"))
        .count();
    assert!(
        lists_after > lists_before,
        "no relist: {:?}",
        fake.requests()
    );
    // And the watch goes on.
    runtime.create_room(&s, Version::FIRST, "w3").await.unwrap();
    next_event(
        &mut events,
        "w3 ready after the relist",
        upserted("w3", InstanceStatus::Ready),
    )
    .await;
}

#[tokio::test]
async fn api_errors_are_retried_with_backoff_and_refusals_are_final() {
    let cluster = Cluster::start_fake("api_errors").await;
    let fake = cluster.fake();
    let runtime = cluster.runtime();
    let s = scheduler("errors", (43000, 43010));
    fake.fail_next(Method::POST, "/api/v1/namespaces", 500, 2);
    runtime.create_scheduler(&s.name).await.unwrap();

    let posts = |fake: &FakeKube| {
        fake.requests()
            .iter()
            .filter(|r| r.starts_with(&format!("POST /api/v1/namespaces/{}/pods", s.name)))
            .count()
    };
    fake.fail_next(Method::POST, "/pods", 429, 2);
    runtime.create_room(&s, Version::FIRST, "e1").await.unwrap();
    assert_eq!(posts(fake), 3, "two 429s then a success");

    // More failures than the retry budget (1 + 3 retries): retryable for the activity.
    fake.fail_next(Method::POST, "/pods", 500, 4);
    let err = runtime
        .create_room(&s, Version::FIRST, "e2")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(posts(fake), 7);
    // The activity's retry then succeeds.
    runtime.create_room(&s, Version::FIRST, "e2").await.unwrap();

    // Kubernetes refusing the pod as invalid is final: no retry.
    fake.fail_next(Method::POST, "/pods", 422, 1);
    let err = runtime
        .create_room(&s, Version::FIRST, "e3")
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(posts(fake), 9);

    // A creation whose answer was lost is retried into "already exists": success, same pod.
    let before = fake.get("pods", &s.name, "e1").unwrap();
    let again = runtime.create_room(&s, Version::FIRST, "e1").await.unwrap();
    assert_eq!(again.room_id, "e1");
    assert_eq!(
        fake.get("pods", &s.name, "e1").unwrap()["metadata"]["uid"],
        before["metadata"]["uid"]
    );

    // Deleting: 5xx retried, a missing pod is success.
    fake.fail_next(Method::DELETE, "/pods/e1", 500, 1);
    runtime
        .delete_room(&s.name, "e1", Duration::from_secs(1))
        .await
        .unwrap();
    runtime
        .delete_room(&s.name, "never-existed", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(fake.get("pods", &s.name, "e1").is_none());
}

/// A room that keeps crashing: its failure names the pod, the crash loop, how the container
/// last exited and where its output is, as an operation's error shows it.
#[tokio::test]
async fn a_crashing_rooms_failure_names_its_pod_exit_code_and_logs() {
    let cluster = Cluster::start("failure_reason").await;
    let runtime = cluster.runtime();
    let mut s = scheduler("crash", (44100, 44110));
    if cluster.fake.is_none() {
        s.spec.containers[0].image = "busybox:1.36".into();
        s.spec.containers[0].command = ["sh", "-c", "echo bye; exit 3"].map(String::from).into();
    }
    runtime.create_scheduler(&s.name).await.unwrap();
    assert_eq!(runtime.failure_reason(&s.name, "nobody").await, None);
    runtime.create_room(&s, Version::FIRST, "c1").await.unwrap();
    if let Some(fake) = &cluster.fake {
        // What a kubelet reports once a container that exits 3 has been restarted twice.
        assert!(fake.set_pod_status(
            &s.name,
            "c1",
            json!({"phase": "Running", "containerStatuses": [{
                "name": "room", "image": "x", "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 20s restarting failed container=room pod=c1"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 3}}}]})
        ));
    }
    let reason = eventually(Duration::from_secs(120), "a crash loop", || async {
        runtime
            .failure_reason(&s.name, "c1")
            .await
            .filter(|r| r.contains("CrashLoopBackOff"))
    })
    .await
    .unwrap();
    assert!(
        reason.starts_with(&format!("pod {}/c1: ", s.name)),
        "{reason}"
    );
    assert!(
        reason.contains("container room exited with code 3 (Error)"),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("kubectl logs -n {} c1 --previous", s.name)),
        "{reason}"
    );
    runtime.delete_scheduler(&s.name).await.unwrap();
}

#[tokio::test]
async fn the_disruption_budget_protects_occupied_rooms_and_survives_conflicts() {
    let cluster = Cluster::start("disruption_budget").await;
    let runtime = cluster.runtime();
    let s = scheduler("pdb", (44000, 44010));
    runtime.create_scheduler(&s.name).await.unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(cluster.client.clone(), &s.name);
    let min_available = || async {
        let pdb = budgets.get(DISRUPTION_BUDGET_NAME).await.unwrap();
        serde_json::to_value(pdb.spec.unwrap().min_available.unwrap()).unwrap()
    };
    assert_eq!(min_available().await, json!(0));
    runtime.guard_disruptions(&s.name, 20).await.unwrap();
    assert_eq!(min_available().await, json!(21));
    if let Some(fake) = &cluster.fake {
        // Another gateway replica wrote first: the replace gets 409 and is redone from a
        // fresh read.
        fake.fail_next(Method::PUT, "poddisruptionbudgets", 409, 1);
        runtime.guard_disruptions(&s.name, 40).await.unwrap();
        assert_eq!(min_available().await, json!(42));
        let puts = fake
            .requests()
            .iter()
            .filter(|r| r.starts_with("PUT ") && r.contains("poddisruptionbudgets"))
            .count();
        assert_eq!(puts, 3, "one for 21, a conflict and a retry for 42");
        // Unchanged: no write at all.
        runtime.guard_disruptions(&s.name, 40).await.unwrap();
        let puts_after = fake
            .requests()
            .iter()
            .filter(|r| r.starts_with("PUT ") && r.contains("poddisruptionbudgets"))
            .count();
        assert_eq!(puts_after, 3);
    } else {
        println!("disruption_budget: conflict injection skipped on a real cluster");
    }
    runtime.delete_scheduler(&s.name).await.unwrap();
}
