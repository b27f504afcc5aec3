//! `delete_scheduler`: removes every room, then the scheduler's runtime resources. Also
//! started standalone by the gateway for a scheduler whose workflow cannot run.

use std::time::Duration;

use maestro_activities::{RoomActivities, SchedulerRef};
use maestro_core::operation::DeleteSchedulerInput;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::steps::{
    Deletion, History, activity_options, conclude, delete_rooms, list_room_ids, now, why,
};
use crate::{ChildInput, OperationOutcome};

#[workflow]
#[derive(Default)]
pub struct DeleteScheduler;

#[workflow_methods]
impl DeleteScheduler {
    #[run(name = "delete_scheduler")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ChildInput<DeleteSchedulerInput>,
    ) -> WorkflowResult<OperationOutcome> {
        let (operation, scheduler) = (input.operation.id.clone(), input.scheduler.name.clone());
        let outcome = execute(ctx, input).await?;
        conclude(ctx, &operation, &scheduler, outcome).await
    }
}

/// The operation's work; how its workflow ends follows from the outcome (`conclude`).
async fn execute(
    ctx: &mut WorkflowContext<DeleteScheduler>,
    input: ChildInput<DeleteSchedulerInput>,
) -> WorkflowResult<OperationOutcome> {
    let scheduler = &input.scheduler;
    let mut history = History::new();
    let rooms = match list_room_ids(ctx, scheduler).await {
        Ok(rooms) => rooms,
        Err(e) => return Ok(history.failed(e, now(ctx))),
    };
    let ids: Vec<String> = rooms.into_iter().map(|r| r.id).collect();
    match delete_rooms(ctx, scheduler, &ids, Deletion::Work).await {
        Ok(n) => history.push(ctx, format!("removed {n} rooms")),
        Err(e) => return Ok(history.failed(e, now(ctx))),
    }
    let removed = ctx
        .execute_activity(
            RoomActivities::delete_scheduler,
            SchedulerRef {
                scheduler: scheduler.name.clone(),
            },
            activity_options(Duration::from_secs(120)),
        )
        .await;
    if let Err(e) = removed {
        return Ok(history.failed(
            format!("removing runtime resources failed: {}", why(&e)),
            now(ctx),
        ));
    }
    history.push(ctx, "removed the scheduler's runtime resources");
    Ok(history.succeeded())
}
