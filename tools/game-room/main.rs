//! `game-room`: a tiny dedicated game server stand-in for demos, tests and benchmarks.
//!
//! Reads the environment Maestro gives every room (`MAESTRO_ROOMS_API_URL`,
//! `MAESTRO_SCHEDULER_NAME`, `MAESTRO_ROOM_ID`), pings `ready`, and, when asked, simulates
//! matches: ready for `--match-every`, then occupied for `--match-duration`, and again.
//! On SIGTERM it pings `terminating` and exits. It exits by itself when it is orphaned (its
//! parent died) or when the rooms API keeps saying its room does not exist.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
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
}

struct Room {
    http: reqwest::Client,
    ping_url: String,
}

impl Room {
    fn from_env() -> Result<Self> {
        let var = |k: &str| {
            std::env::var(k).with_context(|| format!("{k} is not set: run me from Maestro"))
        };
        let api = var("MAESTRO_ROOMS_API_URL")?;
        let scheduler = var("MAESTRO_SCHEDULER_NAME")?;
        let room = var("MAESTRO_ROOM_ID")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            ping_url: format!(
                "{}/scheduler/{scheduler}/rooms/{room}/ping",
                api.trim_end_matches('/')
            ),
        })
    }

    /// Returns the HTTP status, or None when the API could not be reached.
    async fn ping(&self, status: &str, running_matches: u32) -> Option<reqwest::StatusCode> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let body = json!({"status": status, "timestamp": timestamp, "runningMatches": running_matches, "metadata": {}});
        match self.http.put(&self.ping_url).json(&body).send().await {
            Ok(resp) => {
                if !resp.status().is_success() {
                    eprintln!("ping {status}: HTTP {}", resp.status());
                }
                Some(resp.status())
            }
            Err(e) => {
                eprintln!("ping {status}: {e}");
                None
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let room = Room::from_env()?;
    let parent = std::os::unix::process::parent_id();
    let mut term = signal(SignalKind::terminate())?;
    let mut ticker = tokio::time::interval(args.ping_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let matches_enabled = !args.match_every.is_zero();
    let mut occupied = false;
    let mut next_switch = Instant::now() + args.match_every;
    let mut not_found = 0u32;
    loop {
        tokio::select! {
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
        if std::os::unix::process::parent_id() != parent {
            eprintln!("orphaned (Maestro is gone); exiting");
            return Ok(());
        }
        let (status, matches) = if occupied {
            ("occupied", 1)
        } else {
            ("ready", 0)
        };
        match room.ping(status, matches).await {
            Some(code) if code == reqwest::StatusCode::NOT_FOUND => not_found += 1,
            _ => not_found = 0,
        }
        if not_found >= args.max_not_found {
            eprintln!("the rooms API does not know this room any more; exiting");
            return Ok(());
        }
    }
}
