//! Test support shared by the workspace's integration tests: a real Temporal dev server on
//! free loopback ports, a real Redis server, an in-test Kubernetes API server
//! ([`fake_kube`]), and a scan for leftover room processes.
//! Test-only: never a dependency of product code.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

pub mod fake_kube;
pub mod redis_cluster;
pub mod tls_front;

/// Where [`free_port`] picks from: below Linux's ephemeral range (32768–60999). The
/// Temporal dev server gives its internal services ports the OS picks from the ephemeral
/// range; a port we had picked there but not bound yet was handed to it too, and the server
/// died after starting (seen in CI: "bind: address already in use" for its worker service).
const TEST_PORTS: std::ops::Range<u16> = 20000..32000;

/// A free TCP port on 127.0.0.1 outside the ephemeral range (a tiny race with other test
/// processes picking the same port remains; harnesses retry on a failed start).
pub fn free_port() -> u16 {
    static PICKS: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let seed = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default(),
    );
    for _ in 0..1000 {
        let pick = PICKS.fetch_add(1, Ordering::Relaxed);
        // A multiplicative step that is odd, hence coprime with most spans: consecutive picks
        // of one process spread over the range instead of probing neighbours.
        let offset = seed.wrapping_add(pick.wrapping_mul(7919)) % span;
        let port = TEST_PORTS.start + u16::try_from(offset).unwrap_or(0);
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {TEST_PORTS:?}")
}

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits inside the workspace")
        .to_path_buf()
}

/// A fresh, empty folder under the system temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "maestro-test-{label}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// The Temporal CLI: `$MAESTRO_TEMPORAL_BIN`, else the project-local install that the
/// README's commands make, else `temporal` on PATH.
pub fn temporal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MAESTRO_TEMPORAL_BIN") {
        return PathBuf::from(p);
    }
    let local = workspace_root().join(".tools/temporal-bin/bin/temporal");
    if local.is_file() {
        return local;
    }
    PathBuf::from("temporal")
}

enum StartFailure {
    /// The server process ended while starting (typically a port taken meanwhile).
    Exited,
    Other(anyhow::Error),
}

/// A Temporal dev server (SQLite file in a temp dir) on free loopback ports, killed on drop.
pub struct TemporalDevServer {
    child: Child,
    port: u16,
    http_port: u16,
    metrics_port: u16,
    dynamic_config: Vec<String>,
    pub db_file: PathBuf,
}

impl TemporalDevServer {
    pub async fn start() -> Result<Self> {
        let dir = temp_dir("temporal");
        Self::start_with(dir.join("temporal.db"), &[]).await
    }

    /// Starts with dynamic config overrides (`history.maxInFlightUpdates=1`, ...).
    pub async fn start_with_config(values: &[&str]) -> Result<Self> {
        let dir = temp_dir("temporal");
        Self::start_with(dir.join("temporal.db"), values).await
    }

    /// Starts on `db_file` (reuse a path to restart a server with its data). Ports are
    /// picked free, but another process can take one before the server binds it: a server
    /// that exits while starting is started again on new ports.
    pub async fn start_with(db_file: PathBuf, dynamic_config: &[&str]) -> Result<Self> {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let ports = (free_port(), free_port(), free_port());
            let mut server = Self::spawn(&db_file, dynamic_config, ports)?;
            match server.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => return Ok(server),
                Err(StartFailure::Exited) if attempt < ATTEMPTS => {
                    eprintln!("Temporal dev server exited while starting (port taken?); retrying");
                }
                Err(StartFailure::Exited) => bail!(
                    "Temporal dev server kept exiting while starting; see {}",
                    db_file.with_extension("log").display()
                ),
                Err(StartFailure::Other(e)) => {
                    server.kill();
                    return Err(e);
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn spawn(
        db_file: &Path,
        dynamic_config: &[&str],
        (port, http_port, metrics_port): (u16, u16, u16),
    ) -> Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(db_file.with_extension("log"))?;
        let child = Command::new(temporal_bin())
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--http-port", &http_port.to_string()])
            .args(["--metrics-port", &metrics_port.to_string()])
            .arg("--db-filename")
            .arg(db_file)
            .args(["--log-level", "warn"])
            .args(
                dynamic_config
                    .iter()
                    .flat_map(|v| ["--dynamic-config-value", v]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", temporal_bin().display()))?;
        Ok(Self {
            child,
            port,
            http_port,
            metrics_port,
            dynamic_config: dynamic_config.iter().map(|v| v.to_string()).collect(),
            db_file: db_file.to_path_buf(),
        })
    }

    /// `127.0.0.1:PORT`
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// Ready means the `default` namespace answers, not just an open port.
    async fn wait_ready(&mut self, limit: Duration) -> Result<(), StartFailure> {
        let deadline = Instant::now() + limit;
        loop {
            if self
                .child
                .try_wait()
                .map_err(|e| StartFailure::Other(e.into()))?
                .is_some()
            {
                return Err(StartFailure::Exited);
            }
            let out = tokio::process::Command::new(temporal_bin())
                .args(["operator", "namespace", "describe", "default", "--address"])
                .arg(self.address())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map_err(|e| StartFailure::Other(e.into()))?;
            if out.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartFailure::Other(anyhow::anyhow!(
                    "Temporal dev server on {} not ready after {limit:?}",
                    self.address()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same ports and database (after [`Self::kill`]), as a
    /// supervisor restarting a crashed server would.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        let config: Vec<&str> = self.dynamic_config.iter().map(String::as_str).collect();
        let ports = (self.port, self.http_port, self.metrics_port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The old process's ports can take a moment to be free again.
            let mut fresh = Self::spawn(&self.db_file, &config, ports)?;
            match fresh.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => {
                    std::mem::swap(self, &mut fresh);
                    // `fresh` now holds the dead child; dropping it kills nothing alive.
                    return Ok(());
                }
                Err(StartFailure::Exited) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(StartFailure::Exited) => {
                    bail!("Temporal dev server did not restart on its ports")
                }
                Err(StartFailure::Other(e)) => return Err(e),
            }
        }
    }
}

impl Drop for TemporalDevServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pids of live processes whose environment holds `key=value` (room processes carry
/// `MAESTRO_SCHEDULER_NAME`), to prove no room process was left behind.
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                    .unwrap_or(false)
        })
        .collect()
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_every(limit, Duration::from_millis(100), what, check).await
}

/// Polls `check` every `every` until it returns `Some`, or fails after `limit`.
pub async fn eventually_every<T, F, Fut>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// A real `redis-server` on a free loopback port, with no persistence; killed on drop.
/// `stop`/`restart` on the same port simulate an outage.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Settings beyond the defaults (ACL users, TLS, cluster mode), as `redis-server` flags.
    extra: Vec<String>,
}

impl RedisServer {
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// A redis-server with extra settings (`--user`, `--tls-port`, `--cluster-enabled`, …);
    /// the plain port stays open on loopback so readiness is checked the same way.
    pub async fn start_with(extra: &[&str]) -> Result<Self> {
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                child: None,
                extra: extra.iter().map(|a| a.to_string()).collect(),
            };
            match server.spawn().await {
                Ok(()) => return Ok(server),
                // The port was taken between picking and binding: pick another.
                Err(StartFailure::Exited) => continue,
                Err(StartFailure::Other(e)) => return Err(e),
            }
        }
        bail!("redis-server kept exiting while starting")
    }

    async fn spawn(&mut self) -> Result<(), StartFailure> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &self.port.to_string()])
            // Its own folder: a replica's full sync writes an RDB there even with saving
            // off, and a server started later in the same folder would load it.
            .arg("--dir")
            .arg(temp_dir("redis-data"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                StartFailure::Other(anyhow::anyhow!(
                    "cannot run redis-server ({e}); the README's test command installs it"
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut()
                && child
                    .try_wait()
                    .map_err(|e| StartFailure::Other(e.into()))?
                    .is_some()
            {
                return Err(StartFailure::Exited);
            }
            if self.answers_ping().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartFailure::Other(anyhow::anyhow!(
                    "redis-server on port {} not answering",
                    self.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn answers_ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        // With the default user off (ACL tests) PING is refused, but the refusal is an answer.
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && (&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process runs (not stopped by [`RedisServer::stop`]).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: Redis is gone until [`RedisServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: Redis holds its connections but answers nothing (a network partition),
    /// until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::pause`]: everything it held is still there.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Starts again on the same port (empty: no persistence).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn().await.map_err(|e| match e {
            StartFailure::Exited => anyhow::anyhow!("redis-server exited on restart"),
            StartFailure::Other(e) => e,
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.stop();
    }
}

/// Where the README's test command installs the Python packages tests use
/// (`$MAESTRO_PYTHONPATH`, else `.tools/python`).
pub fn python_tools_dir() -> PathBuf {
    std::env::var_os("MAESTRO_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/python"))
}
