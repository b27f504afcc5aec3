//! The gateway's metrics: one Prometheus registry with the component metrics (HTTP and gRPC
//! requests, pings, watcher events, forwarders) and the fleet gauges the reporter refreshes,
//! served as Prometheus text or, when the scraper asks for it, OpenMetrics text.
//!
//! Labels are bounded: api, route template, method, status code, ping status, scheduler,
//! game, version, operation name. Never a room id.

use std::time::Instant;

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use maestro_core::PingStatus;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::error::{ApiError, ErrorCode};

pub mod fleet;
mod http;
mod openmetrics;
pub mod reporter;

pub use http::TrackHttpLayer;
pub use openmetrics::{EOF, encode_openmetrics};

/// Request latency buckets (seconds): sub-millisecond pings up to slow management calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The ping status label of statuses Maestro does not know.
const INVALID_PING: &str = "invalid";

/// Cheap to clone (one reference count): axum clones it for every request.
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<MetricsInner>);

pub struct MetricsInner {
    pub registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    /// The two series above, resolved once per label set (the HTTP layer's lookups).
    http_series: http::HttpSeries,
    grpc_requests: IntCounterVec,
    grpc_latency: HistogramVec,
    /// `maestro_pings_total` by status, in `PingStatus::ALL`'s order.
    pings_by_status: [IntCounter; 4],
    invalid_pings: IntCounter,
    pub(crate) watcher_events: IntCounterVec,
    pub(crate) forwarder_calls: IntCounterVec,
    pub(crate) forwarder_dropped: IntCounterVec,
    /// The per-scheduler gauges, written after the registry's families on a scrape.
    pub fleet: std::sync::Arc<fleet::FleetGauges>,
}

pub(super) fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: T,
) -> Result<T, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;
    fn deref(&self) -> &MetricsInner {
        &self.0
    }
}

impl Metrics {
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let r = &registry;
        // Every status a ping can be counted under starts at zero, each resolved once: the
        // ping path then looks no label up.
        let pings = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "maestro_pings_total",
                    "Room pings received, by reported status (accepted or not)",
                ),
                &["status"],
            )?,
        )?;
        let metrics = Self(std::sync::Arc::new(MetricsInner {
            http_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new("maestro_http_requests_total", "HTTP requests answered"),
                    &["api", "route", "method", "code"],
                )?,
            )?,
            http_latency: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "maestro_http_request_duration_seconds",
                        "Time to answer an HTTP request",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["api", "route", "method", "code"],
                )?,
            )?,
            http_series: http::HttpSeries::default(),
            grpc_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new("maestro_grpc_requests_total", "gRPC requests answered"),
                    &["method", "code"],
                )?,
            )?,
            grpc_latency: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "maestro_grpc_request_duration_seconds",
                        "Time to answer a gRPC request",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["method", "code"],
                )?,
            )?,
            pings_by_status: PingStatus::ALL
                .map(|status| pings.with_label_values(&[status.as_str()])),
            invalid_pings: pings.with_label_values(&[INVALID_PING]),
            watcher_events: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "maestro_watcher_events_total",
                        "Runtime events the watcher processed, by kind (upserted, deleted, resync)",
                    ),
                    &["kind"],
                )?,
            )?,
            forwarder_calls: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "maestro_forwarder_calls_total",
                        "Event forwarding calls by forwarder, event kind and outcome (success, failure)",
                    ),
                    &["forwarder", "event", "outcome"],
                )?,
            )?,
            forwarder_dropped: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "maestro_forwarder_dropped_total",
                        "Status changes not forwarded because the forwarder's lane was full (it is slow or down)",
                    ),
                    &["forwarder", "event"],
                )?,
            )?,
            fleet: std::sync::Arc::default(),
            registry,
        }));
        Ok(metrics)
    }

    /// One forwarding call ended (`outcome`: success or failure).
    pub fn forwarded(&self, forwarder: &str, event: &str, outcome: &str) {
        self.forwarder_calls
            .with_label_values(&[forwarder, event, outcome])
            .inc();
    }

    /// A status change a forwarder's full lane could not take.
    pub fn forward_dropped(&self, forwarder: &str, event: &str) {
        self.forwarder_dropped
            .with_label_values(&[forwarder, event])
            .inc();
    }

    /// A fresh registry with every gateway metric (tests, tools).
    pub fn standalone() -> Result<Self, prometheus::Error> {
        Self::new(Registry::new())
    }

    pub fn ping(&self, status: &str) {
        // Unknown statuses are one bucket: the label must stay bounded whatever rooms send.
        let known = PingStatus::parse(status)
            .and_then(|parsed| PingStatus::ALL.iter().position(|s| *s == parsed));
        known
            .and_then(|i| self.pings_by_status.get(i))
            .unwrap_or(&self.invalid_pings)
            .inc();
    }

    /// Series at zero for `methods` answering `Ok`, before their first call.
    pub fn grpc_methods(&self, methods: &[&str]) {
        let ok = format!("{:?}", tonic::Code::Ok);
        for method in methods {
            self.grpc_requests.with_label_values(&[method, ok.as_str()]);
            self.grpc_latency.with_label_values(&[method, ok.as_str()]);
        }
    }

    pub fn grpc(&self, method: &str, code: tonic::Code, started: Instant) {
        let code = format!("{code:?}");
        self.grpc_requests
            .with_label_values(&[method, code.as_str()])
            .inc();
        self.grpc_latency
            .with_label_values(&[method, code.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The registry and the fleet gauges in the format the scraper asked for.
    pub fn render(&self, headers: &HeaderMap) -> Response {
        let families = self.registry.gather();
        let openmetrics = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        let (body, content_type) = if openmetrics {
            let mut text = String::new();
            encode_openmetrics(&families, &mut text);
            self.fleet.encode(&mut text);
            text.push_str(EOF);
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            match prometheus::TextEncoder::new().encode_to_string(&families) {
                Ok(mut text) => {
                    self.fleet.encode(&mut text);
                    (text, prometheus::TEXT_FORMAT)
                }
                Err(e) => return ApiError::new(ErrorCode::Internal, e.to_string()).into_response(),
            }
        };
        let mut response = body.into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}
