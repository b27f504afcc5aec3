//! Event forwarders: room status changes, room events and player events go to the
//! scheduler's gRPC forwarders (Maestro's `eventforwarder.GRPCForwarder`).
//!
//! Each call uses the forwarder's timeout (Maestro's `options.timeout`, milliseconds, at most
//! 10 s) and merges the forwarder's metadata over the event's. Transport failures
//! (unreachable, timed out) are retried with backoff; an answer with a code other than 200 is
//! the forwarder's verdict and is not retried.
//!
//! Every forwarder of every scheduler is isolated from the others:
//! - room and player events (whose callers wait for the verdict) take one of the forwarder's
//!   own slots, waiting at most its timeout;
//! - status changes from pings never wait: they go to one of the forwarder's lanes (a room
//!   always to the same lane, so its changes arrive in order) and the ping returns; a full
//!   lane drops the change and counts it in `maestro_forwarder_dropped_total`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::Metrics;
use backon::{ExponentialBuilder, Retryable};
use maestro_core::scheduler::Forwarder;
use maestro_proto::eventforwarder::{self, grpc_forwarder_client::GrpcForwarderClient};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use maestro_proto::pbstruct::to_struct;

/// Maestro's default when a forwarder sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Room and player event calls in flight per forwarder of a scheduler.
    pub slots_per_forwarder: usize,
    /// Status-change lanes per forwarder of a scheduler (calls in flight at once).
    pub lanes_per_forwarder: usize,
    /// Status changes waiting per lane; past it they are dropped and counted.
    pub lane_capacity: usize,
    /// Tries per call for transport failures (1 = no retry).
    pub attempts: usize,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            slots_per_forwarder: 64,
            lanes_per_forwarder: 8,
            lane_capacity: 128,
            attempts: 3,
        }
    }
}

/// (scheduler, forwarder name): what one forwarder's bounds are kept by.
type ForwarderKey = (String, String);

/// Where one lane's status changes wait.
type Lane = mpsc::Sender<Queued>;

/// A status change waiting in a lane.
struct Queued {
    forwarder: Forwarder,
    room: ForwardedRoom,
    event: ForwardEvent,
}

/// The room as forwarders see it.
#[derive(Debug, Clone, Default)]
pub struct ForwardedRoom {
    pub game: String,
    pub scheduler: String,
    pub room_id: String,
    pub host: String,
    pub port: i32,
    pub metadata: BTreeMap<String, Value>,
}

/// What is forwarded.
#[derive(Debug, Clone)]
pub enum ForwardEvent {
    /// The room's status changed (sent with `SendRoomStatus`).
    RoomStatus { status: String },
    /// A room event (`SendRoomEvent`).
    Room { event: String },
    /// A player event (`SendPlayerEvent`); Maestro reads the player id from `playerId`.
    Player { event: String },
}

impl ForwardEvent {
    fn label(&self) -> &'static str {
        match self {
            Self::RoomStatus { .. } => "room_status",
            Self::Room { .. } => "room_event",
            Self::Player { .. } => "player_event",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("forwarder {forwarder} answered code {code}: {message}")]
    Rejected {
        forwarder: String,
        code: i32,
        message: String,
    },
    #[error("forwarder {forwarder} failed: {reason}")]
    Failed { forwarder: String, reason: String },
}

#[derive(Clone)]
pub struct Forwarders {
    config: ForwarderConfig,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    slots: Arc<Mutex<HashMap<ForwarderKey, Arc<Semaphore>>>>,
    lanes: Arc<Mutex<HashMap<(ForwarderKey, usize), Lane>>>,
    metrics: Metrics,
}

impl Forwarders {
    pub fn new(config: ForwarderConfig, metrics: Metrics) -> Self {
        Self {
            config,
            channels: Arc::default(),
            slots: Arc::default(),
            lanes: Arc::default(),
            metrics,
        }
    }

    /// Hands `event` to each forwarder's lane for `room` and returns at once; what the
    /// forwarders answer is logged and counted, never waited for.
    pub fn forward_in_background(
        &self,
        forwarders: &[Forwarder],
        room: &ForwardedRoom,
        event: &ForwardEvent,
    ) {
        for forwarder in forwarders {
            let lane = self.lane(&room.scheduler, &forwarder.name, &room.room_id);
            let queued = Queued {
                forwarder: forwarder.clone(),
                room: room.clone(),
                event: event.clone(),
            };
            if let Err(e) = lane.try_send(queued) {
                self.metrics.forward_dropped(&forwarder.name, event.label());
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "its lane is full",
                    mpsc::error::TrySendError::Closed(_) => "its lane is closed",
                };
                warn!(scheduler = %room.scheduler, room = %room.room_id, forwarder = %forwarder.name, event = event.label(), "status change not forwarded: {why}");
            }
        }
    }

    /// The lane `room`'s changes go through for this forwarder, started on first use.
    fn lane(&self, scheduler: &str, forwarder: &str, room: &str) -> Lane {
        let lanes = self.config.lanes_per_forwarder.max(1);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        room.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % lanes as u64).unwrap_or(0);
        let key = ((scheduler.to_string(), forwarder.to_string()), index);
        let mut all = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = all.get(&key) {
            return lane.clone();
        }
        let (tx, mut rx) = mpsc::channel::<Queued>(self.config.lane_capacity.max(1));
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let _ = this
                    .forward(&job.forwarder, &job.room, &job.event, &BTreeMap::new())
                    .await;
            }
        });
        all.insert(key, tx.clone());
        tx
    }

    /// The forwarder's own slots for calls whose callers wait.
    fn slots(&self, scheduler: &str, forwarder: &str) -> Arc<Semaphore> {
        let mut all = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        all.entry((scheduler.to_string(), forwarder.to_string()))
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.slots_per_forwarder.max(1))))
            .clone()
    }

    /// Sends `event` about `room` to every forwarder, concurrently; the first failure is
    /// returned (every failure is logged and counted).
    pub async fn forward_all(
        &self,
        forwarders: &[Forwarder],
        room: &ForwardedRoom,
        event: &ForwardEvent,
        event_metadata: &BTreeMap<String, Value>,
    ) -> Result<(), ForwardError> {
        let results = futures::future::join_all(
            forwarders
                .iter()
                .map(|f| self.forward(f, room, event, event_metadata)),
        )
        .await;
        results.into_iter().collect()
    }

    async fn forward(
        &self,
        forwarder: &Forwarder,
        room: &ForwardedRoom,
        event: &ForwardEvent,
        event_metadata: &BTreeMap<String, Value>,
    ) -> Result<(), ForwardError> {
        let result = self
            .call_with_retries(forwarder, room, event, event_metadata)
            .await;
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .forwarded(&forwarder.name, event.label(), outcome);
        match &result {
            Ok(()) => {
                debug!(scheduler = %room.scheduler, room = %room.room_id, forwarder = %forwarder.name, event = event.label(), "forwarded")
            }
            Err(e) => {
                warn!(scheduler = %room.scheduler, room = %room.room_id, forwarder = %forwarder.name, event = event.label(), error = %e, "forwarding failed")
            }
        }
        result
    }

    fn timeout(forwarder: &Forwarder) -> Duration {
        forwarder
            .options
            .as_ref()
            .and_then(|o| u64::try_from(o.timeout).ok())
            .filter(|ms| *ms > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
    }

    fn channel(&self, forwarder: &Forwarder) -> Result<Channel, ForwardError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(&forwarder.address) {
            return Ok(channel.clone());
        }
        let uri = if forwarder.address.contains("://") {
            forwarder.address.clone()
        } else {
            format!("http://{}", forwarder.address)
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| ForwardError::Failed {
                forwarder: forwarder.name.clone(),
                reason: format!("bad address {:?}: {e}", forwarder.address),
            })?
            .connect_timeout(Self::timeout(forwarder))
            .connect_lazy();
        channels.insert(forwarder.address.clone(), channel.clone());
        Ok(channel)
    }

    async fn call_with_retries(
        &self,
        forwarder: &Forwarder,
        room: &ForwardedRoom,
        event: &ForwardEvent,
        event_metadata: &BTreeMap<String, Value>,
    ) -> Result<(), ForwardError> {
        let timeout = Self::timeout(forwarder);
        let channel = self.channel(forwarder)?;
        let failed = |reason: String| ForwardError::Failed {
            forwarder: forwarder.name.clone(),
            reason,
        };
        let slots = self.slots(&room.scheduler, &forwarder.name);
        let _slot = tokio::time::timeout(timeout, slots.acquire_owned())
            .await
            .map_err(|_| failed("too many calls to this forwarder in flight".into()))?
            .map_err(|_| failed("forwarders are shutting down".into()))?;
        let mut metadata = event_metadata.clone();
        if let Some(options) = &forwarder.options {
            metadata.extend(options.metadata.clone());
        }
        let call = || async {
            let mut client = GrpcForwarderClient::new(channel.clone());
            let sent = tokio::time::timeout(timeout, send(&mut client, room, event, &metadata))
                .await
                .map_err(|_| tonic::Status::deadline_exceeded(format!("no answer in {timeout:?}")))
                .and_then(|r| r);
            sent.map(tonic::Response::into_inner)
        };
        let response = call
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(Duration::from_millis(200))
                    .with_max_times(self.config.attempts.saturating_sub(1)),
            )
            .when(|status: &tonic::Status| {
                matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
                )
            })
            .await
            .map_err(|status| failed(format!("{}: {}", status.code(), status.message())))?;
        if response.code == 200 {
            Ok(())
        } else {
            Err(ForwardError::Rejected {
                forwarder: forwarder.name.clone(),
                code: response.code,
                message: response.message,
            })
        }
    }
}

async fn send(
    client: &mut GrpcForwarderClient<Channel>,
    room: &ForwardedRoom,
    event: &ForwardEvent,
    metadata: &BTreeMap<String, Value>,
) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
    let pb_room = eventforwarder::Room {
        game: room.game.clone(),
        room_id: room.room_id.clone(),
        room_type: room.scheduler.clone(),
        host: room.host.clone(),
        port: room.port,
        metadata: Some(to_struct(&room.metadata)),
    };
    match event {
        ForwardEvent::RoomStatus { status } => {
            client
                .send_room_status(eventforwarder::RoomStatus {
                    room: Some(pb_room),
                    status_type: status.clone(),
                })
                .await
        }
        ForwardEvent::Room { event } => {
            client
                .send_room_event(eventforwarder::RoomEvent {
                    room: Some(pb_room),
                    event_type: event.clone(),
                    metadata: Some(to_struct(metadata)),
                })
                .await
        }
        ForwardEvent::Player { event } => {
            let player_id = match metadata.get("playerId") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            client
                .send_player_event(eventforwarder::PlayerEvent {
                    player_id,
                    room: Some(pb_room),
                    event_type: event.clone(),
                    metadata: Some(to_struct(metadata)),
                })
                .await
        }
    }
}

#[cfg(test)]
mod tests;
