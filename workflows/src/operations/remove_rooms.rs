//! `remove_rooms`: removes the rooms named, or `amount` rooms by Maestro's deletion
//! priority.

use maestro_core::operation::RemoveRoomsInput;
use maestro_core::room::rooms_to_remove;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::steps::{Deletion, History, conclude, delete_rooms, list_room_ids, now};
use crate::{ChildInput, OperationOutcome};

#[workflow]
#[derive(Default)]
pub struct RemoveRooms;

#[workflow_methods]
impl RemoveRooms {
    #[run(name = "remove_rooms")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ChildInput<RemoveRoomsInput>,
    ) -> WorkflowResult<OperationOutcome> {
        let (operation, scheduler) = (input.operation.id.clone(), input.scheduler.name.clone());
        let outcome = execute(ctx, input).await?;
        conclude(ctx, &operation, &scheduler, outcome).await
    }
}

/// The operation's work; how its workflow ends follows from the outcome (`conclude`).
async fn execute(
    ctx: &mut WorkflowContext<RemoveRooms>,
    input: ChildInput<RemoveRoomsInput>,
) -> WorkflowResult<OperationOutcome> {
    let RemoveRoomsInput { amount, rooms_ids } = &input.request;
    let scheduler = &input.scheduler;
    let mut history = History::new();
    let targets = if rooms_ids.is_empty() {
        let rooms = match list_room_ids(ctx, scheduler).await {
            Ok(rooms) => rooms,
            Err(e) => return Ok(history.failed(e, now(ctx))),
        };
        let picked = rooms_to_remove(
            &rooms,
            *amount as usize,
            now(ctx),
            maestro_core::health::Timeouts::default().ping,
        );
        if picked.len() < *amount as usize {
            history.push(
                ctx,
                format!(
                    "asked to remove {amount} rooms, the scheduler has {}",
                    rooms.len()
                ),
            );
        }
        picked
    } else {
        rooms_ids.clone()
    };
    match delete_rooms(ctx, scheduler, &targets, Deletion::Work).await {
        Ok(n) => {
            history.push(ctx, format!("removed {n} rooms"));
            Ok(history.succeeded())
        }
        Err(e) => Ok(history.failed(e, now(ctx))),
    }
}
