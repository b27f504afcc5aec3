//! Management API authentication: a bearer token from the configured set on every route but
//! the health checks. Turning it off takes an explicit insecure mode (`maestro dev` sets it
//! and says so loudly at start).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};

/// Routes anyone may call: probes (load balancers call them without credentials) and the
/// API's own documentation.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/openapi.json", "/docs"];

#[derive(Clone)]
pub enum ManagementAuth {
    /// Every request needs `Authorization: Bearer <one of these>`.
    Tokens(Arc<Vec<String>>),
    /// No authentication at all (development only).
    Insecure,
}

impl ManagementAuth {
    /// Tokens from a comma- or newline-separated list; empty entries are ignored. `None`
    /// when the list holds no token (a deployment must then choose insecure explicitly).
    pub fn from_list(list: &str) -> Option<Self> {
        let tokens: Vec<String> = list
            .split([',', '\n'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        (!tokens.is_empty()).then(|| Self::Tokens(Arc::new(tokens)))
    }

    fn admits(&self, presented: &str) -> bool {
        match self {
            Self::Insecure => true,
            // Compare every token in full so the time taken says nothing about a near miss.
            Self::Tokens(tokens) => tokens.iter().fold(false, |found, token| {
                found | constant_time_eq(token, presented)
            }),
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// axum middleware for the management API.
pub async fn require_token(
    State(auth): State<ManagementAuth>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(auth, ManagementAuth::Insecure) || OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => ApiError::new(
            ErrorCode::Unauthenticated,
            "send `Authorization: Bearer <token>` (a management API token)",
        )
        .into_response(),
        Some(token) if !auth.admits(token) => {
            ApiError::new(ErrorCode::PermissionDenied, "this token is not accepted").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lists() {
        assert!(ManagementAuth::from_list(" , \n").is_none());
        let auth = ManagementAuth::from_list("alpha, beta\ngamma").unwrap();
        assert!(auth.admits("beta") && auth.admits("gamma"));
        assert!(!auth.admits("bet") && !auth.admits("betaa") && !auth.admits(""));
        assert!(ManagementAuth::Insecure.admits("anything"));
    }
}
