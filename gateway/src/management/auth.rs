//! Management API authentication and authorization: a bearer token of the configured list
//! (`crate::credentials`) on every route but the probes and the API's own documentation,
//! with the role the request needs — `read` for reads, `write` for changes, `admin` to
//! delete a scheduler. Turning it off takes an explicit insecure mode (`maestro dev` sets
//! it and says so loudly at start).

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::credentials::{Credentials, Role, bearer_token};
use crate::error::{ApiError, ErrorCode};

/// Routes anyone may call: probes (load balancers call them without credentials); the
/// API's own documentation and index are open too (`crate::docs`: they hold no data).
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

#[derive(Clone)]
pub enum ManagementAuth {
    /// Every request needs `Authorization: Bearer <a token>` whose role allows it.
    Tokens(Credentials),
    /// No authentication at all (development only).
    Insecure,
}

impl ManagementAuth {
    /// The configured tokens; `Ok(None)` when the list holds none (a deployment must then
    /// choose insecure explicitly).
    pub fn from_list(list: &str) -> Result<Option<Self>, String> {
        Ok(Credentials::from_list(list)?.map(Self::Tokens))
    }

    /// The credentials, for the rooms API's matchmaker calls; `None` when insecure.
    pub fn credentials(&self) -> Option<&Credentials> {
        match self {
            Self::Tokens(credentials) => Some(credentials),
            Self::Insecure => None,
        }
    }
}

/// The role a management request needs: deleting a scheduler (`DELETE /schedulers/{name}`)
/// is `admin`; any other change `write`; reads `read`.
fn needed(method: &Method, path: &str) -> Role {
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        return Role::Read;
    }
    let scheduler_itself = path
        .strip_prefix("/schedulers/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
    if *method == Method::DELETE && scheduler_itself {
        Role::Admin
    } else {
        Role::Write
    }
}

/// axum middleware for the management API.
pub async fn require_token(
    State(auth): State<ManagementAuth>,
    request: Request,
    next: Next,
) -> Response {
    let ManagementAuth::Tokens(credentials) = &auth else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) || crate::docs::is_docs_path(path) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = presented else {
        return ApiError::new(
            ErrorCode::Unauthenticated,
            "send `Authorization: Bearer <token>` (a management API token)",
        )
        .into_response();
    };
    let Some(role) = credentials.role_of(token) else {
        return ApiError::new(ErrorCode::PermissionDenied, "this token is not accepted")
            .into_response();
    };
    let needed = needed(request.method(), request.uri().path());
    if !role.allows(needed) {
        return ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "this token's role ({}) cannot do this: {} {} needs a {} token",
                role.as_str(),
                request.method(),
                request.uri().path(),
                needed.as_str()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_a_scheduler_is_admin_other_changes_write_reads_read() {
        assert_eq!(needed(&Method::GET, "/schedulers/game"), Role::Read);
        assert_eq!(needed(&Method::DELETE, "/schedulers/game"), Role::Admin);
        assert_eq!(needed(&Method::POST, "/schedulers"), Role::Write);
        assert_eq!(
            needed(&Method::POST, "/schedulers/game/add-rooms"),
            Role::Write
        );
        assert_eq!(needed(&Method::PATCH, "/schedulers/game"), Role::Write);
        assert_eq!(
            needed(&Method::POST, "/schedulers/game/operations/x/cancel"),
            Role::Write
        );
    }
}
