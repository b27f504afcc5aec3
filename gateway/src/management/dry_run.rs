//! `?dryRun=true` on mutating endpoints: the answer is the plan (what would be enqueued and
//! what it would do) and nothing is submitted.

use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use serde_json::Value;

use super::OrPlan;
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

/// Documented once here for every endpoint that takes it.
impl utoipa::IntoParams for DryRun {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![query_flag("dryRun", "answer the plan, enqueue nothing")]
    }
}

pub(super) fn query_flag(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{Required, Type, schema::ObjectBuilder};
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::Boolean)))
        .build()
}

/// The answer to `?dryRun=true`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunAnswer {
    /// Always true.
    pub dry_run: bool,
    /// What would be enqueued and what it would do (definitionName, rooms, versions).
    pub plan: BTreeMap<String, Value>,
}

/// The answer to a dry run: `plan` is a JSON object of what would happen.
pub fn planned<T>(plan: Value) -> OrPlan<T> {
    let plan = match plan {
        Value::Object(map) => map.into_iter().collect(),
        other => BTreeMap::from([("plan".to_string(), other)]),
    };
    OrPlan::Planned(DryRunAnswer {
        dry_run: true,
        plan,
    })
}
