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
        _: tonic::Request<eventforwarder::Room>,
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
    let status = ForwardEvent::Resync {
        ping_status: "ready".into(),
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
        .with_label_values(&["mm", "room_resync"])
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
            &ForwardEvent::Resync {
                ping_status: "ready".into(),
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

/// What Maestro's events forwarder (internal/adapters/events/events_forwarder.go) puts in
/// each call: the call per event kind, enum values, which metadata wins, `%v` strings,
/// `roomType` from the forwarder's options.
#[test]
fn calls_are_built_as_maestro_builds_them() {
    use serde_json::json;
    let mut fwd = forwarder("127.0.0.1:1".into(), 100);
    fwd.options.as_mut().unwrap().metadata = [
        ("roomType".to_string(), json!("duel")),
        ("region".to_string(), json!("eu")),
        ("mode".to_string(), json!("forwarder's")),
    ]
    .into();
    let room = ForwardedRoom {
        game: "g".into(),
        scheduler: "s".into(),
        room_id: "r1".into(),
        host: "10.0.0.1".into(),
        port: 7000,
        ports: vec![maestro_core::room::RoomPort {
            name: "game".into(),
            protocol: "UDP".into(),
            port: 7000,
        }],
        metadata: [
            ("mode".to_string(), json!("room's")),
            ("n".to_string(), json!(3)),
        ]
        .into(),
    };
    let none = BTreeMap::new();
    let Ok(Outgoing::Resync(status)) = build(
        &fwd,
        &room,
        &ForwardEvent::Resync {
            ping_status: "occupied".into(),
        },
        &none,
    ) else {
        panic!("a ping's change is a resync");
    };
    assert_eq!(
        status.status_type,
        eventforwarder::room_status::RoomStatusType::Occupied as i32
    );
    let pb = status.room.unwrap();
    assert_eq!(
        (pb.room_type.as_str(), pb.port, pb.host.as_str()),
        ("duel", 7000, "10.0.0.1")
    );
    // The room's attributes win for status calls; numbers become text.
    assert_eq!(pb.metadata["mode"], "room's");
    assert_eq!(pb.metadata["n"], "3");
    assert_eq!(pb.metadata["eventType"], "resync");
    assert_eq!(pb.metadata["pingType"], "occupied");
    assert_eq!(
        pb.metadata["ports"],
        r#"[{"name":"game","port":7000,"protocol":"UDP"}]"#
    );

    let event: BTreeMap<String, Value> = [("mode".to_string(), json!("event's"))].into();
    let Ok(Outgoing::Room(room_event)) = build(
        &fwd,
        &room,
        &ForwardEvent::Room {
            event: "started".into(),
        },
        &event,
    ) else {
        panic!("a room event");
    };
    let pb = room_event.room.unwrap();
    // The forwarder's metadata wins for room events, and Maestro sets no roomType there.
    assert_eq!(pb.metadata["mode"], "forwarder's");
    assert_eq!(
        (pb.metadata["roomEvent"].as_str(), pb.room_type.as_str()),
        ("started", "")
    );
    assert_eq!(room_event.event_type, "started");

    let player: BTreeMap<String, Value> = [("playerId".to_string(), json!("p1"))].into();
    let Ok(Outgoing::Player(p)) = build(
        &fwd,
        &room,
        &ForwardEvent::Player {
            event: "playerLeft".into(),
        },
        &player,
    ) else {
        panic!("a player event");
    };
    assert_eq!(
        p.event_type,
        eventforwarder::player_event::PlayerEventType::PlayerLeft as i32
    );
    assert_eq!(p.player_id, "p1");
    assert_eq!(p.metadata["roomType"], "duel");
    assert_eq!(
        p.room.unwrap().host,
        "",
        "Maestro sends only game and room id"
    );

    for (event, metadata) in [("playerJoin", BTreeMap::new()), ("sat", player)] {
        assert!(
            build(
                &fwd,
                &room,
                &ForwardEvent::Player {
                    event: event.into()
                },
                &metadata
            )
            .is_err(),
            "{event}"
        );
    }
    assert!(
        build(
            &fwd,
            &room,
            &ForwardEvent::Status {
                status: "error".into()
            },
            &none
        )
        .is_err()
    );
}

/// The directory of one scheduler, with a forwarder.
struct OneScheduler(crate::rooms::directory::SchedulerInfo);

#[async_trait::async_trait]
impl crate::rooms::directory::SchedulerSource for OneScheduler {
    async fn load(
        &self,
        name: &str,
    ) -> Result<Option<crate::rooms::directory::SchedulerInfo>, crate::error::ApiError> {
        Ok((name == self.0.name).then(|| self.0.clone()))
    }
}

/// A room whose first ready ping came before its instance was recorded (the instance, not a
/// ping, then made it ready) still reaches the forwarders: every recorded ping is forwarded
/// as a resync, as Maestro's room manager sends them, once the room has an address. CI saw
/// the old rule (only status-changing pings) lose such a room's ready for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_ping_is_forwarded_once_the_room_has_an_address() {
    use maestro_core::room::{RoomAddress, RoomPort};
    use maestro_core::{GameRoom, InstanceStatus, Timestamp, Version};
    use maestro_runtime::{MemoryRoomStore, RoomInstance, RoomStore};

    let metrics = Metrics::standalone().unwrap();
    let (address, forwarded) = counting_forwarder().await;
    let count = || forwarded.0.load(std::sync::atomic::Ordering::SeqCst);
    let info = crate::rooms::directory::SchedulerInfo {
        name: "s".into(),
        game: "g".into(),
        room_token_required: false,
        forwarders: vec![forwarder(address, 1_000)],
    };
    let directory = crate::rooms::directory::SchedulerDirectory::new(
        Arc::new(OneScheduler(info)),
        Duration::from_secs(60),
    );
    let store: Arc<dyn RoomStore> = Arc::new(MemoryRoomStore::new());
    let service = crate::rooms::service::RoomService::new(
        store.clone(),
        directory,
        Forwarders::new(ForwarderConfig::default(), metrics.clone()),
        None,
        metrics,
    );
    let t = Timestamp::from_unix_millis(1_000);
    store
        .insert_if_absent(GameRoom::new("r", "s", Version::FIRST, 1, t))
        .await
        .unwrap();
    let ping = || crate::rooms::service::PingMessage {
        status: "ready".into(),
        running_matches: 0,
        metadata: None,
    };
    assert!(service.ping("s", "r", None, ping()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(), 0, "no instance yet: nothing to tell a matchmaker");

    let instance = RoomInstance {
        scheduler: "s".into(),
        room_id: "r".into(),
        version: Version::FIRST,
        status: InstanceStatus::Ready,
        address: Some(RoomAddress {
            host: "127.0.0.1".into(),
            ports: vec![RoomPort {
                name: "game".into(),
                protocol: "UDP".into(),
                port: 40_000,
            }],
            ipv6_label: String::new(),
        }),
    };
    store.record_instance(&instance, t).await.unwrap();
    for pings in 1..=2 {
        // Neither ping changes the status (the instance made the room ready).
        assert!(service.ping("s", "r", None, ping()).await.unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count() < pings && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count(), pings);
    }
}
