//! The test harness shared by the end-to-end suites: the real `maestro dev` binary on free
//! loopback ports (reusing a test Temporal dev server), with REST helpers.
#![allow(dead_code)] // each suite uses a part

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use maestro_testkit::{TemporalDevServer, free_port, processes_with_env, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The management API token every test `maestro dev` requires.
pub const API_TOKEN: &str = "test-management-token";

/// The room-token secret every test `maestro dev` runs with, so tests can compute tokens.
pub const ROOM_TOKEN_SECRET: &str = "rooms-api-test-secret-0123456789";

/// Room `room`'s token, as the test `maestro dev` gives it to the room.
pub fn room_token(scheduler: &str, room: &str) -> String {
    maestro_core::RoomTokenSecret::new(ROOM_TOKEN_SECRET)
        .expect("the test secret is long enough")
        .token(scheduler, room)
}

pub struct Maestro {
    child: Child,
    pub api: String,
    pub rooms_api: String,
    pub rooms_grpc: String,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub internal: String,
    /// The Temporal SDK's worker metrics.
    pub worker_metrics: String,
    pub http: reqwest::Client,
}

impl Maestro {
    /// Starts `maestro dev` on free ports; a port taken between picking and binding makes
    /// it exit at once, and it is started again on new ones.
    pub async fn start(temporal: &TemporalDevServer) -> Result<Self> {
        Self::start_with(temporal, &[]).await
    }

    /// Like [`Maestro::start`], with extra `maestro dev` arguments.
    pub async fn start_with(temporal: &TemporalDevServer, extra: &[&str]) -> Result<Self> {
        for _ in 0..3 {
            let mut maestro = Self::spawn(temporal, extra)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let up = loop {
                if maestro.child.try_wait()?.is_some() {
                    break false;
                }
                let health = maestro
                    .http
                    .get(format!("{}/healthz", maestro.api))
                    .send()
                    .await;
                if health.is_ok_and(|r| r.status().is_success()) {
                    break true;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "maestro dev not up after 60 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            if up {
                return Ok(maestro);
            }
            eprintln!("maestro dev exited while starting (port taken?); retrying");
        }
        anyhow::bail!("maestro dev kept exiting while starting")
    }

    fn spawn(temporal: &TemporalDevServer, extra: &[&str]) -> Result<Self> {
        let (api_port, rooms_port, grpc_port) = (free_port(), free_port(), free_port());
        let (internal_port, worker_metrics_port) = (free_port(), free_port());
        let data_dir = temp_dir("e2e");
        let log = std::fs::File::create(data_dir.join("maestro.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_maestro"))
            .arg("dev")
            .args(["--temporal-address", &temporal.address()])
            .args(["--management-addr", &format!("127.0.0.1:{api_port}")])
            .args(["--rooms-addr", &format!("127.0.0.1:{rooms_port}")])
            .args(["--rooms-grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--internal-addr", &format!("127.0.0.1:{internal_port}")])
            .args([
                "--worker-metrics-addr",
                &format!("127.0.0.1:{worker_metrics_port}"),
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--sample-rooms", "0", "--task-queue", "e2e"])
            .args(["--room-token-secret", ROOM_TOKEN_SECRET])
            .args(["--api-tokens", API_TOKEN])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Self {
            child,
            api: format!("http://127.0.0.1:{api_port}"),
            rooms_api: format!("http://127.0.0.1:{rooms_port}"),
            rooms_grpc: format!("http://127.0.0.1:{grpc_port}"),
            internal: format!("http://127.0.0.1:{internal_port}"),
            worker_metrics: format!("http://127.0.0.1:{worker_metrics_port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, json))
    }

    pub async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, scheduler: &str) -> Result<(StatusCode, Value)> {
        let path = format!("/schedulers/{scheduler}");
        self.call(reqwest::Method::DELETE, &path, None).await
    }

    pub async fn rooms(&self, scheduler: &str, status: &str) -> Result<usize> {
        let (code, body) = self
            .get(&format!("/schedulers/{scheduler}/rooms?status={status}"))
            .await?;
        anyhow::ensure!(code == StatusCode::OK, "rooms: {code} {body}");
        Ok(body["rooms"].as_array().map_or(0, Vec::len))
    }

    /// SIGTERM, like Ctrl-C; returns whether it exited cleanly in time.
    pub fn stop(&mut self) -> Result<bool> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(false)
    }
}

impl Drop for Maestro {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn scheduler_body(name: &str) -> Value {
    json!({
        "name": name,
        "game": "e2e-game",
        "maxSurge": "1",
        "roomsReplicas": 3,
        "portRange": {"start": 45000, "end": 45999},
        "spec": {
            "terminationGracePeriod": "10s",
            "containers": [{
                "name": "room",
                "image": "local/game-room",
                "command": [env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "300ms"],
                "ports": [{"name": "game", "protocol": "UDP", "port": 7777}]
            }]
        }
    })
}

pub fn room_processes(scheduler: &str) -> usize {
    processes_with_env("MAESTRO_SCHEDULER_NAME", scheduler).len()
}

impl Maestro {
    /// Ids of the scheduler's rooms in `status`.
    pub async fn room_ids(&self, scheduler: &str, status: &str) -> Result<Vec<String>> {
        let (code, body) = self
            .get(&format!("/schedulers/{scheduler}/rooms?status={status}"))
            .await?;
        anyhow::ensure!(code == StatusCode::OK, "rooms: {code} {body}");
        Ok(body["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect())
    }

    /// Waits until exactly `n` rooms of the scheduler are ready; returns their ids.
    pub async fn wait_ready(&self, scheduler: &str, n: usize) -> Result<Vec<String>> {
        maestro_testkit::eventually(Duration::from_secs(60), "ready rooms", || async {
            let ids = self.room_ids(scheduler, "ready").await.ok()?;
            (ids.len() == n).then_some(ids)
        })
        .await
    }

    /// Sends a ping for `room` with its token, as the room would.
    pub async fn ping_as(
        &self,
        scheduler: &str,
        room: &str,
        status: &str,
        running_matches: u32,
    ) -> Result<StatusCode> {
        let response = self
            .http
            .put(format!(
                "{}/scheduler/{scheduler}/rooms/{room}/ping",
                self.rooms_api
            ))
            .bearer_auth(room_token(scheduler, room))
            .json(&json!({"status": status, "timestamp": 1, "runningMatches": running_matches}))
            .send()
            .await?;
        Ok(response.status())
    }
}
