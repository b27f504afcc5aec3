//! The runtime watcher: mirrors what the runtime says about room instances into the store.
//! Subscribes before listing, so nothing between the list and the first event is missed,
//! and lists again whenever the runtime says events were lost.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use maestro_runtime::{RoomInstance, RoomStore, Runtime, RuntimeEvent};
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::now;

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

/// How often the watcher checks that the room store answers: when it comes back after an
/// outage (maybe empty, after a Redis restart), every room is listed into it again.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(2);
/// A full resync this often anyway, in case a store restart fell between two checks.
const RESYNC_EVERY: Duration = Duration::from_secs(300);

/// Runs until the runtime's event stream ends, then restarts it after a pause. Counts every
/// event it processes in `maestro_watcher_events_total{kind}`.
pub async fn run(runtime: Arc<dyn Runtime>, store: Arc<dyn RoomStore>, metrics: Metrics) {
    let count = |kind: &str| metrics.watcher_events.with_label_values(&[kind]).inc();
    // Each kind's series starts at zero, so its first event shows as a rate.
    for kind in ["upserted", "deleted", "resync"] {
        metrics.watcher_events.with_label_values(&[kind]);
    }
    let mut store_check = tokio::time::interval(STORE_CHECK_EVERY);
    let mut resync_timer = tokio::time::interval(RESYNC_EVERY);
    resync_timer.reset();
    let mut store_was_up = true;
    loop {
        let mut events = runtime.watch();
        count("resync");
        resync(runtime.as_ref(), store.as_ref()).await;
        loop {
            let event = tokio::select! {
                event = events.next() => match event {
                    Some(event) => event,
                    None => break,
                },
                _ = store_check.tick() => {
                    let up = store.health().await.is_ok();
                    let came_back = up && !store_was_up;
                    if !up && store_was_up {
                        warn!("room store unavailable; the watcher will resync when it is back");
                    }
                    store_was_up = up;
                    if !came_back {
                        continue;
                    }
                    info!("room store is back; listing every room into it again");
                    RuntimeEvent::Resync
                }
                _ = resync_timer.tick() => RuntimeEvent::Resync,
            };
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
