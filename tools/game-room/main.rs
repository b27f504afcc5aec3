//! `game-room`: a tiny dedicated game server stand-in for demos, tests and benchmarks.
//!
//! Reads the environment Maestro gives every room (`MAESTRO_ROOMS_API_URL` or, with
//! `--protocol grpc`, `MAESTRO_ROOMS_GRPC_URL`; `MAESTRO_SCHEDULER_NAME`, `MAESTRO_ROOM_ID`,
//! and `MAESTRO_ROOM_TOKEN`, sent as a bearer token when set), pings `ready`, and, when
//! asked, simulates matches: ready for `--match-every`, then occupied for `--match-duration`, and again.
//! On SIGTERM it pings `terminating` and exits. It exits by itself when the rooms API keeps
//! saying its room does not exist, or when it is orphaned (its parent died) and no ping was
//! accepted for `--orphan-grace`: a Maestro restarted in time adopts it, so its matches go
//! on; otherwise it does not outlive Maestro for long.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use maestro_proto::rooms::UpdateRoomWithPingRequest;
use maestro_proto::rooms::rooms_service_client::RoomsServiceClient;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior};

#[derive(Parser, Debug)]
#[command(
    name = "game-room",
    about = "Sample game room that pings Maestro's rooms API"
)]
struct Args {
    /// Time between pings.
    #[arg(long, env = "GAME_ROOM_PING_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    ping_interval: Duration,
    /// Ready time before each simulated match; 0s disables matches.
    #[arg(long, env = "GAME_ROOM_MATCH_EVERY", default_value = "0s", value_parser = humantime::parse_duration)]
    match_every: Duration,
    /// How long a simulated match keeps the room occupied.
    #[arg(long, env = "GAME_ROOM_MATCH_DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    match_duration: Duration,
    /// Consecutive "room not found" answers before the room gives up and exits.
    #[arg(long, default_value_t = 12)]
    max_not_found: u32,
    /// Once orphaned, how long the room keeps going without an accepted ping (a restarted
    /// Maestro adopts running rooms) before it exits.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    orphan_grace: Duration,
    /// Simulate a crash: exit with status 1 after this long (0s: never).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    exit_after: Duration,
    /// Metadata every ping reports (`KEY=VALUE`, repeatable), which an allocation's
    /// `metadataSelector` can match.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = key_value)]
    metadata: Vec<(String, String)>,
    /// How to reach the rooms API.
    #[arg(long, env = "GAME_ROOM_PROTOCOL", value_enum, default_value_t = Protocol::Http)]
    protocol: Protocol,
}

fn key_value(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{pair:?} is not KEY=VALUE")),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http,
    Grpc,
}

/// What a ping attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum PingOutcome {
    Accepted,
    /// The rooms API does not know this room (any more).
    UnknownRoom,
    Failed,
}

enum Transport {
    Http {
        client: reqwest::Client,
        ping_url: String,
    },
    Grpc {
        client: RoomsServiceClient<tonic::transport::Channel>,
    },
}

struct Room {
    transport: Transport,
    scheduler: String,
    room: String,
    token: Option<String>,
    metadata: BTreeMap<String, serde_json::Value>,
}

impl Room {
    fn from_env(protocol: Protocol, metadata: &[(String, String)]) -> Result<Self> {
        let var = |k: &str| {
            std::env::var(k).with_context(|| format!("{k} is not set: run me from Maestro"))
        };
        let scheduler = var("MAESTRO_SCHEDULER_NAME")?;
        let room = var("MAESTRO_ROOM_ID")?;
        let token = std::env::var("MAESTRO_ROOM_TOKEN").ok();
        let transport = match protocol {
            Protocol::Http => Transport::Http {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()?,
                ping_url: format!(
                    "{}/scheduler/{scheduler}/rooms/{room}/ping",
                    var("MAESTRO_ROOMS_API_URL")?.trim_end_matches('/')
                ),
            },
            Protocol::Grpc => {
                let channel =
                    tonic::transport::Endpoint::from_shared(var("MAESTRO_ROOMS_GRPC_URL")?)?
                        .timeout(Duration::from_secs(5))
                        .connect_lazy();
                Transport::Grpc {
                    client: RoomsServiceClient::new(channel),
                }
            }
        };
        Ok(Self {
            transport,
            scheduler,
            room,
            token,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        })
    }

    async fn ping(&mut self, status: &str, running_matches: u32) -> PingOutcome {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let outcome = match &mut self.transport {
            Transport::Http { client, ping_url } => {
                let body = json!({"status": status, "timestamp": timestamp, "runningMatches": running_matches, "metadata": self.metadata});
                let mut request = client.put(ping_url.as_str()).json(&body);
                if let Some(token) = &self.token {
                    request = request.bearer_auth(token);
                }
                match request.send().await {
                    Ok(resp) if resp.status().is_success() => Ok(PingOutcome::Accepted),
                    Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                        Ok(PingOutcome::UnknownRoom)
                    }
                    Ok(resp) => Err(format!("HTTP {}", resp.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
            Transport::Grpc { client } => {
                let mut request = tonic::Request::new(UpdateRoomWithPingRequest {
                    scheduler_name: self.scheduler.clone(),
                    room_name: self.room.clone(),
                    status: status.into(),
                    timestamp: i64::try_from(timestamp).unwrap_or(0),
                    metadata: Some(maestro_proto::pbstruct::to_struct(&self.metadata)),
                    running_matches: running_matches.into(),
                });
                if let Some(token) = &self.token
                    && let Ok(value) = format!("Bearer {token}").parse()
                {
                    request.metadata_mut().insert("authorization", value);
                }
                match client.update_room_with_ping(request).await {
                    Ok(_) => Ok(PingOutcome::Accepted),
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(PingOutcome::UnknownRoom),
                    Err(s) => Err(format!("{}: {}", s.code(), s.message())),
                }
            }
        };
        outcome.unwrap_or_else(|e| {
            eprintln!("ping {status}: {e}");
            PingOutcome::Failed
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut room = Room::from_env(args.protocol, &args.metadata)?;
    let parent = std::os::unix::process::parent_id();
    let mut term = signal(SignalKind::terminate())?;
    let mut ticker = tokio::time::interval(args.ping_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let matches_enabled = !args.match_every.is_zero();
    let mut occupied = false;
    let mut next_switch = Instant::now() + args.match_every;
    let mut not_found = 0u32;
    let mut last_accepted = Instant::now();
    let crash_at = (!args.exit_after.is_zero()).then(|| Instant::now() + args.exit_after);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(crash_at.unwrap_or_else(Instant::now)), if crash_at.is_some() => {
                eprintln!("simulated crash after {:?}", args.exit_after);
                std::process::exit(1);
            }
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(next_switch), if matches_enabled => {
                occupied = !occupied;
                next_switch = Instant::now() + if occupied { args.match_duration } else { args.match_every };
            }
            _ = term.recv() => {
                room.ping("terminating", 0).await;
                return Ok(());
            }
        }
        if std::os::unix::process::parent_id() != parent
            && last_accepted.elapsed() > args.orphan_grace
        {
            eprintln!(
                "orphaned and no ping accepted for {:?} (Maestro is gone); exiting",
                args.orphan_grace
            );
            return Ok(());
        }
        let (status, matches) = if occupied {
            ("occupied", 1)
        } else {
            ("ready", 0)
        };
        match room.ping(status, matches).await {
            PingOutcome::UnknownRoom => not_found += 1,
            PingOutcome::Accepted => {
                not_found = 0;
                last_accepted = Instant::now();
            }
            PingOutcome::Failed => not_found = 0,
        }
        if not_found >= args.max_not_found {
            eprintln!("the rooms API does not know this room any more; exiting");
            return Ok(());
        }
    }
}
