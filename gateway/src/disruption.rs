//! The disruption guard (spec §8): every interval, tells the runtime how many of each
//! scheduler's rooms host players, so node drains and the cluster autoscaler leave running
//! matches alone (a PodDisruptionBudget on Kubernetes; nothing for local processes).

use std::sync::Arc;
use std::time::Duration;

use maestro_runtime::{RoomStore, Runtime};
use tracing::{debug, warn};

use crate::reporter::Fleet;

pub struct DisruptionGuard {
    fleet: Arc<dyn Fleet>,
    store: Arc<dyn RoomStore>,
    runtime: Arc<dyn Runtime>,
}

impl DisruptionGuard {
    pub fn new(
        fleet: Arc<dyn Fleet>,
        store: Arc<dyn RoomStore>,
        runtime: Arc<dyn Runtime>,
    ) -> Self {
        Self {
            fleet,
            store,
            runtime,
        }
    }

    /// Refreshes every scheduler's guard on `interval` until the task is dropped.
    pub async fn run(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.refresh().await;
        }
    }

    /// One pass over every scheduler; returns how many were guarded. A scheduler that
    /// fails is logged and retried at the next pass; the others go on.
    pub async fn refresh(&self) -> usize {
        let schedulers = match self.fleet.schedulers().await {
            Ok(schedulers) => schedulers,
            Err(e) => {
                warn!(error = %e, "disruption guard cannot list schedulers");
                return 0;
            }
        };
        let mut guarded = 0;
        for scheduler in schedulers.into_iter().map(|listed| listed.scheduler) {
            let counts = match self.store.count_by_status(&scheduler.name).await {
                Ok(counts) => counts,
                Err(e) => {
                    warn!(scheduler = %scheduler.name, error = %e, "disruption guard cannot count rooms");
                    continue;
                }
            };
            let busy: u64 = counts
                .iter()
                .filter(|(status, _)| status.is_busy())
                .map(|(_, n)| n)
                .sum();
            let busy = u32::try_from(busy).unwrap_or(u32::MAX);
            match self.runtime.guard_disruptions(&scheduler.name, busy).await {
                Ok(()) => {
                    debug!(scheduler = %scheduler.name, busy, "disruption guard refreshed");
                    guarded += 1;
                }
                Err(e) => {
                    warn!(scheduler = %scheduler.name, error = %e, "disruption guard not refreshed")
                }
            }
        }
        guarded
    }
}
