//! The test harness shared by the end-to-end suites: the real `maestro dev` binary on free
//! loopback ports (reusing a test Temporal dev server), with REST helpers.
#![allow(dead_code)] // each suite uses a part

pub mod forwarder;
pub mod manifests;

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
    /// The command line and environment it was started with (for [`Maestro::restart`]).
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
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
        Self::start_with_env(temporal, extra, &[]).await
    }

    /// Like [`Maestro::start_with`], with extra environment variables.
    pub async fn start_with_env(
        temporal: &TemporalDevServer,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let data_dir = temp_dir("e2e");
        let mut dev = vec![
            "dev".to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        // No sample scheduler unless the test asks for one.
        if !extra.contains(&"--sample-rooms") {
            dev.extend(["--sample-rooms".into(), "0".into()]);
        }
        Self::launch_retrying(&dev, &temporal.address(), extra, env, &data_dir).await
    }

    /// Starts `maestro serve --role {role}` (production wiring) against `temporal_address`.
    pub async fn serve(
        role: &str,
        temporal_address: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = temp_dir(&format!("serve-{role}"));
        let serve = ["serve".to_string(), "--role".into(), role.to_string()];
        Self::launch_retrying(&serve, temporal_address, extra, env, &dir).await
    }

    async fn launch_retrying(
        command: &[String],
        temporal_address: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        dir: &std::path::Path,
    ) -> Result<Self> {
        for _ in 0..3 {
            let mut maestro = Self::spawn(command, temporal_address, extra, env, dir)?;
            if maestro.wait_up().await? {
                return Ok(maestro);
            }
            eprintln!("maestro exited while starting (port taken?); retrying");
        }
        anyhow::bail!("maestro kept exiting while starting")
    }

    /// Waits for `/healthz` on the internal API (every role serves it); false if the
    /// process exited first.
    async fn wait_up(&mut self) -> Result<bool> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(false);
            }
            let health = self
                .http
                .get(format!("{}/healthz", self.internal))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(true);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "maestro not up after 60 s (log: {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn spawn(
        command: &[String],
        temporal_address: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        dir: &std::path::Path,
    ) -> Result<Self> {
        let (api_port, rooms_port, grpc_port) = (free_port(), free_port(), free_port());
        let (internal_port, worker_metrics_port) = (free_port(), free_port());
        let mut args: Vec<String> = command.to_vec();
        for (flag, value) in [
            ("--temporal-address", temporal_address.to_string()),
            ("--management-addr", format!("127.0.0.1:{api_port}")),
            ("--rooms-addr", format!("127.0.0.1:{rooms_port}")),
            ("--rooms-grpc-addr", format!("127.0.0.1:{grpc_port}")),
            ("--internal-addr", format!("127.0.0.1:{internal_port}")),
            (
                "--worker-metrics-addr",
                format!("127.0.0.1:{worker_metrics_port}"),
            ),
            ("--task-queue", "e2e".to_string()),
            ("--room-token-secret", ROOM_TOKEN_SECRET.to_string()),
            ("--api-tokens", API_TOKEN.to_string()),
        ] {
            // A test giving its own token list (roles), or none, replaces the default one.
            if flag == "--api-tokens"
                && (extra.contains(&"--api-tokens") || extra.contains(&"--insecure-no-auth"))
            {
                continue;
            }
            args.push(flag.into());
            args.push(value);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = dir.join("maestro.log");
        let child = Self::launch(&args, &env, &log)?;
        Ok(Self {
            child,
            args,
            env,
            log,
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

    fn launch(args: &[String], env: &[(String, String)], log: &std::path::Path) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        Ok(Command::new(env!("CARGO_BIN_EXE_maestro"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash would: no graceful shutdown of anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same command again on the same ports (a supervisor's restart).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.child = Self::launch(&self.args, &self.env, &self.log)?;
            if self.wait_up().await? {
                return Ok(());
            }
            // The dead process's ports may take a moment to be free.
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "maestro did not restart on its ports (log: {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A management call as our CLI makes it: with our extensions in the answer (`seq`,
    /// `error`, …). [`Maestro::call_as_maestro_client`] leaves them out.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        self.call_with(method, path, body, true).await
    }

    /// A management call as a client written for Maestro makes it (no extensions header).
    pub async fn call_as_maestro_client(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        self.call_with(method, path, body, false).await
    }

    async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        extensions: bool,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(API_TOKEN);
        if extensions {
            req = req.header("x-maestro-extensions", "true");
        }
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

    /// POSTs an operation request that must be accepted; answers its operation id.
    pub async fn submit(&self, path: &str, body: Value) -> Result<String> {
        let (code, answer) = self.post(path, body).await?;
        anyhow::ensure!(code == StatusCode::OK, "{path}: {code} {answer}");
        answer["operationId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("{path}: no operation id in {answer}"))
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
                "imagePullPolicy": "IfNotPresent", "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"},
                "command": [env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "300ms"],
                "ports": [{"name": "game", "protocol": "udp", "port": 7777}]
            }]
        }
    })
}

pub fn room_processes(scheduler: &str) -> usize {
    processes_with_env("MAESTRO_SCHEDULER_NAME", scheduler).len()
}

impl Maestro {
    /// Waits up to `limit` for the operation to be final (finished, error or canceled);
    /// answers the operation as the API shows it.
    pub async fn final_operation(
        &self,
        scheduler: &str,
        id: &str,
        limit: Duration,
    ) -> Result<Value> {
        maestro_testkit::eventually(limit, &format!("operation {id} final"), || async {
            let (code, body) = self
                .get(&format!("/schedulers/{scheduler}/operations/{id}"))
                .await
                .ok()?;
            let operation = body["operation"].clone();
            (code == StatusCode::OK
                && matches!(
                    operation["status"].as_str(),
                    Some("finished" | "error" | "canceled")
                ))
            .then_some(operation)
        })
        .await
    }

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
