//! A bounded load generator for HTTP/1.1 and gRPC on loopback.
//!
//! Closed loop: `n` connections, each with one request in flight, until a deadline or a
//! request budget. Open loop: a fixed request rate spread over the connections; latency is
//! measured from each request's *scheduled* time, so a server that stalls cannot hide the
//! queue it builds (coordinated omission).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use maestro_proto::rooms::UpdateRoomWithPingRequest;
use maestro_proto::rooms::rooms_service_client::RoomsServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// What a run measured.
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
}

impl Outcome {
    fn empty() -> Self {
        Self {
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: latency_histogram(),
        }
    }

    fn merge(&mut self, other: &Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        // Both histograms have the same bounds; adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn p50_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.50) as f64 / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.99) as f64 / 1000.0
    }
}

/// 1 µs to 60 s, 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// One connection's way of sending request number `i`; true when it succeeded.
pub trait Caller: Send + 'static {
    fn call(&mut self, i: u64) -> impl Future<Output = bool> + Send;
}

/// Each caller sends requests back to back until `duration` passes or `max_requests` were sent.
pub async fn closed_loop<C: Caller>(
    callers: Vec<C>,
    duration: Duration,
    max_requests: u64,
) -> Outcome {
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut caller| {
            let issued = issued.clone();
            tokio::spawn(async move {
                let mut out = Outcome::empty();
                while Instant::now() < deadline {
                    let i = issued.fetch_add(1, Ordering::Relaxed);
                    if i >= max_requests {
                        break;
                    }
                    let sent = Instant::now();
                    let ok = caller.call(i).await;
                    record(&mut out, ok, sent.elapsed());
                }
                out
            })
        })
        .collect();
    collect(tasks, start).await
}

/// `rate` requests per second for `duration`, spread evenly over the callers (at most one
/// request in flight per caller: a late answer makes the next request late, and that delay
/// counts in its latency).
pub async fn open_loop<C: Caller>(callers: Vec<C>, rate: u64, duration: Duration) -> Outcome {
    let n = callers.len() as u64;
    let total = rate * duration.as_secs();
    let start = Instant::now() + Duration::from_millis(10);
    let tasks: Vec<_> = callers
        .into_iter()
        .enumerate()
        .map(|(c, mut caller)| {
            tokio::spawn(async move {
                let mut out = Outcome::empty();
                let mut k = c as u64;
                while k < total {
                    let scheduled = start + Duration::from_nanos(k * 1_000_000_000 / rate);
                    tokio::time::sleep_until(scheduled.into()).await;
                    let ok = caller.call(k).await;
                    record(&mut out, ok, scheduled.elapsed());
                    k += n;
                }
                out
            })
        })
        .collect();
    collect(tasks, start).await
}

fn record(out: &mut Outcome, ok: bool, latency: Duration) {
    if ok {
        out.ok += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let _ = out.latency.record(micros.clamp(1, 60_000_000));
    } else {
        out.errors += 1;
    }
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Outcome>>, start: Instant) -> Outcome {
    let mut total = Outcome::empty();
    for task in tasks {
        if let Ok(out) = task.await {
            total.merge(&out);
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// A room the load pings as: its path segment and its token.
#[derive(Clone)]
pub struct RoomCredential {
    pub scheduler: String,
    pub room: String,
    pub token: String,
}

/// `PUT /scheduler/{s}/rooms/{r}/ping` over one HTTP/1.1 keep-alive connection, cycling
/// through the rooms.
pub struct HttpPing {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    requests: Arc<Vec<(String, String)>>,
    body: Bytes,
}

/// One HTTP/1.1 keep-alive connection to `addr` (no Nagle: one small request at a time).
pub async fn http1_connect(addr: std::net::SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

impl HttpPing {
    pub async fn connect(
        addr: std::net::SocketAddr,
        rooms: &Arc<Vec<RoomCredential>>,
    ) -> Result<Self> {
        let sender = http1_connect(addr).await?;
        let requests = rooms
            .iter()
            .map(|r| {
                (
                    format!("/scheduler/{}/rooms/{}/ping", r.scheduler, r.room),
                    format!("Bearer {}", r.token),
                )
            })
            .collect();
        Ok(Self {
            sender,
            authority: addr.to_string(),
            requests: Arc::new(requests),
            body: Bytes::from_static(PING_BODY.as_bytes()),
        })
    }
}

/// What the bundled game room sends.
pub const PING_BODY: &str = r#"{"status":"ready","runningMatches":0,"timestamp":1764100000}"#;

impl Caller for HttpPing {
    async fn call(&mut self, i: u64) -> bool {
        let (path, auth) = &self.requests[(i % self.requests.len() as u64) as usize];
        let request = hyper::Request::put(path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::AUTHORIZATION, auth.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()));
        let Ok(request) = request else { return false };
        if self.sender.ready().await.is_err() {
            return false;
        }
        match self.sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                ok && response.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        }
    }
}

/// `UpdateRoomWithPing` over one HTTP/2 connection, one call in flight, cycling through the
/// rooms.
pub struct GrpcPing {
    client: RoomsServiceClient<Channel>,
    rooms: Arc<Vec<(RoomCredential, MetadataValue<tonic::metadata::Ascii>)>>,
}

impl GrpcPing {
    pub async fn connect(
        addr: std::net::SocketAddr,
        rooms: &Arc<Vec<RoomCredential>>,
    ) -> Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        let rooms = rooms
            .iter()
            .map(|r| {
                let token = MetadataValue::try_from(format!("Bearer {}", r.token))
                    .context("a token is ASCII")?;
                Ok((r.clone(), token))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            client: RoomsServiceClient::new(channel),
            rooms: Arc::new(rooms),
        })
    }
}

impl Caller for GrpcPing {
    async fn call(&mut self, i: u64) -> bool {
        let (room, token) = &self.rooms[(i % self.rooms.len() as u64) as usize];
        let mut request = tonic::Request::new(UpdateRoomWithPingRequest {
            scheduler_name: room.scheduler.clone(),
            room_name: room.room.clone(),
            status: "ready".into(),
            timestamp: 1_764_100_000,
            metadata: None,
            running_matches: 0,
        });
        request
            .metadata_mut()
            .insert("authorization", token.clone());
        self.client
            .update_room_with_ping(request)
            .await
            .is_ok_and(|r| r.get_ref().success)
    }
}

/// `n` callers made by `connect`.
pub async fn callers<C, F, Fut>(n: usize, connect: F) -> Result<Vec<C>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<C>>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect().await?);
    }
    Ok(out)
}
