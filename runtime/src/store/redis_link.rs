//! How the Redis store reaches Redis. One server: `redis://` (or `rediss://` for TLS), an
//! ACL user and password in the URL (`redis://maestro:secret@host:6379/0`), through a
//! `ConnectionManager` that reconnects by itself. A Redis Cluster: `redis+cluster://` (or
//! `rediss+cluster://`) with comma-separated seed nodes, through the cluster client, which
//! follows slot moves and failovers. A private CA for TLS is given apart (PEM). Both connect
//! lazily: the store exists while Redis is down, calls answer "unavailable" until it is back.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};
use tokio::sync::OnceCell;

use super::StoreError;

/// Where Redis is and how to talk to it.
pub(super) struct Target<'a> {
    pub url: &'a str,
    pub tls_ca: Option<&'a [u8]>,
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
}

#[derive(Clone)]
pub(super) enum Link {
    Single(ConnectionManager),
    Cluster(Arc<ClusterLink>),
}

pub(super) struct ClusterLink {
    client: ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

/// A connection of either kind, for one command or pipeline.
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

fn certificates(tls_ca: Option<&[u8]>) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: tls_ca.map(<[u8]>::to_vec),
    }
}

/// The node URLs of `redis+cluster://[user:pass@]h1:p1,h2:p2` (`None` for a one-server URL).
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let plain = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    Some(
        hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{plain}://{userinfo}{h}"))
            .collect(),
    )
}

impl Link {
    pub(super) fn open(target: &Target<'_>) -> Result<Self, StoreError> {
        let bad = |e: redis::RedisError| StoreError::Unavailable(format!("bad Redis URL: {e}"));
        if let Some(nodes) = cluster_nodes(target.url) {
            if nodes.is_empty() {
                return Err(StoreError::Unavailable(
                    "bad Redis URL: a cluster URL names no node".into(),
                ));
            }
            let mut builder = ClusterClient::builder(nodes)
                .response_timeout(target.response_timeout)
                .connection_timeout(target.connection_timeout)
                .retries(3);
            if target.tls_ca.is_some() {
                builder = builder.certs(certificates(target.tls_ca));
            }
            return Ok(Self::Cluster(Arc::new(ClusterLink {
                client: builder.build().map_err(bad)?,
                connection: OnceCell::new(),
            })));
        }
        let client = match target.tls_ca {
            Some(_) => redis::Client::build_with_tls(target.url, certificates(target.tls_ca)),
            None => redis::Client::open(target.url),
        }
        .map_err(bad)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(target.response_timeout))
            .set_connection_timeout(Some(target.connection_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self::Single(manager))
    }

    /// A connection for the next command: clones share one multiplexed connection; a
    /// cluster's is made on first use (and retried on the next call if that failed).
    pub(super) async fn conn(&self) -> Result<Conn, StoreError> {
        match self {
            Self::Single(manager) => Ok(Conn::Single(manager.clone())),
            Self::Cluster(link) => link
                .connection
                .get_or_try_init(|| link.client.get_async_connection())
                .await
                .map(|c| Conn::Cluster(c.clone()))
                .map_err(|e| StoreError::Unavailable(e.to_string())),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_nodes;

    #[test]
    fn cluster_urls_name_every_seed_with_the_credentials() {
        assert_eq!(cluster_nodes("redis://h:1/0"), None);
        assert_eq!(
            cluster_nodes("redis+cluster://u:p@a:1,b:2/"),
            Some(vec![
                "redis://u:p@a:1".to_string(),
                "redis://u:p@b:2".to_string()
            ])
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://a:1"),
            Some(vec!["rediss://a:1".to_string()])
        );
    }
}
