//! Request bodies read as grpc-gateway reads them for Maestro: whatever the `Content-Type`,
//! the body is JSON; fields no message has are ignored. Unlike grpc-gateway we say which:
//! they are logged and named in the [`IGNORED_FIELDS_HEADER`] of the answer, so a typo is
//! still visible. Errors name the offending field (`spec.containers[0].ports[0].port`).

use std::cell::RefCell;
use std::future::Future;

use axum::body::{Bytes, HttpBody as _};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt as _, Collected};
use serde::de::DeserializeOwned;
use tokio::task::futures::TaskLocalFuture;

use crate::error::{ApiError, ErrorCode};

/// Answer header naming, comma-separated, the body fields that were ignored.
pub const IGNORED_FIELDS_HEADER: &str = "x-maestro-ignored-fields";

tokio::task_local! {
    /// Where [`ValidJson`] leaves the fields it ignored while the HTTP middleware's future
    /// runs the handler. A task-local, not a request extension: an extension cost every
    /// request an `Arc`, a boxed entry and a rehash of the extension map.
    static IGNORED: RefCell<Vec<String>>;
}

/// Runs `handler` (a request's inner service future) where [`ValidJson`] can note the body
/// fields it ignored; [`ignored_fields`] reads them afterwards.
pub(crate) fn noting_ignored<F: Future>(handler: F) -> TaskLocalFuture<RefCell<Vec<String>>, F> {
    IGNORED.scope(RefCell::new(Vec::new()), handler)
}

/// The fields noted while `scope` ran (empty if none, or if they were already read).
pub(crate) fn ignored_fields<F: Future>(
    scope: std::pin::Pin<&mut TaskLocalFuture<RefCell<Vec<String>>, F>>,
) -> Vec<String> {
    scope
        .take_value()
        .map(RefCell::into_inner)
        .unwrap_or_default()
}

/// Names `fields`, the ignored body fields of the request to `path`, in the answer's
/// [`IGNORED_FIELDS_HEADER`] and in a warning.
pub(crate) fn answer_ignored(fields: &[String], path: &str, response: &mut Response) {
    if fields.is_empty() {
        return;
    }
    let fields = fields.join(",");
    tracing::warn!(path = %path, fields = %fields, "request fields ignored: no such field");
    if let Ok(value) = HeaderValue::from_str(&fields) {
        response.headers_mut().insert(IGNORED_FIELDS_HEADER, value);
    }
}

pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body that declares a length under every limit the APIs set needs no limit
        // wrapper: hyper never reads past the declared length. Skipping it saves boxing the
        // body again on every ping.
        let bytes = if is_small(&req) {
            req.into_body()
                .collect()
                .await
                .map(Collected::to_bytes)
                .map_err(|e| ApiError::invalid_field("body", e.to_string()))?
        } else {
            read_limited(req, state).await?
        };
        let (value, fields) = parse_reporting(&bytes)?;
        // Named in the answer and logged by the HTTP middleware, which knows the path;
        // outside it (no scope) there is no one to tell.
        if !fields.is_empty() {
            let _ = IGNORED.try_with(|noted| noted.borrow_mut().extend(fields));
        }
        Ok(ValidJson(value))
    }
}

/// Bodies up to this size, with their length declared, are read without a limit wrapper;
/// well under the smallest limit any API sets ([`crate::ROOMS_BODY_LIMIT`]).
const SMALL_BODY: u64 = 16 << 10;

fn is_small(req: &Request) -> bool {
    req.body()
        .size_hint()
        .exact()
        .is_some_and(|length| length <= SMALL_BODY)
}

/// The body, within the route's `DefaultBodyLimit` (413 past it).
async fn read_limited<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::field(
                ErrorCode::PayloadTooLarge,
                "body",
                "larger than this API accepts",
            )
        } else {
            ApiError::invalid_field("body", e.body_text())
        }
    })
}

/// Parses JSON, reporting the path of the first field that does not fit; unknown fields
/// are ignored.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_reporting(bytes).map(|(value, _)| value)
}

/// [`parse`], also answering the paths of the fields it ignored.
pub fn parse_reporting<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Vec<String>), ApiError> {
    let mut ignored = Vec::new();
    // Tracking where the error is costs an allocation per field read: paid only once a
    // body does not fit, by reading it again (every ping takes the first path).
    let parsed = {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let mut note = |path: serde_ignored::Path| ignored.push(path.to_string());
        serde_ignored::deserialize(de, &mut note)
    };
    match parsed {
        Ok(value) => Ok((value, ignored)),
        Err(first) => {
            let de = &mut serde_json::Deserializer::from_slice(bytes);
            Err(match serde_path_to_error::deserialize::<_, T>(de) {
                Err(e) => field_error(e, "body"),
                // The same reading twice: not reached, but never a success.
                Ok(_) => ApiError::invalid_field("body", first.to_string()),
            })
        }
    }
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
        let err = parse::<Scheduler>(br#"{"name":"a","game":"g","maxSurge":"1","spec":{"terminationGracePeriod":"1s","containers":[{"name":"c","image":"i","ports":[{"name":"p","protocol":"udp","port":"x"}]}]}}"#).unwrap_err();
        assert_eq!(err.fields[0].field, "spec.containers[0].ports[0].port");
        let err = parse::<Scheduler>(b"{").unwrap_err();
        assert_eq!(err.fields[0].field, "body");
        let err = parse::<Scheduler>(br#"{"game":"g"}"#).unwrap_err();
        assert!(err.fields[0].message.contains("name"), "{err:?}");
    }

    #[test]
    fn unknown_fields_are_ignored_and_named() {
        let (scheduler, ignored) = parse_reporting::<Scheduler>(br#"{"name":"a","game":"g","maxSurge":"1","typo":1,"spec":{"terminationGracePeriod":"1s","containers":[{"name":"c","image":"i","imagePulPolicy":"Always"}]}}"#).unwrap();
        assert_eq!(scheduler.name, "a");
        assert_eq!(ignored, ["typo", "spec.containers.0.imagePulPolicy"]);
    }
}
