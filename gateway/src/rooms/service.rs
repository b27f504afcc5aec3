//! The game rooms API's behaviour, shared by its HTTP and gRPC faces: room tokens, pings into
//! the room store, events to forwarders, addresses and allocation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use maestro_core::room::{ALLOCATION_TTL, RoomAddress};
use maestro_core::{GameRoom, PingStatus, RoomTokenSecret, Timestamp};
use maestro_runtime::{PingOutcome, PingUpdate, RoomStore};
use serde_json::Value;
use tracing::{debug, info};

use super::directory::{SchedulerDirectory, SchedulerInfo};
use super::forwarders::{ForwardEvent, ForwardedRoom, Forwarders};
use super::tokens::RoomTokens;
use crate::credentials::{Credentials, Role};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::now;

/// A ping or status message, already decoded from HTTP JSON or gRPC.
#[derive(Debug, Clone)]
pub struct PingMessage {
    pub status: String,
    pub running_matches: i64,
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// A room or player event.
#[derive(Debug, Clone)]
pub struct EventMessage {
    pub event: String,
    pub metadata: BTreeMap<String, Value>,
}

/// The answer to an event: Maestro reports forwarding failures in the body, not the status.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOutcome {
    pub success: bool,
    pub message: String,
}

/// An allocated room.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub room_id: String,
    pub address: RoomAddress,
}

/// Who may allocate rooms and read their addresses (a room may always read its own).
#[derive(Debug, Clone)]
pub enum MatchmakerAuth {
    /// Anyone (a gateway whose management API is open too: `--insecure-no-auth`).
    Open,
    /// A `matchmaker` or `admin` token of the API token list; when not `required`
    /// (matchmakers written for Maestro send none), checked only when sent.
    Tokens {
        credentials: Credentials,
        required: bool,
    },
}

#[derive(Clone)]
pub struct RoomService {
    store: Arc<dyn RoomStore>,
    directory: SchedulerDirectory,
    forwarders: Forwarders,
    /// `None`: room tokens are off for this gateway (every room is trusted).
    token_secret: Option<Arc<RoomTokens>>,
    /// `false` (a studio migrating from Maestro, whose rooms send none): a token is checked
    /// when sent and never required.
    tokens_required: bool,
    allocation_ttl: Duration,
    matchmakers: MatchmakerAuth,
    metrics: Metrics,
}

impl RoomService {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn new(
        store: Arc<dyn RoomStore>,
        directory: SchedulerDirectory,
        forwarders: Forwarders,
        token_secret: Option<RoomTokenSecret>,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            directory,
            forwarders,
            token_secret: token_secret.map(|secret| Arc::new(RoomTokens::new(secret))),
            tokens_required: true,
            allocation_ttl: ALLOCATION_TTL,
            matchmakers: MatchmakerAuth::Open,
            metrics,
        }
    }

    /// Tokens checked when sent, never required (see [`RoomService::authenticate`]).
    pub fn with_tokens_required(mut self, required: bool) -> Self {
        self.tokens_required = required;
        self
    }

    pub fn with_matchmakers(mut self, matchmakers: MatchmakerAuth) -> Self {
        self.matchmakers = matchmakers;
        self
    }

    /// Whether `credential` (a bearer token, if one was sent) lets a matchmaker in: `Ok(true)`
    /// for a matchmaker or admin token, `Ok(false)` for none where none is needed; refused
    /// before anything is looked up, so the answer tells a stranger nothing about which
    /// schedulers or rooms exist.
    fn matchmaker(&self, credential: Option<&str>) -> Result<bool, ApiError> {
        let MatchmakerAuth::Tokens {
            credentials,
            required,
        } = &self.matchmakers
        else {
            return Ok(false);
        };
        match credential {
            Some(token)
                if credentials
                    .role_of(token)
                    .is_some_and(|r| r.allows(Role::Matchmaker)) =>
            {
                Ok(true)
            }
            Some(_) => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "this token is not a matchmaker token",
            )),
            None if !required => Ok(false),
            None => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "send `Authorization: Bearer <token>` with a matchmaker token (role matchmaker or admin of --api-tokens)",
            )),
        }
    }

    pub fn with_allocation_ttl(mut self, ttl: Duration) -> Self {
        self.allocation_ttl = ttl;
        self
    }

    async fn scheduler(&self, scheduler: &str) -> Result<Arc<SchedulerInfo>, ApiError> {
        self.directory
            .get(scheduler)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("scheduler {scheduler} not found")))
    }

    async fn room(&self, scheduler: &str, room: &str) -> Result<GameRoom, ApiError> {
        self.store.get(scheduler, room).await?.ok_or_else(|| {
            ApiError::not_found(format!("room {room} of scheduler {scheduler} not found"))
        })
    }

    /// A message for `room` must carry that room's token: a wrong one is refused (403)
    /// without looking anything up; a missing one (401) unless the gateway does not require
    /// tokens or the scheduler opted out.
    pub async fn authenticate(
        &self,
        scheduler: &str,
        room: &str,
        token: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(secret) = &self.token_secret else {
            return Ok(());
        };
        match token {
            Some(token) if secret.verify(scheduler, room, token) => Ok(()),
            Some(_) => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("the token is not room {room}'s token"),
            )),
            None if !self.tokens_required => Ok(()),
            None if !self.scheduler(scheduler).await?.room_token_required => Ok(()),
            None => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                format!(
                    "room {room} sent no token: send `Authorization: Bearer $MAESTRO_ROOM_TOKEN`"
                ),
            )),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(scheduler = %scheduler, room = %room))]
    pub async fn ping(
        &self,
        scheduler: &str,
        room: &str,
        token: Option<&str>,
        message: PingMessage,
    ) -> Result<bool, ApiError> {
        self.metrics.ping(&message.status);
        let update = decode_ping(message)?;
        let ping_status = update.status;
        let applied = async {
            self.authenticate(scheduler, room, token).await?;
            Ok::<_, ApiError>(
                self.store
                    .apply_ping(scheduler, room, update, now())
                    .await?,
            )
        };
        let outcome = match applied.await {
            Ok(outcome) => outcome,
            // Maestro answers `success: false` (200) for a room it does not know.
            Err(e) if e.code == ErrorCode::NotFound => {
                debug!(scheduler = %scheduler, room = %room, reason = %e.message, "ping not recorded");
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let changed = match outcome {
            PingOutcome::Changed(change) => {
                info!(scheduler = %scheduler, room = %room, from = %change.previous.as_str(), to = %change.room.status.as_str(), "room status changed");
                Some(change.room)
            }
            _ => {
                debug!(scheduler = %scheduler, room = %room, "ping");
                None
            }
        };
        self.forward_ping(scheduler, room, ping_status, changed)
            .await;
        Ok(true)
    }

    /// Hands a recorded ping to the scheduler's forwarders as a resync, whether or not it
    /// changed the room's status: Maestro forwards every ping it records
    /// (`room_manager.go` `UpdateRoom`: `updateGameRoomStatus` answers "forward" for an
    /// unchanged status too). Forwarding only changes lost a room whose first ready ping came
    /// before its instance was recorded: the instance made it ready, and no later ping
    /// changed anything. The ping is answered whatever the forwarders do: the event goes to
    /// their lanes, never on this path (a forwarder that never answers delays no ping).
    /// `record` is the room when the ping changed it; otherwise it is read, and only for a
    /// scheduler with forwarders.
    async fn forward_ping(
        &self,
        scheduler: &str,
        room: &str,
        ping_status: PingStatus,
        record: Option<GameRoom>,
    ) {
        // A ping that changed nothing takes the directory's entry however old: refreshing it
        // (a Temporal query when it expired) stays on the status-changing pings, as before
        // every ping was forwarded, so pings at a fleet's rate never wait on Temporal.
        let cached = match record {
            None => self.directory.cached(scheduler).await,
            Some(_) => None,
        };
        let info = match cached {
            Some(cached) => cached,
            None => self.scheduler(scheduler).await.ok(),
        };
        let Some(info) = info.filter(|info| !info.forwarders.is_empty()) else {
            return;
        };
        let record = match record {
            Some(record) => record,
            None => match self.store.get(scheduler, room).await {
                Ok(Some(record)) => record,
                _ => return,
            },
        };
        // As Maestro's forwarder: a room in a reliable state is forwarded only once its
        // instance (its address) is known; a terminating one always.
        let unreliable = matches!(
            ping_status,
            PingStatus::Terminating | PingStatus::Terminated
        );
        if record.address.is_none() && !unreliable {
            return;
        }
        // What the room sent: a status decodes only when spelled as Maestro does.
        let event = ForwardEvent::Resync {
            ping_status: ping_status.as_str().to_string(),
        };
        self.forwarders.forward_in_background(
            &info.forwarders,
            &forwarded_room(&info, &record),
            &event,
        );
    }

    /// Forwards a room event (`player: false`) or player event to the scheduler's forwarders.
    #[tracing::instrument(level = "debug", skip_all, fields(scheduler = %scheduler, room = %room))]
    pub async fn event(
        &self,
        scheduler: &str,
        room: &str,
        token: Option<&str>,
        message: EventMessage,
        player: bool,
    ) -> Result<EventOutcome, ApiError> {
        if message.event.trim().is_empty() {
            return Err(ApiError::invalid_field("event", "must not be empty"));
        }
        let event = if player {
            ForwardEvent::Player {
                event: message.event,
            }
        } else {
            ForwardEvent::Room {
                event: message.event,
            }
        };
        self.forward_event(scheduler, room, token, event, &message.metadata)
            .await
    }

    /// Maestro v9's `/status`: forwards the status as a status event (`SendRoomStatus`) and
    /// never changes the room; only pings do.
    #[tracing::instrument(level = "debug", skip_all, fields(scheduler = %scheduler, room = %room))]
    pub async fn status(
        &self,
        scheduler: &str,
        room: &str,
        token: Option<&str>,
        status: String,
        metadata: BTreeMap<String, Value>,
    ) -> Result<EventOutcome, ApiError> {
        let event = ForwardEvent::Status { status };
        self.forward_event(scheduler, room, token, event, &metadata)
            .await
    }

    async fn scheduler_and_room(
        &self,
        scheduler: &str,
        room: &str,
    ) -> Result<(Arc<SchedulerInfo>, GameRoom), ApiError> {
        Ok((
            self.scheduler(scheduler).await?,
            self.room(scheduler, room).await?,
        ))
    }

    async fn forward_event(
        &self,
        scheduler: &str,
        room: &str,
        token: Option<&str>,
        event: ForwardEvent,
        metadata: &BTreeMap<String, Value>,
    ) -> Result<EventOutcome, ApiError> {
        self.authenticate(scheduler, room, token).await?;
        let (info, found) = match self.scheduler_and_room(scheduler, room).await {
            Ok(both) => both,
            // Maestro answers 200 with the reason when it cannot forward (no such room).
            Err(e) if e.code == ErrorCode::NotFound => {
                return Ok(EventOutcome {
                    success: false,
                    message: e.message,
                });
            }
            Err(e) => return Err(e),
        };
        if info.forwarders.is_empty() {
            return Ok(EventOutcome {
                success: true,
                message: "no forwarders configured".into(),
            });
        }
        Ok(
            match self
                .forwarders
                .forward_all(
                    &info.forwarders,
                    &forwarded_room(&info, &found),
                    &event,
                    metadata,
                )
                .await
            {
                Ok(()) => EventOutcome {
                    success: true,
                    message: String::new(),
                },
                Err(e) => EventOutcome {
                    success: false,
                    message: e.to_string(),
                },
            },
        )
    }

    #[tracing::instrument(level = "debug", skip_all, fields(scheduler = %scheduler, room = %room))]
    pub async fn address(
        &self,
        scheduler: &str,
        room: &str,
        token: Option<&str>,
    ) -> Result<RoomAddress, ApiError> {
        // A matchmaker's credential, else the room's own token (verified once).
        match self.matchmaker(token) {
            Ok(true) => {}
            Ok(false) => self.authenticate(scheduler, room, token).await?,
            Err(refused) => match (token, &self.token_secret) {
                (Some(t), Some(secret)) if secret.verify(scheduler, room, t) => {}
                _ => return Err(refused),
            },
        }
        let found = self.room(scheduler, room).await?;
        found.address.ok_or_else(|| {
            ApiError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "room {room} has no address yet (status {})",
                    found.status.as_str()
                ),
            )
        })
    }

    /// Hands out one ready room (matching `selector`) for the allocation TTL; `Ok(None)`
    /// when none is available.
    #[tracing::instrument(level = "debug", skip_all, fields(scheduler = %scheduler))]
    pub async fn allocate(
        &self,
        scheduler: &str,
        selector: &BTreeMap<String, String>,
        credential: Option<&str>,
    ) -> Result<Option<Allocation>, ApiError> {
        self.matchmaker(credential)?;
        // An unknown scheduler has no ready room: the same answer as Maestro's, which also
        // does not tell a caller which scheduler names exist.
        if self.directory.get(scheduler).await?.is_none() {
            return Ok(None);
        }
        let now = now();
        let until = Timestamp::from_unix_millis(
            now.unix_millis()
                .saturating_add(i64::try_from(self.allocation_ttl.as_millis()).unwrap_or(i64::MAX)),
        );
        let room = self.store.allocate(scheduler, selector, until, now).await?;
        Ok(room.map(|room| {
            // Debug, as Maestro logs it: a launch allocates tens of thousands a second (the
            // request metrics count them).
            debug!(scheduler = %scheduler, room = %room.id, "room allocated");
            Allocation {
                address: room.address.unwrap_or_default(),
                room_id: room.id,
            }
        }))
    }
}

fn decode_ping(message: PingMessage) -> Result<PingUpdate, ApiError> {
    let status = PingStatus::parse(&message.status).ok_or_else(|| {
        ApiError::invalid_field(
            "status",
            format!(
                "{:?} is not one of {}",
                message.status,
                PingStatus::expected()
            ),
        )
    })?;
    let running_matches = u32::try_from(message.running_matches).map_err(|_| {
        ApiError::invalid_field("runningMatches", "must be between 0 and 4294967295")
    })?;
    // Maestro's rule (requestadapters/rooms.go): an occupied room hosts at least one match.
    let running_matches = if status == PingStatus::Occupied && running_matches == 0 {
        1
    } else {
        running_matches
    };
    Ok(PingUpdate {
        status,
        running_matches,
        metadata: message.metadata,
    })
}

fn forwarded_room(info: &SchedulerInfo, room: &GameRoom) -> ForwardedRoom {
    let (host, port) = room
        .address
        .as_ref()
        .map(|a| {
            (
                a.host.clone(),
                a.ports.first().map_or(0, |p| i32::from(p.port)),
            )
        })
        .unwrap_or_default();
    ForwardedRoom {
        game: info.game.clone(),
        scheduler: info.name.clone(),
        room_id: room.id.clone(),
        host,
        port,
        ports: room
            .address
            .as_ref()
            .map(|a| a.ports.clone())
            .unwrap_or_default(),
        metadata: room.metadata.clone(),
    }
}
