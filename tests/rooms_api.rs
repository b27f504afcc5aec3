//! The game rooms API end to end: the real `maestro dev` binary, real `game-room` processes
//! (over HTTP and gRPC), real HTTP and gRPC clients, an in-test gRPC event forwarder, and
//! both room stores (in-memory and a real redis-server).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::forwarder::start_forwarder;
use common::{API_TOKEN, Maestro, ROOM_TOKEN_SECRET};
use maestro_core::RoomTokenSecret;
use maestro_proto::rooms::rooms_service_client::RoomsServiceClient;
use maestro_proto::rooms::{
    AllocateRoomRequest, ForwardRoomEventRequest, UpdateRoomWithPingRequest,
};
use maestro_testkit::{RedisServer, TemporalDevServer, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::Channel;

fn scheduler(name: &str, ports: (u16, u16), rooms: u32, command: &[&str]) -> Value {
    json!({
        "name": name,
        "game": "rooms-game",
        "maxSurge": "1",
        "roomsReplicas": rooms,
        "portRange": {"start": ports.0, "end": ports.1},
        "spec": {
            "terminationGracePeriod": "5s",
            "containers": [{
                "name": "room",
                "image": "local/game-room",
                "imagePullPolicy": "IfNotPresent", "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"},
                "command": command,
                "ports": [{"name": "game", "protocol": "udp", "port": 7777}]
            }]
        }
    })
}

fn game_room(extra: &[&'static str]) -> Vec<&'static str> {
    let mut command = vec![env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "1s"];
    command.extend_from_slice(extra);
    command
}

async fn create_with_rooms(maestro: &Maestro, body: Value) -> Result<Vec<String>> {
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let rooms = body["roomsReplicas"].as_u64().unwrap_or(0);
    let (code, answer) = maestro.post("/schedulers", body).await?;
    anyhow::ensure!(code == StatusCode::OK, "create {name}: {code} {answer}");
    let (code, answer) = maestro
        .post(
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": rooms}),
        )
        .await?;
    anyhow::ensure!(
        code == StatusCode::OK,
        "add rooms to {name}: {code} {answer}"
    );
    maestro.wait_ready(&name, usize::try_from(rooms)?).await
}

/// A rooms-API call with an optional bearer token: (status, JSON body).
async fn room_call(
    maestro: &Maestro,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut request = maestro
        .http
        .request(method, format!("{}{path}", maestro.rooms_api));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn grpc(maestro: &Maestro) -> Result<RoomsServiceClient<Channel>> {
    Ok(RoomsServiceClient::connect(maestro.rooms_grpc.clone()).await?)
}

/// Room tokens, pings, room and player events to a forwarder, addresses and metrics, over
/// HTTP and gRPC; rooms that speak gRPC; a scheduler that opts out of tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_pings_events_and_forwarders() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let (forwarder, forwarder_address) = start_forwarder().await?;
    let mut maestro = Maestro::start(&temporal).await?;
    let secret = RoomTokenSecret::new(ROOM_TOKEN_SECRET).map_err(anyhow::Error::msg)?;

    let mut body = scheduler("fwd", (46000, 46099), 2, &game_room(&[]));
    body["forwarders"] = json!([{
        "name": "matchmaker", "enable": true, "type": "gRPC", "address": forwarder_address,
        "options": {"timeout": 500, "metadata": {"region": "eu", "roomType": "duel-room", "tier": 2}}
    }]);
    let ids = create_with_rooms(&maestro, body).await?;
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    let (token_a, token_b) = (secret.token("fwd", a), secret.token("fwd", b));

    // Each room's first ready ping was forwarded as a status change: `SendRoomResync`, as
    // Maestro's room manager does (events_forwarder.go).
    eventually(
        Duration::from_secs(20),
        "status changes forwarded",
        || async {
            let ready: BTreeSet<String> = forwarder
                .calls("room_resync")
                .into_iter()
                .filter(|r| r.kind == "ready")
                .map(|r| r.room_id)
                .collect();
            (ready.len() == 2).then_some(())
        },
    )
    .await?;
    let status = &forwarder.calls("room_resync")[0];
    assert_eq!(
        (status.game.as_str(), status.room_type.as_str()),
        ("rooms-game", "duel-room")
    );
    // Maestro's attributes, values stringified: the forwarder's metadata under the room's.
    for (key, value) in [
        ("eventType", "resync"),
        ("pingType", "ready"),
        ("region", "eu"),
        ("tier", "2"),
    ] {
        assert_eq!(status.metadata[key], value, "{key} in {}", status.metadata);
    }
    assert!(
        status.metadata["ports"]
            .as_str()
            .unwrap()
            .contains(r#""name":"game""#),
        "{}",
        status.metadata
    );

    // Tokens: none → 401, another room's → 403, bad input → 400 naming the field.
    let ping = |status: &str| json!({"status": status, "timestamp": 1, "runningMatches": 0});
    let ping_path = format!("/scheduler/fwd/rooms/{a}/ping");
    let put = reqwest::Method::PUT;
    let (code, answer) =
        room_call(&maestro, put.clone(), &ping_path, None, Some(ping("ready"))).await?;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["code"], 16, "gRPC Unauthenticated: {answer}");
    let (code, answer) = room_call(
        &maestro,
        put.clone(),
        &ping_path,
        Some(&token_b),
        Some(ping("ready")),
    )
    .await?;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], 7, "gRPC PermissionDenied: {answer}");
    let (code, answer) = room_call(
        &maestro,
        put.clone(),
        &ping_path,
        Some(&token_a),
        Some(ping("sleeping")),
    )
    .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], 3, "{answer}");
    assert_eq!(
        answer["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(
        answer["details"][0]["fieldViolations"][0]["field"],
        "status"
    );
    let (code, answer) = room_call(
        &maestro,
        put.clone(),
        &ping_path,
        Some(&token_a),
        Some(ping("ready")),
    )
    .await?;
    assert_eq!((code, answer), (StatusCode::OK, json!({"success": true})));

    // Room and player events reach the forwarder, its metadata merged in.
    let post = reqwest::Method::POST;
    let event = json!({"event": "matchStarted", "timestamp": 1, "metadata": {"mode": "duel"}});
    let (code, answer) = room_call(
        &maestro,
        post.clone(),
        &format!("/scheduler/fwd/rooms/{a}/roomevent"),
        Some(&token_a),
        Some(event),
    )
    .await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(answer, json!({"success": true, "message": ""}));
    let room_event = forwarder.calls("room_event").pop().expect("a room event");
    assert_eq!(
        (room_event.room_id.as_str(), room_event.kind.as_str()),
        (a, "matchStarted")
    );
    for (key, value) in [
        ("mode", "duel"),
        ("region", "eu"),
        ("eventType", "roomEvent"),
        ("roomEvent", "matchStarted"),
    ] {
        assert_eq!(
            room_event.metadata[key], value,
            "{key} in {}",
            room_event.metadata
        );
    }
    let player = json!({"event": "playerJoin", "metadata": {"playerId": "p-1"}});
    let (code, answer) = room_call(
        &maestro,
        post.clone(),
        &format!("/scheduler/fwd/rooms/{a}/playerevent"),
        Some(&token_a),
        Some(player),
    )
    .await?;
    assert_eq!(
        (code, answer["success"].clone()),
        (StatusCode::OK, json!(true))
    );
    let player_event = forwarder
        .calls("player_event")
        .pop()
        .expect("a player event");
    assert_eq!(
        (player_event.player_id.as_str(), player_event.kind.as_str()),
        ("p-1", "PLAYER_JOINED")
    );
    assert_eq!(
        player_event.metadata,
        json!({"playerId": "p-1", "eventType": "playerJoin", "roomType": "duel-room"})
    );

    // Maestro v9's `/status` forwards the status (`SendRoomStatus`) and changes nothing.
    let (code, answer) = room_call(
        &maestro,
        put.clone(),
        &format!("/scheduler/fwd/rooms/{a}/status"),
        Some(&token_a),
        Some(json!({"status": "occupied", "timestamp": "5"})),
    )
    .await?;
    assert_eq!((code, answer), (StatusCode::OK, json!({"success": true})));
    let forwarded = forwarder
        .calls("room_status")
        .pop()
        .expect("a status event");
    assert_eq!(
        (forwarded.room_id.as_str(), forwarded.kind.as_str()),
        (a, "occupied")
    );
    assert_eq!(forwarded.metadata["eventType"], "status");
    assert_eq!(
        maestro.rooms("fwd", "occupied").await?,
        0,
        "/status changed a room"
    );

    // A forwarder that refuses: the event answer says so (Maestro's contract), not an error.
    *forwarder.answer_code.lock().unwrap() = 500;
    let (code, answer) = room_call(
        &maestro,
        post.clone(),
        &format!("/scheduler/fwd/rooms/{a}/roomevent"),
        Some(&token_a),
        Some(json!({"event": "matchEnded"})),
    )
    .await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(answer["success"], false);
    assert!(
        answer["message"].as_str().unwrap().contains("code 500"),
        "{answer}"
    );
    *forwarder.answer_code.lock().unwrap() = 200;
    let (code, answer) = room_call(
        &maestro,
        post.clone(),
        "/scheduler/fwd/rooms/nope/roomevent",
        Some(&secret.token("fwd", "nope")),
        Some(json!({"event": "x"})),
    )
    .await?;
    // Maestro answers 200 with the reason for a room it does not know; pings too.
    assert_eq!(
        (code, answer["success"].clone()),
        (StatusCode::OK, json!(false)),
        "{answer}"
    );
    let (code, answer) = room_call(
        &maestro,
        put.clone(),
        "/scheduler/fwd/rooms/nope/ping",
        Some(&secret.token("fwd", "nope")),
        Some(ping("ready")),
    )
    .await?;
    assert_eq!((code, answer), (StatusCode::OK, json!({"success": false})));

    // Maestro's documented game room (docs/tutorials/Development.md): curl's form
    // Content-Type and the timestamp as a string.
    let documented = maestro
        .http
        .put(format!("{}{ping_path}", maestro.rooms_api))
        .bearer_auth(&token_a)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"status": "ready","timestamp": "12312312313"}"#)
        .send()
        .await?;
    assert_eq!(documented.status(), StatusCode::OK);
    assert_eq!(documented.json::<Value>().await?, json!({"success": true}));

    let metrics = maestro
        .http
        .get(format!("{}/metrics", maestro.internal))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        r#"maestro_forwarder_calls_total{event="room_event",forwarder="matchmaker",outcome="failure"} 1"#,
        r#"maestro_forwarder_calls_total{event="room_event",forwarder="matchmaker",outcome="success"} 1"#,
        r#"maestro_forwarder_calls_total{event="player_event",forwarder="matchmaker",outcome="success"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // Address: the room's own token only.
    let address_path = format!("/scheduler/fwd/rooms/{a}/address");
    let get = reqwest::Method::GET;
    let (code, _) = room_call(&maestro, get.clone(), &address_path, None, None).await?;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, address) =
        room_call(&maestro, get.clone(), &address_path, Some(&token_a), None).await?;
    assert_eq!(code, StatusCode::OK, "{address}");
    assert_eq!(address["host"], "127.0.0.1");
    assert_eq!(address["ports"][0]["name"], "game");
    assert_eq!(
        address["ipv6Label"], "",
        "Maestro's GetRoomAddressResponse has it"
    );

    // The same over gRPC.
    let mut client = grpc(&maestro).await?;
    let grpc_ping = |room: &str| UpdateRoomWithPingRequest {
        scheduler_name: "fwd".into(),
        room_name: room.into(),
        status: "ready".into(),
        timestamp: 1,
        metadata: None,
        running_matches: 0,
    };
    assert!(
        client
            .update_room_with_ping(with_token(grpc_ping(b), &token_b))
            .await?
            .into_inner()
            .success
    );
    let denied = client
        .update_room_with_ping(with_token(grpc_ping(b), &token_a))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let missing = client
        .update_room_with_ping(tonic::Request::new(grpc_ping(b)))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let mut bad = grpc_ping(b);
    bad.status = "sleeping".into();
    let invalid = client
        .update_room_with_ping(with_token(bad, &token_b))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert!(invalid.message().contains("status"), "{invalid:?}");
    let forwarded = client
        .forward_room_event(with_token(
            ForwardRoomEventRequest {
                scheduler_name: "fwd".into(),
                room_name: b.into(),
                event: "grpcEvent".into(),
                timestamp: 1,
                metadata: None,
            },
            &token_b,
        ))
        .await?
        .into_inner();
    assert!(forwarded.success, "{forwarded:?}");
    assert_eq!(
        forwarder.calls("room_event").pop().unwrap().kind,
        "grpcEvent"
    );
    // Every gRPC method is counted, events included.
    let metrics = maestro
        .http
        .get(format!("{}/metrics", maestro.internal))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        r#"maestro_grpc_requests_total{code="Ok",method="ForwardRoomEvent"} 1"#,
        r#"maestro_grpc_requests_total{code="PermissionDenied",method="UpdateRoomWithPing"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // Rooms that speak gRPC become ready with their own tokens.
    create_with_rooms(
        &maestro,
        scheduler(
            "grpc-rooms",
            (46100, 46199),
            2,
            &game_room(&["--protocol", "grpc"]),
        ),
    )
    .await?;

    // A scheduler that opts out accepts rooms without a token, never with a wrong one.
    let mut body = scheduler("no-tokens", (46200, 46299), 1, &game_room(&[]));
    body["roomTokenRequired"] = json!(false);
    let ids = create_with_rooms(&maestro, body).await?;
    let path = format!("/scheduler/no-tokens/rooms/{}/ping", ids[0]);
    let (code, _) = room_call(&maestro, put.clone(), &path, None, Some(ping("ready"))).await?;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = room_call(
        &maestro,
        put.clone(),
        &path,
        Some(&token_a),
        Some(ping("ready")),
    )
    .await?;
    assert_eq!(code, StatusCode::FORBIDDEN);

    assert!(maestro.stop()?, "maestro dev stops cleanly");
    Ok(())
}

/// 100 concurrent allocations (half HTTP, half gRPC) against 50 ready game rooms: exactly 50
/// distinct rooms handed out, 50 of Maestro's "no ready rooms available" answers.
async fn allocation_hands_out_each_room_once(store: &str) -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start_with(&temporal, &["--room-store", store]).await?;
    let name = "alloc";
    create_with_rooms(
        &maestro,
        scheduler(name, (46300, 46499), 50, &game_room(&[])),
    )
    .await?;

    let path = format!("/scheduler/{name}/rooms/allocate");
    let (code, answer) = room_call(
        &maestro,
        reqwest::Method::POST,
        &path,
        Some(API_TOKEN),
        Some(json!({"metadataSelector": {"mode": "ranked"}})),
    )
    .await?;
    assert_eq!(
        code,
        StatusCode::INTERNAL_SERVER_ERROR,
        "no room reports mode=ranked: {answer}"
    );
    assert_eq!(answer["code"], 2, "{answer}");
    let (code, _) = room_call(
        &maestro,
        reqwest::Method::POST,
        "/scheduler/nobody/rooms/allocate",
        Some(API_TOKEN),
        Some(json!({})),
    )
    .await?;
    // Maestro's answer when nothing is ready, for unknown schedulers too: gRPC Unknown.
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);

    let client = grpc(&maestro).await?;
    let calls = (0..100).map(|i| {
        let (http, url, mut client) = (
            maestro.http.clone(),
            format!("{}{path}", maestro.rooms_api),
            client.clone(),
        );
        tokio::spawn(async move {
            if i % 2 == 0 {
                let answer: Value = http
                    .post(url)
                    .bearer_auth(API_TOKEN)
                    .json(&json!({}))
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::Ok((
                    answer["success"].as_bool().unwrap_or(false),
                    answer["roomId"].as_str().unwrap_or("").to_string(),
                    answer["message"].as_str().unwrap_or("").to_string(),
                ))
            } else {
                match client
                    .allocate_room(with_token(
                        AllocateRoomRequest {
                            scheduler_name: "alloc".into(),
                        },
                        API_TOKEN,
                    ))
                    .await
                {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        anyhow::Ok((answer.success, answer.room_id, answer.message))
                    }
                    Err(status) if status.code() == tonic::Code::Unknown => {
                        anyhow::Ok((false, String::new(), status.message().to_string()))
                    }
                    Err(status) => Err(status.into()),
                }
            }
        })
    });
    let mut rooms = BTreeSet::new();
    let mut refused = 0;
    for call in futures::future::join_all(calls).await {
        let (success, room, message) = call??;
        if success {
            assert!(rooms.insert(room.clone()), "room {room} handed out twice");
        } else {
            assert!(message.contains("no ready rooms available"), "{message}");
            refused += 1;
        }
    }
    assert_eq!((rooms.len(), refused), (50, 50));
    assert_eq!(maestro.rooms(name, "allocated").await?, 50);
    assert!(maestro.stop()?, "maestro dev stops cleanly");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_with_the_memory_store() -> Result<()> {
    allocation_hands_out_each_room_once("memory").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_with_the_redis_store() -> Result<()> {
    let redis = RedisServer::start().await?;
    allocation_hands_out_each_room_once(&redis.url()).await
}

/// Accepts connections and never answers a byte.
fn silent_forwarder() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("bound").to_string();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(32).collect();
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    address
}

/// A forwarder that accepts and never answers (at the longest allowed timeout, 10 s, where
/// each forwarded change used to hold its ping for up to 3 × 10 s): 20 status-changing pings
/// of its scheduler's room each answer at once, and another scheduler's forwarder still gets
/// its room's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_that_never_answers_delays_no_ping() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    let (healthy, healthy_address) = start_forwarder().await?;
    let forwarder = |address: String, timeout: u32| {
        json!([{"name": "matchmaker", "enable": true, "type": "gRPC", "address": address,
                "options": {"timeout": timeout}}])
    };
    // One ping at start, then the test pings for the room.
    let quiet = [env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "300s"];
    let mut slow = scheduler("slow-forwarder", (44100, 44109), 1, &quiet);
    slow["forwarders"] = forwarder(silent_forwarder(), 10_000);
    let mut fast = scheduler("fast-forwarder", (44110, 44119), 1, &quiet);
    fast["forwarders"] = forwarder(healthy_address, 1_000);
    let slow_room = create_with_rooms(&maestro, slow).await?.remove(0);
    let fast_room = create_with_rooms(&maestro, fast).await?.remove(0);

    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let status = if i % 2 == 0 { "occupied" } else { "ready" };
        let started = Instant::now();
        let code = maestro
            .ping_as("slow-forwarder", &slow_room, status, u32::from(i % 2 == 0))
            .await?;
        assert!(code.is_success(), "{code}");
        slowest = slowest.max(started.elapsed());
    }
    println!("slowest of 20 status-changing pings: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a ping waited {slowest:?}"
    );

    let before = healthy.calls("room_resync").len();
    let code = maestro
        .ping_as("fast-forwarder", &fast_room, "occupied", 1)
        .await?;
    assert!(code.is_success());
    eventually(
        Duration::from_secs(10),
        "the other forwarder's change",
        || async { (healthy.calls("room_resync").len() > before).then_some(()) },
    )
    .await?;
    Ok(())
}
