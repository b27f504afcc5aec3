//! The rooms API's HTTP JSON messages (Maestro's shapes): what rooms and matchmakers send.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Maestro's ping/status message. `timestamp` is the room's clock (unix seconds); Maestro
/// records its own receive time, and so do we.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingRequest {
    pub status: String,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub running_matches: i64,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// Maestro's room/player event message.
#[derive(Debug, Deserialize)]
pub struct EventRequest {
    pub event: String,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
}

/// Maestro's allocate body is `{}`; `metadataSelector` is our extension.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocateRequest {
    #[serde(default)]
    pub metadata_selector: BTreeMap<String, String>,
}
