//! A burst of concurrent mixed submissions on one scheduler whose history is already long,
//! through three gateway processes, while the worker replays every task from paginated history
//! (sticky cache off) and is killed with SIGKILL in the middle. Proven from Temporal's own
//! record, not from our API: every accepted submission appears once among the scheduler's
//! signals and its operation's child workflow is started exactly once, in that order; the pods
//! the API server holds are what the accepted sequence implies; no worker logged a
//! nondeterminism error or a panic.
//!
//! Sizes: `MAESTRO_BURST` submissions (CI: 300) after `MAESTRO_BURST_HISTORY` operations (CI:
//! 250, about 2 800 history events). `docs/reliability.md` has the figures at 1 000.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{API_TOKEN, Maestro, scheduler_body};
use maestro_testkit::fake_kube::{FakeKube, Kubelet};
use maestro_testkit::{RedisServer, TemporalDevServer, eventually, temp_dir, temporal_bin};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Every submission is answered within this bound (accepted, or refused with a reason).
const ANSWER_BOUND: Duration = Duration::from_secs(10);

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Answer {
    gateway: usize,
    /// `None`: no HTTP answer at all (the client's 30 s timeout, a reset connection).
    status: Option<StatusCode>,
    latency: Duration,
    retry_after: Option<String>,
    body: Value,
}

async fn send(gateway: &Maestro, index: usize, name: &str, remove: bool) -> Answer {
    let path = if remove { "remove-rooms" } else { "add-rooms" };
    let started = Instant::now();
    let response = gateway
        .http
        .post(format!("{}/schedulers/{name}/{path}", gateway.api))
        .bearer_auth(API_TOKEN)
        .json(&json!({"amount": 1}))
        .send()
        .await;
    let (status, retry_after, body) = match response {
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = response.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (Some(status), retry_after, body)
        }
        Err(e) => (None, None, Value::String(e.to_string())),
    };
    Answer {
        gateway: index,
        status,
        latency: started.elapsed(),
        retry_after,
        body,
    }
}

fn temporal_json(address: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = std::process::Command::new(temporal_bin())
        .args(args)
        .args(["--address", address, "--output", "json"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "temporal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every event of every run of `workflow_id`, oldest run first.
fn all_runs_events(address: &str, workflow_id: &str) -> anyhow::Result<Vec<Value>> {
    let query = format!("WorkflowId = '{workflow_id}'");
    let runs = temporal_json(address, &["workflow", "list", "--query", &query])?;
    let mut runs: Vec<(String, String)> = runs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["startTime"].as_str()?.to_string(),
                r["execution"]["runId"].as_str()?.to_string(),
            ))
        })
        .collect();
    runs.sort();
    let mut events = Vec::new();
    for (_, run) in runs {
        let history = temporal_json(
            address,
            &["workflow", "show", "-w", workflow_id, "-r", &run],
        )?;
        events.extend(history["events"].as_array().cloned().unwrap_or_default());
    }
    Ok(events)
}

fn payload_json(payloads: &Value) -> Option<Value> {
    use base64::Engine as _;
    let data = payloads["payloads"][0]["data"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What Temporal recorded: operation ids in the order their signals were appended, each
/// batch in its own order (first occurrence; a repeat is a retry), with whether each removes a room, and the
/// operation ids in the order their child workflows were started.
fn recorded_order(events: &[Value], name: &str) -> (Vec<(String, bool)>, Vec<String>) {
    let mut accepted = Vec::new();
    let mut seen = BTreeSet::new();
    let mut started = Vec::new();
    let child_prefix = format!("op:{name}:");
    for event in events {
        if let Some(signal) = event.get("workflowExecutionSignaledEventAttributes") {
            // `enqueue_operations` carries a gateway's batch, in the order it took them.
            let batch = signal
                .get("input")
                .and_then(payload_json)
                .unwrap_or_default();
            for submission in batch.as_array().into_iter().flatten() {
                let Some(id) = submission["operation_id"].as_str() else {
                    continue;
                };
                if seen.insert(id.to_string()) {
                    let remove = submission["request"]["definitionName"] == "remove_rooms";
                    accepted.push((id.to_string(), remove));
                }
            }
        }
        if let Some(child) = event.get("startChildWorkflowExecutionInitiatedEventAttributes")
            && let Some(id) = child["workflowId"]
                .as_str()
                .and_then(|w| w.strip_prefix(&child_prefix))
        {
            started.push(id.to_string());
        }
    }
    (accepted, started)
}

/// `Some` once the scheduler has no pending and no active operation.
async fn drained(gateway: &Maestro, name: &str) -> Option<()> {
    for stage in ["pending", "active"] {
        let (_, page) = gateway
            .get(&format!("/schedulers/{name}/operations?stage={stage}"))
            .await
            .ok()?;
        if !page["operations"].as_array()?.is_empty() {
            return None;
        }
    }
    Some(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Fleet {
    temporal: TemporalDevServer,
    redis: RedisServer,
    fake: FakeKube,
    kubeconfig: PathBuf,
}

impl Fleet {
    async fn serve(&self, role: &str, extra: &[&str]) -> anyhow::Result<Maestro> {
        let store = self.redis.url();
        let mut args = vec![
            "--runtime",
            "kubernetes",
            "--room-store",
            &store,
            // No health controller: the room count is what the operations alone imply.
            "--health-interval",
            "0s",
            // One long run: the burst meets a history of thousands of events.
            "--continue-as-new-every",
            "100000",
        ];
        args.extend_from_slice(extra);
        let env = [("KUBECONFIG", self.kubeconfig.to_str().unwrap_or_default())];
        Maestro::serve(role, &self.temporal.address(), &args, &env).await
    }
}

fn worker_troubles(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("Nondeterminism")
                || l.contains("TMPRL1100")
                || l.contains("panicked")
                || l.contains("unprocessed protocol messages")
        })
        .map(|l| l.chars().take(300).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_long_history_through_three_gateways_survives_a_worker_kill()
-> anyhow::Result<()> {
    let burst = size("MAESTRO_BURST", 300);
    let history_ops = size("MAESTRO_BURST_HISTORY", 250);
    let fake = FakeKube::start_with_kubelet(Kubelet::default()).await?;
    let kubeconfig = temp_dir("kubeconfig").join("config");
    std::fs::write(&kubeconfig, fake.kubeconfig())?;
    let fleet = Fleet {
        temporal: TemporalDevServer::start().await?,
        redis: RedisServer::start().await?,
        fake,
        kubeconfig,
    };
    let mut worker = fleet.serve("worker", &[]).await?;
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(fleet.serve("gateway", &[]).await?);
    }
    let name = "burst";
    let mut body = scheduler_body(name);
    body["roomsReplicas"] = json!(0);
    body["spec"]["terminationGracePeriod"] = json!("1s");
    let (code, answer) = gateways[0].post("/schedulers", body).await?;
    anyhow::ensure!(code == StatusCode::OK, "{answer}");

    // A long history: cheap operations (removing a room from an empty scheduler), 20 at a time.
    let built = Instant::now();
    for wave in 0..history_ops.div_ceil(20) {
        let count = 20.min(history_ops - wave * 20);
        let sends = (0..count).map(|i| send(&gateways[i % 3], i % 3, name, true));
        for answer in futures::future::join_all(sends).await {
            anyhow::ensure!(
                answer.status == Some(StatusCode::OK),
                "building the history: {:?} after {:?}: {}\nworker troubles: {:#?}",
                answer.status,
                answer.latency,
                answer.body,
                worker_troubles(&worker.log_text())
            );
        }
        eventually(
            Duration::from_secs(120),
            "the history wave to drain",
            || drained(&gateways[0], name),
        )
        .await?;
    }
    let workflow_id = format!("scheduler:{name}");
    let described = temporal_json(
        &fleet.temporal.address(),
        &["workflow", "describe", "-w", &workflow_id],
    )?;
    let history_length = described["workflowExecutionInfo"]["historyLength"]
        .as_str()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_default();
    println!(
        "history: {history_ops} operations, {history_length} events, built in {:?}",
        built.elapsed()
    );
    anyhow::ensure!(
        history_length >= 10 * history_ops as u64,
        "expected a long history, got {history_length} events"
    );

    // Every task from now on replays the whole history, page by page.
    worker.kill9();
    let mut worker = fleet
        .serve("worker", &["--max-cached-workflows", "0"])
        .await?;
    let mut troubles = Vec::new();

    let started = Instant::now();
    let gateways = &gateways;
    let mut sends: futures::stream::FuturesUnordered<_> = (0..burst)
        .map(|i| async move {
            // Two additions for every removal, spread over the three gateways.
            let answer = send(&gateways[i % 3], i % 3, name, i % 3 == 2).await;
            (i, answer)
        })
        .collect();
    let mut answers: BTreeMap<usize, Answer> = BTreeMap::new();
    let mut killed = false;
    use futures::StreamExt as _;
    while let Some((i, answer)) = sends.next().await {
        answers.insert(i, answer);
        if !killed && answers.len() >= burst / 2 {
            // The worker dies with tasks of this workflow in flight and comes back.
            troubles.extend(worker_troubles(&worker.log_text()));
            worker.kill9();
            worker = fleet
                .serve("worker", &["--max-cached-workflows", "0"])
                .await?;
            killed = true;
        }
    }
    let answered_in = started.elapsed();

    let mut latencies: Vec<Duration> = answers.values().map(|a| a.latency).collect();
    latencies.sort();
    let accepted: Vec<&Answer> = answers
        .values()
        .filter(|a| a.status == Some(StatusCode::OK))
        .collect();
    let per_gateway: Vec<usize> = (0..3)
        .map(|g| accepted.iter().filter(|a| a.gateway == g).count())
        .collect();
    println!(
        "burst: {burst} submissions answered in {answered_in:?}: {} accepted ({per_gateway:?} per gateway), \
         p50 {:?}, p99 {:?}, max {:?}",
        accepted.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for answer in answers.values() {
        *by_status.entry(format!("{:?}", answer.status)).or_default() += 1;
    }
    troubles.extend(worker_troubles(&worker.log_text()));
    println!("answers by status: {by_status:?}; worker troubles so far: {troubles:#?}");
    for answer in answers.values() {
        assert!(
            answer.latency <= ANSWER_BOUND,
            "an answer took {:?} (bound {ANSWER_BOUND:?}): {:?} {}",
            answer.latency,
            answer.status,
            answer.body
        );
        match answer.status {
            Some(StatusCode::OK) => {
                assert!(answer.body["operationId"].is_string(), "{}", answer.body)
            }
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => {
                assert!(
                    answer.retry_after.is_some(),
                    "no Retry-After: {}",
                    answer.body
                );
                assert!(answer.body["message"].is_string(), "{}", answer.body);
            }
            other => panic!("unexpected answer {other:?}: {}", answer.body),
        }
    }
    assert!(
        accepted.len() * 10 >= burst * 9,
        "only {} of {burst} accepted",
        accepted.len()
    );

    // The worker keeps a cache again to drain the queue quickly; its first task per
    // workflow still replays the whole history.
    troubles.extend(worker_troubles(&worker.log_text()));
    worker.kill9();
    let worker = fleet.serve("worker", &[]).await?;
    let drain_started = Instant::now();
    let accepted_ids: BTreeSet<String> = accepted
        .iter()
        .filter_map(|a| a.body["operationId"].as_str().map(str::to_string))
        .collect();
    let (order, started_children) = eventually(
        Duration::from_secs(600),
        "every accepted operation to be started",
        || async {
            drained(&gateways[0], name).await?;
            let events = all_runs_events(&fleet.temporal.address(), &workflow_id).ok()?;
            Some(recorded_order(&events, name))
        },
    )
    .await?;
    println!("drained in {:?} after the burst", drain_started.elapsed());
    troubles.extend(worker_troubles(&worker.log_text()));
    assert!(troubles.is_empty(), "worker troubles: {troubles:#?}");

    let signalled: BTreeSet<String> = order.iter().map(|(id, _)| id.clone()).collect();
    assert!(
        accepted_ids.is_subset(&signalled),
        "accepted but not recorded: {:?}",
        accepted_ids.difference(&signalled).collect::<Vec<_>>()
    );
    let burst_order: Vec<&(String, bool)> = order
        .iter()
        .filter(|(id, _)| accepted_ids.contains(id))
        .collect();
    let burst_started: Vec<&String> = started_children
        .iter()
        .filter(|id| accepted_ids.contains(*id))
        .collect();
    assert_eq!(
        burst_started,
        burst_order.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        "each accepted operation started once, in acceptance order"
    );

    // Additions and removals of one room each, in acceptance order, from none.
    let implied = burst_order.iter().fold(0usize, |rooms, (_, remove)| {
        if *remove {
            rooms.saturating_sub(1)
        } else {
            rooms + 1
        }
    });
    let pods = eventually(Duration::from_secs(60), "the implied pods", || async {
        let pods = fleet.fake.live_pods(name).len();
        (pods == implied).then_some(pods)
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: {} pods, {implied} implied",
            fleet.fake.live_pods(name).len()
        )
    })?;
    println!("rooms: {pods} pods, as the accepted sequence implies");

    // Still usable: a delete goes through and removes every room.
    let (code, answer) = gateways[1].delete(name).await?;
    anyhow::ensure!(code == StatusCode::OK, "{answer}");
    eventually(Duration::from_secs(120), "every pod gone", || async {
        fleet.fake.live_pods(name).is_empty().then_some(())
    })
    .await?;
    Ok(())
}
