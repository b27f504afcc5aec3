//! The gateway's metrics: one Prometheus registry with the component metrics (HTTP and gRPC
//! requests, pings, watcher events, forwarders) and the fleet gauges the reporter refreshes,
//! served as Prometheus text or, when the scraper asks for it, OpenMetrics text.
//!
//! Labels are bounded: api, route template, method, status code, ping status, scheduler,
//! game, version, operation name. Never a room id.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::error::{ApiError, ErrorCode};

/// Request latency buckets (seconds): sub-millisecond pings up to slow management calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Cheap to clone (one reference count): axum clones it for every request.
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<MetricsInner>);

pub struct MetricsInner {
    pub registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    grpc_requests: IntCounterVec,
    grpc_latency: HistogramVec,
    pings: IntCounterVec,
    pub(crate) watcher_events: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
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
        Ok(Self(std::sync::Arc::new(MetricsInner {
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
            pings: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "maestro_pings_total",
                        "Room pings received, by reported status (accepted or not)",
                    ),
                    &["status"],
                )?,
            )?,
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
            registry,
        })))
    }

    /// A fresh registry with every gateway metric (tests, tools).
    pub fn standalone() -> Result<Self, prometheus::Error> {
        Self::new(Registry::new())
    }

    pub fn ping(&self, status: &str) {
        // Unknown statuses are one bucket: the label must stay bounded whatever rooms send.
        let status = maestro_core::PingStatus::parse(status).map_or("invalid", |s| s.as_str());
        self.pings.with_label_values(&[status]).inc();
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

    /// The registry in the format the scraper asked for.
    pub fn render(&self, headers: &HeaderMap) -> Response {
        let families = self.registry.gather();
        let openmetrics = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        let (body, content_type) = if openmetrics {
            (
                encode_openmetrics(&families),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            match prometheus::TextEncoder::new().encode_to_string(&families) {
                Ok(text) => (text, prometheus::TEXT_FORMAT),
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

/// axum middleware: counts and times every request by route template (never the raw path,
/// which would carry room ids).
pub async fn track_http(
    State((metrics, api)): State<(Metrics, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Both are reference-counted or inline: no allocation on the ping path.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status();
    let labels = [api, route, method.as_str(), status.as_str()];
    metrics.http_requests.with_label_values(&labels).inc();
    metrics
        .http_latency
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// OpenMetrics 1.0 text: like Prometheus text, but a counter's family is named without
/// `_total` (its samples keep it), and the exposition ends with `# EOF`.
pub fn encode_openmetrics(families: &[MetricFamily]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for family in families {
        let name = family.name();
        let (kind, family_name) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        let _ = writeln!(out, "# TYPE {family_name} {kind}");
        let _ = writeln!(out, "# HELP {family_name} {}", escape(family.help(), false));
        for metric in family.get_metric() {
            let labels: Vec<(String, String)> = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            match family.get_field_type() {
                MetricType::COUNTER => {
                    let sample = format!("{family_name}_total");
                    sample_line(&mut out, &sample, &labels, metric.get_counter().value());
                }
                MetricType::GAUGE => {
                    sample_line(&mut out, name, &labels, metric.get_gauge().value());
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    for bucket in h.get_bucket() {
                        let mut with_le = labels.clone();
                        with_le.push(("le".into(), float(bucket.upper_bound())));
                        let count = bucket.cumulative_count() as f64;
                        sample_line(&mut out, &format!("{name}_bucket"), &with_le, count);
                    }
                    let mut with_inf = labels.clone();
                    with_inf.push(("le".into(), "+Inf".into()));
                    let count = h.get_sample_count() as f64;
                    sample_line(&mut out, &format!("{name}_bucket"), &with_inf, count);
                    sample_line(&mut out, &format!("{name}_count"), &labels, count);
                    sample_line(
                        &mut out,
                        &format!("{name}_sum"),
                        &labels,
                        h.get_sample_sum(),
                    );
                }
                MetricType::SUMMARY => {
                    let summary = metric.get_summary();
                    let count = summary.sample_count() as f64;
                    sample_line(&mut out, &format!("{name}_count"), &labels, count);
                    sample_line(
                        &mut out,
                        &format!("{name}_sum"),
                        &labels,
                        summary.sample_sum(),
                    );
                }
                // The gateway registers no untyped metrics.
                MetricType::UNTYPED => {}
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn sample_line(out: &mut String, name: &str, labels: &[(String, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v, true)))
            .collect();
        out.push_str(&pairs.join(","));
        out.push('}');
    }
    out.push(' ');
    out.push_str(&float(value));
    out.push('\n');
}

fn float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else if value.is_nan() {
        "NaN".into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

fn escape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_names_counters_without_total_and_ends_with_eof() {
        let metrics = Metrics::standalone().unwrap();
        metrics.ping("ready");
        metrics.ping("something else");
        metrics.grpc("UpdateRoomWithPing", tonic::Code::Ok, Instant::now());
        let text = encode_openmetrics(&metrics.registry.gather());
        assert!(text.contains("# TYPE maestro_pings counter\n"), "{text}");
        assert!(text.contains("maestro_pings_total{status=\"ready\"} 1.0\n"));
        assert!(text.contains("maestro_pings_total{status=\"invalid\"} 1.0\n"));
        assert!(text.contains("# TYPE maestro_grpc_request_duration_seconds histogram\n"));
        assert!(text.contains(
            "maestro_grpc_request_duration_seconds_bucket{code=\"Ok\",method=\"UpdateRoomWithPing\",le=\"+Inf\"} 1.0\n"
        ));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample_line(
            &mut out,
            "m",
            &[("l".into(), "a\"b\\c\nd".into())],
            f64::INFINITY,
        );
        assert_eq!(out, "m{l=\"a\\\"b\\\\c\\nd\"} +Inf\n");
    }
}
