//! The Metrics Reporter: on an interval it reads every scheduler (Temporal visibility and
//! memo), its rooms (room store) and its operations (workflow query, skipped while the memo's
//! operations mark says nothing happened since an idle answer), and sets Maestro's
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
use maestro_workflows::{OperationsMark, OperationsView};
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
    async fn schedulers(&self) -> Result<Vec<FleetScheduler>, ApiError>;
    async fn operations(&self, scheduler: &str) -> Result<OperationsView, ApiError>;
}

/// A scheduler as the fleet lists it.
#[derive(Debug, Clone)]
pub struct FleetScheduler {
    pub scheduler: Scheduler,
    /// What the listing says of its operations (`None`: unknown, ask).
    pub operations: Option<OperationsMark>,
}

#[async_trait::async_trait]
impl Fleet for SchedulerClient {
    async fn schedulers(&self) -> Result<Vec<FleetScheduler>, ApiError> {
        Ok(self
            .listed()
            .await?
            .into_iter()
            .map(|l| FleetScheduler {
                scheduler: l.snapshot.scheduler,
                operations: l.operations,
            })
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
    /// The listing's mark when the last query found the scheduler idle with that same last
    /// operation: while the listing shows it again, nothing is left to count.
    quiet: Option<OperationsMark>,
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
        // Which schedulers' last idle answer still holds, read under one lock.
        let (first_refresh, reads) = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let reads: Vec<_> = schedulers
                .into_iter()
                .map(|listed| {
                    let quiet = known
                        .as_ref()
                        .and_then(|k| k.get(&listed.scheduler.name)?.quiet.as_ref());
                    let unchanged = listed.operations.as_ref().is_some_and(|m| quiet == Some(m));
                    (listed, unchanged)
                })
                .collect();
            (known.is_none(), reads)
        };
        let count = reads.len();
        // Owned items and a cloned reporter per read keep the future `Send` for `spawn`.
        let results: Vec<_> = futures::stream::iter(reads)
            .map(|(listed, unchanged)| {
                let this = self.clone();
                async move { this.read_scheduler(listed, unchanged).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut previous = known.take().unwrap_or_default();
        let mut current = HashMap::new();
        let mut published = Vec::with_capacity(results.len());
        let mut queried = 0;
        for (listed, rooms, operations) in results {
            let scheduler = listed.scheduler;
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
            match operations {
                OperationsRead::Unchanged => {}
                OperationsRead::Unreadable => {
                    queried += 1;
                    entry.quiet = None;
                }
                OperationsRead::Read(view) => {
                    queried += 1;
                    entry.quiet = listed.operations.filter(|mark| is_quiet(mark, &view));
                    self.count_operations(&view, &mut entry, first_refresh);
                }
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
        self.gauges.operation_queries.inc_by(queried);
        debug!(
            schedulers = count,
            queried,
            elapsed_ms = started.elapsed().as_millis(),
            "metrics refreshed"
        );
        Ok(())
    }

    /// The scheduler's rooms, and its operations unless `unchanged` says the last idle
    /// answer still holds.
    async fn read_scheduler(
        &self,
        listed: FleetScheduler,
        unchanged: bool,
    ) -> (
        FleetScheduler,
        Option<Vec<maestro_core::GameRoom>>,
        OperationsRead,
    ) {
        let name = listed.scheduler.name.as_str();
        let operations = async {
            if unchanged {
                return OperationsRead::Unchanged;
            }
            match self.fleet.operations(name).await {
                Ok(view) => OperationsRead::Read(Box::new(view)),
                Err(e) => {
                    self.gauges.refresh_errors.inc();
                    warn!(scheduler = %name, error = %e, "operations unreadable for metrics");
                    OperationsRead::Unreadable
                }
            }
        };
        let (rooms, operations) = tokio::join!(self.store.list(name), operations);
        let rooms = rooms
            .inspect_err(|e| {
                self.gauges.refresh_errors.inc();
                warn!(scheduler = %name, error = %e, "rooms unreadable for metrics");
            })
            .ok();
        (listed, rooms, operations)
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

/// What a refresh learned of one scheduler's operations.
enum OperationsRead {
    /// Not asked: the listing's mark is the one of the last idle answer.
    Unchanged,
    /// Asked, and the answer failed: the last figures stay.
    Unreadable,
    Read(Box<OperationsView>),
}

/// The mark describes `view` and it is idle: until the mark changes, asking again would
/// answer the same (an operation starting writes busy, one finishing its id).
fn is_quiet(mark: &OperationsMark, view: &OperationsView) -> bool {
    !mark.busy
        && view.pending.is_empty()
        && view.active.is_none()
        && view.finished.last().map(|o| &o.id) == mark.last_finished.as_ref()
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
mod tests;

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
        async fn schedulers(&self) -> Result<Vec<FleetScheduler>, ApiError> {
            Ok(vec![FleetScheduler {
                scheduler: self.0.clone(),
                operations: None,
            }])
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
