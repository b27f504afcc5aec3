//! A [`Runtime`] wrapper that counts and times every call the activities make, by call and
//! outcome (`ok`, `invalid`, `unavailable`), so runtime trouble shows in metrics before it
//! shows as failed operations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use maestro_core::{Scheduler, Version};
use maestro_runtime::{RoomInstance, Runtime, RuntimeError, RuntimeEvent};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub struct MeteredRuntime {
    inner: Arc<dyn Runtime>,
    calls: IntCounterVec,
    latency: HistogramVec,
}

impl MeteredRuntime {
    pub fn new(inner: Arc<dyn Runtime>, registry: &Registry) -> Result<Self, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "maestro_runtime_calls_total",
                "Runtime calls made by activities, by call and outcome",
            ),
            &["call", "outcome"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "maestro_runtime_call_duration_seconds",
                "Time a runtime call took, by call",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
            ]),
            &["call"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self {
            inner,
            calls,
            latency,
        })
    }

    fn observe<T>(&self, call: &str, started: Instant, result: &Result<T, RuntimeError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(RuntimeError::Invalid(_)) => "invalid",
            Err(RuntimeError::Refused(_)) => "refused",
            Err(RuntimeError::Unavailable(_)) => "unavailable",
        };
        self.calls.with_label_values(&[call, outcome]).inc();
        self.latency
            .with_label_values(&[call])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl Runtime for MeteredRuntime {
    async fn create_scheduler(&self, scheduler: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = self.inner.create_scheduler(scheduler).await;
        self.observe("create_scheduler", started, &result);
        result
    }

    async fn delete_scheduler(&self, scheduler: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = self.inner.delete_scheduler(scheduler).await;
        self.observe("delete_scheduler", started, &result);
        result
    }

    async fn refresh_room_allocations(&self, scheduler: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = self.inner.refresh_room_allocations(scheduler).await;
        self.observe("refresh_room_allocations", started, &result);
        result
    }

    async fn guard_disruptions(&self, scheduler: &str, occupied: u32) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = self.inner.guard_disruptions(scheduler, occupied).await;
        self.observe("guard_disruptions", started, &result);
        result
    }

    async fn create_room(
        &self,
        scheduler: &Scheduler,
        version: Version,
        room_id: &str,
    ) -> Result<RoomInstance, RuntimeError> {
        let started = Instant::now();
        let result = self.inner.create_room(scheduler, version, room_id).await;
        self.observe("create_room", started, &result);
        result
    }

    async fn delete_room(
        &self,
        scheduler: &str,
        room_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = self.inner.delete_room(scheduler, room_id, grace).await;
        self.observe("delete_room", started, &result);
        result
    }

    async fn failure_reason(&self, scheduler: &str, room_id: &str) -> Option<String> {
        self.inner.failure_reason(scheduler, room_id).await
    }

    async fn list_rooms(&self, scheduler: &str) -> Result<Vec<RoomInstance>, RuntimeError> {
        let started = Instant::now();
        let result = self.inner.list_rooms(scheduler).await;
        self.observe("list_rooms", started, &result);
        result
    }

    async fn list_all_rooms(&self) -> Result<Vec<RoomInstance>, RuntimeError> {
        let started = Instant::now();
        let result = self.inner.list_all_rooms().await;
        self.observe("list_all_rooms", started, &result);
        result
    }

    fn watch(&self) -> BoxStream<'static, RuntimeEvent> {
        self.inner.watch()
    }
}
