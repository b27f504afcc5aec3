//! `create_new_scheduler_version`: a minor change (an identical document too) is recorded;
//! a major change must first start a validation room of the new version that reports ready
//! (3 attempts of 2 min), else the version is recorded as failed and the active one stays.
//! Either recorded version is made active by the `switch_active_version` that follows.
//! Returns an [`OperationEffect`] the scheduler workflow applies to its own state; rooms
//! are never replaced here (the health controller rolls a fleet over to a new major
//! version, after the `switch_active_version` that follows).

use std::time::Duration;

use maestro_activities::{AwaitReadyInput, CreateRoomsInput, Readiness, RoomActivities};
use maestro_core::naming::room_id;
use maestro_core::operation::CreateNewSchedulerVersionInput;
use maestro_core::version::classify_change;
use maestro_core::{ChangeKind, Version, VersionRecord};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use super::steps::{
    Deletion, History, activity_options, conclude, delete_rooms, now, retry_policy, why,
};
use crate::{ChildInput, OperationEffect, OperationOutcome};

/// Maestro's room validation: each attempt waits this long for the room to report ready.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Maestro's room validation attempts.
pub const VALIDATION_ATTEMPTS: u32 = 3;

#[workflow]
#[derive(Default)]
pub struct CreateNewSchedulerVersion;

/// One validation attempt: create a room of the new version, wait for it, remove it.
/// `Ok(())` when it reported ready, else why not.
async fn validate_once<W>(
    ctx: &WorkflowContext<W>,
    input: &ChildInput<CreateNewSchedulerVersionInput>,
    record: &VersionRecord,
    attempt: u32,
) -> Result<String, String> {
    let scheduler = &record.scheduler;
    let validation_id = format!("{}-validation", input.operation.id);
    let room = room_id(&scheduler.name, &validation_id, attempt);
    let created = ctx
        .execute_activity(
            RoomActivities::create_rooms,
            CreateRoomsInput {
                scheduler: scheduler.clone(),
                version: record.version,
                room_ids: vec![room.clone()],
            },
            activity_options(Duration::from_secs(120)),
        )
        .await;
    let verdict = match created {
        Err(e) => Err(format!(
            "the validation room could not be created: {}",
            why(&e)
        )),
        Ok(_) => {
            ctx.set_current_details(format!(
                "attempt {attempt} of {VALIDATION_ATTEMPTS}: waiting for validation room {room} to be ready (up to {}s)",
                VALIDATION_TIMEOUT.as_secs()
            ));
            let options = ActivityOptions::with_start_to_close_timeout(
                VALIDATION_TIMEOUT + Duration::from_secs(30),
            )
            .heartbeat_timeout(Duration::from_secs(30))
            .retry_policy(retry_policy())
            .build();
            let readiness = ctx
                .execute_activity(
                    RoomActivities::await_ready,
                    AwaitReadyInput {
                        scheduler: scheduler.name.clone(),
                        room_id: room.clone(),
                        timeout_millis: u64::try_from(VALIDATION_TIMEOUT.as_millis())
                            .unwrap_or(u64::MAX),
                    },
                    options,
                )
                .await;
            match readiness {
                Ok(Readiness::Ready) => Ok(room.clone()),
                Ok(Readiness::Failed(reason)) => Err(reason),
                Ok(Readiness::TimedOut) => Err(format!(
                    "not ready within {}s",
                    VALIDATION_TIMEOUT.as_secs()
                )),
                Err(e) => Err(format!(
                    "waiting for the validation room failed: {}",
                    why(&e)
                )),
            }
        }
    };
    // The validation room never serves players: it goes whatever the verdict.
    if let Err(e) = delete_rooms(
        ctx,
        scheduler,
        std::slice::from_ref(&room),
        Deletion::Cleanup,
    )
    .await
    {
        return Err(match verdict {
            Ok(_) => format!("the validation room was ready but could not be removed: {e}"),
            Err(reason) => format!("{reason}; removing the validation room failed: {e}"),
        });
    }
    verdict
}

#[workflow_methods]
impl CreateNewSchedulerVersion {
    #[run(name = "create_new_scheduler_version")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ChildInput<CreateNewSchedulerVersionInput>,
    ) -> WorkflowResult<OperationOutcome> {
        let (operation, scheduler) = (input.operation.id.clone(), input.scheduler.name.clone());
        let outcome = execute(ctx, input).await?;
        conclude(ctx, &operation, &scheduler, outcome).await
    }
}

/// The operation's work; how its workflow ends follows from the outcome (`conclude`).
async fn execute(
    ctx: &mut WorkflowContext<CreateNewSchedulerVersion>,
    input: ChildInput<CreateNewSchedulerVersionInput>,
) -> WorkflowResult<OperationOutcome> {
    let proposed = &input.request.scheduler;
    let mut history = History::new();
    let Ok(version) = proposed.spec.version.parse::<Version>() else {
        let error = format!("no version was assigned ({:?})", proposed.spec.version);
        return Ok(history.failed(error, now(ctx)));
    };
    let active = &input.scheduler;
    let mut scheduler = (**proposed).clone();
    scheduler.state = active.state;
    scheduler.created_at = active.created_at;
    let record = VersionRecord {
        version,
        created_at: now(ctx),
        scheduler,
        failed: None,
    };
    match classify_change(active, proposed) {
        // As Maestro: every new version, minor too, is made active by the
        // `switch_active_version` the scheduler enqueues after this operation.
        ChangeKind::Minor => {
            history.push(
                ctx,
                format!("minor change: {version} recorded, switching to it next; rooms kept"),
            );
            let effect = OperationEffect::RecordVersion {
                record,
                activate: false,
            };
            Ok(history.succeeded_with(Some(effect)))
        }
        ChangeKind::Major => {
            history.push(
                ctx,
                format!("major change: validating {version} with a validation room"),
            );
            let mut last_reason = String::new();
            for attempt in 1..=VALIDATION_ATTEMPTS {
                if ctx.cancellation_token().is_cancelled() {
                    // Cancelled: nothing is recorded; the attempt already removed its room.
                    return Ok(history.failed("canceled during validation".into(), now(ctx)));
                }
                match validate_once(ctx, &input, &record, attempt).await {
                    Ok(room) => {
                        history.push(
                            ctx,
                            format!("validation room {room} was ready; {version} recorded, switching to it next"),
                        );
                        let effect = OperationEffect::RecordVersion {
                            record,
                            activate: false,
                        };
                        return Ok(history.succeeded_with(Some(effect)));
                    }
                    Err(reason) => {
                        history.push(
                            ctx,
                            format!(
                                "validation attempt {attempt} of {VALIDATION_ATTEMPTS} failed: {reason}"
                            ),
                        );
                        last_reason = reason;
                    }
                }
            }
            let error = format!("validation room failed: {last_reason}");
            let failed = VersionRecord {
                failed: Some(error.clone()),
                ..record
            };
            let effect = OperationEffect::RecordFailedVersion { record: failed };
            Ok(history.failed_with(error, now(ctx), Some(effect)))
        }
    }
}
