//! `maestro-core`: Maestro's domain, as plain data and pure functions.
//!
//! Owns the scheduler spec (with Maestro's JSON field names) and its validation with
//! field paths, version-bump rules, how a patch merges into a scheduler, game rooms and the room status state machine, operation
//! kinds/states/inputs, the autoscaler's formulas, deterministic naming of workflows and rooms, and per-room tokens.
//!
//! Must not do I/O, read clocks or environment, spawn tasks or be async: everything here is
//! called from deterministic workflow code as well as from the gateway. Callers pass `now`.

pub mod autoscaling;
pub mod health;
pub mod naming;
pub mod operation;
pub mod patch;
pub mod ports;
pub mod room;
pub mod scheduler;
pub mod time;
pub mod token;
pub mod validation;
pub mod version;

pub use operation::{HistoryEntry, Operation, OperationKind, OperationRequest, OperationStatus};
pub use room::{GameRoom, InstanceStatus, PingStatus, RoomStatus};
pub use scheduler::{Scheduler, SchedulerState};
pub use time::Timestamp;
pub use token::RoomTokenSecret;
pub use validation::{FieldError, ValidationErrors};
pub use version::{ChangeKind, Version, VersionRecord};
