//! The `health_controller` operation: one run of the scheduler's health check — remove
//! unhealthy rooms, replace rooms of older major versions in surges, converge the room count
//! to `roomsReplicas` or the autoscaler's target. The plan is `core::health::plan`; this
//! workflow only carries it out through activities and writes the history.

use maestro_core::Version;
use maestro_core::autoscaling::{self, Fleet};
use maestro_core::health::{self, Removal, Timeouts};
use maestro_core::naming::room_id;
use maestro_core::operation::HealthControllerInput;
use maestro_core::validation::{MaxSurge, parse_max_surge};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::steps::{
    Deletion, History, conclude, create_batch, delete_rooms, list_room_ids, now, room_batch_size,
};
use crate::{ChildInput, OperationEffect, OperationOutcome};

#[workflow]
#[derive(Default)]
pub struct HealthController;

#[workflow_methods]
impl HealthController {
    #[run(name = "health_controller")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ChildInput<HealthControllerInput>,
    ) -> WorkflowResult<OperationOutcome> {
        let (operation, scheduler) = (input.operation.id.clone(), input.scheduler.name.clone());
        let outcome = execute(ctx, input).await?;
        conclude(ctx, &operation, &scheduler, outcome).await
    }
}

/// The operation's work; how its workflow ends follows from the outcome (`conclude`).
async fn execute(
    ctx: &mut WorkflowContext<HealthController>,
    input: ChildInput<HealthControllerInput>,
) -> WorkflowResult<OperationOutcome> {
    let HealthControllerInput {
        last_downscale_at,
        rollback_to,
        crash_backoff,
    } = &input.request;
    let scheduler = &input.scheduler;
    let mut history = History::new();
    let rooms = match list_room_ids(ctx, scheduler).await {
        Ok(rooms) => rooms,
        Err(e) => return Ok(history.failed(e, now(ctx))),
    };
    let at = now(ctx);
    let live = Fleet::of_rooms(&rooms);
    let since = last_downscale_at.map(|t| at.since(t));
    let rule = autoscaling::desired_rooms(scheduler, live, since);
    if let Some(e) = &rule.fallback {
        history.push(ctx, format!("autoscaling skipped: {e}"));
    }
    let desired = rule.decision.target(live.current_rooms);
    let version: Version = scheduler.spec.version.parse().unwrap_or(Version::FIRST);
    let max_surge = parse_max_surge(&scheduler.max_surge).unwrap_or(MaxSurge::Absolute(1));
    let mut plan = health::plan(
        &rooms,
        desired,
        max_surge,
        version.major,
        at,
        &Timeouts::default(),
    );
    let serving = rooms
        .iter()
        .filter(|r| r.version.major == version.major && r.status.is_serving())
        .count();
    let backoff =
        crash_backoff
            .unwrap_or_default()
            .after_run(plan.count(Removal::Error), serving, at);
    if backoff.holds(at) && plan.create > 0 {
        history.push(
            ctx,
            format!(
                "crash loop: rooms crashed in {} health runs in a row; {} replacements wait until {}",
                backoff.crashes_in_a_row,
                plan.create,
                backoff.replace_after.unwrap_or(at)
            ),
        );
        plan.create = 0;
    }
    let verdict = |mut outcome: OperationOutcome| {
        outcome.crash_backoff = Some(backoff);
        outcome
    };
    let rollback = scheduler.auto_rollback.unwrap_or_default();
    if let Some(to) = rollback_to
        && rollback.enabled
        && plan.should_roll_back(rollback.min_rooms, rollback.error_share)
    {
        let reason = format!(
            "{} of {} rooms of {version} failed (error, or not ready in time)",
            plan.new_failed, plan.new_seen
        );
        let failed: Vec<String> = plan
            .remove
            .iter()
            .filter(|(_, r)| matches!(r, Removal::Error | Removal::InitializationTimeout))
            .map(|(id, _)| id.clone())
            .collect();
        if let Err(e) = delete_rooms(ctx, scheduler, &failed, Deletion::Work).await {
            return Ok(history.failed(e, now(ctx)));
        }
        history.push(
            ctx,
            format!("rolled back to {to}: {reason}; its rooms replace the new ones next"),
        );
        let effect = OperationEffect::RollBack { to: *to, reason };
        return Ok(verdict(history.succeeded_with(Some(effect))));
    }
    if plan.is_empty() {
        if !backoff.holds(at) {
            history.push(
                ctx,
                format!("healthy: {} rooms, {desired} desired", live.current_rooms),
            );
        }
        return Ok(verdict(history.succeeded()));
    }
    if !plan.remove.is_empty() {
        let mut reasons = plan.remove.iter().map(|(_, r)| *r).collect::<Vec<_>>();
        reasons.sort();
        reasons.dedup();
        let summary: Vec<String> = reasons
            .iter()
            .map(|r| format!("{} {}", plan.count(*r), r.describe()))
            .collect();
        let ids: Vec<String> = plan.remove.iter().map(|(id, _)| id.clone()).collect();
        match delete_rooms(ctx, scheduler, &ids, Deletion::Work).await {
            Ok(n) => history.push(ctx, format!("removed {n} rooms: {}", summary.join(", "))),
            Err(e) => return Ok(history.failed(e, now(ctx))),
        }
    }
    if plan.create > 0 {
        let amount = u32::try_from(plan.create).unwrap_or(u32::MAX);
        let ids: Vec<String> = (0..amount)
            .map(|i| room_id(&scheduler.name, &input.operation.id, i))
            .collect();
        for batch in ids.chunks(room_batch_size(ctx)) {
            if let Err(e) = create_batch(ctx, scheduler, version, batch).await {
                // Rooms created so far are recorded; the next run counts them.
                return Ok(history.failed(e, now(ctx)));
            }
        }
        history.push(
            ctx,
            format!("created {amount} rooms of {version} ({desired} desired)"),
        );
    }
    if plan.old_left > 0 {
        history.push(
            ctx,
            format!("{} rooms of older versions left to replace", plan.old_left),
        );
    }
    let effect = (plan.count(Removal::Surplus) > 0).then_some(OperationEffect::Downscaled { at });
    Ok(verdict(history.succeeded_with(effect)))
}
