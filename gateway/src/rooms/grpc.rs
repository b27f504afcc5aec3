//! The game rooms API over gRPC (`api.v1.RoomsService`): the same behaviour as the
//! HTTP routes, through [`RoomService`]. A room sends its token as `authorization: Bearer …`
//! request metadata.

use tonic::{Request, Response, Status};

use maestro_proto::rooms::rooms_service_server::{RoomsService, RoomsServiceServer};
use maestro_proto::rooms::{
    AllocateRoomRequest, AllocateRoomResponse, ForwardPlayerEventRequest,
    ForwardPlayerEventResponse, ForwardRoomEventRequest, ForwardRoomEventResponse,
    GetRoomAddressRequest, GetRoomAddressResponse, Port, UpdateRoomStatusRequest,
    UpdateRoomStatusResponse, UpdateRoomWithPingRequest, UpdateRoomWithPingResponse,
};

use super::service::{EventMessage, PingMessage, RoomService};
use maestro_proto::pbstruct::from_struct;

pub struct RoomsGrpc {
    service: RoomService,
}

/// The service's methods, as they label `maestro_grpc_*` series.
const METHODS: [&str; 6] = [
    "UpdateRoomWithPing",
    "UpdateRoomStatus",
    "ForwardRoomEvent",
    "ForwardPlayerEvent",
    "GetRoomAddress",
    "AllocateRoom",
];

/// The tonic service to add to a server. Each method's series start at zero, so the first
/// call shows as a rate and a fresh dashboard charts them before any room used gRPC.
pub fn server(service: RoomService) -> RoomsServiceServer<RoomsGrpc> {
    service.metrics().grpc_methods(&METHODS);
    RoomsServiceServer::new(RoomsGrpc { service })
}

fn token<T>(request: &Request<T>) -> Option<String> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    crate::credentials::bearer_token(value).map(str::to_string)
}

fn ports(ports: Vec<maestro_core::room::RoomPort>) -> Vec<Port> {
    ports
        .into_iter()
        .map(|p| Port {
            name: p.name,
            protocol: p.protocol,
            port: i32::from(p.port),
        })
        .collect()
}

impl RoomsGrpc {
    async fn ping(
        &self,
        request: Request<UpdateRoomWithPingRequest>,
    ) -> Result<Response<UpdateRoomWithPingResponse>, Status> {
        let token = token(&request);
        let r = request.into_inner();
        let message = PingMessage {
            status: r.status,
            running_matches: r.running_matches,
            metadata: r.metadata.map(from_struct),
        };
        let success = self
            .service
            .ping(&r.scheduler_name, &r.room_name, token.as_deref(), message)
            .await?;
        Ok(Response::new(UpdateRoomWithPingResponse { success }))
    }

    async fn status(
        &self,
        request: Request<UpdateRoomStatusRequest>,
    ) -> Result<Response<UpdateRoomStatusResponse>, Status> {
        let token = token(&request);
        let r = request.into_inner();
        let outcome = self
            .service
            .status(
                &r.scheduler_name,
                &r.room_name,
                token.as_deref(),
                r.status,
                r.metadata.map(from_struct).unwrap_or_default(),
            )
            .await?;
        Ok(Response::new(UpdateRoomStatusResponse {
            success: outcome.success,
        }))
    }

    async fn event(
        &self,
        token: Option<String>,
        (scheduler, room, event, metadata): (String, String, String, Option<prost_types::Struct>),
        player: bool,
    ) -> Result<super::service::EventOutcome, Status> {
        let message = EventMessage {
            event,
            metadata: metadata.map(from_struct).unwrap_or_default(),
        };
        let outcome = self
            .service
            .event(&scheduler, &room, token.as_deref(), message, player)
            .await?;
        Ok(outcome)
    }
}

impl RoomsGrpc {
    /// Counts and times one call by method and answer code.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl std::future::Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        debug_assert!(METHODS.contains(&method), "{method} is not in METHODS");
        let started = std::time::Instant::now();
        let result = call.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.service.metrics().grpc(method, code, started);
        result
    }
}

#[tonic::async_trait]
impl RoomsService for RoomsGrpc {
    async fn update_room_with_ping(
        &self,
        request: Request<UpdateRoomWithPingRequest>,
    ) -> Result<Response<UpdateRoomWithPingResponse>, Status> {
        self.observed("UpdateRoomWithPing", self.ping(request))
            .await
    }

    async fn update_room_status(
        &self,
        request: Request<UpdateRoomStatusRequest>,
    ) -> Result<Response<UpdateRoomStatusResponse>, Status> {
        self.observed("UpdateRoomStatus", self.status(request))
            .await
    }

    async fn forward_room_event(
        &self,
        request: Request<ForwardRoomEventRequest>,
    ) -> Result<Response<ForwardRoomEventResponse>, Status> {
        let token = token(&request);
        let r = request.into_inner();
        let call = async {
            let o = self
                .event(
                    token,
                    (r.scheduler_name, r.room_name, r.event, r.metadata),
                    false,
                )
                .await?;
            Ok(Response::new(ForwardRoomEventResponse {
                success: o.success,
                message: o.message,
            }))
        };
        self.observed("ForwardRoomEvent", call).await
    }

    async fn forward_player_event(
        &self,
        request: Request<ForwardPlayerEventRequest>,
    ) -> Result<Response<ForwardPlayerEventResponse>, Status> {
        let token = token(&request);
        let r = request.into_inner();
        let call = async {
            let o = self
                .event(
                    token,
                    (r.scheduler_name, r.room_name, r.event, r.metadata),
                    true,
                )
                .await?;
            Ok(Response::new(ForwardPlayerEventResponse {
                success: o.success,
                message: o.message,
            }))
        };
        self.observed("ForwardPlayerEvent", call).await
    }

    async fn get_room_address(
        &self,
        request: Request<GetRoomAddressRequest>,
    ) -> Result<Response<GetRoomAddressResponse>, Status> {
        self.observed("GetRoomAddress", self.address(request)).await
    }

    async fn allocate_room(
        &self,
        request: Request<AllocateRoomRequest>,
    ) -> Result<Response<AllocateRoomResponse>, Status> {
        self.observed("AllocateRoom", self.allocate(request)).await
    }
}

impl RoomsGrpc {
    async fn address(
        &self,
        request: Request<GetRoomAddressRequest>,
    ) -> Result<Response<GetRoomAddressResponse>, Status> {
        let token = token(&request);
        let r = request.into_inner();
        let address = self
            .service
            .address(&r.scheduler_name, &r.room_name, token.as_deref())
            .await?;
        Ok(Response::new(GetRoomAddressResponse {
            host: address.host,
            ports: ports(address.ports),
            ipv6_label: address.ipv6_label,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRoomRequest>,
    ) -> Result<Response<AllocateRoomResponse>, Status> {
        let credential = token(&request);
        let r = request.into_inner();
        let allocation = self
            .service
            .allocate(
                &r.scheduler_name,
                &Default::default(),
                credential.as_deref(),
            )
            .await?;
        match allocation {
            Some(a) => Ok(Response::new(AllocateRoomResponse {
                room_id: a.room_id,
                success: true,
                message: String::new(),
                host: a.address.host,
                ports: ports(a.address.ports),
            })),
            // Maestro's answer: Unknown with its storage's reason.
            None => Err(Status::unknown(format!(
                "no ready rooms available for scheduler {}",
                r.scheduler_name
            ))),
        }
    }
}
