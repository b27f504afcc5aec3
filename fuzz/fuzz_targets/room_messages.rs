//! What rooms and matchmakers send to the rooms API, over HTTP (JSON) and gRPC (protobuf,
//! metadata as `google.protobuf.Struct`): decoding must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maestro_core::PingStatus;
use maestro_proto::http::{AllocateRequest, EventRequest, PingRequest};
use maestro_proto::pbstruct::{from_struct, to_struct};
use maestro_proto::rooms::{
    AllocateRoomRequest, ForwardPlayerEventRequest, ForwardRoomEventRequest,
    UpdateRoomWithPingRequest,
};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(ping) = serde_json::from_slice::<PingRequest>(data) {
        let _ = PingStatus::parse(&ping.status);
    }
    let _ = serde_json::from_slice::<EventRequest>(data);
    let _ = serde_json::from_slice::<AllocateRequest>(data);
    if let Ok(ping) = UpdateRoomWithPingRequest::decode(data) {
        let _ = PingStatus::parse(&ping.status);
        if let Some(metadata) = ping.metadata {
            // Metadata goes to JSON and back to the forwarders as a Struct.
            let json = from_struct(metadata);
            let _ = to_struct(&json);
        }
    }
    if let Ok(event) = ForwardRoomEventRequest::decode(data) {
        let _ = event.metadata.map(from_struct);
    }
    if let Ok(event) = ForwardPlayerEventRequest::decode(data) {
        let _ = event.metadata.map(from_struct);
    }
    let _ = AllocateRoomRequest::decode(data);
});
