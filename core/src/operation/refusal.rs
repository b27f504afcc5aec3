//! Why a scheduler refuses an operation now: one rule per refusal, used by the gateway
//! (which answers the HTTP status of the code before sending anything) and by the scheduler
//! workflow (which records the refusal as a failed operation when the gateway could not
//! check), so the same refusal reads the same everywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::operation::Operation;
use crate::version::{Version, VersionRecord};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The request itself is invalid (HTTP 400).
    Invalid,
    /// The scheduler's state forbids it now, e.g. it is being deleted (HTTP 409).
    Conflict,
    /// What the request names does not exist, e.g. an unknown operation (HTTP 404).
    NotFound,
}

impl Rejection {
    fn new(code: RejectionCode, message: String) -> Self {
        Self { code, message }
    }

    /// Switching `scheduler` to `version`: it must be recorded and must not have failed
    /// validation.
    pub fn of_switch(
        scheduler: &str,
        versions: &[VersionRecord],
        version: Version,
    ) -> Option<Self> {
        match versions.iter().find(|r| r.version == version) {
            None => Some(Self::new(
                RejectionCode::NotFound,
                format!("scheduler {scheduler} has no version {version}"),
            )),
            Some(record) if record.failed.is_some() => Some(Self::new(
                RejectionCode::Conflict,
                format!("version {version} failed validation and cannot be active"),
            )),
            Some(_) => None,
        }
    }

    /// Cancelling `operation_id`: it must be pending or running (`open`); a final one
    /// (`finished`) cannot be cancelled.
    pub fn of_cancel<'a>(
        scheduler: &str,
        operation_id: &str,
        mut open: impl Iterator<Item = &'a Operation>,
        mut finished: impl Iterator<Item = &'a Operation>,
    ) -> Option<Self> {
        if open.any(|op| op.id == operation_id) {
            return None;
        }
        Some(match finished.find(|op| op.id == operation_id) {
            Some(op) => Self::new(
                RejectionCode::Conflict,
                format!("operation {operation_id} is already final ({})", op.status),
            ),
            None => Self::new(
                RejectionCode::NotFound,
                format!("scheduler {scheduler} has no pending or running operation {operation_id}"),
            ),
        })
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&json)
    }
}

impl std::error::Error for Rejection {}

impl FromStr for Rejection {
    type Err = serde_json::Error;

    /// Parses an update failure's message back into the rejection the validator gave.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{AddRoomsInput, OperationStatus};
    use crate::time::Timestamp;

    #[test]
    fn rejections_round_trip_through_the_failure_message() {
        let r = Rejection::new(RejectionCode::Conflict, "scheduler is being deleted".into());
        assert_eq!(r.to_string().parse::<Rejection>().unwrap(), r);
        assert!("plain text".parse::<Rejection>().is_err());
    }

    #[test]
    fn cancel_is_refused_for_final_and_unknown_operations() {
        let op = |id: &str, status| {
            let mut op = Operation::pending(
                id.into(),
                1,
                "s",
                AddRoomsInput { amount: 1 }.into(),
                None,
                Timestamp::default(),
            );
            op.status = status;
            op
        };
        let open = [op("a", OperationStatus::Pending)];
        let done = [op("b", OperationStatus::Finished)];
        assert_eq!(
            Rejection::of_cancel("s", "a", open.iter(), done.iter()),
            None
        );
        let final_one = Rejection::of_cancel("s", "b", open.iter(), done.iter()).unwrap();
        assert_eq!(final_one.code, RejectionCode::Conflict);
        assert!(
            final_one.message.contains("finished"),
            "{}",
            final_one.message
        );
        let unknown = Rejection::of_cancel("s", "c", open.iter(), done.iter()).unwrap();
        assert_eq!(unknown.code, RejectionCode::NotFound);
    }
}
