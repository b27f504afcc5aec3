//! A JSON body extractor whose errors name the offending field (`spec.containers[0].port`)
//! instead of axum's generic rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use axum::http::StatusCode;

use crate::error::{ApiError, ErrorCode};

pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_content = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim())
            .is_none_or(|v| v == "application/json" || v.ends_with("+json"));
        if !json_content {
            return Err(ApiError::field(
                ErrorCode::UnsupportedMediaType,
                "Content-Type",
                "must be application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::field(
                    ErrorCode::PayloadTooLarge,
                    "body",
                    "larger than this API accepts",
                )
            } else {
                ApiError::invalid_field("body", e.body_text())
            }
        })?;
        parse(&bytes).map(ValidJson)
    }
}

/// Parses JSON, reporting the path of the first field that does not fit.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| field_error(e, "body"))
}

/// A deserialization error as an API error naming the field; `whole` names the input itself.
fn field_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>, whole: &str) -> ApiError {
    let path = e.path().to_string();
    // "." is the document itself; "?" an unknown position (a truncated body).
    let field = match path.as_str() {
        "." | "?" | "" => whole.to_string(),
        _ => path,
    };
    ApiError::invalid_field(field, e.into_inner().to_string())
}

/// Query parameters whose errors are JSON naming the parameter, like every other error of
/// the API (axum's own rejection is plain text).
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ValidQuery)
            .map_err(|e| field_error(e, "query"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_core::Scheduler;

    #[test]
    fn type_errors_name_the_field() {
        let err = parse::<Scheduler>(br#"{"name":"a","game":"g","maxSurge":"1","spec":{"terminationGracePeriod":"1s","containers":[{"name":"c","image":"i","ports":[{"name":"p","protocol":"UDP","port":"x"}]}]}}"#).unwrap_err();
        assert_eq!(err.fields[0].field, "spec.containers[0].ports[0].port");
        let err = parse::<Scheduler>(b"{").unwrap_err();
        assert_eq!(err.fields[0].field, "body");
        let err = parse::<Scheduler>(br#"{"game":"g"}"#).unwrap_err();
        assert!(err.fields[0].message.contains("name"), "{err:?}");
    }
}
