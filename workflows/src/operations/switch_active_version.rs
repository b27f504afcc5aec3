//! `switch_active_version`: marks a recorded version active (the scheduler workflow checked
//! that it exists and did not fail, `Rejection::of_switch`). Rooms of older major versions
//! are replaced by the health controller.

use maestro_core::operation::SwitchActiveVersionInput;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::steps::{History, conclude};
use crate::{ChildInput, OperationEffect, OperationOutcome};

#[workflow]
#[derive(Default)]
pub struct SwitchActiveVersion;

#[workflow_methods]
impl SwitchActiveVersion {
    #[run(name = "switch_active_version")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ChildInput<SwitchActiveVersionInput>,
    ) -> WorkflowResult<OperationOutcome> {
        let (operation, scheduler) = (input.operation.id.clone(), input.scheduler.name.clone());
        let outcome = execute(ctx, input).await?;
        conclude(ctx, &operation, &scheduler, outcome).await
    }
}

/// The operation's work; how its workflow ends follows from the outcome (`conclude`).
async fn execute(
    ctx: &mut WorkflowContext<SwitchActiveVersion>,
    input: ChildInput<SwitchActiveVersionInput>,
) -> WorkflowResult<OperationOutcome> {
    let version = &input.request.version;
    let mut history = History::new();
    history.push(
        ctx,
        format!(
            "{version} is the active version (was {})",
            input.scheduler.spec.version
        ),
    );
    Ok(history.succeeded_with(Some(OperationEffect::Activate { version: *version })))
}
