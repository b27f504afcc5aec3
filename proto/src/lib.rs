//! `maestro-proto`: the gRPC contracts, generated from `proto/*.proto` by tonic/prost.
//!
//! Owns the rooms API service (Maestro's `api.v1.RoomsService`: the same messages as the
//! HTTP rooms routes) and Maestro's event forwarder interface (`eventforwarder.GRPCForwarder`).
//!
//! Also owns the rooms API's HTTP JSON messages ([`http`]) and the JSON ↔
//! `google.protobuf.Struct` conversion for metadata ([`pbstruct`]): decoding what rooms send,
//! over either transport, lives here so it can be fuzzed on its own.
//!
//! Must not contain behaviour beyond decoding: no I/O, no room logic.

pub mod http;
pub mod pbstruct;

#[allow(clippy::all, clippy::pedantic)]
pub mod rooms {
    tonic::include_proto!("api.v1");
}

#[allow(clippy::all, clippy::pedantic)]
pub mod eventforwarder {
    tonic::include_proto!("eventforwarder");
}

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn ping_messages_round_trip_on_the_wire() {
        let ping = super::rooms::UpdateRoomWithPingRequest {
            scheduler_name: "s".into(),
            room_name: "r".into(),
            status: "ready".into(),
            timestamp: 1,
            metadata: None,
            running_matches: 2,
        };
        let bytes = ping.encode_to_vec();
        let back = super::rooms::UpdateRoomWithPingRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, ping);
    }
}
