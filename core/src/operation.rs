//! Operations: every change to a scheduler or its rooms, their kinds (Maestro's
//! `definitionName`s), statuses, inputs and execution history.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::scheduler::Scheduler;
use crate::time::Timestamp;
use crate::validation::ValidationErrors;
use crate::version::Version;

/// Rooms one `add_rooms` / `remove_rooms` operation may touch (Maestro's limit).
pub const MAX_ROOMS_PER_OPERATION: u32 = 1000;
/// Rooms created per runtime activity call inside `add_rooms` (Maestro's batch).
pub const ROOM_BATCH_SIZE: usize = 40;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    CreateScheduler,
    CreateNewSchedulerVersion,
    SwitchActiveVersion,
    AddRooms,
    RemoveRooms,
    HealthController,
    DeleteScheduler,
}

impl OperationKind {
    /// Maestro's `definitionName`, also the child workflow's type name.
    pub const fn definition_name(self) -> &'static str {
        match self {
            Self::CreateScheduler => "create_scheduler",
            Self::CreateNewSchedulerVersion => "create_new_scheduler_version",
            Self::SwitchActiveVersion => "switch_active_version",
            Self::AddRooms => "add_rooms",
            Self::RemoveRooms => "remove_rooms",
            Self::HealthController => "health_controller",
            Self::DeleteScheduler => "delete_scheduler",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Pending,
    InProgress,
    Finished,
    Error,
    Canceled,
    Evicted,
}

impl Operation {
    /// A new pending operation: what the scheduler workflow enqueues (and what a deletion
    /// started without it records).
    pub fn pending(
        id: String,
        seq: u64,
        scheduler_name: &str,
        input: OperationRequest,
        request_id: Option<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            seq,
            status: OperationStatus::Pending,
            definition_name: input.kind().definition_name().to_string(),
            scheduler_name: scheduler_name.to_string(),
            created_at: now,
            started_at: None,
            finished_at: None,
            input,
            execution_history: Vec::new(),
            error: None,
            request_id,
        }
    }
}

impl OperationStatus {
    /// The name Maestro's API uses (`in_progress`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Finished => "finished",
            Self::Error => "error",
            Self::Canceled => "canceled",
            Self::Evicted => "evicted",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Finished | Self::Error | Self::Canceled | Self::Evicted
        )
    }
}

impl std::fmt::Display for OperationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client asks for. Serialised with Maestro's `definitionName` as the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "definitionName", rename_all = "snake_case")]
pub enum OperationRequest {
    CreateScheduler,
    /// A new version of the scheduler (the whole document; `spec.version` is assigned when
    /// the operation starts).
    CreateNewSchedulerVersion {
        scheduler: Box<Scheduler>,
    },
    /// Make a recorded version the active one.
    SwitchActiveVersion {
        version: Version,
    },
    /// The periodic health check (enqueued by the scheduler itself, never by clients).
    HealthController {
        /// When the scheduler last scaled down (for the autoscaler's cooldown).
        #[serde(
            default,
            rename = "lastDownscaleAt",
            skip_serializing_if = "Option::is_none"
        )]
        last_downscale_at: Option<Timestamp>,
        /// During a rollout: the version to go back to if the new one's rooms fail.
        #[serde(
            default,
            rename = "rollbackTo",
            skip_serializing_if = "Option::is_none"
        )]
        rollback_to: Option<Version>,
        /// The crash-loop backoff the previous health run left (absent: none).
        #[serde(
            default,
            rename = "crashBackoff",
            skip_serializing_if = "Option::is_none"
        )]
        crash_backoff: Option<crate::health::CrashBackoff>,
    },
    AddRooms {
        amount: u32,
    },
    RemoveRooms {
        #[serde(default)]
        amount: u32,
        #[serde(default, rename = "roomsIds", skip_serializing_if = "Vec::is_empty")]
        rooms_ids: Vec<String>,
    },
    DeleteScheduler,
}

impl OperationRequest {
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::CreateScheduler => OperationKind::CreateScheduler,
            Self::CreateNewSchedulerVersion { .. } => OperationKind::CreateNewSchedulerVersion,
            Self::SwitchActiveVersion { .. } => OperationKind::SwitchActiveVersion,
            Self::HealthController { .. } => OperationKind::HealthController,
            Self::AddRooms { .. } => OperationKind::AddRooms,
            Self::RemoveRooms { .. } => OperationKind::RemoveRooms,
            Self::DeleteScheduler => OperationKind::DeleteScheduler,
        }
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let check_amount = |errs: &mut ValidationErrors, amount: u32| {
            if amount == 0 || amount > MAX_ROOMS_PER_OPERATION {
                errs.push(
                    "amount",
                    format!("must be between 1 and {MAX_ROOMS_PER_OPERATION}"),
                );
            }
        };
        match self {
            Self::AddRooms { amount } => check_amount(&mut errs, *amount),
            Self::RemoveRooms { amount, rooms_ids } if rooms_ids.is_empty() => {
                check_amount(&mut errs, *amount)
            }
            Self::RemoveRooms { amount, rooms_ids } => {
                if *amount != 0 {
                    errs.push("amount", "set either amount or roomsIds, not both");
                }
                if rooms_ids.len() > MAX_ROOMS_PER_OPERATION as usize {
                    errs.push(
                        "roomsIds",
                        format!("at most {MAX_ROOMS_PER_OPERATION} rooms per operation"),
                    );
                }
                if let Some(i) = rooms_ids.iter().position(|id| id.trim().is_empty()) {
                    errs.push(format!("roomsIds[{i}]"), "must not be empty");
                }
            }
            Self::CreateNewSchedulerVersion { scheduler } => {
                if let Err(errors) = scheduler.validate() {
                    for e in errors.errors {
                        errs.push(format!("scheduler.{}", e.field), e.message);
                    }
                }
            }
            Self::CreateScheduler
            | Self::DeleteScheduler
            | Self::SwitchActiveVersion { .. }
            | Self::HealthController { .. } => {}
        }
        errs.into_result()
    }
}

/// One readable line of an operation's execution history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub created_at: Timestamp,
    pub event: String,
}

/// An operation as Maestro's API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: String,
    /// Acceptance order within the scheduler (1, 2, ...): the order operations run in.
    pub seq: u64,
    pub status: OperationStatus,
    pub definition_name: String,
    pub scheduler_name: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    pub input: OperationRequest,
    #[serde(default)]
    pub execution_history: Vec<HistoryEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The submitter's id for this request (Idempotency-Key or a generated one): a repeated
    /// submission with the same id returns this operation instead of enqueuing another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_maestro_definition_names() {
        let json = serde_json::to_value(OperationRequest::AddRooms { amount: 3 }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"definitionName": "add_rooms", "amount": 3})
        );
        let parsed: OperationRequest = serde_json::from_value(
            serde_json::json!({"definitionName": "remove_rooms", "roomsIds": ["a"]}),
        )
        .unwrap();
        assert_eq!(parsed.kind().definition_name(), "remove_rooms");
        for kind in [
            OperationKind::CreateScheduler,
            OperationKind::HealthController,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.definition_name());
        }
    }

    #[test]
    fn amounts_are_bounded() {
        assert!(OperationRequest::AddRooms { amount: 0 }.validate().is_err());
        assert!(
            OperationRequest::AddRooms { amount: 1000 }
                .validate()
                .is_ok()
        );
        let too_many = OperationRequest::AddRooms { amount: 1001 }
            .validate()
            .unwrap_err();
        assert!(too_many.has_field("amount"));
        let both = OperationRequest::RemoveRooms {
            amount: 1,
            rooms_ids: vec!["a".into()],
        };
        assert!(both.validate().unwrap_err().has_field("amount"));
        let blank = OperationRequest::RemoveRooms {
            amount: 0,
            rooms_ids: vec!["a".into(), " ".into()],
        };
        assert!(blank.validate().unwrap_err().has_field("roomsIds[1]"));
        assert!(
            OperationRequest::RemoveRooms {
                amount: 0,
                rooms_ids: vec![]
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn final_statuses() {
        assert!(!OperationStatus::Pending.is_final());
        assert!(!OperationStatus::InProgress.is_final());
        for s in [
            OperationStatus::Finished,
            OperationStatus::Error,
            OperationStatus::Canceled,
            OperationStatus::Evicted,
        ] {
            assert!(s.is_final());
        }
    }
}
