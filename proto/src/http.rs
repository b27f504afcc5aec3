//! The rooms API's HTTP JSON messages, read as grpc-gateway reads Maestro's (protojson):
//! lowerCamelCase or proto (snake_case) names, every `int64` as a JSON number or string.

use std::collections::BTreeMap;

use serde::de::{Error, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Maestro's ping/status message. `timestamp` is the room's clock (unix seconds); Maestro
/// records its own receive time, and so do we.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingRequest {
    /// `ready`, `occupied`, `terminating` or `terminated`.
    #[serde(default)]
    pub status: String,
    /// The room's clock, unix seconds (a JSON number or a decimal string, as protojson).
    #[serde(default, deserialize_with = "int64")]
    pub timestamp: i64,
    /// Matches the room is running now (`running_matches` is read too).
    #[serde(default, alias = "running_matches", deserialize_with = "int64")]
    pub running_matches: i64,
    /// Free-form; kept with the room and matched by allocation's `metadataSelector`.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// Maestro's room/player event message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EventRequest {
    /// The event's name: forwarded as it is (`playerJoin`/`playerLeft` for player events).
    #[serde(default)]
    pub event: String,
    #[serde(default, deserialize_with = "int64")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "or_default")]
    pub metadata: BTreeMap<String, Value>,
}

/// Maestro's allocate body is `{}`; `metadataSelector` is our extension.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocateRequest {
    /// Only a ready room whose reported metadata has every one of these values.
    #[serde(default, alias = "metadata_selector")]
    pub metadata_selector: BTreeMap<String, String>,
}

/// protojson's `int64`: a JSON number or a decimal string (`"12312312313"`); `null` is 0.
/// Read by a visitor, not through a `serde_json::Value`: two of these are in every ping.
pub fn int64<'de, D: Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    de.deserialize_any(Int64)
}

struct Int64;

impl<'de> Visitor<'de> for Int64 {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a 64-bit integer (number or string)")
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is not a 64-bit integer")))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
        // protojson accepts an integral float (`1e3`, `5.0`).
        if v.fract() == 0.0 && v.abs() < 9.2e18 {
            Ok(v as i64)
        } else {
            Err(E::custom(format!("{v} is not a 64-bit integer")))
        }
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<i64, E> {
        s.trim()
            .parse()
            .map_err(|_| E::custom(format!("{s:?} is not a 64-bit integer")))
    }

    fn visit_unit<E: Error>(self) -> Result<i64, E> {
        Ok(0)
    }

    fn visit_none<E: Error>(self) -> Result<i64, E> {
        Ok(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<i64, D::Error> {
        de.deserialize_any(self)
    }
}

/// `null` for a message field means "not sent".
fn or_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    de: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_reads_numbers_and_strings_as_protojson_does() {
        // Maestro's documented game room ping (docs/reference/GameRoom.md).
        let ping: PingRequest =
            serde_json::from_str(r#"{"status":"ready","timestamp":"12312312313"}"#).unwrap();
        assert_eq!(ping.timestamp, 12_312_312_313);
        let ping: PingRequest =
            serde_json::from_str(r#"{"status":"occupied","running_matches":"2","timestamp":5}"#)
                .unwrap();
        assert_eq!((ping.running_matches, ping.timestamp), (2, 5));
        assert!(serde_json::from_str::<PingRequest>(r#"{"timestamp":"soon"}"#).is_err());
        assert!(serde_json::from_str::<PingRequest>(r#"{"timestamp":1.5}"#).is_err());
        let ping: PingRequest =
            serde_json::from_str(r#"{"runningMatches":null,"timestamp":1e3}"#).unwrap();
        assert_eq!((ping.running_matches, ping.timestamp), (0, 1000));
        let ping: PingRequest = serde_json::from_str(r#"{"timestamp":" -7 "}"#).unwrap();
        assert_eq!(ping.timestamp, -7);
        for bad in [
            r#"{"timestamp":true}"#,
            r#"{"timestamp":[1]}"#,
            r#"{"timestamp":9223372036854775808}"#,
        ] {
            assert!(serde_json::from_str::<PingRequest>(bad).is_err(), "{bad}");
        }
        let event: EventRequest = serde_json::from_str(r#"{"event":"e","metadata":null}"#).unwrap();
        assert!(event.metadata.is_empty());
    }
}
