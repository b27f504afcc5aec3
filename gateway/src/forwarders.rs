//! Event forwarders: room status changes, room events and player events go to the
//! scheduler's gRPC forwarders (Maestro's `eventforwarder.GRPCForwarder`).
//!
//! Each call uses the forwarder's timeout (Maestro's `options.timeout`, milliseconds) and
//! merges the forwarder's metadata over the event's. Transport failures (unreachable,
//! timed out) are retried with backoff; an answer with a code other than 200 is the
//! forwarder's verdict and is not retried. In-flight calls are bounded: past the bound a
//! call waits for a slot, at most its timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use maestro_core::scheduler::Forwarder;
use maestro_proto::eventforwarder::{self, grpc_forwarder_client::GrpcForwarderClient};
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::Value;
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use maestro_proto::pbstruct::to_struct;

/// Maestro's default when a forwarder sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Calls in flight across all forwarders of this gateway.
    pub max_in_flight: usize,
    /// Tries per call for transport failures (1 = no retry).
    pub attempts: usize,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            attempts: 3,
        }
    }
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
    slots: Arc<Semaphore>,
    calls: IntCounterVec,
}

impl Forwarders {
    pub fn new(config: ForwarderConfig, registry: &Registry) -> Result<Self, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "maestro_forwarder_calls_total",
                "Event forwarding calls by forwarder, event kind and outcome (success, failure)",
            ),
            &["forwarder", "event", "outcome"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
            channels: Arc::default(),
            calls,
        })
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
        self.calls
            .with_label_values(&[forwarder.name.as_str(), event.label(), outcome])
            .inc();
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
        let _slot = tokio::time::timeout(timeout, self.slots.acquire())
            .await
            .map_err(|_| failed("too many forwarding calls in flight".into()))?
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
mod tests {
    use maestro_core::scheduler::ForwarderOptions;

    use super::*;

    fn forwarder(address: String, timeout_ms: i64) -> Forwarder {
        Forwarder {
            name: "mm".into(),
            enable: true,
            kind: "gRPC".into(),
            address,
            options: Some(ForwarderOptions {
                timeout: timeout_ms,
                metadata: BTreeMap::new(),
            }),
        }
    }

    /// Nothing listens: every try fails fast, the call fails once with the reason, and the
    /// failure is counted once (not once per try).
    #[tokio::test]
    async fn unreachable_forwarder_fails_after_retries_and_is_counted() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let registry = Registry::new();
        let forwarders = Forwarders::new(ForwarderConfig::default(), &registry).unwrap();
        let started = std::time::Instant::now();
        let err = forwarders
            .forward_all(
                &[forwarder(closed, 300)],
                &ForwardedRoom::default(),
                &ForwardEvent::Room { event: "e".into() },
                &BTreeMap::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ForwardError::Failed { .. }), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by timeout × tries"
        );
        let failures = forwarders
            .calls
            .with_label_values(&["mm", "room_event", "failure"])
            .get();
        assert_eq!(failures, 1);
    }

    #[tokio::test]
    async fn a_bad_address_is_a_failure_not_a_panic() {
        let forwarders = Forwarders::new(ForwarderConfig::default(), &Registry::new()).unwrap();
        let err = forwarders
            .forward_all(
                &[forwarder("not a uri at all\n".into(), 100)],
                &ForwardedRoom::default(),
                &ForwardEvent::RoomStatus {
                    status: "ready".into(),
                },
                &BTreeMap::new(),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bad address"), "{err}");
    }

    #[test]
    fn timeout_defaults_to_maestros() {
        assert_eq!(
            Forwarders::timeout(&forwarder("a:1".into(), 0)),
            DEFAULT_TIMEOUT
        );
        assert_eq!(
            Forwarders::timeout(&forwarder("a:1".into(), -5)),
            DEFAULT_TIMEOUT
        );
        assert_eq!(
            Forwarders::timeout(&forwarder("a:1".into(), 250)),
            Duration::from_millis(250)
        );
    }
}
