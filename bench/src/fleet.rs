//! The real `maestro` binary as separate worker and gateway processes (production wiring),
//! on free loopback ports, with a management-API client and the processes' RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use maestro_testkit::{eventually_every, free_port};
use serde_json::{Value, json};

pub const ROOM_TOKEN_SECRET: &str = "benchmark-room-token-secret-0123";

/// The `maestro` binary next to this one (`make bench` builds both into one folder).
pub fn sibling(binary: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(binary);
    ensure!(
        path.is_file(),
        "{} not found: build it with `cargo build --release --bins` (make bench does)",
        path.display()
    );
    Ok(path)
}

/// One `maestro serve` process.
pub struct Maestro {
    child: Child,
    pub api: String,
    pub rooms_api: String,
    pub internal: String,
    pub http: reqwest::Client,
}

impl Drop for Maestro {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Maestro {
    /// `maestro serve --role {role}` with `extra` arguments; waits until `/healthz` answers.
    pub async fn serve(
        role: &str,
        temporal: &str,
        task_queue: &str,
        extra: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Self> {
        let (api, rooms, grpc, internal, worker_metrics) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let mut args: Vec<String> = vec!["serve".into(), "--role".into(), role.into()];
        for (flag, value) in [
            ("--temporal-address", temporal.to_string()),
            ("--management-addr", format!("127.0.0.1:{api}")),
            ("--rooms-addr", format!("127.0.0.1:{rooms}")),
            ("--rooms-grpc-addr", format!("127.0.0.1:{grpc}")),
            ("--internal-addr", format!("127.0.0.1:{internal}")),
            (
                "--worker-metrics-addr",
                format!("127.0.0.1:{worker_metrics}"),
            ),
            ("--task-queue", task_queue.into()),
            ("--room-token-secret", ROOM_TOKEN_SECRET.into()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        args.push("--insecure-no-auth".into());
        args.extend(extra.iter().map(|a| a.to_string()));
        // Local rooms (process runtime) write their logs under the working directory.
        let dir = log.parent().unwrap_or(Path::new("."));
        let log = std::fs::File::create(log)?;
        let child = Command::new(sibling("maestro")?)
            .current_dir(dir)
            .args(&args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start maestro")?;
        let maestro = Self {
            child,
            api: format!("http://127.0.0.1:{api}"),
            rooms_api: format!("http://127.0.0.1:{rooms}"),
            internal: format!("http://127.0.0.1:{internal}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = maestro
                .http
                .get(format!("{}/healthz", maestro.internal))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(maestro);
            }
            ensure!(
                Instant::now() < deadline,
                "maestro {role} not up after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, as an orchestrator stops it (it stops its local rooms first); SIGKILL after
    /// 30 s.
    pub async fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many of the scheduler's rooms are ready (management API).
    pub async fn ready_rooms(&self, scheduler: &str) -> Result<usize> {
        // Filtered by the server: this is polled while the scale-up is measured.
        let rooms = self
            .get(&format!("/schedulers/{scheduler}/rooms?status=ready"))
            .await?;
        Ok(rooms["rooms"].as_array().map_or(0, Vec::len))
    }

    /// Resident set size, from `/proc`.
    pub fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .context("no VmRSS")
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.api))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let response = self.http.get(format!("{}{path}", self.api)).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// Submits an operation; its id.
    pub async fn submit(&self, path: &str, body: Value) -> Result<String> {
        let accepted = self.post(path, body).await?;
        accepted["operationId"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no operationId in {accepted}"))
    }

    /// Waits until the operation is final; fails unless it finished.
    pub async fn finished(&self, scheduler: &str, id: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let op = self
                .get(&format!("/schedulers/{scheduler}/operations/{id}"))
                .await?;
            let op = op.get("operation").cloned().unwrap_or(op);
            match op["status"].as_str() {
                Some("finished") => return Ok(op),
                Some("error" | "canceled") => bail!("operation {id} failed: {op}"),
                _ => {}
            }
            ensure!(
                Instant::now() < deadline,
                "operation {id} not final after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A ping from `room` with its token.
    pub async fn ping(
        &self,
        scheduler: &str,
        room: &str,
        status: &str,
        matches: u32,
    ) -> Result<()> {
        let token = maestro_core::RoomTokenSecret::new(ROOM_TOKEN_SECRET)
            .map_err(anyhow::Error::msg)?
            .token(scheduler, room);
        let response = self
            .http
            .put(format!(
                "{}/scheduler/{scheduler}/rooms/{room}/ping",
                self.rooms_api
            ))
            .bearer_auth(token)
            .json(&json!({"status": status, "timestamp": 1, "runningMatches": matches}))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "ping {room}: {}",
            response.status()
        );
        Ok(())
    }

    /// `/metrics` from the internal API.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.internal))
            .send()
            .await?
            .text()
            .await?)
    }
}

/// A scheduler whose rooms are pods (the fake API server never runs them).
pub fn scheduler(name: &str, replicas: u32) -> Value {
    json!({
        "name": name, "game": "bench", "maxSurge": "10%", "roomsReplicas": replicas,
        "portRange": {"start": 20000, "end": 29999},
        "spec": {"terminationGracePeriod": "1s", "containers": [{
            "name": "room", "image": "example/game-room:1",
            "command": ["game-room"], "imagePullPolicy": "IfNotPresent",
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
            "ports": [{"name": "game", "protocol": "udp", "port": 7777}]}]}
    })
}

/// Polls `check` every `every` until it holds or `limit` passes; when it held.
pub async fn until<F, Fut>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: F,
) -> Result<Instant>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_every(limit, every, what, || {
        let held = check();
        async move { held.await.then(Instant::now) }
    })
    .await
}
