//! Faults, end to end on real processes: the worker, the Temporal server and the gateway are
//! killed with SIGKILL mid-operation and restarted; Redis is paused and restarted; the
//! Kubernetes API fails. Rooms run on the in-test Kubernetes API server (it outlives every
//! Maestro process, as a cluster does), so "exactly the target number of rooms" is checked
//! against what the API server holds. Every wait is bounded.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{API_TOKEN, Maestro, scheduler_body};
use maestro_testkit::fake_kube::{FakeKube, Kubelet};
use maestro_testkit::{RedisServer, TemporalDevServer, eventually, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OPERATION_WAIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(60);

fn kubeconfig(fake: &FakeKube) -> anyhow::Result<PathBuf> {
    let path = temp_dir("kubeconfig").join("config");
    std::fs::write(&path, fake.kubeconfig())?;
    Ok(path)
}

/// Pods the API server holds for a scheduler that are not being deleted.
fn live_pods(fake: &FakeKube, scheduler: &str) -> Vec<String> {
    fake.live_pods(scheduler)
        .into_iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// POSTs with an idempotency key; answers the operation id.
async fn submit(maestro: &Maestro, path: &str, body: Value, key: &str) -> anyhow::Result<String> {
    let response = maestro
        .http
        .post(format!("{}{path}", maestro.api))
        .bearer_auth(API_TOKEN)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == StatusCode::OK, "{path}: {status} {body}");
    body["operationId"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no operationId in {body}"))
}

/// Waits until the operation is final; answers it.
async fn finished(maestro: &Maestro, scheduler: &str, id: &str) -> anyhow::Result<Value> {
    maestro.final_operation(scheduler, id, OPERATION_WAIT).await
}

async fn operations_named(
    maestro: &Maestro,
    scheduler: &str,
    name: &str,
) -> anyhow::Result<Vec<Value>> {
    let (code, body) = maestro
        .get(&format!(
            "/schedulers/{scheduler}/operations?stage=final&perPage=100"
        ))
        .await?;
    anyhow::ensure!(code == StatusCode::OK, "{code} {body}");
    Ok(body["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["definitionName"] == name)
        .cloned()
        .collect())
}

/// A scheduler whose desired count is `rooms` (the health controller, an hour away, would
/// keep it there) and whose rooms take one port each from a wide range.
fn scheduler(name: &str, rooms: i64) -> Value {
    let mut body = scheduler_body(name);
    body["roomsReplicas"] = json!(rooms);
    body["spec"]["terminationGracePeriod"] = json!("1s");
    body
}

/// `maestro dev` (worker, gateway, in-memory or given room store) on the fake Kubernetes
/// API server with a kubelet, against its own Temporal dev server.
struct KubeDev {
    _temporal: TemporalDevServer,
    fake: FakeKube,
    maestro: Maestro,
}

impl KubeDev {
    async fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let temporal = TemporalDevServer::start().await?;
        let fake = FakeKube::start_with_kubelet(Kubelet::default()).await?;
        let kubeconfig = kubeconfig(&fake)?;
        let mut args = vec!["--runtime", "kubernetes", "--health-interval", "1h"];
        args.extend_from_slice(extra);
        let maestro = Maestro::start_with_env(
            &temporal,
            &args,
            &[("KUBECONFIG", kubeconfig.to_str().unwrap_or_default())],
        )
        .await?;
        Ok(Self {
            _temporal: temporal,
            fake,
            maestro,
        })
    }
}

/// Creates `name` wanting `rooms` rooms; with `add`, adds them and waits for it.
async fn create_scheduler(
    maestro: &Maestro,
    name: &str,
    rooms: i64,
    add: bool,
) -> anyhow::Result<()> {
    let (code, body) = maestro.post("/schedulers", scheduler(name, rooms)).await?;
    anyhow::ensure!(code == StatusCode::OK, "{body}");
    if add {
        let path = format!("/schedulers/{name}/add-rooms");
        let id = submit(maestro, &path, json!({"amount": rooms}), "initial").await?;
        let op = finished(maestro, name, &id).await?;
        anyhow::ensure!(op["status"] == "finished", "{op}");
    }
    Ok(())
}

/// What is killed with SIGKILL (and restarted a second later).
#[derive(Clone, Copy)]
enum Crash {
    Worker,
    Temporal,
}

/// Worker and gateway as separate processes (production wiring) sharing Redis, Temporal and
/// the Kubernetes API.
struct Fleet {
    temporal: TemporalDevServer,
    redis: RedisServer,
    fake: FakeKube,
    kubeconfig: PathBuf,
    worker: Maestro,
    gateway: Maestro,
}

impl Fleet {
    async fn start() -> anyhow::Result<Self> {
        let temporal = TemporalDevServer::start().await?;
        let redis = RedisServer::start().await?;
        let fake = FakeKube::start_with_kubelet(Kubelet::default()).await?;
        let kubeconfig = kubeconfig(&fake)?;
        let worker = Self::serve("worker", &temporal, &redis, &kubeconfig).await?;
        let gateway = Self::serve("gateway", &temporal, &redis, &kubeconfig).await?;
        Ok(Self {
            temporal,
            redis,
            fake,
            kubeconfig,
            worker,
            gateway,
        })
    }

    /// `maestro serve --role {role}` on the Kubernetes runtime with the Redis store.
    async fn serve(
        role: &str,
        temporal: &TemporalDevServer,
        redis: &RedisServer,
        kubeconfig: &std::path::Path,
    ) -> anyhow::Result<Maestro> {
        let store = redis.url();
        let args = [
            "--runtime",
            "kubernetes",
            "--room-store",
            &store,
            "--health-interval",
            "1h",
        ];
        let env = [("KUBECONFIG", kubeconfig.to_str().unwrap_or_default())];
        Maestro::serve(role, &temporal.address(), &args, &env).await
    }

    /// One more worker process on the same task queue, Redis and API server.
    async fn another_worker(&self) -> anyhow::Result<Maestro> {
        Self::serve("worker", &self.temporal, &self.redis, &self.kubeconfig).await
    }

    /// Adds 120 rooms (slowly: the API server answers in 15 ms), crashes `crash` once 15
    /// pods exist and restarts it, queues a removal of 20 while things are down, and checks the outcome: the
    /// addition finished once, the removal ran after it, exactly 100 rooms remain.
    async fn crash_during_add_rooms(&mut self, name: &str, crash: Crash) -> anyhow::Result<()> {
        let (code, body) = self
            .gateway
            .post("/schedulers", scheduler(name, 100))
            .await?;
        anyhow::ensure!(code == StatusCode::OK, "{body}");
        self.fake.set_latency(Duration::from_millis(15));
        let add = submit(
            &self.gateway,
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 120}),
            "add-120",
        )
        .await?;
        eventually(WAIT, "15 pods", || async {
            (live_pods(&self.fake, name).len() >= 15).then_some(())
        })
        .await?;
        let crashed_at = Instant::now();
        match crash {
            Crash::Worker => self.worker.kill9(),
            Crash::Temporal => self.temporal.kill(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match crash {
            Crash::Worker => self.worker.restart().await?,
            Crash::Temporal => self.temporal.restart().await?,
        }
        let remove = eventually(WAIT, "removal accepted", || async {
            submit(
                &self.gateway,
                &format!("/schedulers/{name}/remove-rooms"),
                json!({"amount": 20}),
                "remove-20",
            )
            .await
            .ok()
        })
        .await?;
        self.fake.set_latency(Duration::ZERO);

        let add_op = finished(&self.gateway, name, &add).await?;
        let remove_op = finished(&self.gateway, name, &remove).await?;
        println!(
            "{name}: recovered and finished {:?} after the crash",
            crashed_at.elapsed()
        );
        assert_eq!(add_op["status"], "finished", "{add_op}");
        assert_eq!(remove_op["status"], "finished", "{remove_op}");
        assert!(add_op["seq"].as_u64() < remove_op["seq"].as_u64());
        assert!(
            remove_op["startedAt"].as_str() >= add_op["finishedAt"].as_str(),
            "the removal started before the addition finished: {add_op} {remove_op}"
        );
        // One addition, however many times its activities ran; a retried request with the
        // same key is the same operation.
        assert_eq!(
            operations_named(&self.gateway, name, "add_rooms")
                .await?
                .len(),
            1
        );
        let again = submit(
            &self.gateway,
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 120}),
            "add-120",
        )
        .await?;
        assert_eq!(again, add);

        let pods = eventually(WAIT, "exactly 100 pods", || async {
            let pods = live_pods(&self.fake, name);
            (pods.len() == 100 && self.fake.list("pods").len() == 100).then_some(pods)
        })
        .await?;
        let distinct: BTreeSet<&String> = pods.iter().collect();
        assert_eq!(distinct.len(), 100);
        let (_, rooms) = self
            .gateway
            .get(&format!("/schedulers/{name}/rooms"))
            .await?;
        let known: BTreeSet<String> = rooms["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let expected: BTreeSet<String> = pods.into_iter().collect();
        eventually(WAIT, "room store matches the pods", || async {
            let (_, rooms) = self
                .gateway
                .get(&format!("/schedulers/{name}/rooms"))
                .await
                .ok()?;
            let known: BTreeSet<String> = rooms["rooms"]
                .as_array()?
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect();
            (known == expected).then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}: store has {} rooms", known.len()))?;
        Ok(())
    }
}

#[tokio::test]
async fn a_worker_killed_mid_operation_finishes_it_once_after_restart() -> anyhow::Result<()> {
    let mut fleet = Fleet::start().await?;
    fleet
        .crash_during_add_rooms("worker-crash", Crash::Worker)
        .await
}

#[tokio::test]
async fn a_temporal_server_killed_mid_operation_loses_nothing() -> anyhow::Result<()> {
    let mut fleet = Fleet::start().await?;
    fleet
        .crash_during_add_rooms("temporal-crash", Crash::Temporal)
        .await
}

/// A bounded loop of pings for `room`, as a game room keeps sending them: every answer's
/// status, or 0 for a transport error.
async fn ping_loop(rooms_api: String, scheduler: String, room: String, count: usize) -> Vec<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut seen = Vec::with_capacity(count);
    for _ in 0..count {
        let answer = http
            .put(format!(
                "{rooms_api}/scheduler/{scheduler}/rooms/{room}/ping"
            ))
            .bearer_auth(common::room_token(&scheduler, &room))
            .json(&json!({"status": "ready", "timestamp": 1, "runningMatches": 0}))
            .send()
            .await;
        seen.push(answer.map_or(0, |r| r.status().as_u16()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

#[tokio::test]
async fn a_gateway_killed_under_load_rebuilds_room_state_and_accepts_each_key_once()
-> anyhow::Result<()> {
    // Worker, gateway and an in-memory room store in one process: the kill loses the store.
    let KubeDev {
        _temporal,
        fake,
        mut maestro,
    } = KubeDev::start(&[]).await?;
    let name = "gateway-crash";
    create_scheduler(&maestro, name, 5, true).await?;
    let rooms = live_pods(&fake, name);
    assert_eq!(rooms.len(), 5);
    // Pings make a room ready once its pod is (the kubelet and the watcher take a moment).
    eventually(WAIT, "5 pods ready", || async {
        (maestro.rooms(name, "unready").await.ok()? == 5).then_some(())
    })
    .await?;
    for room in &rooms {
        assert_eq!(
            maestro.ping_as(name, room, "ready", 0).await?,
            StatusCode::OK
        );
    }
    assert_eq!(maestro.rooms(name, "ready").await?, 5);

    // Pings and a management call in flight when the process dies.
    let pings: Vec<_> = rooms
        .iter()
        .map(|room| {
            tokio::spawn(ping_loop(
                maestro.rooms_api.clone(),
                name.to_string(),
                room.clone(),
                150,
            ))
        })
        .collect();
    let in_flight = {
        let (http, url) = (
            maestro.http.clone(),
            format!("{}/schedulers/{name}/add-rooms", maestro.api),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(API_TOKEN)
                .header("Idempotency-Key", "second-2")
                .json(&json!({"amount": 2}))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    maestro.kill9();
    let first_try = in_flight.await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    maestro.restart().await?;

    // The client did not learn whether its request was accepted; it retries with its key.
    let second = eventually(WAIT, "retried add-rooms accepted", || async {
        submit(
            &maestro,
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 2}),
            "second-2",
        )
        .await
        .ok()
    })
    .await?;
    if let Ok(response) = first_try
        && let Ok(body) = response.json::<Value>().await
        && let Some(id) = body["operationId"].as_str()
    {
        assert_eq!(id, second, "the same key must give the same operation");
    }
    assert_eq!(
        finished(&maestro, name, &second).await?["status"],
        "finished"
    );
    let adds = operations_named(&maestro, name, "add_rooms").await?;
    assert_eq!(adds.len(), 2, "one per key: {adds:?}");

    // Every ping either succeeded or failed in a way a room retries (transport error, 503,
    // or 404 while the restarted gateway has not relisted the runtime yet); none was a 500.
    let mut answers = Vec::new();
    for task in pings {
        answers.extend(task.await?);
    }
    let unexpected: Vec<u16> = answers
        .iter()
        .copied()
        .filter(|s| ![0, 200, 404, 503].contains(s))
        .collect();
    assert!(unexpected.is_empty(), "unexpected answers {unexpected:?}");
    assert!(
        answers.contains(&0),
        "the kill was not seen by the pings: {answers:?}"
    );

    // Room state came back from the runtime (7 rooms, unready until they ping) and pings.
    let all = eventually(WAIT, "7 rooms rebuilt from the runtime", || async {
        let ids = maestro.room_ids(name, "unready").await.ok()?;
        let ready = maestro.room_ids(name, "ready").await.ok()?;
        (ids.len() + ready.len() == 7).then(|| [ids, ready].concat())
    })
    .await?;
    for room in &all {
        assert_eq!(
            maestro.ping_as(name, room, "ready", 0).await?,
            StatusCode::OK
        );
    }
    assert_eq!(maestro.rooms(name, "ready").await?, 7);
    Ok(())
}

#[tokio::test]
async fn redis_outages_answer_503_and_recover_by_themselves() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let store = redis.url();
    let KubeDev {
        _temporal,
        fake,
        maestro,
    } = KubeDev::start(&["--room-store", &store]).await?;
    let name = "redis-outage";
    create_scheduler(&maestro, name, 2, true).await?;
    let room = live_pods(&fake, name).remove(0);
    assert_eq!(
        maestro.ping_as(name, &room, "ready", 0).await?,
        StatusCode::OK
    );

    // Unreachable (paused: connections hang): 503 within the store's 2 s response timeout.
    redis.pause();
    let started = Instant::now();
    let during = maestro.ping_as(name, &room, "ready", 0).await?;
    let took = started.elapsed();
    let (listing, _) = maestro.get(&format!("/schedulers/{name}/rooms")).await?;
    redis.resume();
    println!("ping while Redis was paused: {during} in {took:?}");
    assert_eq!(during, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(listing, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Each 503 is one log line naming the request and the reason.
    let log = maestro.log_text();
    for request in [
        format!("method=PUT path=/scheduler/{name}/rooms/{room}/ping status=503"),
        format!("method=GET path=/schedulers/{name}/rooms status=503"),
    ] {
        let line = log.lines().find(|l| l.contains(&request));
        assert!(
            line.is_some_and(|l| l.contains("request failed") && l.contains("reason=")),
            "no log line for {request}:\n{log}"
        );
    }
    eventually(WAIT, "pings accepted after the pause", || async {
        (maestro.ping_as(name, &room, "occupied", 1).await.ok()? == StatusCode::OK).then_some(())
    })
    .await?;

    // Gone (restarted empty): 503 while down; afterwards the watcher lists the runtime into
    // the empty store and pings work again, with no restart of Maestro.
    redis.stop();
    let during = maestro.ping_as(name, &room, "ready", 0).await?;
    assert_eq!(during, StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart().await?;
    // A ping for a room the emptied store does not know answers 200 `success: false` (as
    // Maestro's), so wait for the rooms themselves.
    eventually(WAIT, "rooms back in the restarted store", || async {
        let (code, body) = maestro
            .get(&format!("/schedulers/{name}/rooms"))
            .await
            .ok()?;
        (code == StatusCode::OK && body["rooms"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await?;
    let (code, body) = maestro.get(&format!("/schedulers/{name}/rooms")).await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["rooms"].as_array().map(Vec::len), Some(2), "{body}");
    Ok(())
}

#[tokio::test]
async fn kubernetes_api_errors_fail_the_operation_with_a_reason_and_the_queue_goes_on()
-> anyhow::Result<()> {
    let KubeDev {
        _temporal,
        fake,
        maestro,
    } = KubeDev::start(&[]).await?;
    let name = "api-errors";
    create_scheduler(&maestro, name, 3, false).await?;

    // A few 429s and 500s are absorbed by the retries.
    fake.fail_next(Method::POST, "/pods", 429, 3);
    fake.fail_next(Method::POST, "/pods", 500, 2);
    let add = submit(
        &maestro,
        &format!("/schedulers/{name}/add-rooms"),
        json!({"amount": 2}),
        "ok-2",
    )
    .await?;
    assert_eq!(finished(&maestro, name, &add).await?["status"], "finished");
    assert_eq!(live_pods(&fake, name).len(), 2);

    // The API keeps failing: the operation fails after the retry budget, saying why, and
    // leaves no room of its own behind.
    fake.fail_next(Method::POST, "/pods", 500, 1_000_000);
    let failing = submit(
        &maestro,
        &format!("/schedulers/{name}/add-rooms"),
        json!({"amount": 3}),
        "fail-3",
    )
    .await?;
    let queued = submit(
        &maestro,
        &format!("/schedulers/{name}/add-rooms"),
        json!({"amount": 1}),
        "after-1",
    )
    .await?;
    let op = finished(&maestro, name, &failing).await?;
    assert_eq!(op["status"], "error", "{op}");
    let reason = op["error"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("create pod") && reason.contains("500"),
        "unreadable reason: {reason}"
    );
    println!("failed operation's reason: {reason}");
    fake.clear_faults();

    // The next operation runs.
    assert_eq!(
        finished(&maestro, name, &queued).await?["status"],
        "finished"
    );
    eventually(WAIT, "3 pods", || async {
        (live_pods(&fake, name).len() == 3).then_some(())
    })
    .await?;
    Ok(())
}

/// Host ports of the scheduler's live pods, one entry per port a pod asks for.
fn host_ports(fake: &FakeKube, scheduler: &str) -> Vec<i64> {
    fake.live_pods(scheduler)
        .into_iter()
        .flat_map(|p| {
            p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|port| port["hostPort"].as_i64())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A worker's runtime calls of one kind (its runtime metrics).
async fn runtime_calls(worker: &Maestro, call: &str) -> anyhow::Result<f64> {
    let text = worker
        .http
        .get(format!("{}/metrics", worker.internal))
        .send()
        .await?
        .text()
        .await?;
    let label = format!("call=\"{call}\"");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("maestro_runtime_calls_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b))
}

/// Each operation's one `rooms.create` batch rereads the scheduler's host ports once (a
/// metadata-only list of its pods), so with two workers polling, whichever runs the second
/// operation sees the first one's ports and none is handed out twice. (A batch that follows
/// its own operation's batch on the same worker skips the reread: the rule and its cases are
/// unit-tested in `maestro_activities`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_reread_host_ports_once_and_never_reuse_one() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let second = fleet.another_worker().await?;
    let name = "shared-ports";
    let (code, body) = fleet
        .gateway
        .post("/schedulers", scheduler(name, 0))
        .await?;
    anyhow::ensure!(code == StatusCode::OK, "{body}");
    fleet.fake.set_latency(Duration::from_millis(2));
    for key in ["add-200-a", "add-200-b"] {
        let add = submit(
            &fleet.gateway,
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 200}),
            key,
        )
        .await?;
        let op = finished(&fleet.gateway, name, &add).await?;
        assert_eq!(op["status"], "finished", "{op}");
    }
    let ports = host_ports(&fleet.fake, name);
    let distinct: BTreeSet<i64> = ports.iter().copied().collect();
    assert_eq!(ports.len(), 400, "one host port per room");
    assert_eq!(distinct.len(), 400, "a host port was handed out twice");
    let mut created = 0.0;
    let mut rereads = 0.0;
    for worker in [&fleet.worker, &second] {
        created += runtime_calls(worker, "create_room").await?;
        rereads += runtime_calls(worker, "refresh_room_allocations").await?;
    }
    eprintln!("400 rooms in 2 operations: {rereads} host-port rereads");
    assert_eq!(created, 400.0);
    assert_eq!(rereads, 2.0, "one reread per operation");
    Ok(())
}
