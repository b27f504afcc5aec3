//! Each operation's input, as the scheduler workflow stores it in the operation (and so in
//! every recorded history: field names and shapes here are part of the replay contract).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{MAX_ROOMS_PER_OPERATION, OperationInput};
use crate::health::CrashBackoff;
use crate::scheduler::Scheduler;
use crate::time::Timestamp;
use crate::validation::ValidationErrors;
use crate::version::Version;

/// Prepares the scheduler's runtime resources; enqueued by the scheduler itself as its
/// first operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateSchedulerInput {}

impl OperationInput for CreateSchedulerInput {}

/// A new version of the scheduler (the whole document; `spec.version` is assigned when the
/// operation starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateNewSchedulerVersionInput {
    pub scheduler: Box<Scheduler>,
}

impl OperationInput for CreateNewSchedulerVersionInput {
    fn check(&self, errors: &mut ValidationErrors) {
        if let Err(bad) = self.scheduler.validate() {
            for e in bad.errors {
                errors.push(format!("scheduler.{}", e.field), e.message);
            }
        }
    }
}

/// Makes a recorded version the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwitchActiveVersionInput {
    pub version: Version,
}

impl OperationInput for SwitchActiveVersionInput {}

/// The periodic health check (enqueued by the scheduler itself, never by clients), with
/// what the scheduler remembers between runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthControllerInput {
    /// When the scheduler last scaled down (for the autoscaler's cooldown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_downscale_at: Option<Timestamp>,
    /// During a rollout: the version to go back to if the new one's rooms fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<Version>,
    /// The crash-loop backoff the previous health run left (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_backoff: Option<CrashBackoff>,
}

impl OperationInput for HealthControllerInput {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddRoomsInput {
    pub amount: u32,
}

fn check_amount(errors: &mut ValidationErrors, amount: u32) {
    if amount == 0 || amount > MAX_ROOMS_PER_OPERATION {
        errors.push(
            "amount",
            format!("must be between 1 and {MAX_ROOMS_PER_OPERATION}"),
        );
    }
}

impl OperationInput for AddRoomsInput {
    fn check(&self, errors: &mut ValidationErrors) {
        check_amount(errors, self.amount);
    }
}

/// Removes `amount` rooms by Maestro's deletion priority, or exactly the rooms named.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct RemoveRoomsInput {
    #[serde(default)]
    pub amount: u32,
    #[serde(default, rename = "roomsIds", skip_serializing_if = "Vec::is_empty")]
    pub rooms_ids: Vec<String>,
}

impl OperationInput for RemoveRoomsInput {
    fn check(&self, errors: &mut ValidationErrors) {
        if self.rooms_ids.is_empty() {
            return check_amount(errors, self.amount);
        }
        if self.amount != 0 {
            errors.push("amount", "set either amount or roomsIds, not both");
        }
        if self.rooms_ids.len() > MAX_ROOMS_PER_OPERATION as usize {
            errors.push(
                "roomsIds",
                format!("at most {MAX_ROOMS_PER_OPERATION} rooms per operation"),
            );
        }
        if let Some(i) = self.rooms_ids.iter().position(|id| id.trim().is_empty()) {
            errors.push(format!("roomsIds[{i}]"), "must not be empty");
        }
    }
}

/// Removes every room, then the scheduler's runtime resources.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct DeleteSchedulerInput {}

impl OperationInput for DeleteSchedulerInput {}
