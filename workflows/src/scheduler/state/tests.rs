//! The scheduler's transitions, without a Temporal server: what enters the queue, what is
//! refused and why, in which order operations start, and what continue-as-new carries.

use maestro_core::operation::{
    AddRoomsInput, DeleteSchedulerInput, RejectionCode, SwitchActiveVersionInput,
};
use maestro_core::{OperationKind, OperationStatus, Scheduler, SchedulerState, Timestamp, Version};

use super::SchedulerWorkflowState;
use crate::{MAX_PENDING_OPERATIONS, OperationOutcome, SubmitOperation};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + secs * 1000)
}

/// A scheduler whose create_scheduler ran: in sync, queue empty.
fn created() -> SchedulerWorkflowState {
    let mut state = SchedulerWorkflowState::new(Scheduler::with_command("s", "g", &["run"]))
        .started("create".into(), at(0));
    let (op, _) = state
        .start_next(at(1))
        .expect("create_scheduler is queued first");
    assert_eq!(op.input.kind(), OperationKind::CreateScheduler);
    state.finish(op, done(), at(2));
    assert_eq!(state.scheduler.state, Some(SchedulerState::InSync));
    state
}

fn done() -> OperationOutcome {
    OperationOutcome {
        succeeded: true,
        history: Vec::new(),
        error: None,
        effect: None,
        crash_backoff: None,
    }
}

fn submit(id: &str, amount: u32, key: &str) -> SubmitOperation {
    SubmitOperation {
        request: AddRoomsInput { amount }.into(),
        request_id: key.into(),
        operation_id: id.into(),
        search_attributes: false,
    }
}

#[test]
fn a_new_scheduler_starts_with_its_first_version_and_create_scheduler() {
    let state = SchedulerWorkflowState::new(Scheduler::with_command("s", "g", &["run"]))
        .started("create".into(), at(0));
    assert_eq!(state.scheduler.spec.version, Version::FIRST.to_string());
    assert_eq!(state.versions.len(), 1);
    assert_eq!(state.pending.len(), 1);
    assert_eq!(state.pending[0].seq, 1);
    assert_eq!(
        state.health_check_secs,
        Some(crate::DEFAULT_HEALTH_CHECK_SECS)
    );
}

#[test]
fn operations_start_in_acceptance_order_and_retries_change_nothing() {
    let mut state = created();
    state.accept(submit("a", 1, ""), at(3));
    state.accept(submit("b", 2, ""), at(3));
    state.accept(submit("a", 1, ""), at(4));
    assert_eq!(state.pending.len(), 2, "a known id is a retry");
    let (first, _) = state.start_next(at(5)).unwrap();
    assert_eq!((first.id.as_str(), first.seq), ("a", 2));
    assert_eq!(first.status, OperationStatus::InProgress);
    state.accept(submit("a", 1, ""), at(6));
    assert_eq!(state.pending.len(), 1, "the running one is known too");
    state.finish(first, done(), at(7));
    let (second, _) = state.start_next(at(8)).unwrap();
    assert_eq!(second.id, "b");
}

#[test]
fn a_reused_key_a_full_queue_and_a_deleting_scheduler_are_recorded_refusals() {
    let mut state = created();
    state.accept(submit("a", 1, "key"), at(3));
    state.accept(submit("b", 2, "key"), at(3));
    let refused = state.finished.back().unwrap();
    assert_eq!(
        (refused.id.as_str(), refused.status),
        ("b", OperationStatus::Error)
    );
    assert!(
        refused
            .error
            .as_deref()
            .unwrap()
            .contains("Idempotency-Key")
    );

    let mut full = created();
    for i in 0..MAX_PENDING_OPERATIONS {
        full.accept(submit(&format!("op{i}"), 1, ""), at(3));
    }
    full.accept(submit("one-too-many", 1, ""), at(3));
    assert_eq!(full.pending.len(), MAX_PENDING_OPERATIONS);
    assert!(
        full.finished
            .back()
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("queue is full")
    );

    let mut deleting = created();
    deleting.accept(
        SubmitOperation {
            request: DeleteSchedulerInput {}.into(),
            request_id: String::new(),
            operation_id: "delete".into(),
            search_attributes: false,
        },
        at(3),
    );
    assert_eq!(deleting.scheduler.state, Some(SchedulerState::Terminating));
    deleting.accept(submit("late", 1, ""), at(4));
    assert!(
        deleting
            .finished
            .back()
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("being deleted")
    );
}

#[test]
fn switching_to_an_unknown_version_is_the_same_refusal_the_gateway_answers() {
    let state = created();
    let refusal = state
        .refusal(
            &SwitchActiveVersionInput {
                version: Version { major: 9, minor: 0 },
            }
            .into(),
        )
        .unwrap();
    assert_eq!(refusal.code, RejectionCode::NotFound);
    let same = maestro_core::operation::Rejection::of_switch(
        "s",
        &state.versions,
        Version { major: 9, minor: 0 },
    );
    assert_eq!(Some(refusal), same);
}

#[test]
fn cancel_takes_a_pending_operation_out_and_marks_the_running_one() {
    let mut state = created();
    state.accept(submit("a", 1, ""), at(3));
    state.accept(submit("b", 1, ""), at(3));
    let (running, _) = state.start_next(at(4)).unwrap();
    state.cancel("b".into(), at(5));
    assert!(state.pending.is_empty());
    assert_eq!(
        state.finished.back().unwrap().status,
        OperationStatus::Canceled
    );
    state.cancel("a".into(), at(5));
    assert_eq!(state.cancel_requested.as_deref(), Some("a"));
    let failed = OperationOutcome {
        succeeded: false,
        error: Some("stopped".into()),
        ..done()
    };
    state.finish(running, failed, at(6));
    assert_eq!(
        state.finished.back().unwrap().status,
        OperationStatus::Canceled
    );
    let refusal = state.cancel_refusal("a").unwrap();
    assert_eq!(refusal.code, RejectionCode::Conflict);
}

#[test]
fn continue_as_new_carries_the_state_whole_but_nothing_run_local() {
    let mut state = created();
    state.accept(submit("a", 1, ""), at(3));
    state.accept(submit("b", 1, ""), at(3));
    state.start_next(at(4));
    state.cancel_requested = Some("a".into());
    let next = state.continue_as_new_input();
    assert_eq!(next.generation, state.generation + 1);
    assert_eq!(next.pending, state.pending);
    assert_eq!(next.finished, state.finished);
    assert_eq!(next.next_seq, state.next_seq);
    assert_eq!(
        (next.active.as_ref(), next.cancel_requested.as_ref()),
        (None, None)
    );
    // What travels is what a run starts from: run-local fields are not serialised.
    let json = serde_json::to_value(&next).unwrap();
    assert!(json.get("active").is_none() && json.get("cancel_requested").is_none());
    let back: SchedulerWorkflowState = serde_json::from_value(json).unwrap();
    assert_eq!(back, next);
}

#[test]
fn a_health_check_is_enqueued_when_due_and_not_twice() {
    let mut state = created();
    state.health_check_secs = Some(60);
    // None scheduled yet: one is due now, the next one interval later.
    assert_eq!(
        state.schedule_health_check("h1".into(), at(10)),
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(state.pending.len(), 1);
    assert_eq!(
        state.pending[0].input.kind(),
        OperationKind::HealthController
    );
    state.schedule_health_check("h2".into(), at(80));
    assert_eq!(state.pending.len(), 1, "one is already queued");
    state.health_check_secs = Some(0);
    assert_eq!(state.schedule_health_check("h3".into(), at(200)), None);
}
