//! The runtime watcher: mirrors what the runtime says about room instances into the store.
//! Subscribes before listing, so nothing between the list and the first event is missed,
//! and lists again whenever the runtime says events were lost.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use maestro_core::Timestamp;
use maestro_runtime::{RoomInstance, RoomStore, Runtime, RuntimeEvent};
use tracing::{info, warn};

use crate::metrics::Metrics;

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

async fn apply(store: &dyn RoomStore, instance: RoomInstance) {
    if let Err(e) = store.record_instance(&instance, now()).await {
        warn!(scheduler = %instance.scheduler, room = %instance.room_id, error = %e, "could not record instance status");
    }
}

async fn resync(runtime: &dyn Runtime, store: &dyn RoomStore) {
    match runtime.list_all_rooms().await {
        Ok(instances) => {
            info!(rooms = instances.len(), "watcher resynced from the runtime");
            for instance in instances {
                apply(store, instance).await;
            }
        }
        Err(e) => warn!(error = %e, "watcher could not list the runtime"),
    }
}

/// Runs until the runtime's event stream ends, then restarts it after a pause. Counts every
/// event it processes in `maestro_watcher_events_total{kind}`.
pub async fn run(runtime: Arc<dyn Runtime>, store: Arc<dyn RoomStore>, metrics: Metrics) {
    let count = |kind: &str| metrics.watcher_events.with_label_values(&[kind]).inc();
    loop {
        let mut events = runtime.watch();
        count("resync");
        resync(runtime.as_ref(), store.as_ref()).await;
        while let Some(event) = events.next().await {
            count(match &event {
                RuntimeEvent::Upserted(_) => "upserted",
                RuntimeEvent::Deleted { .. } => "deleted",
                RuntimeEvent::Resync => "resync",
            });
            match event {
                RuntimeEvent::Upserted(instance) => apply(store.as_ref(), instance).await,
                RuntimeEvent::Deleted { scheduler, room_id } => {
                    if let Err(e) = store.remove(&scheduler, &room_id).await {
                        warn!(scheduler = %scheduler, room = %room_id, error = %e, "could not remove room");
                    }
                }
                RuntimeEvent::Resync => resync(runtime.as_ref(), store.as_ref()).await,
            }
        }
        warn!("runtime event stream ended; watching again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
