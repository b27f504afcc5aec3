//! What lets a restarted process runtime adopt the rooms a crashed one left running: a small
//! state file per room beside its log (`{room}.state.json`: pid, the kernel's start time of
//! that pid, version, ports), and a handle that supervises either a child this process spawned
//! or an adopted process it can only signal and poll.

use std::path::{Path, PathBuf};
use std::time::Duration;

use maestro_core::Version;
use maestro_core::room::RoomPort;
use serde::{Deserialize, Serialize};
use tokio::process::Child;

/// How often an adopted room's process is looked at (it is not our child: no `wait`).
const ADOPTED_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RoomRecord {
    /// 0 until the process is started: written first, so a crash between starting the room
    /// and recording its pid still leaves a record to find the process by.
    pub pid: u32,
    /// `/proc/{pid}/stat` field 22: tells the room's process from a later one that reused
    /// its pid.
    pub start_ticks: u64,
    pub version: Version,
    pub ports: Vec<RoomPort>,
}

pub(super) fn record_path(dir: &Path, room_id: &str) -> PathBuf {
    dir.join(format!("{room_id}.state.json"))
}

/// Writes the record atomically (temp file + rename): a crash mid-write leaves the old one or
/// none, never half of one.
pub(super) fn write_record(dir: &Path, room_id: &str, record: &RoomRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = record_path(dir, room_id);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(record).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

pub(super) fn remove_record(dir: &Path, room_id: &str) {
    // Already gone is fine: the room is stopped either way.
    let _ = std::fs::remove_file(record_path(dir, room_id));
}

/// `(state, start time)` of a live process, from `/proc/{pid}/stat`; `None` when it is gone.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was `state`; field 22 is the 19th after it.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The kernel's start time of `pid`, for a new record.
pub(super) fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// True while the process the record names still runs (same pid, same start, not a zombie).
pub(super) fn still_running(pid: u32, start_ticks: u64) -> bool {
    matches!(stat(pid), Some((state, start)) if start == start_ticks && state != 'Z')
}

/// The live process whose environment names this room (`MAESTRO_SCHEDULER_NAME`,
/// `MAESTRO_ROOM_ID`): how a room recorded before its pid is found.
pub(super) fn find_room_process(scheduler: &str, room_id: &str) -> Option<u32> {
    let wanted = [
        format!("MAESTRO_SCHEDULER_NAME={scheduler}"),
        format!("MAESTRO_ROOM_ID={room_id}"),
    ];
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
                wanted.iter().all(|w| vars.contains(&w.as_bytes()))
                    && stat(*pid).is_some_and(|(state, _)| state != 'Z')
            })
        })
}

/// Every record under `log_dir`, as `(scheduler, room id, record)`; unreadable ones are
/// skipped with their path.
pub(super) fn scan(log_dir: &Path) -> (Vec<(String, String, RoomRecord)>, Vec<PathBuf>) {
    let (mut found, mut unreadable) = (Vec::new(), Vec::new());
    let Ok(schedulers) = std::fs::read_dir(log_dir) else {
        return (found, unreadable);
    };
    for scheduler in schedulers.flatten() {
        let Ok(files) = std::fs::read_dir(scheduler.path()) else {
            continue;
        };
        let scheduler_name = scheduler.file_name().to_string_lossy().into_owned();
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some(room_id) = name.strip_suffix(".state.json") else {
                continue;
            };
            match std::fs::read(file.path())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<RoomRecord>(&bytes).ok())
            {
                Some(record) => found.push((scheduler_name.clone(), room_id.to_string(), record)),
                None => unreadable.push(file.path()),
            }
        }
    }
    (found, unreadable)
}

/// A room's process: one this runtime spawned, or one it adopted after a restart.
pub(super) enum RoomProcess {
    Child(Child),
    Adopted { pid: u32, start_ticks: u64 },
}

impl RoomProcess {
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Child(child) => child.id(),
            Self::Adopted { pid, .. } => Some(*pid),
        }
    }

    /// Waits until the process exits; says how, as far as it can be known.
    pub async fn exited(&mut self) -> String {
        match self {
            Self::Child(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("unknown ({e})"),
            },
            Self::Adopted { pid, start_ticks } => {
                while still_running(*pid, *start_ticks) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                "exited (an adopted room: its status is not known)".into()
            }
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            // Gone already is fine: the caller waits for the exit either way.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    pub async fn kill(&mut self) {
        match self {
            Self::Child(child) => {
                let _ = child.kill().await;
            }
            Self::Adopted { .. } => {
                self.signal(nix::sys::signal::Signal::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(5), self.exited()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_process_and_not_a_later_one_with_the_same_pid() {
        let me = std::process::id();
        let start = start_ticks(me).expect("this process has a stat");
        assert!(still_running(me, start));
        assert!(
            !still_running(me, start + 1),
            "another start time is another process"
        );
        assert!(!still_running(u32::MAX, start), "no such pid");
    }

    #[test]
    fn records_round_trip_through_the_folder_scan() {
        let dir = std::env::temp_dir().join(format!("adopt-scan-{}", std::process::id()));
        let scheduler = dir.join("sched");
        std::fs::create_dir_all(&scheduler).unwrap();
        let record = RoomRecord {
            pid: 42,
            start_ticks: 7,
            version: Version::FIRST,
            ports: vec![],
        };
        write_record(&scheduler, "sched-abc", &record).unwrap();
        std::fs::write(record_path(&scheduler, "sched-bad"), b"{").unwrap();
        std::fs::write(scheduler.join("sched-abc.log"), b"log lines").unwrap();
        let (found, unreadable) = scan(&dir);
        assert_eq!(found, vec![("sched".into(), "sched-abc".into(), record)]);
        assert_eq!(unreadable, vec![record_path(&scheduler, "sched-bad")]);
        remove_record(&scheduler, "sched-abc");
        assert!(scan(&dir).0.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
