//! `add_rooms`: creates rooms of the active version in batches; on failure removes the
//! rooms it created, so a failed operation leaves no half-done fleet behind.

use maestro_core::naming::room_id;
use maestro_core::operation::AddRoomsInput;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::steps::{
    Deletion, History, conclude, create_batch, delete_rooms, now, room_batch_size, version_of,
};
use crate::{ChildInput, OperationOutcome};

#[workflow]
#[derive(Default)]
pub struct AddRooms;

#[workflow_methods]
impl AddRooms {
    #[run(name = "add_rooms")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ChildInput<AddRoomsInput>,
    ) -> WorkflowResult<OperationOutcome> {
        let (operation, scheduler) = (input.operation.id.clone(), input.scheduler.name.clone());
        let outcome = execute(ctx, input).await?;
        conclude(ctx, &operation, &scheduler, outcome).await
    }
}

/// The operation's work; how its workflow ends follows from the outcome (`conclude`).
async fn execute(
    ctx: &mut WorkflowContext<AddRooms>,
    input: ChildInput<AddRoomsInput>,
) -> WorkflowResult<OperationOutcome> {
    let amount = input.request.amount;
    let scheduler = &input.scheduler;
    let version = version_of(scheduler);
    // Deterministic ids: a retried batch creates the same rooms, never more.
    let ids: Vec<String> = (0..amount)
        .map(|i| room_id(&scheduler.name, &input.operation.id, i))
        .collect();
    let mut history = History::new();
    let mut created = 0usize;
    for batch in ids.chunks(room_batch_size(ctx)) {
        match create_batch(ctx, scheduler, version, batch).await {
            Ok(done) => {
                created += done;
                history.push(ctx, format!("created {created} of {amount} rooms"));
            }
            Err(error) => {
                // The failed batch may be partly created: remove it too.
                let attempted = &ids[..created + batch.len()];
                return Ok(remove_created_rooms(ctx, &input, attempted, history, error).await);
            }
        }
    }
    Ok(history.succeeded())
}

/// Compensation: removes the rooms this operation created (even when it was cancelled) and
/// fails it with `error`.
async fn remove_created_rooms(
    ctx: &WorkflowContext<AddRooms>,
    input: &ChildInput<AddRoomsInput>,
    attempted: &[String],
    mut history: History,
    error: String,
) -> OperationOutcome {
    match delete_rooms(ctx, &input.scheduler, attempted, Deletion::Cleanup).await {
        Ok(n) => {
            history.push(ctx, format!("removed the {n} rooms this operation created"));
            history.failed(error, now(ctx))
        }
        Err(cleanup) => history.failed(format!("{error}; then {cleanup}"), now(ctx)),
    }
}
