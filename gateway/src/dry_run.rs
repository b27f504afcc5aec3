//! `?dryRun=true` on mutating endpoints: the answer is the plan (what would be enqueued and
//! what it would do) and nothing is submitted.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Whether the request asked for a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DryRun(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for DryRun {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
            if key == "dryRun" {
                return match value {
                    "true" | "1" | "" => Ok(Self(true)),
                    "false" | "0" => Ok(Self(false)),
                    other => Err(ApiError::invalid_field(
                        "dryRun",
                        format!("{other:?} is not true or false"),
                    )),
                };
            }
        }
        Ok(Self(false))
    }
}

/// The answer to a dry run.
pub fn planned(plan: Value) -> Json<Value> {
    Json(json!({ "dryRun": true, "plan": plan }))
}
