//! `maestro-gateway`: everything that answers the outside world.
//!
//! Owns the management REST API (schedulers and operations, backed by the scheduler
//! workflows through a Temporal client), the game rooms API (pings into the room store), and
//! the runtime watcher (runtime events into the room store).
//!
//! Must not change the runtime (only the worker's activities create or delete rooms), and
//! must not hold state of its own: everything lives in Temporal or the room store, so any
//! number of gateways can run side by side.

pub mod error;
pub mod json;
pub mod management;
pub mod rooms;
pub mod schedulers;
pub mod watcher;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maestro_runtime::RoomStore;

pub use schedulers::SchedulerClient;

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    pub schedulers: SchedulerClient,
    pub store: Arc<dyn RoomStore>,
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: Temporal and the room store answer.
async fn readyz(State(state): State<GatewayState>) -> Result<&'static str, error::ApiError> {
    state.schedulers.temporal_ready().await?;
    state
        .store
        .health()
        .await
        .map_err(|e| error::ApiError::unavailable(e.to_string()))?;
    Ok("ok")
}

fn probes(state: GatewayState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The management API (Maestro serves it on :8080).
pub fn management_app(state: GatewayState) -> Router {
    management::router(state.clone())
        .merge(probes(state))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// The game rooms API.
pub fn rooms_app(state: GatewayState) -> Router {
    rooms::router(state.clone())
        .merge(probes(state))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}
