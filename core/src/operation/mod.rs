//! Operations: every change to a scheduler or its rooms, their kinds (Maestro's
//! `definitionName`s), statuses, inputs and execution history.
//!
//! [`for_each_operation!`] is the one list of operations: the kind enum, the request enum
//! and the workflows' registration and dispatch (`maestro-workflows`) all expand from it.

mod inputs;
mod refusal;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;
use crate::validation::ValidationErrors;

pub use inputs::{
    AddRoomsInput, CreateNewSchedulerVersionInput, CreateSchedulerInput, DeleteSchedulerInput,
    HealthControllerInput, RemoveRoomsInput, SwitchActiveVersionInput,
};
pub use refusal::{Rejection, RejectionCode};

/// Rooms one `add_rooms` / `remove_rooms` operation may touch (Maestro's limit).
pub const MAX_ROOMS_PER_OPERATION: u32 = 1000;
/// Rooms created per runtime activity call (`add_rooms`, the health controller). Maestro's
/// default is 40, but its batches only pace creation: its history says "added N rooms" once.
/// Each batch is a Temporal hand-off here, so one per operation's worth of rooms
/// (docs/maestro-compatibility.md). A batch's rooms are created 40 at a time.
pub const ROOM_BATCH_SIZE: usize = MAX_ROOMS_PER_OPERATION as usize;

/// The one list of operations: `Kind(input type) = "definitionName"`, in the order the kind
/// enum takes. Calls `$callback! { ($($args)*) Kind(Input) = "name", ... }`, so other crates
/// derive their per-operation code from it (`maestro-workflows` registers and dispatches
/// the child workflow `operations::Kind` of each). Adding an operation starts here.
#[macro_export]
macro_rules! for_each_operation {
    ($callback:ident $(; $($args:tt)*)?) => {
        $callback! {
            ($($($args)*)?)
            CreateScheduler($crate::operation::CreateSchedulerInput) = "create_scheduler",
            CreateNewSchedulerVersion($crate::operation::CreateNewSchedulerVersionInput) = "create_new_scheduler_version",
            SwitchActiveVersion($crate::operation::SwitchActiveVersionInput) = "switch_active_version",
            AddRooms($crate::operation::AddRoomsInput) = "add_rooms",
            RemoveRooms($crate::operation::RemoveRoomsInput) = "remove_rooms",
            HealthController($crate::operation::HealthControllerInput) = "health_controller",
            DeleteScheduler($crate::operation::DeleteSchedulerInput) = "delete_scheduler",
        }
    };
}

/// What each operation's input checks on its own (the scheduler's state is checked by the
/// scheduler workflow, see [`Rejection`]).
pub trait OperationInput {
    /// Pushes every bad field; the default accepts anything.
    fn check(&self, _errors: &mut ValidationErrors) {}
}

/// An operation's input was asked for as another kind's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {expected} got the input of {got}")]
pub struct WrongKind {
    pub expected: &'static str,
    pub got: &'static str,
}

macro_rules! define_operations {
    (() $($kind:ident($input:ty) = $name:literal),* $(,)?) => {
        /// An operation's kind; serialised as its `definitionName`.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
        )]
        pub enum OperationKind {
            $( #[serde(rename = $name)] $kind, )*
        }

        impl OperationKind {
            pub const ALL: &'static [OperationKind] = &[$(Self::$kind),*];

            /// Maestro's `definitionName`, also the child workflow's type name.
            pub const fn definition_name(self) -> &'static str {
                match self {
                    $( Self::$kind => $name, )*
                }
            }
        }

        /// What a client asks for: the operation's own input, with Maestro's
        /// `definitionName` as the tag (`{"definitionName": "add_rooms", "amount": 3}`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        #[serde(tag = "definitionName")]
        pub enum OperationRequest {
            $( #[serde(rename = $name)] $kind($input), )*
        }

        impl OperationRequest {
            pub fn kind(&self) -> OperationKind {
                match self {
                    $( Self::$kind(_) => OperationKind::$kind, )*
                }
            }

            /// Every bad field of the input, by path.
            pub fn validate(&self) -> Result<(), ValidationErrors> {
                let mut errors = ValidationErrors::default();
                match self {
                    $( Self::$kind(input) => input.check(&mut errors), )*
                }
                errors.into_result()
            }
        }

        $(
            impl From<$input> for OperationRequest {
                fn from(input: $input) -> Self {
                    Self::$kind(input)
                }
            }

            impl TryFrom<OperationRequest> for $input {
                type Error = WrongKind;

                fn try_from(request: OperationRequest) -> Result<Self, WrongKind> {
                    match request {
                        OperationRequest::$kind(input) => Ok(input),
                        #[allow(unreachable_patterns)]
                        other => Err(WrongKind {
                            expected: $name,
                            got: other.kind().definition_name(),
                        }),
                    }
                }
            }
        )*
    };
}

for_each_operation!(define_operations);

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

impl OperationRequest {
    /// The operation's `input` as Maestro stores it: its definition's JSON
    /// (`{"amount": 3}`, `{"newActiveVersion": "v1.1.0"}`, `{"scheduler": …}`, …). Maestro
    /// keeps the scheduler document of `create_scheduler` there too; ours is the first
    /// version's, so the input is empty.
    pub fn maestro_input(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::CreateNewSchedulerVersion(input) => json!({"scheduler": input.scheduler}),
            Self::SwitchActiveVersion(input) => json!({"newActiveVersion": input.version}),
            Self::AddRooms(input) => json!({"amount": input.amount}),
            Self::RemoveRooms(input) => {
                json!({"amount": input.amount, "rooms_ids": input.rooms_ids, "reason": ""})
            }
            Self::HealthController(input) => serde_json::to_value(input).unwrap_or_default(),
            Self::CreateScheduler(_) | Self::DeleteScheduler(_) => json!({}),
        }
    }
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
    pub const ALL: [OperationStatus; 6] = [
        Self::Pending,
        Self::InProgress,
        Self::Finished,
        Self::Error,
        Self::Canceled,
        Self::Evicted,
    ];

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
        let json =
            serde_json::to_value(OperationRequest::from(AddRoomsInput { amount: 3 })).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"definitionName": "add_rooms", "amount": 3})
        );
        let parsed: OperationRequest = serde_json::from_value(
            serde_json::json!({"definitionName": "remove_rooms", "roomsIds": ["a"]}),
        )
        .unwrap();
        assert_eq!(parsed.kind().definition_name(), "remove_rooms");
        for kind in OperationKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.definition_name());
        }
        for status in OperationStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        // Inputs with no fields are the tag alone, as before they were newtypes.
        let delete: OperationRequest = DeleteSchedulerInput {}.into();
        assert_eq!(
            serde_json::to_value(&delete).unwrap(),
            serde_json::json!({"definitionName": "delete_scheduler"})
        );
        assert_eq!(
            serde_json::from_value::<OperationRequest>(
                serde_json::json!({"definitionName": "delete_scheduler"})
            )
            .unwrap(),
            delete
        );
    }

    #[test]
    fn inputs_as_maestro_stores_them() {
        assert_eq!(
            OperationRequest::from(AddRoomsInput { amount: 3 }).maestro_input(),
            serde_json::json!({"amount": 3})
        );
        assert_eq!(
            OperationRequest::from(SwitchActiveVersionInput {
                version: crate::Version { major: 1, minor: 1 }
            })
            .maestro_input(),
            serde_json::json!({"newActiveVersion": "v1.1.0"})
        );
        let remove = OperationRequest::from(RemoveRoomsInput {
            amount: 0,
            rooms_ids: vec!["r".into()],
        });
        assert_eq!(
            remove.maestro_input(),
            serde_json::json!({"amount": 0, "rooms_ids": ["r"], "reason": ""})
        );
    }

    #[test]
    fn amounts_are_bounded() {
        assert!(
            OperationRequest::from(AddRoomsInput { amount: 0 })
                .validate()
                .is_err()
        );
        assert!(
            OperationRequest::from(AddRoomsInput { amount: 1000 })
                .validate()
                .is_ok()
        );
        let too_many = OperationRequest::from(AddRoomsInput { amount: 1001 })
            .validate()
            .unwrap_err();
        assert!(too_many.has_field("amount"));
        let both = OperationRequest::from(RemoveRoomsInput {
            amount: 1,
            rooms_ids: vec!["a".into()],
        });
        assert!(both.validate().unwrap_err().has_field("amount"));
        let blank = OperationRequest::from(RemoveRoomsInput {
            amount: 0,
            rooms_ids: vec!["a".into(), " ".into()],
        });
        assert!(blank.validate().unwrap_err().has_field("roomsIds[1]"));
        assert!(
            OperationRequest::from(RemoveRoomsInput::default())
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
