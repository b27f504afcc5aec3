//! Benchmarks 4–7 on the real system: `maestro serve` worker and gateway processes, the
//! Temporal dev server, Redis, and the in-test Kubernetes API server (with a kubelet that
//! readies pods 50 ms after creation).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use maestro_core::naming::operation_workflow_id;
use maestro_core::{Scheduler, Version};
use maestro_runtime::{KubernetesRuntime, KubernetesRuntimeConfig, Runtime};
use maestro_testkit::eventually_every;
use maestro_testkit::fake_kube::{FakeKube, Kubelet};
use maestro_workflows::operations::AddRooms;
use serde_json::json;
use temporalio_client::{Client, WorkflowFetchHistoryOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, Worker, WorkflowContext, WorkflowResult};

use crate::fleet::{Maestro, scheduler, until};
use crate::report::{Report, Row, Verdict};

mod scale;

const LATENCY_SAMPLES: usize = 15;
const SCALE_ROOMS: u32 = 1000;
const IDLE_SCHEDULERS: usize = 1000;
const TRACKED_SCHEDULERS: usize = 100;
const ROOMS_PER_TRACKED: usize = 100;
const SCRAPES: usize = 200;
const FLOOR_QUEUE: &str = "bench-floor";
/// Where the creation baseline's trivial workflows are started (no worker polls it).
const TRIVIAL_QUEUE: &str = "bench-trivial";
const CREATIONS_IN_FLIGHT: usize = 8;
const LISTINGS: usize = 7;
/// The Kubernetes-runtime worker's task queue.
const TASK_QUEUE: &str = "bench";

/// The floor's one activity: records when it ran.
pub struct FloorActivities {
    ran: Arc<Mutex<Option<Instant>>>,
}

#[activities]
impl FloorActivities {
    #[activity(name = "bench.noop")]
    pub async fn noop(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: u64,
    ) -> Result<u64, ActivityError> {
        if let Ok(mut ran) = self.ran.lock() {
            *ran = Some(Instant::now());
        }
        Ok(input)
    }
}

/// The Temporal floor: a workflow that runs one activity and returns its answer.
#[workflow]
#[derive(Default)]
pub struct FloorWorkflow;

#[workflow_methods]
impl FloorWorkflow {
    #[run(name = "bench_floor")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: u64) -> WorkflowResult<u64> {
        let out = ctx
            .execute_activity(
                FloorActivities::noop,
                input,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10)).build(),
            )
            .await;
        // An activity failure answers u64::MAX; the bench checks the answer.
        Ok(out.unwrap_or(u64::MAX))
    }
}

/// `(event type, event time)` of a workflow's history, the timeline that shows where an
/// operation's time goes (Temporal task hand-offs vs activity work).
async fn timeline(client: &Client, workflow_id: &str) -> Result<Vec<(String, SystemTime)>> {
    let json = client
        .get_workflow_handle::<AddRooms>(workflow_id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await?;
    let history: serde_json::Value = serde_json::from_slice(&json)?;
    history["events"]
        .as_array()
        .context("no events in the history")?
        .iter()
        .map(|e| {
            // The SDK's JSON names an event by its attributes' type.
            let kind = e["attributes"]
                .as_object()
                .and_then(|a| a.keys().next())
                .map(|k| k.trim_end_matches("EventAttributes").to_string())
                .unwrap_or_default();
            let at = humantime::parse_rfc3339(e["event_time"].as_str().unwrap_or_default())
                .with_context(|| format!("event time of {e}"))?;
            Ok((kind, at))
        })
        .collect()
}

/// Time spent running activities vs the whole workflow, and how many activities ran.
fn activity_share(events: &[(String, SystemTime)]) -> (Duration, Duration, usize) {
    let mut running = Duration::ZERO;
    let mut started = None;
    let mut count = 0;
    for (kind, at) in events {
        if kind == "ActivityTaskStarted" {
            started = Some(*at);
        } else if kind == "ActivityTaskCompleted"
            && let Some(s) = started.take()
        {
            running += at.duration_since(s).unwrap_or_default();
            count += 1;
        }
    }
    let total = match (events.first(), events.last()) {
        (Some((_, first)), Some((_, last))) => last.duration_since(*first).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    (running, total, count)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The first `POST .../namespaces/{namespace}/pods` the API server got after `after`.
fn first_pod_post(fake: &FakeKube, namespace: &str, after: Instant) -> Option<Instant> {
    let wanted = format!("POST /api/v1/namespaces/{namespace}/pods");
    fake.timed_requests()
        .into_iter()
        .find(|(at, r)| *at >= after && r.starts_with(&wanted))
        .map(|(at, _)| at)
}

fn pod_posts(fake: &FakeKube, namespace: &str) -> usize {
    let wanted = format!("POST /api/v1/namespaces/{namespace}/pods");
    fake.requests()
        .iter()
        .filter(|r| r.starts_with(&wanted))
        .count()
}

struct Fleet {
    temporal: String,
    dir: PathBuf,
    redis: String,
    kubeconfig: PathBuf,
    fake: FakeKube,
    worker: Maestro,
    gateway: Maestro,
    /// A gateway with the in-memory room store, fed only by its runtime watcher.
    memory_gateway: Maestro,
}

impl Fleet {
    async fn start(temporal: &str, redis: &str, dir: &Path) -> Result<Self> {
        let fake = FakeKube::start_with_kubelet(Kubelet::default()).await?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, fake.kubeconfig())?;
        let env = [("KUBECONFIG", kubeconfig.to_str().unwrap_or_default())];
        let with = |extra: &[&str]| -> Vec<String> {
            ["--runtime", "kubernetes", "--health-interval", "1h"]
                .iter()
                .chain(extra)
                .map(|a| a.to_string())
                .collect()
        };
        let worker = Maestro::serve(
            "worker",
            temporal,
            TASK_QUEUE,
            &with(&["--room-store", redis]),
            &env,
            &dir.join("worker.log"),
        )
        .await?;
        let gateway = Maestro::serve(
            "gateway",
            temporal,
            TASK_QUEUE,
            &with(&["--room-store", redis, "--metrics-interval", "30s"]),
            &env,
            &dir.join("gateway.log"),
        )
        .await?;
        let memory_gateway = Maestro::serve(
            "gateway",
            temporal,
            TASK_QUEUE,
            &with(&["--room-store", "memory", "--metrics-interval", "5s"]),
            &env,
            &dir.join("memory-gateway.log"),
        )
        .await?;
        Ok(Self {
            temporal: temporal.into(),
            dir: dir.into(),
            redis: redis.into(),
            kubeconfig,
            fake,
            worker,
            gateway,
            memory_gateway,
        })
    }

    /// Creates a scheduler and waits for its namespace.
    async fn create(&self, body: serde_json::Value) -> Result<()> {
        let name = body["name"].as_str().unwrap_or_default().to_string();
        self.gateway.post("/schedulers", body).await?;
        until(
            Duration::from_secs(60),
            Duration::from_millis(10),
            "namespace",
            || async { self.fake.get("namespaces", "", &name).is_some() },
        )
        .await?;
        Ok(())
    }

    /// A runtime of our own on the same API server (the "no Maestro in between" baseline).
    async fn direct_runtime(&self) -> Result<KubernetesRuntime> {
        let config = kube::Config::new(self.fake.url().parse()?);
        let client = kube::Client::try_from(config)?;
        Ok(KubernetesRuntime::new(
            client,
            KubernetesRuntimeConfig::default(),
        ))
    }
}

pub struct Wants {
    pub operations: bool,
    pub scale: bool,
    pub autoscaler: bool,
    pub capacity: bool,
    pub allocate: bool,
}

pub async fn run(
    report: &mut Report,
    temporal_address: &str,
    client: Client,
    redis: &str,
    redis_port: u16,
    dir: &Path,
    wants: Wants,
) -> Result<()> {
    let fleet = Fleet::start(temporal_address, redis, dir).await?;
    let idle_rss = (fleet.worker.rss_bytes()?, fleet.memory_gateway.rss_bytes()?);
    if wants.operations {
        operation_latency(report, &fleet, client.clone()).await?;
    }
    if wants.scale {
        scale::run(report, &fleet, &client).await?;
    }
    if wants.autoscaler {
        autoscaler(report, &fleet).await?;
    }
    if wants.allocate {
        // Before the 1 000 idle schedulers: the gateway's directory and Redis then hold
        // only the few schedulers above.
        let names = ["alloc-1", "alloc-2"];
        for name in names {
            fleet.create(scheduler(name, 0)).await?;
            crate::allocate::seed(&fleet.redis, name).await?;
        }
        crate::allocate::run(report, &fleet.gateway.rooms_api, redis_port, &names).await?;
    }
    if wants.capacity {
        capacity(report, &fleet, &client, idle_rss).await?;
    }
    Ok(())
}

/// 4. add_rooms(1) against a trivial workflow + one activity, alternating.
async fn operation_latency(report: &mut Report, fleet: &Fleet, client: Client) -> Result<()> {
    let ran = Arc::new(Mutex::new(None));
    let temporal = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
    let mut options = temporalio_sdk::WorkerOptions::new(FLOOR_QUEUE)
        .register_activities(FloorActivities { ran: ran.clone() })
        .build();
    options.register_workflow::<FloorWorkflow>()?;
    let mut worker = Worker::new(&temporal, client.clone(), options)?;
    let stop = worker.shutdown_handle();
    let worker_task = async move { worker.run().await };

    let body = async {
        fleet.create(scheduler("latency", 0)).await?;
        let mut floor_total = Vec::new();
        let mut floor_first = Vec::new();
        let mut maestro_total = Vec::new();
        let mut maestro_first = Vec::new();
        let mut maestro_accept = Vec::new();
        let mut last_timeline = String::new();
        // One round of each first: connections and caches warm.
        for i in 0..=LATENCY_SAMPLES {
            // The floor: start → the activity runs → the result.
            let started = Instant::now();
            let handle = client
                .start_workflow(
                    FloorWorkflow::run,
                    i as u64,
                    WorkflowStartOptions::new(
                        FLOOR_QUEUE,
                        format!("floor-{}-{i}", std::process::id()),
                    )
                    .build(),
                )
                .await?;
            let accepted = Instant::now();
            let answer = handle.get_result(Default::default()).await?;
            let done = Instant::now();
            ensure!(answer == i as u64, "the floor's activity failed");
            let activity = ran.lock().ok().and_then(|r| *r).context("activity time")?;

            // Maestro: POST add-rooms → accepted → first pod created → operation finished.
            let sent = Instant::now();
            let sent_wall = SystemTime::now();
            let id = fleet
                .gateway
                .submit("/schedulers/latency/add-rooms", json!({"amount": 1}))
                .await?;
            let maestro_accepted = Instant::now();
            let handle =
                client.get_workflow_handle::<AddRooms>(operation_workflow_id("latency", &id));
            let outcome = loop {
                match handle.get_result(Default::default()).await {
                    Ok(outcome) => break outcome,
                    // The operation's workflow may not have started yet.
                    Err(_) if sent.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => bail!("operation {id}: {e}"),
                }
            };
            let finished = Instant::now();
            ensure!(outcome.succeeded, "add_rooms failed: {:?}", outcome.error);
            let pod = first_pod_post(&fleet.fake, "latency", sent).context("no pod created")?;
            if i == 0 {
                continue;
            }
            if i == LATENCY_SAMPLES {
                // One sample's timeline, from the operation's own history.
                let events = timeline(&client, &operation_workflow_id("latency", &id)).await?;
                let at = |wanted: &str| {
                    events
                        .iter()
                        .find(|(k, _)| k == wanted)
                        .and_then(|(_, t)| t.duration_since(sent_wall).ok())
                        .map_or(f64::NAN, ms)
                };
                last_timeline = format!(
                    "one sample, ms after the request: accepted {:.0}, operation workflow started {:.0}, \
                     its activity started {:.0}, first pod POST {:.0}, activity completed {:.0}, \
                     operation workflow completed {:.0}, seen finished {:.0} (floor: activity {:.0}, result {:.0})",
                    ms(maestro_accepted - sent),
                    at("WorkflowExecutionStarted"),
                    at("ActivityTaskStarted"),
                    ms(pod - sent),
                    at("ActivityTaskCompleted"),
                    at("WorkflowExecutionCompleted"),
                    ms(finished - sent),
                    ms(activity.saturating_duration_since(started)),
                    ms(done - started),
                );
            }
            floor_total.push(ms(done - started));
            floor_first.push(ms(activity.saturating_duration_since(accepted)));
            maestro_total.push(ms(finished - sent));
            maestro_first.push(ms(pod.saturating_duration_since(maestro_accepted)));
            maestro_accept.push(ms(maestro_accepted - sent));
        }
        let (ft, ff, mt, mf, ma) = (
            median(floor_total),
            median(floor_first),
            median(maestro_total),
            median(maestro_first),
            median(maestro_accept),
        );
        report.row(
            Row::ratio(
                "4. add_rooms(1): request → operation finished (median of 15)",
                "start workflow → result (one no-op activity)",
                mt,
                ft,
                "ms",
                Verdict::at_most(1.5),
            )
            .with_note(format!(
                "accepted after {ma:.1} ms (HTTP → Temporal signal → answer)"
            )),
        );
        report.row(
            Row::ratio(
                "4. add_rooms(1): accepted → first room created (pod POST)",
                "workflow started → activity runs",
                mf,
                ff,
                "ms",
                Verdict::at_most(1.3),
            )
            .with_note(last_timeline),
        );
        Ok::<_, anyhow::Error>(())
    };
    let result = tokio::select! {
        stopped = worker_task => Err(anyhow::anyhow!("floor worker stopped: {stopped:?}")),
        out = body => out,
    };
    stop();
    result
}

const AUTOSCALER_ROUNDS: usize = 5;

/// Two ready rooms become occupied; how long until the health controller asks for more.
async fn autoscaler_round(
    fleet: &Fleet,
    gateway: &Maestro,
    name: &str,
    interval: Duration,
) -> Result<Duration> {
    let mut body = scheduler(name, 2);
    body["autoscaling"] = json!({
        "enabled": true, "min": 2, "max": 10, "cooldown": 0,
        "policy": {"type": "roomOccupancy",
                   "parameters": {"roomOccupancy": {"readyTarget": 0.5, "downThreshold": 0.99}}}
    });
    gateway.post("/schedulers", body).await?;
    until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        "2 rooms",
        || async { fleet.fake.ready_pods(name) == 2 },
    )
    .await?;
    let rooms: Vec<String> = fleet
        .fake
        .live_pods(name)
        .into_iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for room in &rooms {
        fleet.gateway.ping(name, room, "ready", 0).await?;
    }
    // Let a health round see a steady fleet, then occupy every room.
    tokio::time::sleep(interval * 2).await;
    ensure!(
        pod_posts(&fleet.fake, name) == 2,
        "the fleet grew before occupancy rose"
    );
    for room in &rooms {
        fleet.gateway.ping(name, room, "occupied", 1).await?;
    }
    let occupied = Instant::now();
    let requested = eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(5),
        "new rooms requested",
        || async { first_pod_post(&fleet.fake, name, occupied) },
    )
    .await?;
    Ok(requested - occupied)
}

/// 7. Occupancy rises above the ready target → the health controller asks for rooms.
async fn autoscaler(report: &mut Report, fleet: &Fleet) -> Result<()> {
    let interval = Duration::from_secs(1);
    let env = [("KUBECONFIG", fleet.kubeconfig.to_str().unwrap_or_default())];
    // Schedulers take the health interval of the gateway that created them.
    let fast = Maestro::serve(
        "gateway",
        &fleet.temporal,
        TASK_QUEUE,
        &[
            "--runtime",
            "kubernetes",
            "--room-store",
            &fleet.redis,
            "--health-interval",
            "1s",
            "--metrics-interval",
            "30s",
        ]
        .map(str::to_string),
        &env,
        &fleet.dir.join("autoscaler-gateway.log"),
    )
    .await?;
    // The reaction depends on where in the interval occupancy rises: several schedulers,
    // the worst one against the target.
    let mut reactions = Vec::new();
    for round in 0..AUTOSCALER_ROUNDS {
        reactions.push(ms(autoscaler_round(
            fleet,
            &fast,
            &format!("auto-{round}"),
            interval,
        )
        .await?));
    }
    let worst = reactions.iter().copied().fold(0.0, f64::max);
    report.row(
        Row::ratio(
            "7. Autoscaler: occupancy above the ready target → first new room requested (worst of 5)",
            "health interval (1 s) + 1 s",
            worst,
            ms(interval + Duration::from_secs(1)),
            "ms",
            Verdict::at_most(1.0),
        )
        .with_note(format!("median {:.0} ms", median(reactions))),
    );
    Ok(())
}

/// Benchmark 6: RSS with 1 000 idle schedulers (worker) and 10 000 tracked rooms (gateway),
/// and the `/metrics` scrape at 1 000 schedulers and 10 000 rooms.
async fn capacity(
    report: &mut Report,
    fleet: &Fleet,
    client: &Client,
    idle_rss: (u64, u64),
) -> Result<()> {
    let names: Vec<String> = (0..IDLE_SCHEDULERS)
        .map(|i| format!("idle-{i:04}"))
        .collect();
    // The baseline first, so Maestro's 1 000 creations are not still running under it: the
    // same number of trivial workflows started, as many at a time. No worker polls their
    // queue (a start is what is measured); they time out by themselves.
    let started = Instant::now();
    let trivial = futures::stream::iter(0..IDLE_SCHEDULERS)
        .map(|i| {
            let options = WorkflowStartOptions::new(
                TRIVIAL_QUEUE,
                format!("trivial-{}-{i}", std::process::id()),
            )
            .execution_timeout(Duration::from_secs(120))
            .build();
            let client = client.clone();
            async move {
                client
                    .start_workflow(FloorWorkflow::run, i as u64, options)
                    .await
            }
        })
        .buffer_unordered(CREATIONS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let trivial_s = started.elapsed().as_secs_f64();
    for result in trivial {
        result?;
    }
    let started = Instant::now();
    let created = futures::stream::iter(names.iter().cloned())
        .map(|name| async move { fleet.gateway.post("/schedulers", scheduler(&name, 0)).await })
        .buffer_unordered(CREATIONS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let created_s = started.elapsed().as_secs_f64();
    for result in created {
        result?;
    }
    until(
        Duration::from_secs(600),
        Duration::from_millis(200),
        "1 000 namespaces",
        || async {
            names
                .iter()
                .all(|n| fleet.fake.get("namespaces", "", n).is_some())
        },
    )
    .await?;
    let namespaces_s = started.elapsed().as_secs_f64();
    let n = IDLE_SCHEDULERS as f64;
    report.row(
        Row::ratio(
            "8. 1 000 schedulers created (POST /schedulers answered, 8 in flight)",
            "1 000 trivial workflows started, 8 in flight",
            n / created_s,
            n / trivial_s,
            "schedulers/s",
            Verdict::at_least(0.5),
        )
        .with_note(format!(
            "{created_s:.1} s / {trivial_s:.1} s; every create_scheduler operation had made its namespace after {namespaces_s:.1} s"
        )),
    );
    list_schedulers(report, fleet).await?;
    // Let the creations' workflow tasks and caches settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let worker_rss = fleet.worker.rss_bytes()?;
    let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
    report.row(
        Row::ratio(
            "6. Worker RSS with 1 000 idle schedulers (+ the few above)",
            "the same worker just started",
            mib(worker_rss),
            mib(idle_rss.0),
            "MiB",
            Verdict::absolute_below(mib(worker_rss), 200.0, "≤ 200 MB"),
        )
        .with_note(format!(
            "{:.0} KiB per scheduler",
            (worker_rss.saturating_sub(idle_rss.0)) as f64 / 1024.0 / IDLE_SCHEDULERS as f64
        )),
    );

    // The reporter's operation queries from here to the scrape: idle schedulers whose memo
    // mark holds are not asked again.
    let queried = |m: &str| sample(m, "maestro_reporter_operation_queries_total");
    let queries_since = (
        Instant::now(),
        queried(&fleet.memory_gateway.metrics().await?),
    );

    // 10 000 pods straight into the API server; the memory-store gateway learns them from
    // its runtime watcher, as after a restart.
    let runtime = Arc::new(fleet.direct_runtime().await?);
    let jobs: Vec<(usize, usize)> = (0..TRACKED_SCHEDULERS)
        .flat_map(|s| (0..ROOMS_PER_TRACKED).map(move |r| (s, r)))
        .collect();
    let schedulers: Arc<Vec<Scheduler>> = Arc::new(
        names[..TRACKED_SCHEDULERS]
            .iter()
            .map(|n| serde_json::from_value(scheduler(n, 0)))
            .collect::<Result<_, _>>()?,
    );
    let results = futures::stream::iter(jobs)
        .map(|(s, r)| {
            let runtime = runtime.clone();
            let schedulers = schedulers.clone();
            async move {
                let scheduler = &schedulers[s];
                runtime
                    .create_room(
                        scheduler,
                        Version::FIRST,
                        &format!("{}-r{r:03}", scheduler.name),
                    )
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for result in results {
        result?;
    }
    let total = (TRACKED_SCHEDULERS * ROOMS_PER_TRACKED) as f64;
    until(
        Duration::from_secs(300),
        Duration::from_millis(500),
        "10 000 rooms in /metrics",
        || async {
            fleet
                .memory_gateway
                .metrics()
                .await
                .map(|m| current_rooms(&m) >= total)
                .unwrap_or(false)
        },
    )
    .await?;
    let gateway_rss = fleet.memory_gateway.rss_bytes()?;
    report.row(Row::ratio(
        "6. Gateway RSS tracking 10 000 rooms (in-memory store, 1 000 schedulers)",
        "the same gateway just started",
        mib(gateway_rss),
        mib(idle_rss.1),
        "MiB",
        Verdict::absolute_below(mib(gateway_rss), 100.0, "≤ 100 MB"),
    ));

    // Scrape time: the real /metrics against a bare handler serving the same bytes.
    let body = fleet.memory_gateway.metrics().await?;
    let bare = bare_bytes_server(body.clone()).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", fleet.memory_gateway.internal);
    let (real, baseline) = (
        scrape_times(&http, &url).await?,
        scrape_times(&http, &bare).await?,
    );
    report.row(
        Row::ratio(
            "6. /metrics scrape at 1 000 schedulers and 10 000 rooms (p50 of 200)",
            "axum serving the same bytes pre-encoded",
            median(real),
            median(baseline),
            "ms",
            Verdict::at_most(5.0),
        )
        .with_note(format!(
            "{} KiB of exposition; in the {:.0} s before it the reporter (5 s refreshes, last one {:.0} ms) asked {:.0} scheduler workflows for their operations",
            body.len() / 1024,
            queries_since.0.elapsed().as_secs_f64(),
            sample(&body, "maestro_reporter_refresh_duration_seconds") * 1000.0,
            queried(&body) - queries_since.1,
        )),
    );
    Ok(())
}

/// Benchmark 9: `GET /schedulers` with the 1 000 idle schedulers against the Temporal CLI
/// listing the same workflows (same visibility query, memo included in both answers).
async fn list_schedulers(report: &mut Report, fleet: &Fleet) -> Result<()> {
    let query = format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running'",
        maestro_workflows::names::SCHEDULER_WORKFLOW
    );
    let mut ours = Vec::with_capacity(LISTINGS);
    let mut cli = Vec::with_capacity(LISTINGS);
    let mut listed = (0, 0);
    for _ in 0..LISTINGS {
        let started = Instant::now();
        let answer = fleet.gateway.get("/schedulers").await?;
        ours.push(ms(started.elapsed()));
        listed.0 = answer["schedulers"].as_array().map_or(0, Vec::len);
        let started = Instant::now();
        let output = tokio::process::Command::new(maestro_testkit::temporal_bin())
            .args([
                "workflow",
                "list",
                "--address",
                &fleet.temporal,
                "--query",
                &query,
            ])
            .args(["--limit", "5000", "--output", "json"])
            .output()
            .await
            .context("temporal workflow list")?;
        cli.push(ms(started.elapsed()));
        ensure!(
            output.status.success(),
            "temporal workflow list: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let executions: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        listed.1 = executions.as_array().map_or(0, Vec::len);
    }
    ensure!(
        listed.0 >= IDLE_SCHEDULERS && listed.0 == listed.1,
        "listed {} / {}",
        listed.0,
        listed.1
    );
    report.row(
        Row::ratio(
            "9. GET /schedulers with 1 000 schedulers (median of 7)",
            "temporal workflow list of the same workflows (CLI, JSON)",
            median(ours),
            median(cli),
            "ms",
            Verdict::at_most(2.0),
        )
        .with_note(format!("{} schedulers in each answer", listed.0)),
    );
    Ok(())
}

/// The value of the sample named exactly `series` (name and labels), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Sum of `maestro_worker_current_rooms` over schedulers.
fn current_rooms(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("maestro_worker_current_rooms{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape_times(http: &reqwest::Client, url: &str) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let text = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        ensure!(!text.is_empty(), "empty scrape");
        times.push(ms(started.elapsed()));
    }
    Ok(times)
}

/// Serves `body` on `/metrics`; its URL.
async fn bare_bytes_server(body: String) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = axum::body::Bytes::from(body);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/metrics"))
}
