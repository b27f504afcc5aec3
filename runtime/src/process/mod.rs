//! The process runtime: each room is a local OS process started from the scheduler's first
//! container `command`, with the environment a pod would get. It is what `maestro dev` uses on
//! a machine with no cluster. A running process counts as a ready instance; whether the game
//! inside is ready is what its pings say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use maestro_core::room::{RoomAddress, RoomPort};

use maestro_core::scheduler::Container;
use maestro_core::{InstanceStatus, Scheduler, Version};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{info, warn};

use crate::room_env::{RoomsApiEndpoints, allocate_ports, maestro_env};
use crate::{RoomInstance, Runtime, RuntimeError, RuntimeEvent};

const LOCALHOST: &str = "127.0.0.1";
/// A crashed room's stop request cannot wait for an exit that already happened.
const EXIT_WAIT_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub struct ProcessRuntimeConfig {
    /// How rooms reach the rooms API (URLs, token secret).
    pub rooms_api: RoomsApiEndpoints,
    /// Folders searched first for a room's program (where `game-room` was built).
    pub extra_path: Vec<PathBuf>,
    /// Where each room's stdout/stderr go: `{log_dir}/{scheduler}/{room}.log`.
    pub log_dir: PathBuf,
}

pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    shared: Arc<Shared>,
}

struct Shared {
    rooms: Mutex<BTreeMap<(String, String), LiveRoom>>,
    events: broadcast::Sender<RuntimeEvent>,
}

struct LiveRoom {
    instance: RoomInstance,
    pid: Option<u32>,
    /// Taken by the first delete; `None` afterwards.
    stop: Option<oneshot::Sender<Duration>>,
    exited: watch::Receiver<bool>,
}

impl Shared {
    fn rooms(&self) -> MutexGuard<'_, BTreeMap<(String, String), LiveRoom>> {
        // Every critical section is a single insert/remove/assignment: a poisoned lock still
        // holds consistent data.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: RuntimeEvent) {
        // No subscriber is fine: nobody is watching yet.
        let _ = self.events.send(event);
    }
}

impl ProcessRuntime {
    pub fn new(config: ProcessRuntimeConfig) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            config,
            shared: Arc::new(Shared {
                rooms: Mutex::new(BTreeMap::new()),
                events,
            }),
        }
    }

    /// Stops every room (used when `maestro dev` exits), waiting up to `grace` for each.
    pub async fn shutdown(&self, grace: Duration) {
        let keys: Vec<(String, String)> = self.shared.rooms().keys().cloned().collect();
        let stops = keys
            .iter()
            .map(|(scheduler, room)| self.delete_room(scheduler, room, grace));
        for result in futures::future::join_all(stops).await {
            if let Err(e) = result {
                warn!(error = %e, "room did not stop cleanly at shutdown");
            }
        }
    }

    /// Operating-system process ids of the live rooms.
    pub fn pids(&self) -> Vec<u32> {
        self.shared.rooms().values().filter_map(|r| r.pid).collect()
    }

    fn resolve_program(&self, program: &str) -> PathBuf {
        if program.contains('/') {
            return PathBuf::from(program);
        }
        self.config
            .extra_path
            .iter()
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from(program))
    }

    fn build_command(
        &self,
        scheduler: &Scheduler,
        version: Version,
        room_id: &str,
        container: &Container,
        ports: &[RoomPort],
    ) -> Result<Command, RuntimeError> {
        let Some((program, args)) = container.command.split_first() else {
            return Err(RuntimeError::Invalid(
                "the process runtime needs spec.containers[0].command".into(),
            ));
        };
        let mut cmd = Command::new(self.resolve_program(program));
        // Own process group: a Ctrl-C aimed at maestro must not reach rooms directly; maestro
        // stops them itself, gracefully.
        cmd.args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(
            self.config
                .extra_path
                .iter()
                .cloned()
                .chain(std::env::split_paths(&path)),
        )
        .map_err(|e| RuntimeError::Invalid(format!("PATH: {e}")))?;
        cmd.env("PATH", joined);
        for env in &container.environment {
            match (
                &env.value,
                env.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
            ) {
                (Some(value), _) => {
                    cmd.env(&env.name, value);
                }
                (None, Some(field)) => match field.field_path.as_str() {
                    "metadata.name" => {
                        cmd.env(&env.name, room_id);
                    }
                    "metadata.namespace" => {
                        cmd.env(&env.name, &scheduler.name);
                    }
                    "status.podIP" | "status.hostIP" => {
                        cmd.env(&env.name, LOCALHOST);
                    }
                    other => warn!(
                        scheduler = %scheduler.name, room = room_id, field = other,
                        "the process runtime cannot resolve this fieldRef; variable left unset"
                    ),
                },
                (None, None) => warn!(
                    scheduler = %scheduler.name, room = room_id, variable = %env.name,
                    "secrets are not available to local processes; variable left unset"
                ),
            }
        }
        cmd.envs(maestro_env(
            &self.config.rooms_api,
            &scheduler.name,
            version,
            room_id,
            ports,
        ));
        Ok(cmd)
    }

    fn log_file(&self, scheduler: &str, room_id: &str) -> Result<std::fs::File, RuntimeError> {
        let dir = self.config.log_dir.join(scheduler);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Unavailable(format!("log dir {}: {e}", dir.display())))?;
        let path = dir.join(format!("{room_id}.log"));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| RuntimeError::Unavailable(format!("log file {}: {e}", path.display())))
    }
}

/// Waits for the room to exit by itself or to be told to stop; reports what happened.
async fn supervise(
    shared: Arc<Shared>,
    key: (String, String),
    mut child: Child,
    stop: oneshot::Receiver<Duration>,
    exited: watch::Sender<bool>,
) {
    let (scheduler, room_id) = (&key.0, &key.1);
    tokio::select! {
        status = child.wait() => {
            warn!(scheduler = %scheduler, room = %room_id, status = ?status, "room process exited by itself");
            let instance = {
                let mut rooms = shared.rooms();
                rooms.get_mut(&key).map(|live| {
                    live.instance.status = InstanceStatus::Error;
                    live.instance.clone()
                })
            };
            if let Some(instance) = instance {
                shared.emit(RuntimeEvent::Upserted(instance));
            }
        }
        Ok(grace) = stop => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                warn!(scheduler = %scheduler, room = %room_id, ?grace, "room ignored SIGTERM; killing it");
                let _ = child.kill().await;
            }
            shared.rooms().remove(&key);
            shared.emit(RuntimeEvent::Deleted { scheduler: scheduler.clone(), room_id: room_id.clone() });
            info!(scheduler = %scheduler, room = %room_id, "room process stopped");
        }
    }
    let _ = exited.send(true);
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn create_scheduler(&self, scheduler: &str) -> Result<(), RuntimeError> {
        let dir = self.config.log_dir.join(scheduler);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("{}: {e}", dir.display())))
    }

    async fn delete_scheduler(&self, _scheduler: &str) -> Result<(), RuntimeError> {
        // Room logs are kept for post-mortems; there is nothing else to remove.
        Ok(())
    }

    async fn create_room(
        &self,
        scheduler: &Scheduler,
        version: Version,
        room_id: &str,
    ) -> Result<RoomInstance, RuntimeError> {
        let container = match scheduler.spec.containers.as_slice() {
            [one] => one,
            [] => {
                return Err(RuntimeError::Invalid(
                    "the scheduler has no container".into(),
                ));
            }
            _ => {
                return Err(RuntimeError::Invalid(
                    "the process runtime runs one container per room".into(),
                ));
            }
        };
        let key = (scheduler.name.clone(), room_id.to_string());
        // Hold the lock from the existence check to the insert so two concurrent creations of
        // one room cannot both spawn it.
        let mut rooms = self.shared.rooms();
        if let Some(live) = rooms.get(&key) {
            return Ok(live.instance.clone());
        }
        let used: BTreeSet<u16> = rooms
            .values()
            .flat_map(|r| {
                r.instance
                    .address
                    .iter()
                    .flat_map(|a| a.ports.iter().map(|p| p.port))
            })
            .collect();
        let ports = allocate_ports(scheduler, &container.ports, &used)?;
        let mut cmd = self.build_command(scheduler, version, room_id, container, &ports)?;
        let log = self.log_file(&scheduler.name, room_id)?;
        let log_err = log
            .try_clone()
            .map_err(|e| RuntimeError::Unavailable(format!("log file: {e}")))?;
        cmd.stdout(log).stderr(log_err);
        let child = cmd.spawn().map_err(|e| {
            RuntimeError::Invalid(format!("cannot start {:?}: {e}", container.command[0]))
        })?;
        let instance = RoomInstance {
            scheduler: scheduler.name.clone(),
            room_id: room_id.to_string(),
            version,
            status: InstanceStatus::Ready,
            address: Some(RoomAddress {
                host: LOCALHOST.into(),
                ports,
                ipv6_label: String::new(),
            }),
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = watch::channel(false);
        rooms.insert(
            key.clone(),
            LiveRoom {
                instance: instance.clone(),
                pid: child.id(),
                stop: Some(stop_tx),
                exited: exited_rx,
            },
        );
        drop(rooms);
        info!(scheduler = %scheduler.name, room = room_id, pid = ?child.id(), "room process started");
        tokio::spawn(supervise(
            self.shared.clone(),
            key,
            child,
            stop_rx,
            exited_tx,
        ));
        self.shared.emit(RuntimeEvent::Upserted(instance.clone()));
        Ok(instance)
    }

    async fn delete_room(
        &self,
        scheduler: &str,
        room_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let key = (scheduler.to_string(), room_id.to_string());
        let (stop, mut exited) = {
            let mut rooms = self.shared.rooms();
            let Some(live) = rooms.get_mut(&key) else {
                return Ok(());
            };
            if *live.exited.borrow() {
                // It crashed earlier: only the record is left.
                rooms.remove(&key);
                drop(rooms);
                self.shared.emit(RuntimeEvent::Deleted {
                    scheduler: key.0,
                    room_id: key.1,
                });
                return Ok(());
            }
            (live.stop.take(), live.exited.clone())
        };
        if let Some(stop) = stop {
            let _ = stop.send(grace);
        }
        tokio::time::timeout(grace + EXIT_WAIT_SLACK, exited.wait_for(|done| *done))
            .await
            .map_err(|_| RuntimeError::Unavailable(format!("room {room_id} did not stop")))?
            .map_err(|_| RuntimeError::Unavailable(format!("room {room_id} supervisor gone")))?;
        // A crash raced with the stop: the record may still be there.
        if self.shared.rooms().remove(&key).is_some() {
            self.shared.emit(RuntimeEvent::Deleted {
                scheduler: key.0,
                room_id: key.1,
            });
        }
        Ok(())
    }

    async fn list_rooms(&self, scheduler: &str) -> Result<Vec<RoomInstance>, RuntimeError> {
        Ok(self
            .shared
            .rooms()
            .iter()
            .filter(|((s, _), _)| s == scheduler)
            .map(|(_, live)| live.instance.clone())
            .collect())
    }

    async fn list_all_rooms(&self) -> Result<Vec<RoomInstance>, RuntimeError> {
        Ok(self
            .shared
            .rooms()
            .values()
            .map(|live| live.instance.clone())
            .collect())
    }

    fn watch(&self) -> BoxStream<'static, RuntimeEvent> {
        let rx = self.shared.events.subscribe();
        stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((RuntimeEvent::Resync, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }
}

/// True when a process with this pid exists (tests use it to prove no orphans are left).
#[cfg(test)]
pub(crate) fn process_alive(pid: u32) -> bool {
    i32::try_from(pid)
        .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
        && !is_zombie(pid)
}

#[cfg(test)]
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
