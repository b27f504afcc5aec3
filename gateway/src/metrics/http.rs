//! The HTTP APIs' request metrics: a tower layer that counts and times every request by
//! route template (never the raw path, which would carry room ids), logs 5xx answers, and
//! names the body fields its extractor ignored in the answer (one layer for all three).
//!
//! Hand-written rather than `axum::middleware::from_fn`: that boxes a clone of the inner
//! service and the response future for every request, and each request looked its two
//! series up by four label values; on the ping path those were ~5 % of the server's CPU
//! (docs/benchmarks.md). Here the future is a plain struct and each series is resolved
//! once, then found by one hash of its key.

use std::cell::RefCell;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::RwLock;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use prometheus::{Histogram, IntCounter};
use tokio::task::futures::TaskLocalFuture;

use super::Metrics;
use crate::error::ServerErrorReason;
use crate::json;

/// `router.layer(TrackHttpLayer::new(metrics, "rooms"))`.
#[derive(Clone)]
pub struct TrackHttpLayer {
    metrics: Metrics,
    api: &'static str,
}

impl TrackHttpLayer {
    pub fn new(metrics: Metrics, api: &'static str) -> Self {
        Self { metrics, api }
    }
}

impl<S> tower::Layer<S> for TrackHttpLayer {
    type Service = TrackHttp<S>;

    fn layer(&self, inner: S) -> TrackHttp<S> {
        TrackHttp {
            inner,
            metrics: self.metrics.clone(),
            api: self.api,
        }
    }
}

#[derive(Clone)]
pub struct TrackHttp<S> {
    inner: S,
    metrics: Metrics,
    api: &'static str,
}

impl<S> tower::Service<Request> for TrackHttp<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // All three are reference-counted or inline: no allocation on the ping path. The
        // path is written only in the 5xx, debug and ignored-fields lines.
        let seen = Seen {
            started: Instant::now(),
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            metrics: self.metrics.clone(),
            api: self.api,
        };
        Tracked {
            handler: json::noting_ignored(self.inner.call(request)),
            seen: Some(seen),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's answer, observed when it is ready.
    pub struct Tracked<F> {
        #[pin]
        handler: TaskLocalFuture<RefCell<Vec<String>>, F>,
        seen: Option<Seen>,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut answer = ready!(this.handler.as_mut().poll(cx));
        let ignored = json::ignored_fields(this.handler);
        if let (Ok(response), Some(seen)) = (&mut answer, this.seen.take()) {
            seen.answered(&ignored, response);
        }
        Poll::Ready(answer)
    }
}

/// What the request said, kept until its answer.
struct Seen {
    started: Instant,
    route: Option<MatchedPath>,
    method: Method,
    uri: Uri,
    metrics: Metrics,
    api: &'static str,
}

impl Seen {
    fn answered(self, ignored: &[String], response: &mut Response) {
        let Self {
            started,
            route,
            method,
            uri,
            metrics,
            api,
        } = self;
        json::answer_ignored(ignored, uri.path(), response);
        let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let status = response.status();
        let elapsed = started.elapsed();
        let reason = response.extensions().get::<ServerErrorReason>();
        if status.is_server_error() && reason.is_none_or(|r| r.0.is_some()) {
            let reason = reason
                .and_then(|r| r.0.as_deref())
                .unwrap_or("no answer in time, or no reason given");
            tracing::warn!(api, method = %method, path = %uri.path(), status = status.as_u16(),
                latency_ms = elapsed.as_millis(), reason = %reason, "request failed");
        }
        tracing::debug!(api, method = %method, path = %uri.path(), status = status.as_u16(),
            latency_us = elapsed.as_micros(), "request answered");
        let key = SeriesProbe {
            api,
            route,
            method: bounded(&method),
            status,
        };
        metrics.http_answered(key, elapsed.as_secs_f64());
    }
}

impl Metrics {
    /// Counts one request of `key` and records its latency, resolving its two series in the
    /// registry the first time `key` is seen.
    fn http_answered(&self, key: SeriesProbe<'_>, seconds: f64) {
        let record = |(count, time): &(IntCounter, Histogram)| {
            count.inc();
            time.observe(seconds);
        };
        if let Ok(known) = self.http_series.0.read()
            && let Some(series) = known.get(&key)
        {
            return record(series);
        }
        let labels = [key.api, key.route, key.method.as_str(), key.status.as_str()];
        let series = (
            self.http_requests.with_label_values(&labels),
            self.http_latency.with_label_values(&labels),
        );
        record(&series);
        if let Ok(mut known) = self.http_series.0.write() {
            known.insert(key.owned(), series);
        }
    }
}

/// The method as a label: HTTP allows any token as a method, and a client inventing a new
/// one per request must not add a series (and a cache entry) each time.
fn bounded(method: &Method) -> &Method {
    static OTHER: std::sync::LazyLock<Method> =
        std::sync::LazyLock::new(|| Method::from_bytes(b"OTHER").unwrap_or_default());
    static STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if STANDARD.contains(method) {
        method
    } else {
        &OTHER
    }
}

/// The HTTP request series already resolved, by api, route, method and status. As bounded
/// as the series themselves: one entry per series the registry has.
#[derive(Default)]
pub(crate) struct HttpSeries(RwLock<hashbrown::HashMap<SeriesKey, (IntCounter, Histogram)>>);

#[derive(PartialEq, Eq)]
pub(crate) struct SeriesKey {
    api: &'static str,
    route: String,
    method: Method,
    status: StatusCode,
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.api, self.route.as_str(), &self.method, self.status).hash(state);
    }
}

/// A [`SeriesKey`] borrowed from a request, so finding its series allocates nothing.
#[derive(Clone, Copy)]
struct SeriesProbe<'a> {
    api: &'static str,
    route: &'a str,
    method: &'a Method,
    status: StatusCode,
}

impl SeriesProbe<'_> {
    fn owned(self) -> SeriesKey {
        SeriesKey {
            api: self.api,
            route: self.route.to_string(),
            method: self.method.clone(),
            status: self.status,
        }
    }
}

impl Hash for SeriesProbe<'_> {
    // The same fields in the same order as `SeriesKey`'s, so both hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.api, self.route, self.method, self.status).hash(state);
    }
}

impl hashbrown::Equivalent<SeriesKey> for SeriesProbe<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.api == key.api
            && self.route == key.route
            && *self.method == key.method
            && self.status == key.status
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::put;
    use tower::ServiceExt as _;

    use super::*;
    use crate::json::{IGNORED_FIELDS_HEADER, ValidJson};

    #[derive(serde::Deserialize)]
    struct Thing {
        #[serde(default)]
        #[allow(dead_code)]
        name: String,
    }

    #[tokio::test]
    async fn each_label_set_counts_on_its_own_series_and_ignored_fields_are_named() {
        let metrics = Metrics::standalone().unwrap();
        let app = axum::Router::new()
            .route(
                "/things/{id}",
                put(
                    |axum::extract::Path(id): axum::extract::Path<String>,
                     ValidJson(_): ValidJson<Thing>| async move {
                        if id == "missing" {
                            StatusCode::NOT_FOUND
                        } else {
                            StatusCode::OK
                        }
                    },
                ),
            )
            .layer(TrackHttpLayer::new(metrics.clone(), "test"));
        let send = |id: &str, body: &'static str| {
            let request = Request::put(format!("/things/{id}"))
                .body(Body::from(body))
                .unwrap();
            app.clone().oneshot(request)
        };
        for _ in 0..3 {
            assert_eq!(send("a", "{}").await.unwrap().status(), StatusCode::OK);
        }
        for invented in ["BREW", "WHEN"] {
            let request = Request::builder()
                .method(invented)
                .uri("/things/a")
                .body(Body::empty())
                .unwrap();
            let answer = app.clone().oneshot(request).await.unwrap();
            assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
        }
        let missing = send("missing", "{}").await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let typo = send("b", r#"{"name":"x","nmae":1}"#).await.unwrap();
        assert_eq!(typo.headers()[IGNORED_FIELDS_HEADER], "nmae");
        let fine = send("b", r#"{"name":"x"}"#).await.unwrap();
        assert!(fine.headers().get(IGNORED_FIELDS_HEADER).is_none());
        let count = |code: &str| {
            metrics
                .http_requests
                .with_label_values(&["test", "/things/{id}", "PUT", code])
                .get()
        };
        assert_eq!((count("200"), count("404")), (5, 1));
        let latency =
            metrics
                .http_latency
                .with_label_values(&["test", "/things/{id}", "PUT", "404"]);
        assert_eq!(latency.get_sample_count(), 1);
    }
}
