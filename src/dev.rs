//! `maestro dev`: the whole system in one process, for a laptop with no cluster.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use maestro_core::scheduler::{ContainerPort, PortRange};
use maestro_core::{OperationRequest, RoomTokenSecret, Scheduler};
use maestro_gateway::SchedulerClient;
use maestro_gateway::error::ErrorCode;
use maestro_runtime::Runtime;
use tracing::{info, warn};

use crate::serve::{self, Local, Role, ServeArgs};
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
    /// Rooms of the sample scheduler (running the bundled `game-room`); 0 for none.
    #[arg(long, default_value_t = 3)]
    sample_rooms: u32,
    #[command(flatten)]
    serve: ServeArgs,
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
        "--metadata",
        "region=local",
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
        protocol: "udp".into(),
        port: 7777,
        host_port: 0,
        host_port_range: None,
    }];
    s
}

/// Creates the sample scheduler if missing and tops its rooms up to `rooms` (rooms of an
/// earlier `maestro dev` stopped with it).
async fn ensure_sample(
    schedulers: &SchedulerClient,
    runtime: &dyn Runtime,
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
                OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput {
                    amount: rooms - live,
                }),
                None,
            )
            .await?;
    }
    Ok(())
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
    let shutdown = serve::ShutdownSignal::install();
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
        &temporal::TemporalConnection::plain(&args.temporal_address, Duration::from_secs(60)),
        &args.serve.namespace,
    )
    .await?;
    let token_secret = room_token_secret(args.serve.room_token_secret.as_deref(), &data_dir)?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let local = Local {
        room_logs: data_dir.join("rooms"),
        extra_path: vec![exe_dir],
    };
    let running = serve::start(&args.serve, Role::All, client, token_secret, Some(local)).await?;

    let ui = if started_server.is_some() {
        format!("http://127.0.0.1:{}", args.temporal_ui_port)
    } else {
        "(the reused server's UI)".to_string()
    };
    let serve = &args.serve;
    println!("Maestro is running (Ctrl-C stops everything it started):");
    println!("  management API  http://{}", serve.management_addr);
    println!("  rooms API       http://{}", serve.rooms_addr);
    println!("  rooms gRPC API  http://{}", serve.rooms_grpc_addr);
    println!("  runtime         {}", serve::value_name(serve.runtime));
    println!("  room store      {}", serve.room_store);
    println!("  metrics         http://{}/metrics", serve.internal_addr);
    if let Some(addr) = running.worker_metrics_addr {
        println!("  worker metrics  http://{addr}/metrics");
    }
    println!(
        "  Temporal        {} (namespace {}, task queue {})",
        args.temporal_address, serve.namespace, serve.task_queue
    );
    println!("  Temporal UI     {ui}");
    println!("  room logs       {}", data_dir.join("rooms").display());

    if args.sample_rooms > 0 {
        let (schedulers, runtime, rooms) = (
            running.schedulers.clone(),
            running.runtime.clone(),
            args.sample_rooms,
        );
        let rooms_url = format!(
            "http://{}/schedulers/{SAMPLE_SCHEDULER}/rooms",
            serve.management_addr
        );
        tokio::spawn(async move {
            match ensure_sample(&schedulers, runtime.as_ref(), rooms).await {
                Ok(()) => info!(
                    scheduler = %SAMPLE_SCHEDULER,
                    rooms,
                    "sample scheduler requested; try: curl {rooms_url}"
                ),
                Err(e) => warn!(error = %e, "could not set up the sample scheduler"),
            }
        });
    }

    running.wait(shutdown).await?;
    if let Some(server) = started_server {
        server.stop().await;
    }
    info!("stopped");
    Ok(())
}
