//! The Metrics Reporter: on an interval it reads every scheduler (Temporal visibility and
//! memo), its rooms (room store) and its operations (workflow query), and sets Maestro's
//! gauges — rooms per status, instance status and version, running/max matches, configured
//! and desired sizes, queue depth — and counts operations as they finish.
//!
//! Scraping only encodes what the last refresh set, so a scrape never waits on Temporal or
//! the store. Operation counters are derived from the operations' durable records: an
//! operation is counted once, the first time the reporter sees it finished (operations that
//! had finished before this process started are not counted).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use maestro_core::autoscaling;
use maestro_core::{InstanceStatus, RoomStatus, Scheduler};
use maestro_runtime::RoomStore;
use maestro_workflows::OperationsView;
use tracing::{debug, warn};

use crate::SchedulerClient;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::metrics::fleet::{GRU_STATUSES, RoomFigures, SchedulerFigures};
use crate::metrics::reporter::ReporterMetrics;
use crate::rooms::forwarders;

/// Where the reporter reads schedulers and operations (Temporal; fixed data in benchmarks).
#[async_trait::async_trait]
pub trait Fleet: Send + Sync + 'static {
    async fn schedulers(&self) -> Result<Vec<Scheduler>, ApiError>;
    async fn operations(&self, scheduler: &str) -> Result<OperationsView, ApiError>;
}

#[async_trait::async_trait]
impl Fleet for SchedulerClient {
    async fn schedulers(&self) -> Result<Vec<Scheduler>, ApiError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .map(|s| s.scheduler)
            .collect())
    }

    async fn operations(&self, scheduler: &str) -> Result<OperationsView, ApiError> {
        SchedulerClient::operations(self, scheduler).await
    }
}

/// Schedulers refreshed at once (each costs a store read and a workflow query).
const CONCURRENCY: usize = 8;

/// What the reporter knows of one scheduler between refreshes.
#[derive(Default)]
struct Known {
    /// The figures published last time: a part that cannot be read keeps its last values.
    figures: SchedulerFigures,
    /// Finished operations already counted.
    counted: HashSet<String>,
    /// Operations already counted as started (active or finished when first seen).
    started: HashSet<String>,
}

#[derive(Clone)]
pub struct Reporter {
    fleet: Arc<dyn Fleet>,
    store: Arc<dyn RoomStore>,
    gauges: Arc<ReporterMetrics>,
    /// The gateway's own metrics: the reporter starts each forwarder's series it sees.
    metrics: Metrics,
    known: Arc<Mutex<Option<HashMap<String, Known>>>>,
}

/// One scheduler's room figures.
#[derive(Debug, Default, PartialEq)]
pub struct RoomCounts {
    pub by_status: BTreeMap<RoomStatus, i64>,
    pub by_instance: BTreeMap<InstanceStatus, i64>,
    pub by_version: BTreeMap<String, i64>,
    pub running_matches: i64,
    pub total: i64,
}

pub fn count_rooms(rooms: &[maestro_core::GameRoom]) -> RoomCounts {
    let mut counts = RoomCounts::default();
    for room in rooms {
        *counts.by_status.entry(room.status).or_insert(0) += 1;
        *counts.by_instance.entry(room.instance_status).or_insert(0) += 1;
        *counts
            .by_version
            .entry(room.version.to_string())
            .or_insert(0) += 1;
        counts.running_matches += i64::from(room.running_matches);
        counts.total += 1;
    }
    counts
}

impl Reporter {
    pub fn new(
        fleet: Arc<dyn Fleet>,
        store: Arc<dyn RoomStore>,
        metrics: &Metrics,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            fleet,
            store,
            gauges: Arc::new(ReporterMetrics::new(
                &metrics.registry,
                metrics.fleet.clone(),
            )?),
            metrics: metrics.clone(),
            known: Arc::default(),
        })
    }

    /// Refreshes on `interval` until the task is dropped.
    pub async fn run(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "metrics refresh failed; keeping the last values");
            }
        }
    }

    /// One refresh of every scheduler's figures.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let started = Instant::now();
        let schedulers = self.fleet.schedulers().await.inspect_err(|_| {
            self.gauges.refresh_errors.inc();
        })?;
        let first_refresh = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none();
        let count = schedulers.len();
        // Owned items and a cloned reporter per read keep the future `Send` for `spawn`.
        let results: Vec<_> = futures::stream::iter(schedulers)
            .map(|s| {
                let this = self.clone();
                async move { this.read_scheduler(s).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut previous = known.take().unwrap_or_default();
        let mut current = HashMap::new();
        let mut published = Vec::with_capacity(results.len());
        for (scheduler, rooms, operations) in results {
            let mut entry = previous.remove(&scheduler.name).unwrap_or_default();
            for forwarder in &scheduler.forwarders {
                forwarders::zero_series(&self.metrics, &forwarder.name);
            }
            let figures = &mut entry.figures;
            figures.game.clone_from(&scheduler.game);
            figures.scheduler.clone_from(&scheduler.name);
            figures.on_error = scheduler.state == Some(maestro_core::SchedulerState::OnError);
            if let Some(rooms) = rooms {
                figures.rooms = Some(room_figures(&scheduler, &rooms));
            }
            if let Some(view) = operations {
                self.count_operations(&view, &mut entry, first_refresh);
            }
            published.push(entry.figures.clone());
            current.insert(scheduler.name.clone(), entry);
        }
        // Schedulers gone since the last refresh are not in the snapshot: their series go.
        self.gauges.fleet.publish(published);
        *known = Some(current);
        self.gauges
            .refresh_seconds
            .set(started.elapsed().as_secs_f64());
        debug!(
            schedulers = count,
            elapsed_ms = started.elapsed().as_millis(),
            "metrics refreshed"
        );
        Ok(())
    }

    async fn read_scheduler(
        &self,
        scheduler: Scheduler,
    ) -> (
        Scheduler,
        Option<Vec<maestro_core::GameRoom>>,
        Option<OperationsView>,
    ) {
        let (rooms, operations) = tokio::join!(
            self.store.list(&scheduler.name),
            self.fleet.operations(&scheduler.name)
        );
        let rooms = rooms
            .inspect_err(|e| {
                self.gauges.refresh_errors.inc();
                warn!(scheduler = %scheduler.name, error = %e, "rooms unreadable for metrics");
            })
            .ok();
        let operations = operations
            .inspect_err(|e| {
                self.gauges.refresh_errors.inc();
                warn!(scheduler = %scheduler.name, error = %e, "operations unreadable for metrics");
            })
            .ok();
        (scheduler, rooms, operations)
    }

    fn count_operations(&self, view: &OperationsView, known: &mut Known, baseline_only: bool) {
        known.figures.pending_operations =
            Some(i64::try_from(view.pending.len()).unwrap_or(i64::MAX));
        // Started: the running one and every finished one (an operation can start and finish
        // between two refreshes), each once.
        let mut running = HashSet::with_capacity(view.finished.len() + 1);
        for op in view.active.iter().chain(&view.finished) {
            running.insert(op.id.clone());
            if !baseline_only && !known.started.contains(&op.id) {
                self.gauges
                    .started
                    .with_label_values(&[op.definition_name.as_str()])
                    .inc();
            }
        }
        known.started = running;
        let mut window = HashSet::with_capacity(view.finished.len());
        for op in &view.finished {
            window.insert(op.id.clone());
            if baseline_only || known.counted.contains(&op.id) {
                continue;
            }
            self.gauges
                .executions
                .with_label_values(&[op.definition_name.as_str(), op.status.as_str()])
                .inc();
            if let (Some(started), Some(finished)) = (op.started_at, op.finished_at) {
                self.gauges
                    .durations
                    .with_label_values(&[op.definition_name.as_str()])
                    .observe(finished.since(started).as_secs_f64());
            }
        }
        // Only ids still in the workflow's finished window can come back.
        known.counted = window;
    }
}

/// One scheduler's room gauges from its rooms.
fn room_figures(scheduler: &Scheduler, rooms: &[maestro_core::GameRoom]) -> RoomFigures {
    let counts = count_rooms(rooms);
    let of = |n: Option<&i64>| n.copied().unwrap_or(0);
    let (min_rooms, max_rooms) = match scheduler.autoscaling.as_ref().filter(|a| a.enabled) {
        Some(a) => (a.min, a.max),
        None => (scheduler.rooms_replicas, scheduler.rooms_replicas),
    };
    let desired = autoscaling::desired_rooms(scheduler, autoscaling::Fleet::of_rooms(rooms), None);
    if let Some(e) = &desired.fallback {
        warn!(scheduler = %scheduler.name, error = %e, "autoscaling skipped: roomsReplicas is the desired count");
    }
    let policy = scheduler.autoscaling.as_ref().map(|a| &a.policy.parameters);
    RoomFigures {
        gru: GRU_STATUSES.map(|s| of(counts.by_status.get(&s))),
        instance: InstanceStatus::ALL.map(|s| of(counts.by_instance.get(&s))),
        running_matches: counts.running_matches,
        max_matches: scheduler.max_matches(),
        current_rooms: counts.total,
        min_rooms,
        max_rooms,
        desired_rooms: i64::try_from(desired.decision.desired).unwrap_or(i64::MAX),
        ready_target: policy
            .and_then(|p| p.room_occupancy.as_ref())
            .map_or(0.0, |p| p.ready_target),
        fixed_buffer: policy
            .and_then(|p| p.fixed_buffer.as_ref())
            .map_or(0, |p| p.amount),
        by_version: counts.by_version.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use maestro_core::{
        GameRoom, Operation, OperationRequest, OperationStatus, Timestamp, Version,
    };
    use maestro_runtime::MemoryRoomStore;

    use super::*;

    #[derive(Default)]
    struct FixedFleet {
        schedulers: Mutex<Vec<Scheduler>>,
        finished: Mutex<Vec<Operation>>,
    }

    #[async_trait::async_trait]
    impl Fleet for FixedFleet {
        async fn schedulers(&self) -> Result<Vec<Scheduler>, ApiError> {
            Ok(self.schedulers.lock().unwrap().clone())
        }
        async fn operations(&self, _: &str) -> Result<OperationsView, ApiError> {
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
}

#[cfg(test)]
mod autoscaled {
    use maestro_core::scheduler::{
        Autoscaling, AutoscalingPolicy, PolicyParameters, RoomOccupancyParams,
    };
    use maestro_core::{GameRoom, InstanceStatus, PingStatus, Timestamp, Version};
    use maestro_runtime::{MemoryRoomStore, PingUpdate};

    use super::*;

    struct One(Scheduler);

    #[async_trait::async_trait]
    impl Fleet for One {
        async fn schedulers(&self) -> Result<Vec<Scheduler>, ApiError> {
            Ok(vec![self.0.clone()])
        }
        async fn operations(&self, _: &str) -> Result<OperationsView, ApiError> {
            Ok(OperationsView::default())
        }
    }

    /// With autoscaling on, `desired_rooms` is the autoscaler's answer: 2 occupied rooms
    /// and a 0.5 ready target → 4 rooms.
    #[tokio::test]
    async fn desired_rooms_comes_from_the_autoscaler() {
        let mut scheduler = Scheduler::with_command("auto", "g", &["true"]);
        scheduler.autoscaling = Some(Autoscaling {
            enabled: true,
            min: 1,
            max: 10,
            cooldown: 0,
            policy: AutoscalingPolicy {
                kind: "roomOccupancy".into(),
                parameters: PolicyParameters {
                    room_occupancy: Some(RoomOccupancyParams {
                        ready_target: 0.5,
                        down_threshold: 0.99,
                    }),
                    fixed_buffer: None,
                },
            },
        });
        let store = Arc::new(MemoryRoomStore::new());
        let t = Timestamp::from_unix_millis(1);
        for id in ["a", "b", "c"] {
            store
                .insert_if_absent(GameRoom::new(id, "auto", Version::FIRST, 1, t))
                .await
                .unwrap();
            store
                .apply_instance("auto", id, Version::FIRST, InstanceStatus::Ready, None, t)
                .await
                .unwrap();
            let status = if id == "c" {
                PingStatus::Ready
            } else {
                PingStatus::Occupied
            };
            let ping = PingUpdate {
                status,
                running_matches: u32::from(id != "c"),
                metadata: None,
            };
            store.apply_ping("auto", id, ping, t).await.unwrap();
        }
        let metrics = Metrics::standalone().unwrap();
        let reporter = Reporter::new(Arc::new(One(scheduler)), store, &metrics).unwrap();
        reporter.refresh().await.unwrap();
        let desired = metrics.fleet.snapshot()[0]
            .rooms
            .as_ref()
            .map(|r| r.desired_rooms);
        assert_eq!(desired, Some(4));
    }
}
