//! The Metrics Reporter's metrics (Maestro's `maestro_worker_*` names): per-scheduler fleet
//! gauges, operation counters and the reporter's own refresh figures. The reporter
//! (`crate::reporter`) decides the values; this module only defines them.

use maestro_core::{InstanceStatus, OperationKind, OperationStatus, RoomStatus};
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

use super::register;

/// Room statuses with a `maestro_worker_gru_*` gauge (Maestro's names).
pub(crate) const GRU_STATUSES: [RoomStatus; 8] = [
    RoomStatus::Ready,
    RoomStatus::Pending,
    RoomStatus::Unready,
    RoomStatus::Terminating,
    RoomStatus::Error,
    RoomStatus::Occupied,
    RoomStatus::Active,
    RoomStatus::Allocated,
];

pub(crate) struct ReporterMetrics {
    pub(crate) gru: Vec<(RoomStatus, IntGaugeVec)>,
    pub(crate) instance: Vec<(InstanceStatus, IntGaugeVec)>,
    pub(crate) running_matches: IntGaugeVec,
    pub(crate) max_matches: IntGaugeVec,
    pub(crate) ready_target: GaugeVec,
    pub(crate) fixed_buffer: IntGaugeVec,
    pub(crate) desired_rooms: IntGaugeVec,
    pub(crate) current_rooms: IntGaugeVec,
    pub(crate) min_rooms: IntGaugeVec,
    pub(crate) max_rooms: IntGaugeVec,
    pub(crate) by_version: IntGaugeVec,
    pub(crate) pending_operations: IntGaugeVec,
    pub(crate) on_error: IntGaugeVec,
    pub(crate) started: IntCounterVec,
    pub(crate) executions: IntCounterVec,
    pub(crate) durations: HistogramVec,
    pub(crate) refresh_seconds: Gauge,
    pub(crate) refresh_errors: IntCounter,
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

const SCHEDULER: &[&str] = &["game", "scheduler"];

impl ReporterMetrics {
    pub(crate) fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let gru = GRU_STATUSES
            .iter()
            .map(|&status| {
                let name = format!("maestro_worker_gru_{}", status.as_str());
                let help = format!("Rooms in status {}", status.as_str());
                gauge_vec(r, &name, &help, SCHEDULER).map(|g| (status, g))
            })
            .collect::<Result<_, _>>()?;
        let instance = InstanceStatus::ALL
            .iter()
            .map(|&status| {
                let name = format!("maestro_worker_instance_{}", status.as_str());
                let help = format!("Room instances the runtime reports {}", status.as_str());
                gauge_vec(r, &name, &help, SCHEDULER).map(|g| (status, g))
            })
            .collect::<Result<_, _>>()?;
        let ready_target = register(
            r,
            GaugeVec::new(
                Opts::new(
                    "maestro_worker_ready_target",
                    "roomOccupancy autoscaling ready target (0 when not that policy)",
                ),
                SCHEDULER,
            )?,
        )?;
        let started = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "maestro_worker_operations_started_total",
                    "Operations that started running, by operation name",
                ),
                &["operation"],
            )?,
        )?;
        let executions = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "maestro_worker_operation_executions_total",
                    "Operations finished, by operation name and final status",
                ),
                &["operation", "status"],
            )?,
        )?;
        let durations = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "maestro_worker_operation_duration_seconds",
                    "Time from an operation's start to its end, by operation name",
                )
                .buckets(vec![
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                ]),
                &["operation"],
            )?,
        )?;
        let refresh_seconds = register(
            r,
            Gauge::new(
                "maestro_reporter_refresh_duration_seconds",
                "How long the last metrics refresh took",
            )?,
        )?;
        let refresh_errors = register(
            r,
            IntCounter::new(
                "maestro_reporter_errors_total",
                "Reads that failed during metrics refreshes",
            )?,
        )?;
        // Every operation's series start at zero, so the first one to finish shows in
        // rates and quantiles (a series born at 1 never does).
        for kind in OperationKind::ALL {
            let name = kind.definition_name();
            started.with_label_values(&[name]);
            durations.with_label_values(&[name]);
            for status in OperationStatus::ALL.iter().filter(|s| s.is_final()) {
                executions.with_label_values(&[name, status.as_str()]);
            }
        }
        Ok(Self {
            started,
            executions,
            durations,
            refresh_seconds,
            refresh_errors,
            gru,
            instance,
            running_matches: gauge_vec(
                r,
                "maestro_worker_running_matches",
                "Matches running across the scheduler's rooms",
                SCHEDULER,
            )?,
            max_matches: gauge_vec(
                r,
                "maestro_worker_max_matches",
                "Matches one room can host",
                SCHEDULER,
            )?,
            ready_target,
            fixed_buffer: gauge_vec(
                r,
                "maestro_worker_fixed_buffer",
                "fixedBuffer autoscaling amount (0 when not that policy)",
                SCHEDULER,
            )?,
            desired_rooms: gauge_vec(
                r,
                "maestro_worker_desired_rooms",
                "Rooms the scheduler should have: roomsReplicas, or the autoscaler's answer",
                SCHEDULER,
            )?,
            current_rooms: gauge_vec(
                r,
                "maestro_worker_current_rooms",
                "Rooms the scheduler has, in any status",
                SCHEDULER,
            )?,
            min_rooms: gauge_vec(
                r,
                "maestro_worker_min_rooms",
                "Configured autoscaling minimum (roomsReplicas when autoscaling is off)",
                SCHEDULER,
            )?,
            max_rooms: gauge_vec(
                r,
                "maestro_worker_max_rooms",
                "Configured autoscaling maximum, -1 for none (roomsReplicas when autoscaling is off)",
                SCHEDULER,
            )?,
            by_version: gauge_vec(
                r,
                "maestro_worker_rooms_by_version",
                "Rooms per scheduler version",
                &["game", "scheduler", "version"],
            )?,
            pending_operations: gauge_vec(
                r,
                "maestro_worker_operations_pending",
                "Operations waiting in the scheduler's queue",
                SCHEDULER,
            )?,
            on_error: gauge_vec(
                r,
                "maestro_scheduler_on_error",
                "1 while the scheduler is on error: its workflow cannot make progress, its rooms crash-loop, or its creation failed",
                SCHEDULER,
            )?,
        })
    }

    pub(crate) fn scheduler_vecs(&self) -> Vec<&IntGaugeVec> {
        let mut vecs: Vec<&IntGaugeVec> = self.gru.iter().map(|(_, g)| g).collect();
        vecs.extend(self.instance.iter().map(|(_, g)| g));
        vecs.extend([
            &self.running_matches,
            &self.max_matches,
            &self.fixed_buffer,
            &self.desired_rooms,
            &self.current_rooms,
            &self.min_rooms,
            &self.max_rooms,
            &self.pending_operations,
            &self.on_error,
        ]);
        vecs
    }
}
