//! One child workflow per operation, each in its own module and named by Maestro's
//! `definitionName`, so the Temporal UI lists every operation with its own history. Each
//! takes a [`ChildInput`] of its own input type and returns an [`OperationOutcome`]:
//! business failures (a runtime refusing a room) are outcomes with a readable reason, after
//! the operation has undone what it did (its compensation, a named step in its module).
//!
//! The list of operations is `maestro_core::for_each_operation!`; registration and the
//! scheduler's dispatch below expand from it, so an operation added there without its
//! workflow here does not compile.
//!
//! [`ChildInput`]: crate::ChildInput
//! [`OperationOutcome`]: crate::OperationOutcome

mod add_rooms;
mod create_new_scheduler_version;
mod create_scheduler;
mod delete_scheduler;
mod health_controller;
mod remove_rooms;
pub(crate) mod steps;
mod switch_active_version;

pub use add_rooms::AddRooms;
pub use create_new_scheduler_version::{
    CreateNewSchedulerVersion, VALIDATION_ATTEMPTS, VALIDATION_TIMEOUT,
};
pub use create_scheduler::CreateScheduler;
pub use delete_scheduler::DeleteScheduler;
pub use health_controller::HealthController;
pub use remove_rooms::RemoveRooms;
pub use switch_active_version::SwitchActiveVersion;

use temporalio_sdk::WorkflowRegistrationError;

/// A function registering the scheduler workflow and every operation's workflow on `$options`
/// (the SDK's worker and replayer options share no trait).
macro_rules! registration {
    (($function:ident, $options:ty) $($kind:ident($input:ty) = $name:literal),* $(,)?) => {
        pub fn $function(options: &mut $options) -> Result<(), WorkflowRegistrationError> {
            options.register_workflow::<crate::SchedulerWorkflow>()?;
            $( options.register_workflow::<$kind>()?; )*
            Ok(())
        }
    };
}

maestro_core::for_each_operation!(registration; register_worker_workflows, temporalio_sdk::WorkerOptions);
maestro_core::for_each_operation!(
    registration;
    register_replayer_workflows,
    temporalio_sdk::workflow_replayer::WorkflowReplayerOptions
);
