//! What each API serves about itself: its OpenAPI document at `/openapi.json`, Swagger UI
//! at `/docs/` (its assets are compiled into the binary, `utoipa-swagger-ui`'s vendored
//! copy, so the page works with no internet), and a small JSON index at `/` with links.
//! It owns no route of the APIs themselves and holds no data, so it needs no credentials.

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

/// Where the document and the page are served, on every API port.
pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// Bearer-token security on every operation (the health checks need none).
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
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

/// `GET /`: what this port serves, so a person who opens it in a browser finds the rest.
#[derive(Debug, Clone, Serialize)]
struct Index {
    name: &'static str,
    api: &'static str,
    version: &'static str,
    links: Links,
}

#[derive(Debug, Clone, Serialize)]
struct Links {
    docs: String,
    openapi: &'static str,
    healthz: &'static str,
    readyz: &'static str,
    metrics: &'static str,
}

/// The index, the document and Swagger UI for one API (`api` names it in the index).
pub fn routes(api: &'static str, openapi: OpenApi) -> Router {
    let index = Index {
        name: "maestro",
        api,
        version: env!("CARGO_PKG_VERSION"),
        links: Links {
            docs: format!("{DOCS_PATH}/"),
            openapi: OPENAPI_PATH,
            healthz: "/healthz",
            readyz: "/readyz",
            metrics: "/metrics",
        },
    };
    Router::new()
        .route("/", get(move || async move { Json(index.clone()) }))
        .merge(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, openapi))
}

/// Whether a path is one of [`routes`]' (no credentials needed).
pub fn is_docs_path(path: &str) -> bool {
    path == "/"
        || path == OPENAPI_PATH
        || path
            .strip_prefix(DOCS_PATH)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
