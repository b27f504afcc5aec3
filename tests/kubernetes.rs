//! End to end on Kubernetes: the real `maestro dev --runtime kubernetes` binary (worker,
//! gateway, runtime watcher, disruption guard) against the in-test fake API server with a
//! kubelet, through `KUBECONFIG`. A scheduler's rooms become pods in its namespace, pod events
//! show up in room statuses, occupied rooms are protected, deletion removes the namespace.

mod common;

use std::time::{Duration, Instant};

use common::{Maestro, manifests, room_token, scheduler_body};
use maestro_testkit::fake_kube::{FakeKube, Kubelet};
use maestro_testkit::{TemporalDevServer, eventually, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const ROOMS_URL: &str = "http://maestro-rooms.maestro.svc:8070";

fn env_of(pod: &Value, name: &str) -> Option<String> {
    pod["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
}

#[tokio::test]
async fn rooms_run_as_pods_and_pod_events_reach_room_statuses() -> anyhow::Result<()> {
    if std::env::var_os("KUBECONFIG").is_some() {
        println!(
            "KUBECONFIG is set, but this test drives the fake API server's kubelet; it uses the fake"
        );
    }
    let temporal = TemporalDevServer::start().await?;
    let fake = FakeKube::start_with_kubelet(Kubelet::default()).await?;
    let kubeconfig = temp_dir("kubeconfig").join("config");
    std::fs::write(&kubeconfig, fake.kubeconfig())?;
    let maestro = Maestro::start_with_env(
        &temporal,
        &[
            "--runtime",
            "kubernetes",
            "--disruption-interval",
            "500ms",
            "--rooms-api-url",
            ROOMS_URL,
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap_or_default())],
    )
    .await?;

    let name = "k8s-e2e";
    let (code, body) = maestro.post("/schedulers", scheduler_body(name)).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    // The health controller (first run a minute from now) would converge to roomsReplicas
    // too; adding them now keeps the test short.
    let (code, body) = maestro
        .post(
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 3}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");

    // Three pods in the scheduler's namespace; no ping yet, so the rooms are unready with
    // the node's external address.
    let rooms = eventually(WAIT, "3 unready rooms with addresses", || async {
        let (_, body) = maestro
            .get(&format!("/schedulers/{name}/rooms?status=unready"))
            .await
            .ok()?;
        let rooms = body["rooms"].as_array()?.clone();
        (rooms.len() == 3 && rooms.iter().all(|r| r["address"]["host"] == "203.0.113.10"))
            .then_some(rooms)
    })
    .await?;
    assert!(fake.get("namespaces", "", name).is_some());
    let pods = fake.list("pods");
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let room = pod["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(pod["metadata"]["namespace"], name);
        assert_eq!(
            env_of(pod, "MAESTRO_ROOMS_API_URL").as_deref(),
            Some(ROOMS_URL)
        );
        // The token is not in the pod: the pod names the room's Secret, which holds it.
        assert_eq!(env_of(pod, "MAESTRO_ROOM_TOKEN"), None);
        let token_ref = pod["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "MAESTRO_ROOM_TOKEN")
            .map(|e| e["valueFrom"]["secretKeyRef"].clone())
            .unwrap_or_default();
        assert_eq!(
            token_ref,
            json!({"name": format!("{room}-token"), "key": "token"})
        );
        let secret = fake
            .get("secrets", name, &format!("{room}-token"))
            .expect("the room's token Secret");
        let stored = secret["data"]["token"].as_str().unwrap_or_default();
        let stored = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, stored)?;
        assert_eq!(String::from_utf8(stored)?, room_token(name, room));
        assert_eq!(env_of(pod, "MAESTRO_ROOM_ID").as_deref(), Some(room));
    }
    let ids: Vec<String> = rooms
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    let mut ports: Vec<u64> = rooms
        .iter()
        .filter_map(|r| r["address"]["ports"][0]["port"].as_u64())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "distinct host ports: {rooms:?}");

    // Pings compose with the pod status; an occupied room is protected from eviction.
    assert_eq!(
        maestro.ping_as(name, &ids[0], "occupied", 1).await?,
        StatusCode::OK
    );
    assert_eq!(
        maestro.ping_as(name, &ids[1], "ready", 0).await?,
        StatusCode::OK
    );
    assert_eq!(maestro.rooms(name, "occupied").await?, 1);
    eventually(WAIT, "disruption budget for 1 occupied room", || async {
        let pdb = fake.get("poddisruptionbudgets", name, "maestro-occupied-rooms")?;
        (pdb["spec"]["minAvailable"] == json!(2)).then_some(())
    })
    .await?;

    // The kubelet reports a crash loop: the room shows error, about as fast as the watch.
    let crashed = &ids[2];
    let started = Instant::now();
    assert!(fake.set_pod_status(name, crashed, json!({
        "phase": "Running",
        "containerStatuses": [{"name": "room", "image": "local/game-room", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}}],
    })));
    eventually(WAIT, "crashed room in error", || async {
        let (_, body) = maestro
            .get(&format!("/schedulers/{name}/rooms/{crashed}"))
            .await
            .ok()?;
        (body["room"]["status"] == "error").then_some(())
    })
    .await?;
    println!("pod status → room status: {:?}", started.elapsed());

    // Deleting the scheduler removes its rooms and its namespace.
    let (code, body) = maestro.delete(name).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    eventually(WAIT, "namespace and pods gone", || async {
        (fake.get("namespaces", "", name).is_none() && fake.list("pods").is_empty()).then_some(())
    })
    .await?;

    // No secret reached the log: management token, room-token secret, any room's token.
    let log = maestro.log_text();
    assert!(
        log.contains("pod created"),
        "the log is not the one we think"
    );
    for secret in [
        common::API_TOKEN.to_string(),
        common::ROOM_TOKEN_SECRET.to_string(),
    ]
    .into_iter()
    .chain(ids.iter().map(|room| room_token(name, room)))
    {
        assert!(!log.contains(&secret), "a secret is in the log");
    }

    // Every call Maestro made is allowed by the ClusterRole it is deployed with.
    let allowed = manifests::cluster_role_rules(&manifests::manifest()?);
    anyhow::ensure!(
        !allowed.is_empty(),
        "no ClusterRole in {}",
        manifests::MANIFEST
    );
    for request in fake.requests() {
        let needed = permission(&request);
        assert!(
            allowed
                .iter()
                .any(|(group, resource, verb)| (group, resource, verb)
                    == (&needed.0, &needed.1, &needed.2)),
            "deploy/kubernetes/maestro.yaml does not allow {needed:?} (for {request})"
        );
    }
    Ok(())
}

/// `(apiGroup, resource, verb)` a request needs, as Kubernetes' RBAC names them.
fn permission(request: &str) -> (String, String, String) {
    let (method, target) = request.split_once(' ').unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (group, rest) = match path.strip_prefix("/api/v1/") {
        Some(rest) => ("", rest),
        None => {
            let rest = path.strip_prefix("/apis/").unwrap_or(path);
            let mut parts = rest.splitn(3, '/');
            let group = parts.next().unwrap_or_default();
            let _version = parts.next();
            (group, parts.next().unwrap_or_default())
        }
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (resource, named) = match parts.as_slice() {
        ["namespaces", _, resource, ..] => (*resource, parts.len() > 3),
        [resource, ..] => (*resource, parts.len() > 1),
        [] => ("", false),
    };
    let verb = match method {
        "GET" if query.contains("watch=true") => "watch",
        "GET" if named => "get",
        "GET" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        other => other,
    };
    (group.to_string(), resource.to_string(), verb.to_string())
}

#[test]
fn every_setting_in_the_manifests_is_one_maestro_serve_reads() -> anyhow::Result<()> {
    let help = manifests::serve_help()?;
    let settings = manifests::settings(&manifests::manifest()?);
    for key in &settings {
        assert!(
            help.contains(&format!("env: {key}")),
            "{key} is not a `maestro serve` setting:\n{help}"
        );
    }
    assert!(
        settings.len() >= 10,
        "only {} settings found",
        settings.len()
    );
    Ok(())
}
