//! The process runtime: each room is a local OS process started from the scheduler's first
//! container `command`, with the environment a pod would get. It is what `maestro dev` uses on
//! a machine with no cluster. A running process counts as a ready instance; whether the game
//! inside is ready is what its pings say. Rooms outlive a crash of the runtime's own process,
//! as pods outlive a crashed controller: [`ProcessRuntime::adopt`] takes them back on start.

mod adopt;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use maestro_core::room::{RoomAddress, RoomPort};

use maestro_core::scheduler::Container;
use maestro_core::{InstanceStatus, Scheduler, Version};
use tokio::process::Command;
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{info, warn};

use self::adopt::{RoomProcess, RoomRecord};
use crate::room_env::{RoomsApiEndpoints, UsedPorts, allocate_ports, maestro_env};
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
    /// How it ended, when it exited by itself (for [`Runtime::failure_reason`]).
    failure: Option<String>,
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

    /// Takes over the rooms a previous run of this runtime left running (it was killed
    /// before it could stop them), from the state files beside their logs: each still-running
    /// room is supervised again with its ports, so creating it again is a no-op and its ports
    /// are not handed out twice. Records of rooms that did not survive are removed. Call once,
    /// before anything lists or creates rooms. Answers how many were adopted.
    pub fn adopt(&self) -> usize {
        let (records, unreadable) = adopt::scan(&self.config.log_dir);
        for path in unreadable {
            warn!(path = %path.display(), "unreadable room state file; that room cannot be adopted");
        }
        let mut adopted = 0;
        for (scheduler, room_id, mut record) in records {
            let dir = self.config.log_dir.join(&scheduler);
            if record.pid == 0
                && let Some(pid) = adopt::find_room_process(&scheduler, &room_id)
            {
                // Killed between starting the room and recording its pid.
                record.pid = pid;
                record.start_ticks = adopt::start_ticks(pid).unwrap_or_default();
            }
            if record.pid == 0 || !adopt::still_running(record.pid, record.start_ticks) {
                info!(scheduler = %scheduler, room = %room_id, pid = record.pid, "room did not survive the restart");
                adopt::remove_record(&dir, &room_id);
                continue;
            }
            let instance = RoomInstance {
                scheduler: scheduler.clone(),
                room_id: room_id.clone(),
                version: record.version,
                status: InstanceStatus::Ready,
                address: Some(RoomAddress {
                    host: LOCALHOST.into(),
                    ports: record.ports.clone(),
                    ipv6_label: String::new(),
                }),
            };
            let process = RoomProcess::Adopted {
                pid: record.pid,
                start_ticks: record.start_ticks,
            };
            self.track(&mut self.shared.rooms(), instance.clone(), process, dir);
            self.shared.emit(RuntimeEvent::Upserted(instance));
            info!(scheduler = %scheduler, room = %room_id, pid = record.pid, "room adopted");
            adopted += 1;
        }
        if adopted > 0 {
            info!(
                rooms = adopted,
                "adopted the rooms a previous run left running"
            );
        }
        adopted
    }

    /// Records the room as live in `rooms` (the caller holds the lock from its existence
    /// check to here) and supervises its process until it exits or is stopped.
    fn track(
        &self,
        rooms: &mut BTreeMap<(String, String), LiveRoom>,
        instance: RoomInstance,
        process: RoomProcess,
        dir: PathBuf,
    ) {
        let key = (instance.scheduler.clone(), instance.room_id.clone());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = watch::channel(false);
        rooms.insert(
            key.clone(),
            LiveRoom {
                instance: instance.clone(),
                pid: process.pid(),
                stop: Some(stop_tx),
                exited: exited_rx,
                failure: None,
            },
        );
        tokio::spawn(supervise(
            self.shared.clone(),
            key,
            process,
            dir,
            stop_rx,
            exited_tx,
        ));
    }

    fn resolve_program(&self, program: &str) -> PathBuf {
        self.find_program(program)
            .unwrap_or_else(|| PathBuf::from(program))
    }

    /// The executable a room's `command[0]` names: a path as given, else the first match in
    /// the extra folders, then `PATH`.
    fn find_program(&self, program: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let executable = |path: &std::path::Path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if program.contains('/') {
            let path = PathBuf::from(program);
            return executable(&path).then_some(path);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        self.config
            .extra_path
            .iter()
            .cloned()
            .chain(std::env::split_paths(&path))
            .map(|dir| dir.join(program))
            .find(|candidate| executable(candidate))
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

/// Waits for the room to exit by itself or to be told to stop; reports what happened. Its
/// state file goes with it either way: nothing is left to adopt.
async fn supervise(
    shared: Arc<Shared>,
    key: (String, String),
    mut process: RoomProcess,
    dir: PathBuf,
    stop: oneshot::Receiver<Duration>,
    exited: watch::Sender<bool>,
) {
    let (scheduler, room_id) = (&key.0, &key.1);
    tokio::select! {
        how = process.exited() => {
            let log = dir.join(format!("{room_id}.log"));
            warn!(scheduler = %scheduler, room = %room_id, status = %how, log = %log.display(), "room process exited by itself");
            let failure = match last_line(&log) {
                Some(line) => format!("exited by itself ({how}); last output line: {line:?}; log: {}", log.display()),
                None => format!("exited by itself ({how}) with no output; log: {}", log.display()),
            };
            let instance = {
                let mut rooms = shared.rooms();
                rooms.get_mut(&key).map(|live| {
                    live.instance.status = InstanceStatus::Error;
                    live.failure = Some(failure);
                    live.instance.clone()
                })
            };
            if let Some(instance) = instance {
                shared.emit(RuntimeEvent::Upserted(instance));
            }
        }
        Ok(grace) = stop => {
            process.signal(nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(grace, process.exited()).await.is_err() {
                warn!(scheduler = %scheduler, room = %room_id, grace_ms = grace.as_millis(), "room ignored SIGTERM; killing it");
                process.kill().await;
            }
            shared.rooms().remove(&key);
            shared.emit(RuntimeEvent::Deleted { scheduler: scheduler.clone(), room_id: room_id.clone() });
            info!(scheduler = %scheduler, room = %room_id, "room process stopped");
        }
    }
    adopt::remove_record(&dir, room_id);
    let _ = exited.send(true);
}

/// The last non-empty line of a room's log, from its last 4 KiB at most (a log can be big).
fn last_line(log: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(300).collect())
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
        let used: UsedPorts = rooms
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
        let dir = self.config.log_dir.join(&scheduler.name);
        let mut record = RoomRecord {
            pid: 0,
            start_ticks: 0,
            version,
            ports: ports.clone(),
        };
        // Recorded before it starts and again with its pid: without a record a room would be
        // orphaned by a crash of this process (the child is killed if this fails later).
        let record_failed = |e: std::io::Error| {
            RuntimeError::Unavailable(format!("room state file in {}: {e}", dir.display()))
        };
        adopt::write_record(&dir, room_id, &record).map_err(record_failed)?;
        let log = self.log_file(&scheduler.name, room_id)?;
        let log_err = log
            .try_clone()
            .map_err(|e| RuntimeError::Unavailable(format!("log file: {e}")))?;
        cmd.stdout(log).stderr(log_err);
        let child = cmd.spawn().map_err(|e| {
            adopt::remove_record(&dir, room_id);
            RuntimeError::Invalid(format!("cannot start {:?}: {e}", container.command[0]))
        })?;
        let pid = child.id().unwrap_or_default();
        record.pid = pid;
        record.start_ticks = adopt::start_ticks(pid).unwrap_or_default();
        adopt::write_record(&dir, room_id, &record).map_err(record_failed)?;
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
        self.track(&mut rooms, instance.clone(), RoomProcess::Child(child), dir);
        drop(rooms);
        info!(scheduler = %scheduler.name, room = %room_id, pid, "room process started");
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

    async fn failure_reason(&self, scheduler: &str, room_id: &str) -> Option<String> {
        let key = (scheduler.to_string(), room_id.to_string());
        self.shared.rooms().get(&key)?.failure.clone()
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

    /// A room here is one local process: one container whose command names an executable.
    fn check_scheduler(&self, scheduler: &Scheduler) -> Result<(), maestro_core::ValidationErrors> {
        let mut errs = maestro_core::ValidationErrors::default();
        match scheduler.spec.containers.as_slice() {
            [container] => match container.command.first() {
                None => errs.push(
                    "spec.containers[0].command",
                    "is required by the process runtime (a local process has no image to take one from)",
                ),
                Some(program) if self.find_program(program).is_none() => errs.push(
                    "spec.containers[0].command",
                    format!("{program:?} is not an executable file on this machine"),
                ),
                Some(_) => {}
            },
            _ => errs.push(
                "spec.containers",
                "the process runtime runs exactly one container per room",
            ),
        }
        errs.into_result()
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
