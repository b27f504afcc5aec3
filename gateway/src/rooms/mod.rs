//! The game rooms API (Maestro's rooms API): pings, room and player events, address and
//! allocation over HTTP (`http`) and gRPC (`grpc`), both thin over one [`RoomService`]
//! (`service`: room tokens, the room store, the scheduler directory, event forwarders).

pub mod directory;
pub mod forwarders;
pub mod grpc;
pub mod http;
pub mod service;
mod tokens;

pub use service::RoomService;
