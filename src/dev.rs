//! `maestro dev`: the whole system in one process, for a laptop with no cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use maestro_activities::{MeteredRuntime, RoomActivities};
use maestro_core::scheduler::{ContainerPort, PortRange};
use maestro_core::{OperationRequest, RoomTokenSecret, Scheduler};
use maestro_gateway::auth::ManagementAuth;
use maestro_gateway::error::ErrorCode;
use maestro_gateway::{
    GatewayState, RoomsApiConfig, SchedulerClient, internal_app, management_app, rooms_app, watcher,
};
use maestro_runtime::{
    MemoryRoomStore, ProcessRuntime, ProcessRuntimeConfig, RedisRoomStore, RedisStoreConfig,
    RoomStore, Runtime as _,
};
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
};
use temporalio_sdk::Worker;
use temporalio_sdk::runtime::RuntimeOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::temporal;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Where Temporal's SQLite file and room logs go.
    #[arg(long, env = "MAESTRO_DATA_DIR", default_value = ".maestro")]
    data_dir: PathBuf,
    /// Temporal frontend; a server already listening there is reused, else one is started.
    #[arg(
        long,
        env = "MAESTRO_TEMPORAL_ADDRESS",
        default_value = "127.0.0.1:7233"
    )]
    temporal_address: String,
    /// Temporal UI port of a dev server started here.
    #[arg(long, default_value_t = 8233)]
    temporal_ui_port: u16,
    #[arg(long, env = "MAESTRO_NAMESPACE", default_value = "default")]
    namespace: String,
    #[arg(long, env = "MAESTRO_TASK_QUEUE", default_value = "maestro")]
    task_queue: String,
    /// Management API (Maestro's default port is 8080).
    #[arg(
        long,
        env = "MAESTRO_MANAGEMENT_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    management_addr: SocketAddr,
    /// Game rooms API.
    #[arg(long, env = "MAESTRO_ROOMS_ADDR", default_value = "127.0.0.1:8070")]
    rooms_addr: SocketAddr,
    /// Game rooms API over gRPC.
    #[arg(
        long,
        env = "MAESTRO_ROOMS_GRPC_ADDR",
        default_value = "127.0.0.1:8071"
    )]
    rooms_grpc_addr: SocketAddr,
    /// Internal API: `/healthz`, `/readyz` and `/metrics` (Maestro's :8081).
    #[arg(long, env = "MAESTRO_INTERNAL_ADDR", default_value = "127.0.0.1:8081")]
    internal_addr: SocketAddr,
    /// Temporal SDK worker metrics (Prometheus), on their own port.
    #[arg(
        long,
        env = "MAESTRO_WORKER_METRICS_ADDR",
        default_value = "127.0.0.1:9464"
    )]
    worker_metrics_addr: SocketAddr,
    /// How often each scheduler's health controller runs (removes unhealthy rooms, replaces
    /// old versions, converges to the desired count); set for schedulers created from now on.
    #[arg(long, env = "MAESTRO_HEALTH_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    health_interval: Duration,
    /// How often the Metrics Reporter refreshes room and operation figures.
    #[arg(long, env = "MAESTRO_METRICS_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    metrics_interval: Duration,
    /// Management API bearer tokens (comma-separated).
    #[arg(long, env = "MAESTRO_API_TOKENS", hide_env_values = true)]
    api_tokens: Option<String>,
    /// Run the management API without authentication (development only; said loudly at
    /// start). Without it, `--api-tokens` is required.
    #[arg(long, env = "MAESTRO_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Room store: `memory`, or a Redis URL (`redis://127.0.0.1:6379/0`).
    #[arg(long, env = "MAESTRO_ROOM_STORE", default_value = "memory")]
    room_store: String,
    /// Secret for per-room tokens (at least 16 bytes); by default one is generated once and
    /// kept in the data folder, so rooms' tokens survive a restart.
    #[arg(long, env = "MAESTRO_ROOM_TOKEN_SECRET", hide_env_values = true)]
    room_token_secret: Option<String>,
    /// Rooms of the sample scheduler (running the bundled `game-room`); 0 for none.
    #[arg(long, default_value_t = 3)]
    sample_rooms: u32,
}

const SAMPLE_SCHEDULER: &str = "sample";

/// A scheduler whose rooms run the `game-room` simulator built next to this binary.
fn sample_scheduler(rooms: u32) -> Scheduler {
    let command = [
        "game-room",
        "--ping-interval",
        "5s",
        "--match-every",
        "40s",
        "--match-duration",
        "20s",
    ];
    let mut s = Scheduler::with_command(SAMPLE_SCHEDULER, "sample-game", &command);
    s.max_surge = "25%".into();
    s.rooms_replicas = rooms.into();
    s.port_range = Some(PortRange {
        start: 40000,
        end: 40999,
    });
    s.spec.termination_grace_period = "10s".into();
    s.spec.containers[0].image = "maestro/game-room:local".into();
    s.spec.containers[0].ports = vec![ContainerPort {
        name: "game".into(),
        protocol: "UDP".into(),
        port: 7777,
        host_port_range: None,
    }];
    s
}

/// Creates the sample scheduler if missing and tops its rooms up to `rooms` (rooms of an
/// earlier `maestro dev` stopped with it).
async fn ensure_sample(
    schedulers: &SchedulerClient,
    runtime: &ProcessRuntime,
    rooms: u32,
) -> Result<()> {
    match schedulers.snapshot(SAMPLE_SCHEDULER).await {
        Ok(_) => info!(scheduler = SAMPLE_SCHEDULER, "sample scheduler exists"),
        Err(e) if e.code == ErrorCode::NotFound => {
            schedulers.create(sample_scheduler(rooms)).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let live = u32::try_from(runtime.list_rooms(SAMPLE_SCHEDULER).await?.len()).unwrap_or(0);
    if live < rooms {
        schedulers
            .submit(
                SAMPLE_SCHEDULER,
                OperationRequest::AddRooms {
                    amount: rooms - live,
                },
                None,
            )
            .await?;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn serve(listener: TcpListener, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "HTTP server stopped with an error");
    }
}

async fn serve_grpc(
    listener: TcpListener,
    rooms: maestro_gateway::RoomService,
    mut stop: watch::Receiver<bool>,
) {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let result = tonic::transport::Server::builder()
        .add_service(maestro_gateway::rooms_grpc::server(rooms))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "gRPC server stopped with an error");
    }
}

/// Tokens when given; no authentication only when asked for explicitly.
fn management_auth(args: &DevArgs) -> Result<ManagementAuth> {
    if let Some(auth) = args
        .api_tokens
        .as_deref()
        .and_then(ManagementAuth::from_list)
    {
        return Ok(auth);
    }
    if !args.insecure_no_auth {
        anyhow::bail!(
            "the management API needs tokens (--api-tokens or MAESTRO_API_TOKENS), or \
             --insecure-no-auth to run it open on a developer machine"
        );
    }
    warn!(
        "INSECURE DEV MODE: the management API accepts every request without \
         authentication (--insecure-no-auth); set --api-tokens to require a token"
    );
    Ok(ManagementAuth::Insecure)
}

/// `memory` or a Redis URL.
fn room_store(spec: &str) -> Result<Arc<dyn RoomStore>> {
    if spec == "memory" {
        return Ok(Arc::new(MemoryRoomStore::new()));
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        let store = RedisRoomStore::connect(&RedisStoreConfig::new(spec))?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("--room-store must be `memory` or a redis:// URL, got {spec:?}")
}

/// The given secret, else the one kept in the data folder, else a new one saved there.
fn room_token_secret(given: Option<&str>, data_dir: &std::path::Path) -> Result<RoomTokenSecret> {
    if let Some(secret) = given {
        return RoomTokenSecret::new(secret).map_err(anyhow::Error::msg);
    }
    let path = data_dir.join("room-token-secret");
    let secret = match std::fs::read_to_string(&path) {
        Ok(saved) => saved.trim().to_string(),
        Err(_) => {
            let fresh = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            std::fs::write(&path, &fresh).with_context(|| format!("write {}", path.display()))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            fresh
        }
    };
    RoomTokenSecret::new(secret).map_err(anyhow::Error::msg)
}

pub async fn run(args: DevArgs) -> Result<()> {
    let auth = management_auth(&args)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;

    let started_server = if temporal::listening(&args.temporal_address).await {
        info!(address = %args.temporal_address, "reusing the Temporal server already running");
        None
    } else {
        let port: u16 = args
            .temporal_address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .context("--temporal-address must be host:port")?;
        info!(port, db = %data_dir.join("temporal.db").display(), "starting the Temporal dev server");
        Some(temporal::DevServer::start(
            port,
            args.temporal_ui_port,
            &data_dir.join("temporal.db"),
            &data_dir.join("temporal.log"),
        )?)
    };
    let client = temporal::connect(
        &args.temporal_address,
        &args.namespace,
        Duration::from_secs(60),
    )
    .await?;

    // Bind before anything else so a busy port fails fast with a clear message.
    let management = TcpListener::bind(args.management_addr)
        .await
        .with_context(|| format!("bind the management API on {}", args.management_addr))?;
    let rooms_listener = TcpListener::bind(args.rooms_addr)
        .await
        .with_context(|| format!("bind the rooms API on {}", args.rooms_addr))?;

    let rooms_grpc_listener = TcpListener::bind(args.rooms_grpc_addr)
        .await
        .with_context(|| format!("bind the rooms gRPC API on {}", args.rooms_grpc_addr))?;

    let internal = TcpListener::bind(args.internal_addr)
        .await
        .with_context(|| format!("bind the internal API on {}", args.internal_addr))?;

    let store = room_store(&args.room_store)?;
    let token_secret = room_token_secret(args.room_token_secret.as_deref(), &data_dir)?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
        rooms_api_url: format!("http://{}", rooms_listener.local_addr()?),
        rooms_grpc_url: Some(format!("http://{}", rooms_grpc_listener.local_addr()?)),
        room_token_secret: Some(token_secret.clone()),
        extra_path: vec![exe_dir],
        log_dir: data_dir.join("rooms"),
    }));

    let worker_metrics = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(args.worker_metrics_addr)
            .counters_total_suffix(true)
            .use_seconds_for_durations(true)
            .build(),
    )
    .with_context(|| format!("serve worker metrics on {}", args.worker_metrics_addr))?;
    let telemetry = TelemetryOptions::builder()
        .metrics(worker_metrics.meter.clone() as Arc<dyn CoreMeter>)
        .build();
    let temporal_runtime = temporalio_sdk::Runtime::from_current_tokio(
        RuntimeOptions::builder()
            .telemetry_options(telemetry)
            .build()
            .map_err(anyhow::Error::msg)?,
    )?;
    let schedulers = SchedulerClient::new(client.clone(), &args.task_queue)
        .with_health_check(args.health_interval);
    let rooms_config = RoomsApiConfig {
        token_secret: Some(token_secret),
        ..RoomsApiConfig::default()
    };
    let state = GatewayState::new(schedulers.clone(), store.clone(), rooms_config)?;
    let metered = Arc::new(MeteredRuntime::new(
        runtime.clone(),
        &state.metrics.registry,
    )?);
    let activities = RoomActivities::new(metered, store.clone());
    let options = maestro_workflows::worker_options(&args.task_queue, activities)?;
    let mut worker = Worker::new(&temporal_runtime, client.clone(), options)?;
    let stop_worker = worker.shutdown_handle();
    let (stop_tx, stop_rx) = watch::channel(false);
    let servers = [
        tokio::spawn(serve(
            management,
            management_app(state.clone(), auth.clone()),
            stop_rx.clone(),
        )),
        tokio::spawn(serve(
            rooms_listener,
            rooms_app(state.clone()),
            stop_rx.clone(),
        )),
        tokio::spawn(serve(
            internal,
            internal_app(state.clone()),
            stop_rx.clone(),
        )),
        tokio::spawn(serve_grpc(
            rooms_grpc_listener,
            state.rooms.clone(),
            stop_rx,
        )),
    ];
    let watcher = tokio::spawn(watcher::run(
        runtime.clone(),
        store.clone(),
        state.metrics.clone(),
    ));
    let reporter = tokio::spawn(state.reporter()?.run(args.metrics_interval));

    let ui = if started_server.is_some() {
        format!("http://127.0.0.1:{}", args.temporal_ui_port)
    } else {
        "(the reused server's UI)".to_string()
    };
    println!("Maestro is running (Ctrl-C stops everything it started):");
    println!("  management API  http://{}", args.management_addr);
    println!("  rooms API       http://{}", args.rooms_addr);
    println!("  rooms gRPC API  http://{}", args.rooms_grpc_addr);
    println!("  room store      {}", args.room_store);
    println!("  metrics         http://{}/metrics", args.internal_addr);
    println!(
        "  worker metrics  http://{}/metrics",
        worker_metrics.bound_addr
    );
    println!(
        "  Temporal        {} (namespace {}, task queue {})",
        args.temporal_address, args.namespace, args.task_queue
    );
    println!("  Temporal UI     {ui}");
    println!("  room logs       {}", data_dir.join("rooms").display());

    if args.sample_rooms > 0 {
        let (schedulers, runtime, rooms) = (schedulers.clone(), runtime.clone(), args.sample_rooms);
        tokio::spawn(async move {
            match ensure_sample(&schedulers, &runtime, rooms).await {
                Ok(()) => info!(
                    scheduler = SAMPLE_SCHEDULER,
                    rooms,
                    "sample scheduler requested; try: curl http://127.0.0.1:8080/schedulers/sample/rooms"
                ),
                Err(e) => warn!(error = %e, "could not set up the sample scheduler"),
            }
        });
    }

    let worker_run = worker.run();
    tokio::pin!(worker_run);
    tokio::select! {
        result = &mut worker_run => {
            if let Err(e) = result {
                warn!(error = %e, "worker stopped");
            }
        }
        _ = shutdown_signal() => {
            info!("stopping");
            stop_worker();
            if tokio::time::timeout(Duration::from_secs(10), &mut worker_run).await.is_err() {
                warn!("worker did not stop in 10 s");
            }
        }
    }
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    watcher.abort();
    reporter.abort();
    worker_metrics.abort_handle.abort();
    runtime.shutdown(Duration::from_secs(5)).await;
    if let Some(server) = started_server {
        server.stop().await;
    }
    info!("stopped");
    Ok(())
}
