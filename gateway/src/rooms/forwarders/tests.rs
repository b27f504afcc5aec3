//! Forwarders against real gRPC peers on loopback: unreachable, silent and healthy ones.
use maestro_core::scheduler::ForwarderOptions;

use super::*;
use crate::metrics::Metrics;

fn forwarder(address: String, timeout_ms: i64) -> Forwarder {
    Forwarder {
        name: "mm".into(),
        enable: true,
        kind: "gRPC".into(),
        address,
        options: Some(ForwarderOptions {
            timeout: timeout_ms,
            metadata: BTreeMap::new(),
        }),
    }
}

/// Nothing listens: every try fails fast, the call fails once with the reason, and the
/// failure is counted once (not once per try).
#[tokio::test]
async fn unreachable_forwarder_fails_after_retries_and_is_counted() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let metrics = Metrics::standalone().unwrap();
    let forwarders = Forwarders::new(ForwarderConfig::default(), metrics);
    let started = std::time::Instant::now();
    let err = forwarders
        .forward_all(
            &[forwarder(closed, 300)],
            &ForwardedRoom::default(),
            &ForwardEvent::Room { event: "e".into() },
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Failed { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by timeout × tries"
    );
    let failures = forwarders
        .metrics
        .forwarder_calls
        .with_label_values(&["mm", "room_event", "failure"])
        .get();
    assert_eq!(failures, 1);
}

/// Accepts connections and never answers a byte: the worst forwarder there is.
fn silent_forwarder() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    address
}

#[derive(Default, Clone)]
struct Counting(Arc<std::sync::atomic::AtomicUsize>);

#[tonic::async_trait]
impl eventforwarder::grpc_forwarder_server::GrpcForwarder for Counting {
    async fn send_room_event(
        &self,
        _: tonic::Request<eventforwarder::RoomEvent>,
    ) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(tonic::Response::new(eventforwarder::Response {
            code: 200,
            message: String::new(),
        }))
    }
    async fn send_room_status(
        &self,
        r: tonic::Request<eventforwarder::RoomStatus>,
    ) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
        self.send_room_resync(r).await
    }
    async fn send_room_resync(
        &self,
        _: tonic::Request<eventforwarder::RoomStatus>,
    ) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(tonic::Response::new(eventforwarder::Response {
            code: 200,
            message: String::new(),
        }))
    }
    async fn send_player_event(
        &self,
        _: tonic::Request<eventforwarder::PlayerEvent>,
    ) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used"))
    }
    async fn send_room_ping(
        &self,
        _: tonic::Request<eventforwarder::RoomStatus>,
    ) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used"))
    }
    async fn send_room_info(
        &self,
        _: tonic::Request<eventforwarder::RoomInfo>,
    ) -> Result<tonic::Response<eventforwarder::Response>, tonic::Status> {
        Err(tonic::Status::unimplemented("not used"))
    }
}

async fn counting_forwarder() -> (String, Counting) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let counting = Counting::default();
    let server = eventforwarder::grpc_forwarder_server::GrpcForwarderServer::new(counting.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (address, counting)
}

fn room(scheduler: &str, id: usize) -> ForwardedRoom {
    ForwardedRoom {
        scheduler: scheduler.into(),
        room_id: format!("{scheduler}-{id}"),
        ..ForwardedRoom::default()
    }
}

/// Status changes for a forwarder that never answers are handed off at once — 2 000 of
/// them in well under a second — and what its lanes cannot hold is dropped and counted;
/// meanwhile another scheduler's forwarder gets every status change and every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_forwarder_delays_nothing_and_starves_no_other() {
    let metrics = Metrics::standalone().unwrap();
    let forwarders = Forwarders::new(ForwarderConfig::default(), metrics);
    let silent = [forwarder(silent_forwarder(), 10_000)];
    let (address, healthy) = counting_forwarder().await;
    let other = [forwarder(address, 1_000)];
    let status = ForwardEvent::RoomStatus {
        status: "ready".into(),
    };
    let started = std::time::Instant::now();
    for i in 0..2_000 {
        forwarders.forward_in_background(&silent, &room("slow", i), &status);
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "handing off took {:?}",
        started.elapsed()
    );
    let dropped = forwarders
        .metrics
        .forwarder_dropped
        .with_label_values(&["mm", "room_status"])
        .get();
    assert!(dropped >= 2_000 - 8 * 129, "dropped {dropped}");

    for i in 0..50 {
        forwarders.forward_in_background(&other, &room("fast", i), &status);
    }
    forwarders
        .forward_all(
            &other,
            &room("fast", 0),
            &ForwardEvent::Room { event: "e".into() },
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while healthy.0.load(std::sync::atomic::Ordering::SeqCst) < 51 {
        assert!(
            std::time::Instant::now() < deadline,
            "the healthy forwarder was starved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_bad_address_is_a_failure_not_a_panic() {
    let forwarders = Forwarders::new(ForwarderConfig::default(), Metrics::standalone().unwrap());
    let err = forwarders
        .forward_all(
            &[forwarder("not a uri at all\n".into(), 100)],
            &ForwardedRoom::default(),
            &ForwardEvent::RoomStatus {
                status: "ready".into(),
            },
            &BTreeMap::new(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad address"), "{err}");
}

#[test]
fn timeout_defaults_to_maestros() {
    assert_eq!(
        Forwarders::timeout(&forwarder("a:1".into(), 0)),
        DEFAULT_TIMEOUT
    );
    assert_eq!(
        Forwarders::timeout(&forwarder("a:1".into(), -5)),
        DEFAULT_TIMEOUT
    );
    assert_eq!(
        Forwarders::timeout(&forwarder("a:1".into(), 250)),
        Duration::from_millis(250)
    );
}
