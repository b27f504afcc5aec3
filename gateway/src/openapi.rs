//! The management API's OpenAPI 3 document, generated from the handlers' annotations
//! (`utoipa`) and served at `/openapi.json`, with Swagger UI at `/docs`.
//!
//! The types here only describe answers that handlers build as JSON values.

use std::collections::BTreeMap;

use maestro_core::{GameRoom, Operation, Scheduler, Timestamp, Version};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(Serialize, ToSchema)]
pub struct SchedulerAnswer {
    pub scheduler: Scheduler,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerSummaryDoc {
    pub name: String,
    pub game: String,
    pub state: Option<maestro_core::SchedulerState>,
    pub version: String,
    pub port_range: Option<maestro_core::scheduler::PortRange>,
    pub created_at: Option<Timestamp>,
    pub max_surge: String,
    pub rooms_replicas: i64,
    pub match_allocation: Option<maestro_core::scheduler::MatchAllocation>,
}

#[derive(Serialize, ToSchema)]
pub struct SchedulerList {
    pub schedulers: Vec<SchedulerSummaryDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct SchedulerInfoList {
    /// Per scheduler: name, game, state, roomsReplicas, roomsReady, roomsOccupied,
    /// roomsPending, roomsTerminating, autoscaling, matchAllocation.
    pub schedulers: Vec<BTreeMap<String, Value>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationAcceptedDoc {
    pub operation_id: String,
}

/// The answer to `?dryRun=true`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunAnswer {
    pub dry_run: bool,
    /// What would be enqueued and what it would do (definitionName, rooms, versions).
    pub plan: BTreeMap<String, Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationSummaryDoc {
    pub id: String,
    pub status: maestro_core::OperationStatus,
    pub definition_name: String,
    pub scheduler_name: String,
    pub created_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationsPage {
    pub page: u32,
    pub page_size: u32,
    pub total: u32,
    pub operations: Vec<OperationSummaryDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct OperationAnswer {
    pub operation: Operation,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionDoc {
    pub version: Version,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub failed: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<GameRoom>,
}

#[derive(Serialize, ToSchema)]
pub struct RoomAnswer {
    pub room: GameRoom,
}

/// Bearer-token security on every operation (the health checks need none).
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Swagger UI for `/openapi.json`; the browser loads Swagger UI itself from a CDN, so
/// nothing is downloaded at build time.
pub const SWAGGER_UI: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Maestro management API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"##;
