//! The reporter against a fixed fleet and an in-memory store.

use maestro_core::{GameRoom, Operation, OperationRequest, OperationStatus, Timestamp, Version};
use maestro_runtime::MemoryRoomStore;

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

#[derive(Default)]
struct FixedFleet {
    schedulers: Mutex<Vec<Scheduler>>,
    finished: Mutex<Vec<Operation>>,
    /// The mark every listed scheduler carries.
    mark: Mutex<Option<OperationsMark>>,
    queries: AtomicUsize,
}

#[async_trait::async_trait]
impl Fleet for FixedFleet {
    async fn schedulers(&self) -> Result<Vec<FleetScheduler>, ApiError> {
        let mark = self.mark.lock().unwrap().clone();
        Ok(self
            .schedulers
            .lock()
            .unwrap()
            .iter()
            .map(|s| FleetScheduler {
                scheduler: s.clone(),
                operations: mark.clone(),
            })
            .collect())
    }
    async fn operations(&self, _: &str) -> Result<OperationsView, ApiError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        Ok(OperationsView {
            finished: self.finished.lock().unwrap().clone(),
            ..Default::default()
        })
    }
}

fn finished(id: &str, kind: OperationRequest, status: OperationStatus) -> Operation {
    Operation {
        id: id.into(),
        seq: 1,
        status,
        definition_name: kind.kind().definition_name().into(),
        scheduler_name: "s".into(),
        created_at: Timestamp::from_unix_millis(0),
        started_at: Some(Timestamp::from_unix_millis(1_000)),
        finished_at: Some(Timestamp::from_unix_millis(3_500)),
        input: kind,
        execution_history: Vec::new(),
        error: None,
        request_id: None,
    }
}

/// The sample of `name` carrying `labels` in the served text (the fleet gauges are not
/// in the registry); a histogram answers its count.
fn value(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut text = prometheus::TextEncoder::new()
        .encode_to_string(&metrics.registry.gather())
        .unwrap();
    metrics.fleet.encode(&mut text);
    let histogram = format!("{name}_count");
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (family, rest) = series.split_once('{').unwrap_or((series, ""));
        let wanted = (family == name || family == histogram)
            && labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        wanted.then(|| value.parse().ok()).flatten()
    })
}

/// Operations finished before the first refresh are a baseline, not counted; later ones
/// are counted once; a scheduler that disappears takes its series with it.
#[tokio::test]
async fn counts_operations_once_and_forgets_vanished_schedulers() {
    let fleet = Arc::new(FixedFleet::default());
    let store = Arc::new(MemoryRoomStore::new());
    let metrics = Metrics::standalone().unwrap();
    let reporter = Reporter::new(fleet.clone(), store.clone(), &metrics).unwrap();
    let mut scheduler = Scheduler::with_command("s", "g", &["true"]);
    scheduler.rooms_replicas = 2;
    scheduler
        .forwarders
        .push(maestro_core::scheduler::Forwarder {
            name: "mm".into(),
            enable: true,
            kind: "gRPC".into(),
            address: "127.0.0.1:9".into(),
            options: None,
        });
    fleet.schedulers.lock().unwrap().push(scheduler);
    fleet.finished.lock().unwrap().push(finished(
        "old",
        OperationRequest::CreateScheduler(Default::default()),
        OperationStatus::Finished,
    ));
    store
        .insert_if_absent(GameRoom::new(
            "s-1",
            "s",
            Version::FIRST,
            1,
            Timestamp::from_unix_millis(0),
        ))
        .await
        .unwrap();
    reporter.refresh().await.unwrap();
    // A forwarder's series start at zero before its first call.
    let forwarder = |name: &str, labels: &[(&str, &str)]| value(&metrics, name, labels);
    assert_eq!(
        forwarder(
            "maestro_forwarder_calls_total",
            &[
                ("forwarder", "mm"),
                ("event", "player_event"),
                ("outcome", "failure")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        forwarder(
            "maestro_forwarder_dropped_total",
            &[("forwarder", "mm"), ("event", "room_resync")]
        ),
        Some(0.0)
    );
    let labels = [("game", "g"), ("scheduler", "s")];
    assert_eq!(
        value(&metrics, "maestro_worker_gru_pending", &labels),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "maestro_worker_desired_rooms", &labels),
        Some(2.0)
    );
    let old = [("operation", "create_scheduler"), ("status", "finished")];
    assert_eq!(
        value(&metrics, "maestro_worker_operation_executions_total", &old),
        Some(0.0),
        "the baseline is not counted (its series starts at zero)"
    );
    fleet.finished.lock().unwrap().push(finished(
        "new",
        OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 }),
        OperationStatus::Error,
    ));
    reporter.refresh().await.unwrap();
    reporter.refresh().await.unwrap();
    let add = [("operation", "add_rooms"), ("status", "error")];
    assert_eq!(
        value(&metrics, "maestro_worker_operation_executions_total", &add),
        Some(1.0),
        "counted once over two refreshes"
    );
    assert_eq!(
        value(
            &metrics,
            "maestro_worker_operations_started_total",
            &[("operation", "add_rooms")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "maestro_worker_operation_duration_seconds",
            &[("operation", "add_rooms")]
        ),
        Some(1.0)
    );
    fleet.schedulers.lock().unwrap().clear();
    reporter.refresh().await.unwrap();
    assert_eq!(value(&metrics, "maestro_worker_gru_pending", &labels), None);
    assert_eq!(
        value(&metrics, "maestro_worker_rooms_by_version", &labels),
        None
    );
}

fn mark(busy: bool, last_finished: &str) -> Option<OperationsMark> {
    Some(OperationsMark {
        busy,
        last_finished: Some(last_finished.into()),
    })
}

/// An idle scheduler whose memo mark is the one its last idle answer came with is not asked
/// again; any change of the mark (an operation finished, one running) or a mark that does not
/// describe the answer makes the next refresh ask, and nothing finished goes uncounted.
#[tokio::test]
async fn idle_schedulers_with_an_unchanged_mark_are_not_queried() {
    let fleet = Arc::new(FixedFleet::default());
    let metrics = Metrics::standalone().unwrap();
    let reporter =
        Reporter::new(fleet.clone(), Arc::new(MemoryRoomStore::new()), &metrics).unwrap();
    fleet
        .schedulers
        .lock()
        .unwrap()
        .push(Scheduler::with_command("s", "g", &["true"]));
    let add = || OperationRequest::AddRooms(maestro_core::operation::AddRoomsInput { amount: 1 });
    let push = |id: &str| {
        fleet
            .finished
            .lock()
            .unwrap()
            .push(finished(id, add(), OperationStatus::Finished))
    };
    let set_mark = |m: Option<OperationsMark>| *fleet.mark.lock().unwrap() = m;
    let queries_after_refresh = || async {
        reporter.refresh().await.unwrap();
        fleet.queries.load(Ordering::SeqCst)
    };
    let executions = || {
        value(
            &metrics,
            "maestro_worker_operation_executions_total",
            &[("operation", "add_rooms"), ("status", "finished")],
        )
    };

    push("a");
    set_mark(mark(false, "a"));
    assert_eq!(queries_after_refresh().await, 1, "the first refresh asks");
    assert_eq!(queries_after_refresh().await, 1, "unchanged: not asked");
    assert_eq!(queries_after_refresh().await, 1);
    assert_eq!(
        value(&metrics, "maestro_reporter_operation_queries_total", &[]),
        Some(1.0)
    );

    push("b");
    set_mark(mark(false, "b"));
    assert_eq!(queries_after_refresh().await, 2, "an operation finished");
    assert_eq!(executions(), Some(1.0), "and it is counted");
    assert_eq!(queries_after_refresh().await, 2);

    set_mark(mark(true, "b"));
    assert_eq!(queries_after_refresh().await, 3, "busy: asked");
    assert_eq!(queries_after_refresh().await, 4, "busy: asked every time");
    push("c");
    set_mark(mark(false, "c"));
    assert_eq!(queries_after_refresh().await, 5);
    assert_eq!(executions(), Some(2.0));
    assert_eq!(queries_after_refresh().await, 5);

    // A mark that does not describe the answer is never trusted.
    set_mark(mark(false, "elsewhere"));
    assert_eq!(queries_after_refresh().await, 6);
    assert_eq!(queries_after_refresh().await, 7);
    // Nor is a missing one (a workflow recorded before the mark existed).
    set_mark(None);
    assert_eq!(queries_after_refresh().await, 8);
    assert_eq!(queries_after_refresh().await, 9);
    assert_eq!(executions(), Some(2.0), "nothing counted twice");
}
