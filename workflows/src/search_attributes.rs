//! The custom search attributes every scheduler and operation workflow carries, so an
//! operator filters the Temporal UI or `temporal workflow list --query` by scheduler, game,
//! operation kind and outcome. Their names are pinned here: production namespaces register
//! them once (`docs/operations.md`), `maestro dev` and the gateway register them where the
//! server allows it.
//!
//! A workflow only sets them when its scheduler's state says the namespace has them
//! (`SchedulerWorkflowState::search_attributes`): upserting an attribute a namespace does not
//! know fails the workflow task, over and over.

use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::search_attributes::{SearchAttributeKey, SearchAttributes};

/// The scheduler's name, on its scheduler workflow and on every operation's workflow.
pub const SCHEDULER: SearchAttributeKey<String> = SearchAttributeKey::keyword("MaestroScheduler");
/// The scheduler's game.
pub const GAME: SearchAttributeKey<String> = SearchAttributeKey::keyword("MaestroGame");
/// The operation's kind (its `definitionName`: `add_rooms`, `create_scheduler`, ...); absent
/// on scheduler workflows.
pub const OPERATION: SearchAttributeKey<String> = SearchAttributeKey::keyword("MaestroOperation");
/// How the operation ended ([`OUTCOME_SUCCEEDED`], [`OUTCOME_FAILED`], [`OUTCOME_CANCELED`]);
/// absent while it runs.
pub const OUTCOME: SearchAttributeKey<String> = SearchAttributeKey::keyword("MaestroOutcome");

pub const OUTCOME_SUCCEEDED: &str = "succeeded";
pub const OUTCOME_FAILED: &str = "failed";
pub const OUTCOME_CANCELED: &str = "canceled";

/// Every attribute with its type, for registering them on a namespace.
pub const ALL: [(&str, IndexedValueType); 4] = [
    ("MaestroScheduler", IndexedValueType::Keyword),
    ("MaestroGame", IndexedValueType::Keyword),
    ("MaestroOperation", IndexedValueType::Keyword),
    ("MaestroOutcome", IndexedValueType::Keyword),
];

/// What a scheduler's own workflow starts with.
pub fn of_scheduler(scheduler: &str, game: &str) -> SearchAttributes {
    SearchAttributes::new([
        SCHEDULER.value_set(scheduler.to_string()),
        GAME.value_set(game.to_string()),
    ])
}

/// What an operation's workflow starts with.
pub fn of_operation(scheduler: &str, game: &str, operation: &str) -> SearchAttributes {
    SearchAttributes::new([
        SCHEDULER.value_set(scheduler.to_string()),
        GAME.value_set(game.to_string()),
        OPERATION.value_set(operation.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_list_names_every_key_with_its_type() {
        let keys = [SCHEDULER, GAME, OPERATION, OUTCOME];
        assert_eq!(keys.len(), ALL.len());
        for (key, (name, kind)) in keys.iter().zip(ALL) {
            assert_eq!(key.name(), name);
            assert_eq!(key.indexed_value_type(), kind);
        }
    }

    #[test]
    fn an_operation_carries_its_scheduler_game_and_kind() {
        let attributes = of_operation("sample", "demo", "add_rooms");
        assert_eq!(attributes.get(&SCHEDULER).as_deref(), Some("sample"));
        assert_eq!(attributes.get(&GAME).as_deref(), Some("demo"));
        assert_eq!(attributes.get(&OPERATION).as_deref(), Some("add_rooms"));
        assert_eq!(attributes.get(&OUTCOME), None);
    }
}
