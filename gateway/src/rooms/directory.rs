//! What the rooms API needs to know about a scheduler (game, forwarders, room-token policy),
//! cached per gateway so a ping does not cost a Temporal read.
//!
//! Entries live for `ttl`; a failed refresh keeps serving the last good entry (Temporal being
//! briefly away must not stop pings), so a change reaches the rooms API within `ttl` plus
//! the time the scheduler workflow takes to record it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_core::Scheduler;
use maestro_core::scheduler::Forwarder;
use tokio::sync::RwLock;
use tracing::warn;

use crate::SchedulerClient;
use crate::error::{ApiError, ErrorCode};

/// The rooms-API view of one scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerInfo {
    pub name: String,
    pub game: String,
    pub room_token_required: bool,
    /// Enabled gRPC forwarders only.
    pub forwarders: Vec<Forwarder>,
}

impl SchedulerInfo {
    pub fn from_scheduler(scheduler: &Scheduler) -> Self {
        Self {
            name: scheduler.name.clone(),
            game: scheduler.game.clone(),
            room_token_required: scheduler.room_token_required,
            forwarders: scheduler
                .forwarders
                .iter()
                .filter(|f| f.enable && f.kind.eq_ignore_ascii_case("grpc"))
                .cloned()
                .collect(),
        }
    }
}

/// Where scheduler infos come from (the scheduler workflows; a fixed map in unit tests).
#[async_trait::async_trait]
pub trait SchedulerSource: Send + Sync + 'static {
    /// `Ok(None)` when the scheduler does not exist.
    async fn load(&self, name: &str) -> Result<Option<SchedulerInfo>, ApiError>;
}

#[async_trait::async_trait]
impl SchedulerSource for SchedulerClient {
    async fn load(&self, name: &str) -> Result<Option<SchedulerInfo>, ApiError> {
        match self.snapshot(name).await {
            Ok(snapshot) => Ok(Some(SchedulerInfo::from_scheduler(&snapshot.scheduler))),
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

struct Entry {
    loaded_at: Instant,
    info: Option<Arc<SchedulerInfo>>,
}

#[derive(Clone)]
pub struct SchedulerDirectory {
    source: Arc<dyn SchedulerSource>,
    ttl: Duration,
    entries: Arc<RwLock<HashMap<String, Entry>>>,
}

impl SchedulerDirectory {
    pub fn new(source: Arc<dyn SchedulerSource>, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            entries: Arc::default(),
        }
    }

    /// What the directory last loaded for `name`, however old, without asking Temporal;
    /// `None` when it never loaded it.
    pub async fn cached(&self, name: &str) -> Option<Option<Arc<SchedulerInfo>>> {
        self.entries
            .read()
            .await
            .get(name)
            .map(|entry| entry.info.clone())
    }

    /// The scheduler's info; `Ok(None)` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<SchedulerInfo>>, ApiError> {
        if let Some(entry) = self.entries.read().await.get(name)
            && entry.loaded_at.elapsed() < self.ttl
        {
            return Ok(entry.info.clone());
        }
        match self.source.load(name).await {
            Ok(info) => {
                let info = info.map(Arc::new);
                self.entries.write().await.insert(
                    name.to_string(),
                    Entry {
                        loaded_at: Instant::now(),
                        info: info.clone(),
                    },
                );
                Ok(info)
            }
            Err(e) => {
                if let Some(entry) = self.entries.read().await.get(name) {
                    warn!(scheduler = %name, error = %e, "scheduler refresh failed; using the cached entry");
                    return Ok(entry.info.clone());
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers from a map; counts loads; fails while `down`.
    #[derive(Default)]
    struct Fixed {
        infos: Mutex<HashMap<String, SchedulerInfo>>,
        loads: Mutex<u32>,
        down: Mutex<bool>,
    }

    #[async_trait::async_trait]
    impl SchedulerSource for Fixed {
        async fn load(&self, name: &str) -> Result<Option<SchedulerInfo>, ApiError> {
            *self.loads.lock().unwrap() += 1;
            if *self.down.lock().unwrap() {
                return Err(ApiError::unavailable("down"));
            }
            Ok(self.infos.lock().unwrap().get(name).cloned())
        }
    }

    fn info(game: &str) -> SchedulerInfo {
        SchedulerInfo {
            name: "s".into(),
            game: game.into(),
            room_token_required: true,
            forwarders: Vec::new(),
        }
    }

    #[tokio::test]
    async fn caches_for_ttl_and_serves_stale_when_the_source_fails() {
        let source = Arc::new(Fixed::default());
        source.infos.lock().unwrap().insert("s".into(), info("g1"));
        let directory = SchedulerDirectory::new(source.clone(), Duration::from_millis(50));
        assert_eq!(directory.get("s").await.unwrap().unwrap().game, "g1");
        source.infos.lock().unwrap().insert("s".into(), info("g2"));
        assert_eq!(
            directory.get("s").await.unwrap().unwrap().game,
            "g1",
            "cached"
        );
        assert_eq!(*source.loads.lock().unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            directory.get("s").await.unwrap().unwrap().game,
            "g2",
            "refreshed"
        );
        *source.down.lock().unwrap() = true;
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            directory.get("s").await.unwrap().unwrap().game,
            "g2",
            "stale but served"
        );
        assert!(
            directory.get("unknown").await.is_err(),
            "nothing cached: the error"
        );
        *source.down.lock().unwrap() = false;
        assert!(directory.get("unknown").await.unwrap().is_none());
    }

    #[test]
    fn only_enabled_grpc_forwarders_are_kept() {
        let mut scheduler = Scheduler::with_command("s", "g", &["true"]);
        let forwarder = |name: &str, enable: bool, kind: &str| Forwarder {
            name: name.into(),
            enable,
            kind: kind.into(),
            address: "127.0.0.1:1".into(),
            options: None,
        };
        scheduler.forwarders = vec![
            forwarder("on", true, "gRPC"),
            forwarder("off", false, "gRPC"),
            forwarder("other", true, "http"),
        ];
        let info = SchedulerInfo::from_scheduler(&scheduler);
        let names: Vec<_> = info.forwarders.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["on"]);
    }
}
