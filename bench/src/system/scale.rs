//! Benchmark 5: how fast a fleet grows. Rooms through Maestro (`add-rooms`, until every room
//! is ready) against the same rooms created by the runtime alone, as many at once as one
//! `rooms.create` activity runs: 1 000 and 10 000 pods on the Kubernetes API, 1 000 local
//! game-room processes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use futures::StreamExt;
use maestro_core::naming::operation_workflow_id;
use maestro_core::operation::MAX_ROOMS_PER_OPERATION;
use maestro_core::{Scheduler, Version};
use maestro_runtime::{ProcessRuntime, ProcessRuntimeConfig, RoomsApiEndpoints, Runtime};
use serde_json::json;
use temporalio_client::Client;

use super::{Fleet, SCALE_ROOMS, activity_share, pod_posts, sample, timeline};
use crate::fleet::{Maestro, scheduler, until};
use crate::report::{Report, Row, Verdict};

/// The peak a studio asks for: ten operations of Maestro's 1 000-room limit, back to back.
const MANY_ROOMS: u32 = 10_000;

pub(super) async fn run(report: &mut Report, fleet: &Fleet, client: &Client) -> Result<()> {
    kubernetes(report, fleet, client, SCALE_ROOMS).await?;
    kubernetes(report, fleet, client, MANY_ROOMS).await?;
    processes(report, fleet).await
}

/// `n` rooms of `scheduler` through `runtime` alone, `ROOMS_IN_FLIGHT` at a time (what one
/// `rooms.create` activity runs at once).
async fn create_directly(runtime: &dyn Runtime, scheduler: &Scheduler, n: usize) -> Result<()> {
    let results = futures::stream::iter(0..n)
        .map(|i| {
            let id = format!("{}-{i:05}", scheduler.name);
            async move { runtime.create_room(scheduler, Version::FIRST, &id).await }
        })
        .buffer_unordered(maestro_activities::ROOMS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for result in results {
        result?;
    }
    Ok(())
}

/// `rooms` pods through Maestro (operations of at most 1 000 rooms, submitted at once, run one
/// after another) against the same number created directly, until all are Ready.
async fn kubernetes(report: &mut Report, fleet: &Fleet, client: &Client, rooms: u32) -> Result<()> {
    let n = rooms as usize;
    let (direct_name, name) = (format!("direct-{rooms}"), format!("scale-{rooms}"));
    let with_ports = |name: &str| {
        let mut body = scheduler(name, 0);
        // One host port a room, and room for all of them.
        body["portRange"] = json!({"start": 20000, "end": 20000 + 2 * rooms});
        body
    };
    // Each phase starts on a quiet box: the gateway's watcher follows every managed pod, the
    // direct phase's too, and its backlog would otherwise run into the next phase.
    watcher_quiet(fleet).await?;
    // Direct: the runtime's own create_room, as many at once as an activity runs.
    let runtime = fleet.direct_runtime().await?;
    let direct: Scheduler = serde_json::from_value(with_ports(&direct_name))?;
    runtime.create_scheduler(&direct_name).await?;
    let started = Instant::now();
    create_directly(&runtime, &direct, n).await?;
    let created = started.elapsed();
    let direct_ready = until(
        Duration::from_secs(300),
        Duration::from_millis(20),
        "direct pods ready",
        || async { fleet.fake.ready_pods(&direct_name) == n },
    )
    .await?
        - started;

    let (absorbed, absorbing) = watcher_quiet(fleet).await?;
    fleet.create(with_ports(&name)).await?;
    let before = fleet.worker.metrics().await?;
    let started = Instant::now();
    let mut ids = Vec::new();
    let mut left = rooms;
    while left > 0 {
        let amount = left.min(MAX_ROOMS_PER_OPERATION);
        let path = format!("/schedulers/{name}/add-rooms");
        ids.push(
            fleet
                .gateway
                .submit(&path, json!({ "amount": amount }))
                .await?,
        );
        left -= amount;
    }
    let maestro_ready = until(
        Duration::from_secs(600),
        Duration::from_millis(20),
        "Maestro's pods ready",
        || async { fleet.fake.ready_pods(&name) == n },
    )
    .await?
        - started;
    let (mut running, mut total, mut batches) = (Duration::ZERO, Duration::ZERO, 0);
    for id in &ids {
        fleet
            .gateway
            .finished(&name, id, Duration::from_secs(120))
            .await?;
        let events = timeline(client, &operation_workflow_id(&name, id)).await?;
        let (r, t, b) = activity_share(&events);
        (running, total, batches) = (running + r, total + t, batches + b);
    }
    let after = fleet.worker.metrics().await?;
    let spent = |call: &str| {
        let sum = |m: &str, what: &str| {
            sample(
                m,
                &format!("maestro_runtime_call_duration_seconds_{what}{{call=\"{call}\"}}"),
            )
        };
        (
            sum(&after, "sum") - sum(&before, "sum"),
            sum(&after, "count") - sum(&before, "count"),
        )
    };
    let (create_s, creates) = spent("create_room");
    let (refresh_s, refreshes) = spent("refresh_room_allocations");
    ensure!(
        pod_posts(&fleet.fake, &name) == n,
        "Maestro created more pods than rooms"
    );
    let operations = ids.len();
    // Throughput ratio: direct time / Maestro time (1.0 = Maestro adds nothing).
    report.row(
        Row::ratio(
            &format!("5. Scale-up: {} rooms on the Kubernetes API (rooms/s to all Ready)", thousands(rooms)),
            &format!("the runtime's create_room × {}, no Maestro", thousands(rooms)),
            n as f64 / maestro_ready.as_secs_f64(),
            n as f64 / direct_ready.as_secs_f64(),
            "rooms/s",
            Verdict::at_least(0.8),
        )
        .with_note(format!(
            "all Ready after {:.1} s / {:.1} s (direct creations took {:.1} s; then the gateway's watcher \
             took {:.1} s more to record {absorbed:.0} pod events of theirs, before Maestro's phase began); \
             {operations} operation(s) of at most 1 000 rooms, one after another: {batches} rooms.create activities ran \
             {:.2} s of the operations' {:.2} s, the rest is Temporal hand-offs; \
             in the activities (worker metrics): {creates:.0} create_room calls, {create_s:.2} s summed over the {in_flight} in flight, \
             {refreshes:.0} port-book refreshes (pod lists) {refresh_s:.2} s; around each call 2 Redis round trips, a heartbeat, a log line",
            maestro_ready.as_secs_f64(),
            direct_ready.as_secs_f64(),
            created.as_secs_f64(),
            absorbing.as_secs_f64(),
            running.as_secs_f64(),
            total.as_secs_f64(),
            in_flight = maestro_activities::ROOMS_IN_FLIGHT,
        )),
    );
    Ok(())
}

/// Waits until the gateway's watcher has processed every pod event so far (its event count
/// unchanged for half a second); how many it processed meanwhile, and for how long.
async fn watcher_quiet(fleet: &Fleet) -> Result<(f64, Duration)> {
    const SERIES: &str = "maestro_watcher_events_total{kind=\"upserted\"}";
    let (started, first) = (
        Instant::now(),
        sample(&fleet.gateway.metrics().await?, SERIES),
    );
    let (mut last, mut since) = (first, Instant::now());
    while since.elapsed() < Duration::from_millis(500) {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the gateway's watcher was still busy after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sample(&fleet.gateway.metrics().await?, SERIES);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    // The half second of quiet that ended the wait is not the watcher's work.
    Ok((last - first, since - started))
}

/// `10000` → `10 000`, as the page writes counts.
fn thousands(n: u32) -> String {
    match n {
        0..1000 => n.to_string(),
        _ => format!("{} {:03}", n / 1000, n % 1000),
    }
}

/// A scheduler whose rooms are local `game-room` processes pinging every 30 s.
fn process_scheduler(name: &str) -> Result<serde_json::Value> {
    let game_room = crate::fleet::sibling("game-room")?;
    let mut body = scheduler(name, 0);
    body["portRange"] = json!({"start": 40000, "end": 41999});
    body["spec"]["containers"][0]["command"] =
        json!([game_room.display().to_string(), "--ping-interval", "30s"]);
    Ok(body)
}

/// Serves the rooms' pings on its own, answering success; counts rooms that said ready.
async fn ping_collector() -> Result<(String, Arc<Mutex<std::collections::BTreeSet<String>>>)> {
    let ready = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let seen = ready.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/scheduler/{scheduler}/rooms/{room}/ping",
        axum::routing::put(
            move |axum::extract::Path((_, room)): axum::extract::Path<(String, String)>,
                  axum::Json(body): axum::Json<serde_json::Value>| {
                let seen = seen.clone();
                async move {
                    if body["status"] == "ready"
                        && let Ok(mut seen) = seen.lock()
                    {
                        seen.insert(room);
                    }
                    axum::Json(json!({"success": true}))
                }
            },
        ),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), ready))
}

/// Benchmark 5 on the process runtime: 1 000 local game rooms through Maestro against the
/// same rooms started by the process runtime directly, each until it pinged ready.
async fn processes(report: &mut Report, fleet: &Fleet) -> Result<()> {
    let n = SCALE_ROOMS as usize;
    let dir = fleet.dir.join("process-rooms");
    std::fs::create_dir_all(&dir)?;
    let (collector, ready) = ping_collector().await?;
    let runtime = ProcessRuntime::new(ProcessRuntimeConfig {
        rooms_api: RoomsApiEndpoints {
            http_url: collector,
            grpc_url: None,
            token_secret: Some(
                maestro_core::RoomTokenSecret::new(crate::fleet::ROOM_TOKEN_SECRET)
                    .map_err(anyhow::Error::msg)?,
            ),
        },
        extra_path: Vec::new(),
        log_dir: dir.join("direct"),
    });
    let direct: Scheduler = serde_json::from_value(process_scheduler("direct-processes")?)?;
    let started = Instant::now();
    create_directly(&runtime, &direct, n).await?;
    let direct_ready = until(
        Duration::from_secs(300),
        Duration::from_millis(20),
        "direct rooms pinged",
        || async { ready.lock().map_or(0, |r| r.len()) == n },
    )
    .await?
        - started;
    runtime.shutdown(Duration::from_secs(10)).await;

    let mut maestro = Maestro::serve(
        "all",
        &fleet.temporal,
        "bench-processes",
        &[
            "--runtime",
            "process",
            "--room-store",
            "memory",
            "--health-interval",
            "1h",
        ]
        .map(str::to_string),
        &[],
        &dir.join("maestro-processes.log"),
    )
    .await?;
    maestro
        .post("/schedulers", process_scheduler("processes")?)
        .await?;
    let started = Instant::now();
    let id = maestro
        .submit(
            "/schedulers/processes/add-rooms",
            json!({"amount": SCALE_ROOMS}),
        )
        .await?;
    let result = until(
        Duration::from_secs(600),
        Duration::from_millis(100),
        "Maestro's rooms ready",
        || async { maestro.ready_rooms("processes").await.unwrap_or(0) == n },
    )
    .await;
    let finished = maestro
        .finished("processes", &id, Duration::from_secs(120))
        .await;
    // Stop the rooms whatever happened: SIGTERM makes maestro stop its local rooms.
    maestro.stop().await;
    let maestro_ready = result? - started;
    finished?;
    report.row(
        Row::ratio(
            "5. Scale-up: 1 000 local game-room processes (rooms/s to all pinged ready)",
            "the process runtime's create_room × 1 000, no Maestro",
            n as f64 / maestro_ready.as_secs_f64(),
            n as f64 / direct_ready.as_secs_f64(),
            "rooms/s",
            Verdict::at_least(0.8),
        )
        .with_note(format!(
            "all ready after {:.1} s / {:.1} s (Maestro: seen through its rooms list, polled every 100 ms)",
            maestro_ready.as_secs_f64(),
            direct_ready.as_secs_f64()
        )),
    );
    Ok(())
}
