//! Redis room store: shared by every gateway replica and the worker in a real deployment.
//!
//! Layout, per scheduler (all keys carry the hash tag `{scheduler}`, so one scheduler's keys
//! live in one slot and a script touches one slot):
//! - `{prefix}:{s}:room:{id}` hash: the room's fields (status stored, recomputed by scripts);
//! - `{prefix}:{s}:rooms` sorted set (all scores 0, so listed by id): every room;
//! - `{prefix}:{s}:pings` sorted set by last ping (millis): stale rooms by range, not scan;
//! - `{prefix}:{s}:status:{status}` sets: counts and allocation candidates without a scan.
//!
//! Every write is one Lua script (one round trip, atomic), which is what makes a ping cost
//! one round trip and allocation exclusive across gateways.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use maestro_core::room::RoomAddress;
use maestro_core::{GameRoom, InstanceStatus, PingStatus, RoomStatus, Timestamp, Version};
use redis::{AsyncCommands, Script};

use super::redis_link::{Conn, Link, Target};
use super::{AllocatedRoom, PingOutcome, PingUpdate, RoomStore, StatusChange, StoreError};

const PRELUDE: &str = include_str!("lua/prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

static INSERT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/insert.lua")));
static PING: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/ping.lua")));
static INSTANCE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/instance.lua")));
static REMOVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/remove.lua")));
static ALLOCATE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/allocate.lua")));

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://…` (TLS), or a Redis Cluster:
    /// `redis+cluster://[user:password@]host:port,host:port` (`rediss+cluster://` with TLS).
    pub url: String,
    /// PEM of a private CA that signed the server's certificate (else the system's roots).
    pub tls_ca: Option<Vec<u8>>,
    /// Prefix of every key, so several Maestros can share one Redis.
    pub key_prefix: String,
    /// Bound on each command, so a hung Redis turns into a 503, not a hung request.
    pub response_timeout: Duration,
    pub connection_timeout: Duration,
}

impl RedisStoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls_ca: None,
            key_prefix: "maestro".into(),
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Clone)]
pub struct RedisRoomStore {
    link: Link,
    prefix: String,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisRoomStore {
    /// Connects lazily: the store can be created while Redis is down (the gateway starts,
    /// answers 503 and recovers by itself when Redis comes back).
    pub fn connect(config: &RedisStoreConfig) -> Result<Self, StoreError> {
        let link = Link::open(&Target {
            url: &config.url,
            tls_ca: config.tls_ca.as_deref(),
            response_timeout: config.response_timeout,
            connection_timeout: config.connection_timeout,
        })?;
        Ok(Self {
            link,
            prefix: config.key_prefix.clone(),
        })
    }

    fn base(&self, scheduler: &str) -> String {
        format!("{}:{{{scheduler}}}:", self.prefix)
    }

    fn room_key(&self, scheduler: &str, room_id: &str) -> String {
        format!("{}room:{room_id}", self.base(scheduler))
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        self.link.conn().await
    }
}

/// The hash fields of a room, as the scripts store them.
fn room_fields(room: &GameRoom) -> Vec<(&'static str, String)> {
    let millis = |t: Option<Timestamp>| t.map(|t| t.unix_millis().to_string()).unwrap_or_default();
    vec![
        ("id", room.id.clone()),
        ("scheduler", room.scheduler.clone()),
        ("version", room.version.to_string()),
        (
            "ping",
            room.ping_status.map(|p| p.as_str()).unwrap_or("").into(),
        ),
        ("instance", room.instance_status.as_str().into()),
        ("matches", room.running_matches.to_string()),
        ("max", room.max_matches.to_string()),
        (
            "metadata",
            serde_json::to_string(&room.metadata).unwrap_or_else(|_| "{}".into()),
        ),
        ("created", room.created_at.unix_millis().to_string()),
        ("last_ping", millis(room.last_ping_at)),
        ("status", room.status.as_str().into()),
        ("changed", room.status_changed_at.unix_millis().to_string()),
        (
            "address",
            room.address
                .as_ref()
                .and_then(|a| serde_json::to_string(a).ok())
                .unwrap_or_default(),
        ),
        ("alloc", millis(room.allocated_until)),
    ]
}

fn flatten(fields: Vec<(&'static str, String)>) -> Vec<String> {
    fields
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
}

fn parse_room(pairs: &[String]) -> Result<GameRoom, StoreError> {
    let fields: BTreeMap<&str, &str> = pairs
        .chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let get = |name: &str| {
        fields
            .get(name)
            .copied()
            .ok_or_else(|| StoreError::Corrupt(format!("room record has no field {name:?}")))
    };
    let bad = |name: &str, value: &str| StoreError::Corrupt(format!("field {name}={value:?}"));
    let millis = |name: &str| -> Result<Option<Timestamp>, StoreError> {
        let raw = get(name)?;
        if raw.is_empty() {
            return Ok(None);
        }
        raw.parse::<i64>()
            .map(|m| Some(Timestamp::from_unix_millis(m)))
            .map_err(|_| bad(name, raw))
    };
    let number = |name: &str| -> Result<u32, StoreError> {
        let raw = get(name)?;
        raw.parse().map_err(|_| bad(name, raw))
    };
    let ping = get("ping")?;
    let address = get("address")?;
    let status = get("status")?;
    let instance = get("instance")?;
    let version = get("version")?;
    Ok(GameRoom {
        id: get("id")?.to_string(),
        scheduler: get("scheduler")?.to_string(),
        version: version
            .parse::<Version>()
            .map_err(|_| bad("version", version))?,
        status: RoomStatus::parse(status).ok_or_else(|| bad("status", status))?,
        ping_status: if ping.is_empty() {
            None
        } else {
            Some(PingStatus::parse(ping).ok_or_else(|| bad("ping", ping))?)
        },
        instance_status: InstanceStatus::parse(instance)
            .ok_or_else(|| bad("instance", instance))?,
        running_matches: number("matches")?,
        max_matches: number("max")?,
        metadata: serde_json::from_str(get("metadata")?)
            .map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))?,
        created_at: millis("created")?.ok_or_else(|| bad("created", ""))?,
        last_ping_at: millis("last_ping")?,
        status_changed_at: millis("changed")?.ok_or_else(|| bad("changed", ""))?,
        address: parse_address(address)?,
        allocated_until: millis("alloc")?,
    })
}

/// The `address` field: JSON, empty for a room without one yet.
fn parse_address(raw: &str) -> Result<Option<RoomAddress>, StoreError> {
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(raw)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("address: {e}")))
}

/// Reads a script's `{previous status, field, value, ...}` answer.
fn parse_change(
    answer: Vec<String>,
    scheduler: &str,
    room_id: &str,
) -> Result<StatusChange, StoreError> {
    let Some((previous, pairs)) = answer.split_first() else {
        return Err(StoreError::RoomNotFound {
            scheduler: scheduler.to_string(),
            room_id: room_id.to_string(),
        });
    };
    let room = parse_room(pairs)?;
    let previous = RoomStatus::parse(previous)
        .ok_or_else(|| StoreError::Corrupt(format!("previous status {previous:?}")))?;
    Ok(StatusChange { previous, room })
}

#[async_trait]
impl RoomStore for RedisRoomStore {
    async fn health(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_if_absent(&self, room: GameRoom) -> Result<(), StoreError> {
        let last_ping = room
            .last_ping_at
            .map(|t| t.unix_millis().to_string())
            .unwrap_or_default();
        let _: i64 = INSERT
            .key(self.room_key(&room.scheduler, &room.id))
            .arg(self.base(&room.scheduler))
            .arg(&room.id)
            .arg(room.status.as_str())
            .arg(last_ping)
            .arg(flatten(room_fields(&room)))
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, scheduler: &str, room_id: &str) -> Result<Option<GameRoom>, StoreError> {
        let pairs: Vec<String> = self
            .conn()
            .await?
            .hgetall(self.room_key(scheduler, room_id))
            .await
            .map_err(unavailable)?;
        if pairs.is_empty() {
            return Ok(None);
        }
        parse_room(&pairs).map(Some)
    }

    async fn list(&self, scheduler: &str) -> Result<Vec<GameRoom>, StoreError> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = conn
            .zrange(format!("{}rooms", self.base(scheduler)), 0, -1)
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.room_key(scheduler, id));
        }
        let records: Vec<Vec<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        records
            .iter()
            // A room removed between the two reads is simply not listed.
            .filter(|pairs| !pairs.is_empty())
            .map(|pairs| parse_room(pairs))
            .collect()
    }

    async fn remove(&self, scheduler: &str, room_id: &str) -> Result<bool, StoreError> {
        let removed: i64 = REMOVE
            .key(self.room_key(scheduler, room_id))
            .arg(self.base(scheduler))
            .arg(room_id)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn apply_ping(
        &self,
        scheduler: &str,
        room_id: &str,
        ping: PingUpdate,
        now: Timestamp,
    ) -> Result<PingOutcome, StoreError> {
        let metadata = match &ping.metadata {
            Some(m) => Some(
                serde_json::to_string(m)
                    .map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))?,
            ),
            None => None,
        };
        let answer: Vec<String> = PING
            .key(self.room_key(scheduler, room_id))
            .arg(self.base(scheduler))
            .arg(room_id)
            .arg(ping.status.as_str())
            .arg(ping.running_matches)
            .arg(if metadata.is_some() { "1" } else { "0" })
            .arg(metadata.unwrap_or_default())
            .arg(now.unix_millis())
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        // `{status}`: unchanged, the record not read back (see ping.lua).
        if let [status] = answer.as_slice() {
            let status = RoomStatus::parse(status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?;
            return Ok(PingOutcome::Unchanged(status));
        }
        parse_change(answer, scheduler, room_id)
            .map(|change| PingOutcome::Changed(Box::new(change)))
    }

    async fn apply_instance(
        &self,
        scheduler: &str,
        room_id: &str,
        version: Version,
        status: InstanceStatus,
        address: Option<RoomAddress>,
        now: Timestamp,
    ) -> Result<StatusChange, StoreError> {
        let address = match &address {
            Some(a) => serde_json::to_string(a)
                .map_err(|e| StoreError::Corrupt(format!("address: {e}")))?,
            None => String::new(),
        };
        let new_record = GameRoom::new(room_id, scheduler, version, 1, now);
        let answer: Vec<String> = INSTANCE
            .key(self.room_key(scheduler, room_id))
            .arg(self.base(scheduler))
            .arg(room_id)
            .arg(status.as_str())
            .arg(address)
            .arg(now.unix_millis())
            .arg(flatten(room_fields(&new_record)))
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        parse_change(answer, scheduler, room_id)
    }

    async fn allocate(
        &self,
        scheduler: &str,
        selector: &BTreeMap<String, String>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<AllocatedRoom>, StoreError> {
        let selector = if selector.is_empty() {
            String::new()
        } else {
            serde_json::to_string(selector)
                .map_err(|e| StoreError::Corrupt(format!("selector: {e}")))?
        };
        let base = self.base(scheduler);
        let answer: Vec<String> = ALLOCATE
            // Declared so Redis Cluster routes the script to the scheduler's slot.
            .key(format!("{base}rooms"))
            .arg(&base)
            .arg(format!("{base}room:"))
            .arg(now.unix_millis())
            .arg(until.unix_millis())
            .arg(selector)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        match <[String; 2]>::try_from(answer) {
            Ok([id, address]) => Ok(Some(AllocatedRoom {
                id,
                address: parse_address(&address)?,
            })),
            Err(answer) if answer.is_empty() => Ok(None),
            Err(answer) => Err(StoreError::Corrupt(format!(
                "allocation answered {answer:?}"
            ))),
        }
    }

    async fn stale_rooms(
        &self,
        scheduler: &str,
        pinged_before: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        self.conn()
            .await?
            .zrangebyscore(
                format!("{}pings", self.base(scheduler)),
                "-inf",
                format!("({}", pinged_before.unix_millis()),
            )
            .await
            .map_err(unavailable)
    }

    async fn count_by_status(
        &self,
        scheduler: &str,
    ) -> Result<BTreeMap<RoomStatus, u64>, StoreError> {
        let base = self.base(scheduler);
        let mut pipe = redis::pipe();
        for status in RoomStatus::ALL {
            pipe.scard(format!("{base}status:{}", status.as_str()));
        }
        let counts: Vec<u64> = pipe
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(RoomStatus::ALL
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    //! The shared contract against a real redis-server on loopback.
    use std::sync::Arc;

    use maestro_testkit::RedisServer;

    use super::super::contract;
    use super::*;

    async fn store() -> (RedisServer, RedisRoomStore) {
        let server = RedisServer::start().await.unwrap();
        let store = RedisRoomStore::connect(&RedisStoreConfig::new(server.url())).unwrap();
        (server, store)
    }

    #[tokio::test]
    async fn insert_is_idempotent() {
        let (_redis, store) = store().await;
        contract::insert_is_idempotent(&store).await;
    }

    #[tokio::test]
    async fn ping_then_instance_composes_status() {
        let (_redis, store) = store().await;
        contract::ping_then_instance_composes_status(&store).await;
    }

    #[tokio::test]
    async fn unknown_rooms() {
        let (_redis, store) = store().await;
        contract::unknown_rooms(&store).await;
    }

    #[tokio::test]
    async fn status_matches_core_for_every_combination() {
        let (_redis, store) = store().await;
        contract::status_matches_core_for_every_combination(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn allocation_is_exclusive() {
        let (_redis, store) = store().await;
        contract::allocation_is_exclusive(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn allocation_ttl_and_selector() {
        let (_redis, store) = store().await;
        contract::allocation_ttl_and_selector(&store).await;
    }

    #[tokio::test]
    async fn stale_rooms_and_counts() {
        let (_redis, store) = store().await;
        contract::stale_rooms_and_counts(&store).await;
    }

    /// Redis down → Unavailable within the configured timeouts (not a hang); back up → the
    /// same store works again by itself.
    #[tokio::test]
    async fn outage_is_unavailable_then_recovers() {
        let (mut redis, store) = store().await;
        store.health().await.unwrap();
        redis.stop();
        let started = std::time::Instant::now();
        let err = store.health().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        let err = store.get("s", "r").await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bounded by timeouts"
        );
        redis.restart().await.unwrap();
        let mut recovered = false;
        for _ in 0..50 {
            if store.health().await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "store reconnects by itself");
        assert_eq!(store.get("s", "r").await.unwrap(), None);
    }
}
