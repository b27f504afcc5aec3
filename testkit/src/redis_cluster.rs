//! A real Redis Cluster on loopback: three primaries with a replica each (six redis-servers,
//! a one-second node timeout so a failover takes seconds), made with `redis-cli --cluster
//! create`. A test kills the primary that holds a key and watches a replica take over.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{RedisServer, temp_dir};

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

fn cli(port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .context("run redis-cli (installed with redis-server)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl RedisCluster {
    /// Six fresh nodes joined into a cluster. A node that is not empty when the cluster is
    /// made (its port, just freed by another test's server, was still in use by that test's
    /// client) fails the creation; fresh nodes are tried again, up to three times.
    pub async fn start() -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
    }

    async fn try_start() -> Result<Self> {
        let dir = temp_dir("redis-cluster");
        let mut nodes = Vec::new();
        for i in 0..6 {
            let config = dir.join(format!("nodes-{i}.conf"));
            let config = config.display().to_string();
            let node = RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config,
                "--cluster-node-timeout",
                "1000",
            ])
            .await?;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The store URL naming every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(RedisServer::port)
            .collect()
    }

    /// Waits until every live node says the cluster is ok and every slot is served.
    pub async fn wait_ok(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self.live_ports().iter().all(|p| {
                cli(*p, &["cluster", "info"]).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the Redis cluster is not ok after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The port of the primary serving `key`'s slot.
    pub fn primary_of(&self, key: &str) -> Result<u16> {
        let any = *self.live_ports().first().context("no live node")?;
        let slot: u16 = cli(any, &["cluster", "keyslot", key])?.trim().parse()?;
        let nodes = cli(any, &["cluster", "nodes"])?;
        for line in nodes.lines() {
            // <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <state> <slots...>
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => range.parse::<u16>() == Ok(slot),
            });
            if serves {
                let port = fields[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .context("a node address without a port")?;
                return Ok(port);
            }
        }
        bail!("no primary serves slot {slot}")
    }

    /// Waits until a replica of the primary on `port` has everything the primary has
    /// (its acknowledged offset reaches the primary's).
    pub async fn replicate(&self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = cli(port, &["info", "replication"])?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            let primary: Option<u64> = field("master_repl_offset:").and_then(|v| v.parse().ok());
            // slave0:ip=127.0.0.1,port=…,state=online,offset=123,lag=0
            let replica: Option<u64> = field("slave0:").and_then(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("offset="))
                    .and_then(|o| o.parse().ok())
            });
            if let (Some(p), Some(r)) = (primary, replica)
                && r >= p
                && p > 0
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no replica of 127.0.0.1:{port} caught up: {info}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL of the node on `port` (a crashed primary).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port() == port) {
            node.stop();
        }
    }
}
