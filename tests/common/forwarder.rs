//! An event forwarder (Maestro's `GRPCForwarder` service, from topfreegames/protos) on a
//! loopback port: it records every call and answers the code the test sets.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use maestro_proto::eventforwarder::grpc_forwarder_server::{GrpcForwarder, GrpcForwarderServer};
use maestro_proto::eventforwarder::player_event::PlayerEventType;
use maestro_proto::eventforwarder::room_status::RoomStatusType;
use maestro_proto::eventforwarder::{
    PlayerEvent, Response as FwdResponse, Room, RoomEvent, RoomInfo, RoomStatus,
};
use serde_json::Value;

/// One call a forwarder received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub call: &'static str,
    pub room_id: String,
    pub game: String,
    pub room_type: String,
    pub kind: String,
    pub player_id: String,
    pub metadata: Value,
}

/// An event forwarder (Maestro's `GRPCForwarder`) that records what it receives and answers
/// the code the test sets.
#[derive(Clone)]
pub struct FakeForwarder {
    pub received: Arc<Mutex<Vec<Received>>>,
    pub answer_code: Arc<Mutex<i32>>,
}

fn map_json(map: std::collections::HashMap<String, String>) -> Value {
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

impl FakeForwarder {
    fn record(&self, mut received: Received) -> tonic::Result<tonic::Response<FwdResponse>> {
        received.metadata = received.metadata.clone();
        self.received.lock().unwrap().push(received);
        Ok(tonic::Response::new(FwdResponse {
            code: *self.answer_code.lock().unwrap(),
            message: "recorded".into(),
        }))
    }

    pub fn calls(&self, call: &str) -> Vec<Received> {
        let all = self.received.lock().unwrap();
        all.iter().filter(|r| r.call == call).cloned().collect()
    }
}

fn received(
    call: &'static str,
    room: Option<maestro_proto::eventforwarder::Room>,
    kind: String,
    player_id: String,
    metadata: std::collections::HashMap<String, String>,
) -> Received {
    let room = room.unwrap_or_default();
    // Room calls carry their metadata on the room; a player event on the event.
    let metadata = if metadata.is_empty() {
        map_json(room.metadata)
    } else {
        map_json(metadata)
    };
    Received {
        call,
        room_id: room.room_id,
        game: room.game,
        room_type: room.room_type,
        kind,
        player_id,
        metadata,
    }
}

fn status_name(value: i32) -> String {
    RoomStatusType::try_from(value).map_or_else(
        |_| format!("unknown {value}"),
        |t| t.as_str_name().to_string(),
    )
}

#[tonic::async_trait]
impl GrpcForwarder for FakeForwarder {
    async fn send_room_event(
        &self,
        r: tonic::Request<RoomEvent>,
    ) -> tonic::Result<tonic::Response<FwdResponse>> {
        let r = r.into_inner();
        self.record(received(
            "room_event",
            r.room,
            r.event_type,
            String::new(),
            r.metadata,
        ))
    }
    async fn send_room_status(
        &self,
        r: tonic::Request<RoomStatus>,
    ) -> tonic::Result<tonic::Response<FwdResponse>> {
        let r = r.into_inner();
        let kind = status_name(r.status_type);
        self.record(received(
            "room_status",
            r.room,
            kind,
            String::new(),
            Default::default(),
        ))
    }
    async fn send_room_ping(
        &self,
        r: tonic::Request<Room>,
    ) -> tonic::Result<tonic::Response<FwdResponse>> {
        let r = r.into_inner();
        self.record(received(
            "room_ping",
            Some(r),
            String::new(),
            String::new(),
            Default::default(),
        ))
    }
    async fn send_room_resync(
        &self,
        r: tonic::Request<RoomStatus>,
    ) -> tonic::Result<tonic::Response<FwdResponse>> {
        let r = r.into_inner();
        let kind = status_name(r.status_type);
        self.record(received(
            "room_resync",
            r.room,
            kind,
            String::new(),
            Default::default(),
        ))
    }
    async fn send_player_event(
        &self,
        r: tonic::Request<PlayerEvent>,
    ) -> tonic::Result<tonic::Response<FwdResponse>> {
        let r = r.into_inner();
        let kind = PlayerEventType::try_from(r.event_type)
            .map_or_else(|_| "unknown".to_string(), |t| t.as_str_name().to_string());
        self.record(received(
            "player_event",
            r.room,
            kind,
            r.player_id,
            r.metadata,
        ))
    }
    async fn send_room_info(
        &self,
        _r: tonic::Request<RoomInfo>,
    ) -> tonic::Result<tonic::Response<FwdResponse>> {
        self.record(received(
            "room_info",
            None,
            String::new(),
            String::new(),
            Default::default(),
        ))
    }
}

pub async fn start_forwarder() -> Result<(FakeForwarder, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let forwarder = FakeForwarder {
        received: Arc::default(),
        answer_code: Arc::new(Mutex::new(200)),
    };
    let service = GrpcForwarderServer::new(forwarder.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok((forwarder, address))
}
