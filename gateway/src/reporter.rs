//! The Metrics Reporter: on an interval it reads every scheduler (Temporal visibility and
//! memo), its rooms (room store) and its operations (workflow query), and sets Maestro's
//! gauges — rooms per status, instance status and version, running/max matches, configured
//! and desired sizes, queue depth — and counts operations as they finish.
//!
//! Scraping only encodes what the last refresh set, so a scrape never waits on Temporal or
//! the store. Operation counters are derived from the operations' durable records: an
//! operation is counted once, the first time the reporter sees it finished (operations that
//! had finished before this process started are not counted).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// What the reporter set for one scheduler last time (to remove what disappears).
#[derive(Default)]
struct Known {
    game: String,
    versions: BTreeSet<String>,
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
            gauges: Arc::new(ReporterMetrics::new(&metrics.registry)?),
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
        for (scheduler, rooms, operations) in results {
            let mut entry = previous.remove(&scheduler.name).unwrap_or_default();
            entry.game = scheduler.game.clone();
            for forwarder in &scheduler.forwarders {
                forwarders::zero_series(&self.metrics, &forwarder.name);
            }
            self.gauges
                .on_error
                .with_label_values(&[scheduler.game.as_str(), scheduler.name.as_str()])
                .set(i64::from(
                    scheduler.state == Some(maestro_core::SchedulerState::OnError),
                ));
            if let Some(rooms) = rooms {
                self.set_rooms(&scheduler, &rooms, &mut entry);
            }
            if let Some(view) = operations {
                self.count_operations(&scheduler, &view, &mut entry, first_refresh);
            }
            current.insert(scheduler.name.clone(), entry);
        }
        // Schedulers gone since the last refresh: their series go too.
        for (name, gone) in previous {
            for vec in self.gauges.scheduler_vecs() {
                let _ = vec.remove_label_values(&[&gone.game, &name]);
            }
            let _ = self
                .gauges
                .ready_target
                .remove_label_values(&[&gone.game, &name]);
            for version in &gone.versions {
                let _ = self
                    .gauges
                    .by_version
                    .remove_label_values(&[&gone.game, &name, version]);
            }
        }
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

    fn set_rooms(
        &self,
        scheduler: &Scheduler,
        rooms: &[maestro_core::GameRoom],
        known: &mut Known,
    ) {
        let g = &self.gauges;
        let labels = [scheduler.game.as_str(), scheduler.name.as_str()];
        let counts = count_rooms(rooms);
        for (status, gauge) in &g.gru {
            gauge
                .with_label_values(&labels)
                .set(counts.by_status.get(status).copied().unwrap_or(0));
        }
        for (status, gauge) in &g.instance {
            gauge
                .with_label_values(&labels)
                .set(counts.by_instance.get(status).copied().unwrap_or(0));
        }
        g.running_matches
            .with_label_values(&labels)
            .set(counts.running_matches);
        g.max_matches
            .with_label_values(&labels)
            .set(scheduler.max_matches());
        g.current_rooms.with_label_values(&labels).set(counts.total);
        let (min, max) = match scheduler.autoscaling.as_ref().filter(|a| a.enabled) {
            Some(a) => (a.min, a.max),
            None => (scheduler.rooms_replicas, scheduler.rooms_replicas),
        };
        g.min_rooms.with_label_values(&labels).set(min);
        g.max_rooms.with_label_values(&labels).set(max);
        let desired =
            autoscaling::desired_rooms(scheduler, autoscaling::Fleet::of_rooms(rooms), None);
        if let Some(e) = &desired.fallback {
            warn!(scheduler = %scheduler.name, error = %e, "autoscaling skipped: roomsReplicas is the desired count");
        }
        g.desired_rooms
            .with_label_values(&labels)
            .set(i64::try_from(desired.decision.desired).unwrap_or(i64::MAX));
        let policy = scheduler.autoscaling.as_ref().map(|a| &a.policy.parameters);
        g.ready_target.with_label_values(&labels).set(
            policy
                .and_then(|p| p.room_occupancy.as_ref())
                .map_or(0.0, |p| p.ready_target),
        );
        g.fixed_buffer.with_label_values(&labels).set(
            policy
                .and_then(|p| p.fixed_buffer.as_ref())
                .map_or(0, |p| p.amount),
        );
        let versions: BTreeSet<String> = counts.by_version.keys().cloned().collect();
        for gone in known.versions.difference(&versions) {
            let _ = g
                .by_version
                .remove_label_values(&[labels[0], labels[1], gone]);
        }
        for (version, n) in &counts.by_version {
            g.by_version
                .with_label_values(&[labels[0], labels[1], version])
                .set(*n);
        }
        known.versions = versions;
    }

    fn count_operations(
        &self,
        scheduler: &Scheduler,
        view: &OperationsView,
        known: &mut Known,
        baseline_only: bool,
    ) {
        self.gauges
            .pending_operations
            .with_label_values(&[scheduler.game.as_str(), scheduler.name.as_str()])
            .set(i64::try_from(view.pending.len()).unwrap_or(i64::MAX));
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

#[cfg(test)]
mod tests {
    use maestro_core::{
        GameRoom, Operation, OperationRequest, OperationStatus, Timestamp, Version,
    };
    use maestro_runtime::MemoryRoomStore;
    use prometheus::Registry;

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

    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .and_then(|f| {
                f.get_metric()
                    .iter()
                    .find(|m| {
                        labels.iter().all(|(k, v)| {
                            m.get_label()
                                .iter()
                                .any(|l| l.name() == *k && l.value() == *v)
                        })
                    })
                    .map(|m| match f.get_field_type() {
                        prometheus::proto::MetricType::COUNTER => m.get_counter().value(),
                        prometheus::proto::MetricType::HISTOGRAM => {
                            m.get_histogram().get_sample_count() as f64
                        }
                        _ => m.get_gauge().value(),
                    })
            })
    }

    /// Operations finished before the first refresh are a baseline, not counted; later ones
    /// are counted once; a scheduler that disappears takes its series with it.
    #[tokio::test]
    async fn counts_operations_once_and_forgets_vanished_schedulers() {
        let fleet = Arc::new(FixedFleet::default());
        let store = Arc::new(MemoryRoomStore::new());
        let metrics = Metrics::standalone().unwrap();
        let registry = metrics.registry.clone();
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
        let forwarder = |name: &str, labels: &[(&str, &str)]| value(&registry, name, labels);
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
            value(&registry, "maestro_worker_gru_pending", &labels),
            Some(1.0)
        );
        assert_eq!(
            value(&registry, "maestro_worker_desired_rooms", &labels),
            Some(2.0)
        );
        let old = [("operation", "create_scheduler"), ("status", "finished")];
        assert_eq!(
            value(&registry, "maestro_worker_operation_executions_total", &old),
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
            value(&registry, "maestro_worker_operation_executions_total", &add),
            Some(1.0),
            "counted once over two refreshes"
        );
        assert_eq!(
            value(
                &registry,
                "maestro_worker_operations_started_total",
                &[("operation", "add_rooms")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &registry,
                "maestro_worker_operation_duration_seconds",
                &[("operation", "add_rooms")]
            ),
            Some(1.0)
        );
        fleet.schedulers.lock().unwrap().clear();
        reporter.refresh().await.unwrap();
        assert_eq!(
            value(&registry, "maestro_worker_gru_pending", &labels),
            None
        );
        assert_eq!(
            value(&registry, "maestro_worker_rooms_by_version", &labels),
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
        let registry = metrics.registry.clone();
        let reporter = Reporter::new(Arc::new(One(scheduler)), store, &metrics).unwrap();
        reporter.refresh().await.unwrap();
        let desired = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "maestro_worker_desired_rooms")
            .map(|f| f.get_metric()[0].get_gauge().value());
        assert_eq!(desired, Some(4.0));
    }
}
