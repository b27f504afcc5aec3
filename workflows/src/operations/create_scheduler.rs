//! `create_scheduler`: prepares the scheduler's runtime resources (a namespace on
//! Kubernetes); on failure removes what it created. Always operation #1 of a scheduler.

use std::time::Duration;

use maestro_activities::{RoomActivities, SchedulerRef};
use maestro_core::operation::CreateSchedulerInput;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::steps::{History, activity_options, conclude, now, why};
use crate::{ChildInput, OperationOutcome};

#[workflow]
#[derive(Default)]
pub struct CreateScheduler;

#[workflow_methods]
impl CreateScheduler {
    #[run(name = "create_scheduler")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ChildInput<CreateSchedulerInput>,
    ) -> WorkflowResult<OperationOutcome> {
        let (operation, scheduler) = (input.operation.id.clone(), input.scheduler.name.clone());
        let outcome = execute(ctx, input).await?;
        conclude(ctx, &operation, &scheduler, outcome).await
    }
}

/// The operation's work; how its workflow ends follows from the outcome (`conclude`).
async fn execute(
    ctx: &mut WorkflowContext<CreateScheduler>,
    input: ChildInput<CreateSchedulerInput>,
) -> WorkflowResult<OperationOutcome> {
    let mut history = History::new();
    let target = SchedulerRef {
        scheduler: input.scheduler.name.clone(),
    };
    let created = ctx
        .execute_activity(
            RoomActivities::create_scheduler,
            target.clone(),
            activity_options(Duration::from_secs(120)),
        )
        .await;
    if let Err(e) = created {
        remove_partial_resources(ctx, target, &mut history).await;
        return Ok(history.failed(
            format!("creating runtime resources failed: {}", why(&e)),
            now(ctx),
        ));
    }
    history.push(
        ctx,
        format!(
            "created runtime resources for version {}",
            input.scheduler.spec.version
        ),
    );
    Ok(history.succeeded())
}

/// Compensation: what a failed creation may have left (the activity is idempotent: "not
/// found" is success).
async fn remove_partial_resources(
    ctx: &WorkflowContext<CreateScheduler>,
    target: SchedulerRef,
    history: &mut History,
) {
    let cleanup = ctx
        .execute_activity(
            RoomActivities::delete_scheduler,
            target,
            activity_options(Duration::from_secs(120)),
        )
        .await;
    if cleanup.is_ok() {
        history.push(ctx, "removed the partly created runtime resources");
    }
}
