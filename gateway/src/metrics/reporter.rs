//! The Metrics Reporter's metrics (Maestro's `maestro_worker_*` names): operation counters,
//! the reporter's own refresh figures and the per-scheduler fleet gauges (`super::fleet`).
//! The reporter (`crate::reporter`) decides the values; this module only defines them.

use std::sync::Arc;

use maestro_core::{OperationKind, OperationStatus};
use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::fleet::FleetGauges;
use super::register;

pub(crate) struct ReporterMetrics {
    /// Shared with `Metrics`, which writes it on a scrape.
    pub(crate) fleet: Arc<FleetGauges>,
    pub(crate) started: IntCounterVec,
    pub(crate) executions: IntCounterVec,
    pub(crate) durations: HistogramVec,
    pub(crate) refresh_seconds: Gauge,
    pub(crate) refresh_errors: IntCounter,
    pub(crate) operation_queries: IntCounter,
}

impl ReporterMetrics {
    pub(crate) fn new(r: &Registry, fleet: Arc<FleetGauges>) -> Result<Self, prometheus::Error> {
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
        let operation_queries = register(
            r,
            IntCounter::new(
                "maestro_reporter_operation_queries_total",
                "Schedulers whose operations a refresh asked their workflow for (idle schedulers whose memo did not change are not asked)",
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
            fleet,
            started,
            executions,
            durations,
            refresh_seconds,
            refresh_errors,
            operation_queries,
        })
    }
}
