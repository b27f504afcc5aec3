//! `maestro-proto`: the gRPC contracts, generated from `proto/*.proto` by tonic/prost.
//!
//! Owns the rooms API service (`maestro.rooms.v1.RoomsService`: the same messages as the
//! HTTP rooms routes) and Maestro's event forwarder interface (`eventforwarder.GRPCForwarder`).
//!
//! Must not contain behaviour: only generated types, clients and server traits.

#![allow(clippy::all, clippy::pedantic)]

pub mod rooms {
    tonic::include_proto!("maestro.rooms.v1");
}

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
