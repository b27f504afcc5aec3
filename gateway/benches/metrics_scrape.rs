//! `/metrics` at scale: 10 000 rooms across 1 000 schedulers.
//!
//! Measures, in one run on loopback:
//! - one Metrics Reporter refresh, against the floor of reading the same rooms from the store;
//! - scraping `/metrics` (gather + encode the registry), against an axum handler that returns
//!   the same bytes already encoded (the cost of HTTP alone).
//!
//! Run: `cargo bench -p maestro-gateway --bench metrics_scrape` (bounded: 300 scrapes each).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use maestro_core::{
    GameRoom, InstanceStatus, Operation, OperationRequest, OperationStatus, PingStatus, Scheduler,
    Timestamp, Version,
};
use maestro_gateway::error::ApiError;
use maestro_gateway::metrics::Metrics;
use maestro_gateway::reporter::{Fleet, FleetScheduler, Reporter};
use maestro_runtime::{MemoryRoomStore, PingUpdate, RoomStore};
use maestro_workflows::OperationsView;

const SCHEDULERS: usize = 1_000;
const ROOMS_PER_SCHEDULER: usize = 10;
const SCRAPES: usize = 300;

struct BenchFleet {
    schedulers: Vec<Scheduler>,
}

#[async_trait::async_trait]
impl Fleet for BenchFleet {
    async fn schedulers(&self) -> Result<Vec<FleetScheduler>, ApiError> {
        // No mark: every refresh queries every scheduler, the costly case.
        Ok(self
            .schedulers
            .iter()
            .map(|s| FleetScheduler {
                scheduler: s.clone(),
                operations: None,
            })
            .collect())
    }
    async fn operations(&self, scheduler: &str) -> Result<OperationsView, ApiError> {
        let op = |i: u64| Operation {
            id: format!("{scheduler}-op-{i}"),
            seq: i,
            status: OperationStatus::Finished,
            definition_name: "add_rooms".into(),
            scheduler_name: scheduler.into(),
            created_at: Timestamp::from_unix_millis(0),
            started_at: Some(Timestamp::from_unix_millis(0)),
            finished_at: Some(Timestamp::from_unix_millis(1_500)),
            input: OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
            execution_history: Vec::new(),
            error: None,
            request_id: None,
        };
        Ok(OperationsView {
            finished: (1..=20).map(op).collect(),
            ..Default::default()
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn time_gets(client: &reqwest::Client, url: &str) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(SCRAPES);
    let mut size = 0;
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let body = client
            .get(url)
            .send()
            .await
            .expect("GET on loopback")
            .bytes()
            .await
            .expect("body");
        times.push(started.elapsed());
        size = body.len();
    }
    times.sort();
    (times, size)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let store = Arc::new(MemoryRoomStore::new());
    let now = Timestamp::from_unix_millis(1_000);
    let mut schedulers = Vec::new();
    for s in 0..SCHEDULERS {
        let name = format!("sched-{s:04}");
        let mut scheduler = Scheduler::with_command(&name, &format!("game-{}", s % 10), &["x"]);
        scheduler.rooms_replicas = ROOMS_PER_SCHEDULER as i64;
        for r in 0..ROOMS_PER_SCHEDULER {
            let id = format!("{name}-{r:04}");
            store
                .insert_if_absent(GameRoom::new(&id, &name, Version::FIRST, 1, now))
                .await
                .expect("insert");
            store
                .apply_instance(&name, &id, Version::FIRST, InstanceStatus::Ready, None, now)
                .await
                .expect("instance");
            let status = if r % 3 == 0 {
                PingStatus::Occupied
            } else {
                PingStatus::Ready
            };
            let ping = PingUpdate {
                status,
                running_matches: u32::from(status == PingStatus::Occupied),
                metadata: None,
            };
            store.apply_ping(&name, &id, ping, now).await.expect("ping");
        }
        schedulers.push(scheduler);
    }
    let names: Vec<String> = schedulers.iter().map(|s| s.name.clone()).collect();
    let metrics = Metrics::standalone().expect("registry");
    let fleet = Arc::new(BenchFleet { schedulers });
    let reporter = Reporter::new(fleet, store.clone(), &metrics).expect("reporter");

    // Refresh vs the floor: listing the same rooms from the store.
    let mut refresh = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        reporter.refresh().await.expect("refresh");
        refresh.push(started.elapsed());
        let started = Instant::now();
        let mut rooms = 0;
        for name in &names {
            rooms += store.list(name).await.expect("list").len();
        }
        assert_eq!(rooms, SCHEDULERS * ROOMS_PER_SCHEDULER);
        floor.push(started.elapsed());
    }
    refresh.sort();
    floor.sort();

    let encoded = metrics.render(&HeaderMap::new());
    let static_body = axum::body::to_bytes(encoded.into_body(), usize::MAX)
        .await
        .expect("body");
    let series = static_body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .count();
    let served = metrics.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let metrics = served.clone();
                async move { metrics.render(&headers) }
            }),
        )
        .route(
            "/static",
            get(move || {
                let body = static_body.clone();
                async move { ([("content-type", prometheus::TEXT_FORMAT)], body) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    // Warm both paths (connections, allocator).
    time_gets(&client, &format!("http://{addr}/static")).await;
    let (scrape, size) = time_gets(&client, &format!("http://{addr}/metrics")).await;
    let (baseline, _) = time_gets(&client, &format!("http://{addr}/static")).await;

    let mut table = BTreeMap::new();
    table.insert(
        "1 refresh p50",
        (percentile(&refresh, 0.5), percentile(&floor, 0.5)),
    );
    table.insert(
        "2 scrape p50",
        (percentile(&scrape, 0.5), percentile(&baseline, 0.5)),
    );
    table.insert(
        "3 scrape p99",
        (percentile(&scrape, 0.99), percentile(&baseline, 0.99)),
    );
    println!(
        "metrics at scale: {SCHEDULERS} schedulers × {ROOMS_PER_SCHEDULER} rooms = {} rooms; \
         /metrics body {size} bytes, {series} series",
        SCHEDULERS * ROOMS_PER_SCHEDULER
    );
    println!("| measure | maestro | baseline | ratio |");
    println!("| --- | --- | --- | --- |");
    for (name, (ours, base)) in table {
        let label = &name[2..];
        let baseline = if name.starts_with('1') {
            "store list (floor)"
        } else {
            "same bytes, pre-encoded"
        };
        println!(
            "| {label} | {} | {} ({baseline}) | {:.2}× |",
            ms(ours),
            ms(base),
            ours.as_secs_f64() / base.as_secs_f64().max(1e-9)
        );
    }
}
