//! `maestro serve`: the worker and/or the gateway against an existing Temporal (how they run
//! in production, one role per Deployment), and the component wiring `maestro dev` reuses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use maestro_activities::{MeteredRuntime, RoomActivities};
use maestro_core::RoomTokenSecret;
use maestro_gateway::management::auth::ManagementAuth;
use maestro_gateway::rooms::service::MatchmakerAuth;
use maestro_gateway::{
    GatewayState, RoomsApiConfig, SchedulerClient, disruption, internal_app, management_app,
    rooms_app, watcher,
};
use maestro_runtime::{
    KubernetesRuntime, KubernetesRuntimeConfig, MemoryRoomStore, ProcessRuntime,
    ProcessRuntimeConfig, RedisRoomStore, RedisStoreConfig, RoomStore, RoomsApiEndpoints, Runtime,
};
use temporalio_client::Client;
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

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Role {
    /// Worker and gateway in one process.
    All,
    /// The Temporal worker: scheduler workflows and the activities that act on the runtime.
    Worker,
    /// Management API, rooms API (HTTP and gRPC), runtime watcher, metrics reporter,
    /// disruption guard.
    Gateway,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Rooms as local OS processes (one machine; `maestro dev`'s default).
    Process,
    /// Rooms as Pods, one namespace per scheduler (kubeconfig or in-cluster config).
    Kubernetes,
}

/// A flag value as it is typed (`worker`, `kubernetes`), for log lines.
pub(crate) fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Options shared by `maestro serve` and `maestro dev`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[arg(long, env = "MAESTRO_NAMESPACE", default_value = "default")]
    pub namespace: String,
    #[arg(long, env = "MAESTRO_TASK_QUEUE", default_value = "maestro")]
    pub task_queue: String,
    /// Management API (Maestro's default port is 8080).
    #[arg(
        long,
        env = "MAESTRO_MANAGEMENT_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub management_addr: SocketAddr,
    /// Game rooms API.
    #[arg(long, env = "MAESTRO_ROOMS_ADDR", default_value = "127.0.0.1:8070")]
    pub rooms_addr: SocketAddr,
    /// Game rooms API over gRPC.
    #[arg(
        long,
        env = "MAESTRO_ROOMS_GRPC_ADDR",
        default_value = "127.0.0.1:8071"
    )]
    pub rooms_grpc_addr: SocketAddr,
    /// Internal API: `/healthz`, `/readyz` and `/metrics` (Maestro's :8081).
    #[arg(long, env = "MAESTRO_INTERNAL_ADDR", default_value = "127.0.0.1:8081")]
    pub internal_addr: SocketAddr,
    /// Temporal SDK worker metrics (Prometheus), on their own port.
    #[arg(
        long,
        env = "MAESTRO_WORKER_METRICS_ADDR",
        default_value = "127.0.0.1:9464"
    )]
    pub worker_metrics_addr: SocketAddr,
    /// How often each scheduler's health controller runs (removes unhealthy rooms, replaces
    /// old versions, converges to the desired count); set for schedulers created from now on.
    #[arg(long, env = "MAESTRO_HEALTH_INTERVAL", default_value = "1m", value_parser = maestro_core::time::parse_duration)]
    pub health_interval: Duration,
    /// Operations a scheduler workflow runs before it continues as new (a fresh history
    /// carrying its state); set for schedulers created from now on. Temporal also asks for
    /// one earlier when a history grows large.
    #[arg(long, env = "MAESTRO_CONTINUE_AS_NEW_EVERY", default_value_t = maestro_workflows::DEFAULT_CONTINUE_AS_NEW_EVERY)]
    pub continue_as_new_every: u32,
    /// Workflows the worker keeps in memory between tasks (its sticky cache). 0 replays the
    /// whole history on every task: slow, but the least memory.
    #[arg(long, env = "MAESTRO_MAX_CACHED_WORKFLOWS", default_value_t = maestro_workflows::DEFAULT_MAX_CACHED_WORKFLOWS)]
    pub max_cached_workflows: usize,
    /// How often the Metrics Reporter refreshes room and operation figures.
    #[arg(long, env = "MAESTRO_METRICS_INTERVAL", default_value = "10s", value_parser = maestro_core::time::parse_duration)]
    pub metrics_interval: Duration,
    /// How often the disruption guard refreshes each scheduler's budget of protected rooms.
    #[arg(long, env = "MAESTRO_DISRUPTION_INTERVAL", default_value = "1m", value_parser = maestro_core::time::parse_duration)]
    pub disruption_interval: Duration,
    /// API bearer tokens, comma-separated `[role:]token`: `read`, `write`, `admin` (a bare
    /// token) for the management API, `matchmaker` for allocate and address on the rooms API.
    #[arg(long, env = "MAESTRO_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,
    /// Run the management API without authentication (development only; said loudly at
    /// start). Without it, `--api-tokens` is required.
    #[arg(long, env = "MAESTRO_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Room store: `memory`, or Redis: `redis://[user:password@]host:6379/0`, `rediss://…`
    /// (TLS), a Redis Cluster `redis+cluster://[user:password@]host:port,host:port`
    /// (`rediss+cluster://` with TLS). Keep a URL with a password in a Secret.
    #[arg(
        long,
        env = "MAESTRO_ROOM_STORE",
        default_value = "memory",
        hide_env_values = true
    )]
    pub room_store: String,
    /// PEM of the CA that signed Redis's certificate, when it is not a public one.
    #[arg(long, env = "MAESTRO_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,
    /// Secret for per-room tokens (at least 16 bytes). `maestro dev` generates and keeps one
    /// when it is not given; `maestro serve` requires it.
    #[arg(long, env = "MAESTRO_ROOM_TOKEN_SECRET", hide_env_values = true)]
    pub room_token_secret: Option<String>,
    /// `required` (default): rooms must send their token. `optional`: for studios moving from
    /// Maestro, whose rooms send none; a token is still checked when a room sends one.
    #[arg(
        long,
        env = "MAESTRO_ROOM_TOKENS",
        value_enum,
        default_value = "required"
    )]
    pub room_tokens: RoomTokens,
    /// `required` (default, with `--api-tokens`): allocating a room and reading a room's
    /// address need a `matchmaker` or `admin` token (a room may read its own address with its
    /// token). `optional`: for matchmakers written for Maestro, which send none; a token is
    /// still checked when sent.
    #[arg(
        long,
        env = "MAESTRO_MATCHMAKER_AUTH",
        value_enum,
        default_value = "required"
    )]
    pub matchmaker_auth: RoomTokens,
    /// Accept clients written for Maestro, which send no credentials: the same as
    /// `--room-tokens optional --matchmaker-auth optional`. The one setting a studio moving
    /// from Maestro changes for its rooms and matchmakers.
    #[arg(long, env = "MAESTRO_ACCEPT_MAESTRO_CLIENTS")]
    pub accept_maestro_clients: bool,
    /// Where rooms run.
    #[arg(long, env = "MAESTRO_RUNTIME", value_enum, default_value = "process")]
    pub runtime: RuntimeKind,
    /// The rooms API's URL as rooms see it (a Service address on Kubernetes); by default
    /// `http://` + `--rooms-addr`.
    #[arg(long, env = "MAESTRO_ROOMS_API_URL")]
    pub rooms_api_url: Option<String>,
    /// The rooms gRPC API's URL as rooms see it; by default `http://` + `--rooms-grpc-addr`.
    #[arg(long, env = "MAESTRO_ROOMS_GRPC_URL")]
    pub rooms_grpc_url: Option<String>,
    /// Kubernetes: the Pod Security level written on the namespaces Maestro creates (rooms'
    /// host ports need `privileged`); `none` writes no label, leaving the cluster's default.
    #[arg(
        long,
        env = "MAESTRO_KUBERNETES_POD_SECURITY",
        default_value = "privileged",
        value_parser = ["privileged", "baseline", "restricted", "none"]
    )]
    pub kubernetes_pod_security: String,
    /// Kubernetes: how long creating a scheduler waits for an earlier namespace of the same
    /// name to finish terminating, per attempt (e.g. `60s`).
    #[arg(long, env = "MAESTRO_KUBERNETES_NAMESPACE_WAIT", default_value = "60s", value_parser = maestro_core::time::parse_duration)]
    pub kubernetes_namespace_wait: Duration,
}

/// Whether the rooms API requires a credential (a room's token, a matchmaker's token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoomTokens {
    Required,
    Optional,
}

/// What only `maestro dev` adds to the wiring.
pub struct Local {
    /// Where the process runtime writes room logs.
    pub room_logs: PathBuf,
    /// Folders searched first for rooms' programs.
    pub extra_path: Vec<PathBuf>,
}

/// Tokens when given; no authentication only when asked for explicitly.
fn management_auth(args: &ServeArgs) -> Result<ManagementAuth> {
    let listed = match args.api_tokens.as_deref() {
        Some(list) => {
            ManagementAuth::from_list(list).map_err(|e| anyhow::anyhow!("--api-tokens: {e}"))?
        }
        None => None,
    };
    if let Some(auth) = listed {
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
fn room_store(args: &ServeArgs) -> Result<Arc<dyn RoomStore>> {
    let spec = args.room_store.as_str();
    if spec == "memory" {
        return Ok(Arc::new(MemoryRoomStore::new()));
    }
    let redis = [
        "redis://",
        "rediss://",
        "redis+cluster://",
        "rediss+cluster://",
    ];
    if redis.iter().any(|scheme| spec.starts_with(scheme)) {
        let mut config = RedisStoreConfig::new(spec);
        if let Some(path) = &args.redis_tls_ca {
            config.tls_ca = Some(
                std::fs::read(path)
                    .with_context(|| format!("read --redis-tls-ca {}", path.display()))?,
            );
        }
        let store = RedisRoomStore::connect(&config)?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!(
        "--room-store must be `memory`, a redis:// or rediss:// URL, or a Redis Cluster's \
         redis+cluster://host:port,host:port, got {spec:?}"
    )
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the {what} on {addr}"))
}

/// Ctrl-C or SIGTERM, listened for from the start of the process: the APIs answer before
/// startup ends, and a SIGTERM that came in between (a rollout, a test stopping a Maestro it
/// just used) took the default action and killed the process instead of stopping it.
pub struct ShutdownSignal {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    /// Installs the handlers; signals from now on are kept until [`ShutdownSignal::received`].
    pub fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(signal = name, error = %e, "cannot listen for the signal");
                None
            }
        };
        Self {
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    async fn received(&mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.terminate) => {}
            _ = next(&mut self.interrupt) => {}
        }
    }
}

async fn serve_http(listener: TcpListener, app: axum::Router, mut stop: watch::Receiver<bool>) {
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
        .add_service(maestro_gateway::rooms::grpc::server(rooms))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "gRPC server stopped with an error");
    }
}

/// A started system; [`Running::wait`] runs it until Ctrl-C/SIGTERM or the worker stops.
pub struct Running {
    pub schedulers: SchedulerClient,
    pub runtime: Arc<dyn Runtime>,
    /// Set when rooms are local processes (stopped on exit).
    pub processes: Option<Arc<ProcessRuntime>>,
    pub worker_metrics_addr: Option<SocketAddr>,
    worker: Option<Worker>,
    worker_metrics_abort: Option<tokio::task::AbortHandle>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the components of `args.role` against a connected Temporal client.
pub async fn start(
    args: &ServeArgs,
    role: Role,
    client: Client,
    token_secret: RoomTokenSecret,
    local: Option<Local>,
) -> Result<Running> {
    let gateway = matches!(role, Role::All | Role::Gateway);
    let worker_role = matches!(role, Role::All | Role::Worker);
    let auth = if gateway {
        Some(management_auth(args)?)
    } else {
        None
    };
    // Bind before anything else so a busy port fails fast with a clear message.
    let internal = bind(args.internal_addr, "internal API").await?;
    let listeners = if gateway {
        Some((
            bind(args.management_addr, "management API").await?,
            bind(args.rooms_addr, "rooms API").await?,
            bind(args.rooms_grpc_addr, "rooms gRPC API").await?,
        ))
    } else {
        None
    };
    let store = room_store(args)?;
    let endpoints = RoomsApiEndpoints {
        http_url: args
            .rooms_api_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", args.rooms_addr)),
        grpc_url: Some(
            args.rooms_grpc_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", args.rooms_grpc_addr)),
        ),
        token_secret: Some(token_secret.clone()),
    };
    let (runtime, processes): (Arc<dyn Runtime>, Option<Arc<ProcessRuntime>>) = match args.runtime {
        RuntimeKind::Process => {
            let local = local.unwrap_or(Local {
                room_logs: PathBuf::from("rooms"),
                extra_path: Vec::new(),
            });
            let processes = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig {
                rooms_api: endpoints,
                extra_path: local.extra_path,
                log_dir: local.room_logs,
            }));
            // Before the watcher lists rooms and the worker creates any: rooms a killed run
            // left behind are supervised again, not started twice.
            processes.adopt();
            (processes.clone(), Some(processes))
        }
        RuntimeKind::Kubernetes => {
            let runtime = KubernetesRuntime::from_environment(KubernetesRuntimeConfig {
                rooms_api: endpoints,
                pod_security_level: Some(args.kubernetes_pod_security.clone())
                    .filter(|level| level != "none"),
                namespace_termination_wait: args.kubernetes_namespace_wait,
                ..KubernetesRuntimeConfig::default()
            })
            .await?;
            (Arc::new(runtime), None)
        }
    };

    let schedulers = SchedulerClient::new(client.clone(), &args.task_queue)
        .with_health_check(args.health_interval)
        .with_continue_as_new_every(args.continue_as_new_every)
        .with_search_attributes(
            maestro_gateway::search_attributes::available(&client, &args.namespace).await,
        );
    let matchmakers = match auth.as_ref().and_then(ManagementAuth::credentials) {
        Some(credentials) => MatchmakerAuth::Tokens {
            credentials: credentials.clone(),
            required: args.matchmaker_auth == RoomTokens::Required && !args.accept_maestro_clients,
        },
        None => MatchmakerAuth::Open,
    };
    let rooms_config = RoomsApiConfig {
        token_secret: Some(token_secret),
        tokens_required: args.room_tokens == RoomTokens::Required && !args.accept_maestro_clients,
        matchmakers,
        ..RoomsApiConfig::default()
    };
    let state = GatewayState::new(
        schedulers.clone(),
        store.clone(),
        Some(runtime.clone()),
        rooms_config,
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(serve_http(
        internal,
        internal_app(state.clone()),
        stop_rx.clone(),
    ))];
    let mut background = Vec::new();
    let mut worker_metrics_abort = None;

    let (worker, worker_metrics_addr) = if worker_role {
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
        let metered = Arc::new(MeteredRuntime::new(
            runtime.clone(),
            &state.metrics.registry,
        )?);
        let activities = RoomActivities::new(metered, store.clone());
        let options = maestro_workflows::worker_options(
            &args.task_queue,
            activities,
            args.max_cached_workflows,
        )?;
        let worker = Worker::new(&temporal_runtime, client.clone(), options)?;
        worker_metrics_abort = Some(worker_metrics.abort_handle.clone());
        (Some(worker), Some(worker_metrics.bound_addr))
    } else {
        (None, None)
    };

    if let (Some((management, rooms, rooms_grpc)), Some(auth)) = (listeners, auth) {
        tasks.push(tokio::spawn(serve_http(
            management,
            management_app(state.clone(), auth),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(serve_http(
            rooms,
            rooms_app(state.clone()),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(serve_grpc(
            rooms_grpc,
            state.rooms.clone(),
            stop_rx,
        )));
        background.push(tokio::spawn(watcher::run(
            runtime.clone(),
            store.clone(),
            state.metrics.clone(),
        )));
        background.push(tokio::spawn(state.reporter()?.run(args.metrics_interval)));
        background.push(tokio::spawn(
            disruption::DisruptionGuard::new(
                Arc::new(schedulers.clone()),
                store.clone(),
                runtime.clone(),
            )
            .run(args.disruption_interval),
        ));
    }
    info!(role = %value_name(role), runtime = %value_name(args.runtime), room_store = %args.room_store, "maestro started");
    Ok(Running {
        schedulers,
        runtime,
        processes,
        worker_metrics_addr,
        worker,
        worker_metrics_abort,
        stop_tx,
        tasks,
        background,
    })
}

impl Running {
    /// Runs until Ctrl-C/SIGTERM (or the worker stops), then stops everything gracefully.
    pub async fn wait(mut self, mut shutdown: ShutdownSignal) -> Result<()> {
        match self.worker.take() {
            Some(mut worker) => {
                let stop_worker = worker.shutdown_handle();
                let worker_run = worker.run();
                tokio::pin!(worker_run);
                tokio::select! {
                    result = &mut worker_run => {
                        if let Err(e) = result {
                            warn!(error = %e, "worker stopped");
                        }
                    }
                    _ = shutdown.received() => {
                        info!("stopping");
                        stop_worker();
                        if tokio::time::timeout(Duration::from_secs(10), &mut worker_run).await.is_err() {
                            warn!("worker did not stop in 10 s");
                        }
                    }
                }
            }
            None => {
                shutdown.received().await;
                info!("stopping");
            }
        }
        let _ = self.stop_tx.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        for task in self.background {
            task.abort();
        }
        if let Some(abort) = self.worker_metrics_abort {
            abort.abort();
        }
        if let Some(processes) = self.processes {
            processes.shutdown(Duration::from_secs(5)).await;
        }
        Ok(())
    }
}

/// `maestro serve`: connect to Temporal and run the chosen role.
#[derive(clap::Args, Debug)]
pub struct ServeCommand {
    /// Which components this process runs.
    #[arg(long, env = "MAESTRO_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    #[command(flatten)]
    pub temporal: crate::temporal::TemporalConnection,
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub async fn run(command: ServeCommand) -> Result<()> {
    let shutdown = ShutdownSignal::install();
    let secret = command.serve.room_token_secret.as_deref().context(
        "--room-token-secret (or MAESTRO_ROOM_TOKEN_SECRET) is required: gateways and \
         workers must share it",
    )?;
    let secret = RoomTokenSecret::new(secret).map_err(anyhow::Error::msg)?;
    let client = temporal::connect(&command.temporal, &command.serve.namespace).await?;
    let running = start(&command.serve, command.role, client, secret, None).await?;
    running.wait(shutdown).await
}
