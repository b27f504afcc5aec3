//! What Maestro may do to a cluster and how it meets the API server's refusals, each taken
//! from what a real kube-apiserver (v1.36, RBAC, Pod Security) showed: a scheduler named
//! after an existing namespace took it over and deleted it; a scheduler created again
//! while its old namespace was terminating ended with none; Pod Security's refusal was
//! retried as if the server were down; after a restart the watch was blind for 10–45 s.

use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use maestro_core::naming::room_id;
use maestro_runtime::RuntimeError;

use super::*;

fn namespace_api(cluster: &Cluster) -> Api<Namespace> {
    Api::all(cluster.client.clone())
}

fn bare_namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn pod_posts(fake: &FakeKube, scheduler: &str) -> usize {
    let prefix = format!("POST /api/v1/namespaces/{scheduler}/pods");
    fake.requests()
        .iter()
        .filter(|r| r.starts_with(&prefix))
        .count()
}

#[tokio::test]
async fn a_namespace_maestro_did_not_create_is_never_taken_over_or_deleted() {
    let cluster = Cluster::start("foreign_namespace").await;
    let runtime = cluster.runtime();
    let s = scheduler("foreign", (45000, 45010));
    let namespaces = namespace_api(&cluster);
    namespaces
        .create(&PostParams::default(), &bare_namespace(&s.name))
        .await
        .unwrap();

    let refused = runtime.create_scheduler(&s.name).await.unwrap_err();
    assert!(
        matches!(&refused, RuntimeError::Refused(m) if m.contains("not created by Maestro")),
        "{refused}"
    );
    assert!(!refused.is_retryable());
    // Deleting the scheduler (its create_scheduler cleans up after a failure) leaves it.
    runtime.delete_scheduler(&s.name).await.unwrap();
    let kept = namespaces.get(&s.name).await.unwrap();
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "deleted: {kept:?}"
    );
    let labels = kept.metadata.labels.unwrap_or_default();
    assert!(!labels.contains_key("heritage"), "relabelled: {labels:?}");

    namespaces
        .delete(&s.name, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_scheduler_created_again_waits_for_its_old_namespace_to_terminate() {
    let cluster = Cluster::start("terminating_namespace").await;
    if let Some(fake) = &cluster.fake {
        // A real cluster took ~5 s; long enough to see the wait, short for CI.
        fake.set_namespace_finalize_after(Duration::from_millis(1500));
    }
    let runtime = cluster.runtime();
    let s = scheduler("again", (45100, 45110));
    let namespaces = namespace_api(&cluster);
    runtime.create_scheduler(&s.name).await.unwrap();
    runtime
        .create_room(&s, Version::FIRST, "old")
        .await
        .unwrap();
    let first = namespaces.get(&s.name).await.unwrap().metadata.uid;
    runtime.delete_scheduler(&s.name).await.unwrap();
    // The disruption guard of a scheduler being deleted has nothing to do, and says nothing.
    runtime.guard_disruptions(&s.name, 3).await.unwrap();

    // Created again at once: the old namespace is still terminating; this waits it out.
    let started = Instant::now();
    runtime.create_scheduler(&s.name).await.unwrap();
    println!(
        "terminating_namespace: created again after {:?}",
        started.elapsed()
    );
    let now = namespaces.get(&s.name).await.unwrap();
    assert!(now.metadata.deletion_timestamp.is_none());
    assert_ne!(
        now.metadata.uid, first,
        "the old namespace was taken for the new"
    );
    assert_eq!(now.metadata.labels.unwrap()["maestro-scheduler"], s.name);
    runtime
        .create_room(&s, Version::FIRST, "new")
        .await
        .unwrap();
    runtime.delete_scheduler(&s.name).await.unwrap();
}

#[tokio::test]
async fn a_namespace_terminating_past_the_bound_is_a_retryable_failure_that_says_so() {
    let cluster = Cluster::start_fake("terminating_too_long").await;
    let fake = cluster.fake();
    fake.set_namespace_finalize_after(Duration::from_secs(5));
    let runtime =
        cluster.runtime_with(|c| c.namespace_termination_wait = Duration::from_millis(300));
    let s = scheduler("slow", (45200, 45210));
    runtime.create_scheduler(&s.name).await.unwrap();
    runtime.delete_scheduler(&s.name).await.unwrap();
    let err = runtime.create_scheduler(&s.name).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("still terminating"), "{err}");
    // Pods meanwhile: refused by the API (content in a terminating namespace), for good.
    let refused = runtime
        .create_room(&s, Version::FIRST, "r")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RuntimeError::Refused(m) if m.contains("being terminated")),
        "{refused}"
    );
}

#[tokio::test]
async fn pod_security_refusals_fail_at_once_and_name_the_level_rooms_need() {
    let cluster = Cluster::start_fake("pod_security").await;
    let fake = cluster.fake();
    fake.set_pod_security_default("baseline");

    // Namespaces left at the cluster's default: every room (host ports) is refused.
    let bare = cluster.runtime_with(|c| c.pod_security_level = None);
    let s = scheduler("psa", (45300, 45310));
    bare.create_scheduler(&s.name).await.unwrap();
    let refused = bare
        .create_room(&s, Version::FIRST, "r1")
        .await
        .unwrap_err();
    let RuntimeError::Refused(message) = &refused else {
        panic!("not a refusal: {refused}");
    };
    assert!(
        message.contains("violates PodSecurity \"baseline:latest\""),
        "{message}"
    );
    assert!(
        message.contains("pod-security.kubernetes.io/enforce=privileged"),
        "{message}"
    );
    assert_eq!(pod_posts(fake, &s.name), 1, "a refusal is not retried");

    // The default: the namespaces Maestro creates carry the level rooms need.
    let runtime = cluster.runtime();
    let t = scheduler("psa-ok", (45320, 45330));
    runtime.create_scheduler(&t.name).await.unwrap();
    let ns = fake.get("namespaces", "", &t.name).unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    runtime.create_room(&t, Version::FIRST, "r1").await.unwrap();
}

#[tokio::test]
async fn rbac_refusals_are_retried_briefly_then_final_with_the_missing_permission() {
    let cluster = Cluster::start_fake("rbac").await;
    let fake = cluster.fake();
    let runtime = cluster.runtime();
    let s = scheduler("rbac", (45400, 45410));
    runtime.create_scheduler(&s.name).await.unwrap();
    let rbac = format!(
        "pods is forbidden: User \"system:serviceaccount:maestro:maestro\" cannot create resource \"pods\" in API group \"\" in the namespace \"{}\"",
        s.name
    );
    // Right after an apiserver start its authorizer may not know the roles yet.
    fake.refuse_next(Method::POST, "/pods", 403, &rbac, 2);
    runtime.create_room(&s, Version::FIRST, "r1").await.unwrap();
    assert_eq!(pod_posts(fake, &s.name), 3);
    // A permission that stays missing: final, and says where permissions are set.
    fake.refuse_next(Method::POST, "/pods", 403, &rbac, 10);
    let err = runtime
        .create_room(&s, Version::FIRST, "r2")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Refused(m) if m.contains("service account") && m.contains("cannot create resource")),
        "{err}"
    );
    assert_eq!(
        pod_posts(fake, &s.name),
        3 + 4,
        "the first try and 3 retries"
    );
}

#[tokio::test]
async fn the_longest_scheduler_name_gives_valid_names_and_labels_everywhere() {
    let cluster = Cluster::start("long_name").await;
    let runtime = cluster.runtime();
    let base = scheduler("long", (45500, 45510));
    let mut s = base.clone();
    s.name = format!("{}-{}", base.name, "x".repeat(63 - base.name.len() - 1));
    assert_eq!(s.name.len(), 63);
    runtime.create_scheduler(&s.name).await.unwrap();
    // A room id as the workflows derive it; the API server checks it as a name and a label.
    let room = room_id(&s.name, "0b7c6c0e-1d5e-4c1b-9a8e-3f2f4e5d6c7b", 0);
    let instance = runtime
        .create_room(&s, Version::FIRST, &room)
        .await
        .unwrap();
    assert_eq!(instance.room_id, room);
    runtime.delete_scheduler(&s.name).await.unwrap();
}

#[tokio::test]
async fn the_watch_resumes_quickly_after_an_apiserver_restart_and_misses_nothing() {
    let cluster = Cluster::start_fake("restart").await;
    let fake = cluster.fake();
    let runtime = cluster.runtime();
    let s = scheduler("restart", (45600, 45610));
    runtime.create_scheduler(&s.name).await.unwrap();
    let mut events = runtime.watch();
    runtime.create_room(&s, Version::FIRST, "a").await.unwrap();
    next_event(&mut events, "a ready", upserted("a", InstanceStatus::Ready)).await;

    // Down for 5 s (connections refused); the room is lost meanwhile. Back up, the watch's
    // old position is gone (410): it relists and reports the loss.
    let restart = fake.restart(Duration::from_secs(5));
    let lost = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(fake.remove_pod(&s.name, "a"));
    };
    let (restarted, ()) = tokio::join!(restart, lost);
    restarted.unwrap();
    let back = Instant::now();
    next_event(&mut events, "a deleted after the relist", deleted("a")).await;
    let resumed = back.elapsed();
    println!("restart: the watch saw the loss {resumed:?} after the API server was back");
    // The watch goes on: a room created after the restart is seen.
    runtime.create_room(&s, Version::FIRST, "b").await.unwrap();
    next_event(&mut events, "b ready", upserted("b", InstanceStatus::Ready)).await;
}

#[tokio::test]
async fn a_rooms_token_lives_in_a_secret_the_pod_names_not_in_the_pod() {
    use k8s_openapi::api::core::v1::Secret;
    let cluster = Cluster::start("token_secret").await;
    let secret = maestro_core::RoomTokenSecret::new("boundaries-secret-0123456789").unwrap();
    let runtime = cluster.runtime_with(|c| c.rooms_api.token_secret = Some(secret.clone()));
    let s = scheduler("token", (45700, 45710));
    runtime.create_scheduler(&s.name).await.unwrap();
    runtime.create_room(&s, Version::FIRST, "t1").await.unwrap();
    // A retried creation finds the Secret there: the same token, success.
    runtime.create_room(&s, Version::FIRST, "t1").await.unwrap();

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &s.name);
    let pod = serde_json::to_value(pods.get("t1").await.unwrap()).unwrap();
    let env = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let token = env
        .iter()
        .find(|e| e["name"] == "MAESTRO_ROOM_TOKEN")
        .unwrap();
    assert!(
        token.get("value").is_none(),
        "the token is in the pod: {token}"
    );
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({"name": "t1-token", "key": "token"})
    );
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &s.name);
    let stored = secrets.get("t1-token").await.unwrap();
    let value = &stored.data.unwrap()["token"].0;
    assert_eq!(String::from_utf8_lossy(value), secret.token(&s.name, "t1"));

    runtime
        .delete_room(&s.name, "t1", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        secrets.get_opt("t1-token").await.unwrap().is_none(),
        "the Secret outlived its room"
    );
    runtime.delete_scheduler(&s.name).await.unwrap();
}
