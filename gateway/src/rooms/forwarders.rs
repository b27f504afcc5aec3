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
    /// The first port (Maestro's `selectPort`), 0 when the room has none yet.
    pub port: i32,
    pub ports: Vec<maestro_core::room::RoomPort>,
    /// What the room last sent (ping metadata).
    pub metadata: BTreeMap<String, Value>,
}

/// What is forwarded, and with which call, as Maestro's events forwarder does.
#[derive(Debug, Clone)]
pub enum ForwardEvent {
    /// A ping changed the room's status: `SendRoomResync` with the status the room sent.
    Resync { ping_status: String },
    /// Maestro v9's `/status` route: `SendRoomStatus` with the status sent.
    Status { status: String },
    /// A room event (`SendRoomEvent`).
    Room { event: String },
    /// A player event (`SendPlayerEvent`, `playerJoin`/`playerLeft`); the player id is the
    /// event metadata's `playerId`.
    Player { event: String },
}

impl ForwardEvent {
    /// Every `event` label a forwarding call is counted under.
    const LABELS: [&'static str; 4] = ["room_resync", "room_status", "room_event", "player_event"];
    /// The labels of events sent from a lane (the only ones that can be dropped).
    const IN_BACKGROUND: [&'static str; 1] = ["room_resync"];

    fn label(&self) -> &'static str {
        match self {
            Self::Resync { .. } => Self::LABELS[0],
            Self::Status { .. } => Self::LABELS[1],
            Self::Room { .. } => Self::LABELS[2],
            Self::Player { .. } => Self::LABELS[3],
        }
    }
}

/// The `outcome` labels of `maestro_forwarder_calls_total`.
const OUTCOMES: [&str; 2] = ["success", "failure"];

/// Starts `forwarder`'s series at zero, so its first call or drop shows as a rate instead of
/// a series appearing from nothing (the reporter calls this for every forwarder it sees).
pub fn zero_series(metrics: &Metrics, forwarder: &str) {
    for event in ForwardEvent::LABELS {
        for outcome in OUTCOMES {
            metrics
                .forwarder_calls
                .with_label_values(&[forwarder, event, outcome]);
        }
    }
    for event in ForwardEvent::IN_BACKGROUND {
        metrics
            .forwarder_dropped
            .with_label_values(&[forwarder, event]);
    }
}

/// One call to a forwarder, built.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Resync(eventforwarder::RoomStatus),
    Status(eventforwarder::RoomStatus),
    Room(eventforwarder::RoomEvent),
    Player(eventforwarder::PlayerEvent),
}

/// A metadata value as Maestro writes it into the forwarders' `map<string, string>` (Go's
/// `%v`: strings as they are, numbers and booleans as text; lists and objects as JSON).
fn stringify(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

fn strings(map: &BTreeMap<String, Value>) -> std::collections::HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), stringify(v))).collect()
}

fn status_type(status: &str) -> Option<eventforwarder::room_status::RoomStatusType> {
    use eventforwarder::room_status::RoomStatusType;
    match status.to_ascii_lowercase().as_str() {
        "ready" => Some(RoomStatusType::Ready),
        "occupied" => Some(RoomStatusType::Occupied),
        "terminating" => Some(RoomStatusType::Terminating),
        "terminated" => Some(RoomStatusType::Terminated),
        _ => None,
    }
}

/// Builds the call Maestro would make for `event` (its `internal/adapters/events`
/// `events_forwarder.go` and `internal/core/services/events`): which metadata is merged over
/// which, the event attributes it adds (`eventType`, `pingType`, `roomEvent`, `ports`) and
/// `roomType` from the forwarder's `options.metadata`. `Err` says why nothing is sent.
pub fn build(
    forwarder: &Forwarder,
    room: &ForwardedRoom,
    event: &ForwardEvent,
    event_metadata: &BTreeMap<String, Value>,
) -> Result<Outgoing, String> {
    let forwarder_metadata = forwarder
        .options
        .as_ref()
        .map(|o| o.metadata.clone())
        .unwrap_or_default();
    let room_type = match forwarder_metadata.get("roomType") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    // The event's attributes ("Other" in Maestro): what the room sent plus what Maestro adds.
    let mut other = event_metadata.clone();
    let ports = || {
        let list: Vec<Value> = room
            .ports
            .iter()
            .map(|p| serde_json::json!({"port": p.port, "name": p.name, "protocol": p.protocol}))
            .collect();
        Value::String(Value::Array(list).to_string())
    };
    let pb_room = |metadata| eventforwarder::Room {
        game: room.game.clone(),
        room_id: room.room_id.clone(),
        host: room.host.clone(),
        port: room.port,
        metadata,
        room_type: String::new(),
    };
    let status_message = |status: &str, kind: &str, mut other: BTreeMap<String, Value>| {
        let status_type =
            status_type(status).ok_or_else(|| format!("status {status:?} is not forwarded"))?;
        other.insert("eventType".into(), Value::String(kind.into()));
        other.insert("pingType".into(), Value::String(status.into()));
        if !room.ports.is_empty() {
            other.insert("ports".into(), ports());
        }
        // The room's attributes win over the forwarder's for status messages.
        let mut metadata = strings(&forwarder_metadata);
        metadata.extend(strings(&other));
        let mut pb = pb_room(metadata);
        pb.room_type = room_type.clone();
        Ok::<_, String>(eventforwarder::RoomStatus {
            room: Some(pb),
            status_type: status_type as i32,
        })
    };
    match event {
        ForwardEvent::Resync { ping_status } => {
            other.extend(room.metadata.clone());
            status_message(ping_status, "resync", other).map(Outgoing::Resync)
        }
        ForwardEvent::Status { status } => {
            status_message(status, "status", other).map(Outgoing::Status)
        }
        ForwardEvent::Room { event } => {
            other.insert("eventType".into(), Value::String("roomEvent".into()));
            other.insert("roomEvent".into(), Value::String(event.clone()));
            if !room.ports.is_empty() {
                other.insert("ports".into(), ports());
            }
            // The forwarder's metadata wins over the event's for room events.
            let mut metadata = strings(&other);
            metadata.extend(strings(&forwarder_metadata));
            Ok(Outgoing::Room(eventforwarder::RoomEvent {
                room: Some(pb_room(metadata)),
                event_type: event.clone(),
                metadata: Default::default(),
            }))
        }
        ForwardEvent::Player { event } => {
            use eventforwarder::player_event::PlayerEventType;
            let kind = match event.as_str() {
                "playerJoin" => PlayerEventType::PlayerJoined,
                "playerLeft" => PlayerEventType::PlayerLeft,
                _ => {
                    return Err(format!(
                        "player event {event:?} is not one of playerJoin, playerLeft"
                    ));
                }
            };
            let player_id = match other.get("playerId") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err("the event's metadata needs a string playerId".into()),
            };
            other.insert("eventType".into(), Value::String(event.clone()));
            if let Some(room_type) = forwarder_metadata.get("roomType") {
                other.insert("roomType".into(), room_type.clone());
            }
            Ok(Outgoing::Player(eventforwarder::PlayerEvent {
                player_id,
                room: Some(eventforwarder::Room {
                    game: room.game.clone(),
                    room_id: room.room_id.clone(),
                    ..Default::default()
                }),
                event_type: kind as i32,
                metadata: strings(&other),
            }))
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
    /// Nothing was sent: the event cannot be forwarded (Maestro refuses it the same way).
    #[error("not forwarded to {forwarder}: {reason}")]
    Invalid { forwarder: String, reason: String },
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
        let outcome = OUTCOMES[usize::from(result.is_err())];
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
        let outgoing = build(forwarder, room, event, event_metadata).map_err(|reason| {
            ForwardError::Invalid {
                forwarder: forwarder.name.clone(),
                reason,
            }
        })?;
        let call = || async {
            let mut client = GrpcForwarderClient::new(channel.clone());
            let sent = tokio::time::timeout(timeout, send(&mut client, outgoing.clone()))
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
    outgoing: Outgoing,
) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
    match outgoing {
        Outgoing::Resync(m) => client.send_room_resync(m).await,
        Outgoing::Status(m) => client.send_room_status(m).await,
        Outgoing::Room(m) => client.send_room_event(m).await,
        Outgoing::Player(m) => client.send_player_event(m).await,
    }
}

#[cfg(test)]
mod tests;
