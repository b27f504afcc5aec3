//! `maestro-gateway`: everything that answers the outside world, one folder per face.
//!
//! Owns the management REST API (`management/`: schedulers and operations, backed by the
//! scheduler workflows through the Temporal client in `schedulers.rs`), the game rooms API
//! over HTTP and gRPC (`rooms/`: room tokens, pings into the room store, allocation, events
//! to the schedulers' forwarders), the Metrics Reporter (`reporter.rs`) and every metric
//! definition (`metrics/`), the runtime watcher (runtime events into the room store), and
//! the disruption guard (how many busy rooms the runtime must keep from eviction). Handlers
//! sit on [`GatewayState`].
//!
//! Must not create or delete rooms (only the worker's activities do; the guard's budget is
//! its one write to the runtime), and
//! must not hold state of its own: everything lives in Temporal or the room store, so any
//! number of gateways can run side by side. Its caches (the scheduler directory, each room's
//! last accepted token, resolved metric series) only remember what Temporal, the store or
//! its own configuration already say; a restart loses nothing.

use std::time::Duration;

pub mod credentials;
pub mod disruption;
mod docs;
pub mod error;
pub mod json;
pub mod management;
pub mod metrics;
pub mod reporter;
pub mod rooms;
pub mod schedulers;
pub mod search_attributes;
mod submissions;
pub mod watcher;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maestro_runtime::{RoomStore, Runtime};

pub use rooms::RoomService;
pub use schedulers::SchedulerClient;

/// The gateway's clock: room records, runtime events and new schedulers are stamped with it.
pub(crate) fn now() -> maestro_core::Timestamp {
    maestro_core::Timestamp::from_system_time(std::time::SystemTime::now())
}

/// What every handler needs; cheap to clone (one reference count: axum clones the state for
/// every request, and cloning the parts one by one showed up as 5 % of a ping's CPU time).
#[derive(Clone)]
pub struct GatewayState(Arc<GatewayParts>);

impl std::ops::Deref for GatewayState {
    type Target = GatewayParts;
    fn deref(&self) -> &GatewayParts {
        &self.0
    }
}

pub struct GatewayParts {
    pub schedulers: SchedulerClient,
    pub store: Arc<dyn RoomStore>,
    /// The runtime rooms run on, only to refuse what it could never run
    /// ([`Runtime::check_scheduler`]); `None` checks nothing beyond the document.
    pub runtime: Option<Arc<dyn Runtime>>,
    pub rooms: RoomService,
    /// This gateway's metrics (and the reporter's, which registers into the same registry),
    /// served on `/metrics`.
    pub metrics: metrics::Metrics,
}

/// How the rooms API behaves.
#[derive(Debug, Clone)]
pub struct RoomsApiConfig {
    /// Secret rooms' tokens derive from; `None` turns room tokens off.
    pub token_secret: Option<maestro_core::RoomTokenSecret>,
    /// `false`: tokens are checked when a room sends one and never required (rooms written
    /// for Maestro send none). `maestro serve --room-tokens optional`.
    pub tokens_required: bool,
    /// How long scheduler facts (game, forwarders, token policy) are cached per gateway.
    pub directory_ttl: std::time::Duration,
    pub forwarders: rooms::forwarders::ForwarderConfig,
    pub allocation_ttl: std::time::Duration,
    /// Who may allocate rooms and read their addresses.
    pub matchmakers: rooms::service::MatchmakerAuth,
}

impl Default for RoomsApiConfig {
    fn default() -> Self {
        Self {
            matchmakers: rooms::service::MatchmakerAuth::Open,
            token_secret: None,
            tokens_required: true,
            directory_ttl: std::time::Duration::from_secs(10),
            forwarders: rooms::forwarders::ForwarderConfig::default(),
            allocation_ttl: maestro_core::room::ALLOCATION_TTL,
        }
    }
}

impl GatewayState {
    pub fn new(
        schedulers: SchedulerClient,
        store: Arc<dyn RoomStore>,
        runtime: Option<Arc<dyn Runtime>>,
        config: RoomsApiConfig,
    ) -> Result<Self, prometheus::Error> {
        let metrics = metrics::Metrics::standalone()?;
        let directory = rooms::directory::SchedulerDirectory::new(
            Arc::new(schedulers.clone()),
            config.directory_ttl,
        );
        let forwarders = rooms::forwarders::Forwarders::new(config.forwarders, metrics.clone());
        let rooms = RoomService::new(
            store.clone(),
            directory,
            forwarders,
            config.token_secret,
            metrics.clone(),
        )
        .with_allocation_ttl(config.allocation_ttl)
        .with_tokens_required(config.tokens_required)
        .with_matchmakers(config.matchmakers);
        Ok(Self(Arc::new(GatewayParts {
            schedulers,
            store,
            runtime,
            rooms,
            metrics,
        })))
    }

    /// Refuses, by field, a scheduler document the runtime could never run.
    pub fn check_runnable(
        &self,
        scheduler: &maestro_core::Scheduler,
    ) -> Result<(), error::ApiError> {
        match &self.runtime {
            Some(runtime) => Ok(runtime.check_scheduler(scheduler)?),
            None => Ok(()),
        }
    }

    /// The Metrics Reporter over this gateway's schedulers and store, registered in its
    /// registry; run it with [`reporter::Reporter::run`].
    pub fn reporter(&self) -> Result<reporter::Reporter, prometheus::Error> {
        reporter::Reporter::new(
            Arc::new(self.schedulers.clone()),
            self.store.clone(),
            &self.metrics,
        )
    }
}

/// Prometheus text, or OpenMetrics text when the scraper asks for it.
async fn serve_metrics(
    State(state): State<GatewayState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    state.metrics.render(&headers)
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: Temporal and the room store answer. Schedulers whose workflow
/// cannot make progress are named in the answer (`degraded: …`) without failing it: taking
/// this gateway out of rotation would not help them and would hurt every other scheduler.
async fn readyz(State(state): State<GatewayState>) -> Result<String, error::ApiError> {
    // One visibility call answers both: Temporal is reachable, and who is stuck.
    let stuck = state.schedulers.stuck_schedulers().await?;
    state.store.health().await?;
    if stuck.is_empty() {
        return Ok("ok".into());
    }
    Ok(format!(
        "degraded: the workflow of these schedulers cannot make progress (see the README, \
         \"cannot make progress\"): {}",
        stuck.join(", ")
    ))
}

fn probes(state: GatewayState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(serve_metrics))
        .with_state(state)
}

/// Counts, times and logs (5xx at warn, every request at debug) each request of `api`.
fn observed(router: Router, state: &GatewayState, api: &'static str) -> Router {
    router.layer(metrics::TrackHttpLayer::new(state.metrics.clone(), api))
}

/// [`observed`], with a debug span around each request, so a handler's debug lines carry
/// its method and path. Not on the rooms API: the span's clock reads and allocations cost
/// every ping, and `TrackHttpLayer`'s debug line says the same per request.
fn observed_with_spans(router: Router, state: &GatewayState, api: &'static str) -> Router {
    // Its failure line would lack method and path (its span is at debug); `TrackHttpLayer`
    // writes 5xx answers with both.
    observed(router, state, api).layer(tower_http::trace::TraceLayer::new_for_http().on_failure(()))
}

/// The management API (Maestro serves it on :8080), behind `auth`.
/// Largest request body the management API reads (a scheduler document is a few KiB).
pub const MANAGEMENT_BODY_LIMIT: usize = 1 << 20;
/// Largest request body the rooms API reads (pings and events with their metadata).
pub const ROOMS_BODY_LIMIT: usize = 256 << 10;
/// A management API request still unanswered after this gets 503: no handler waits forever
/// on Temporal or the store, and a slow client cannot hold a connection's handler open.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn bounded(router: Router, body_limit: usize) -> Router {
    router
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

pub fn management_app(state: GatewayState, auth: management::auth::ManagementAuth) -> Router {
    let routes = management::router(state.clone())
        .merge(probes(state.clone()))
        .merge(docs::routes("management", management::openapi()))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            management::auth::require_token,
        ));
    observed_with_spans(
        error::answer_unrouted(bounded(routes, MANAGEMENT_BODY_LIMIT)),
        &state,
        "management",
    )
}

/// The game rooms API.
///
/// No request timeout here, unlike the management API: every wait on the ping path has its
/// own bound (Redis 2 s, Temporal queries 3 s, forwarders their own timeout), and the
/// timer a request timeout arms cost 11 % of ping throughput (`docs/benchmarks.md`).
pub fn rooms_app(state: GatewayState) -> Router {
    observed(
        error::answer_unrouted(
            rooms::http::router(state.clone())
                .merge(probes(state.clone()))
                .merge(docs::routes("rooms", rooms::http::openapi()))
                .layer(axum::extract::DefaultBodyLimit::max(ROOMS_BODY_LIMIT)),
        ),
        &state,
        "rooms",
    )
}

/// The internal API (Maestro's :8081): health, readiness and metrics only.
pub fn internal_app(state: GatewayState) -> Router {
    probes(state)
}
