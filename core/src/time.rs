//! Timestamps and durations in Maestro's JSON forms: RFC 3339 strings and Go-style
//! duration strings with a unit (`"100s"`, `"2m"`). Core reads no clock: callers pass `now`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with millisecond precision, serialised as RFC 3339 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    unix_millis: i64,
}

impl Timestamp {
    pub const fn from_unix_millis(unix_millis: i64) -> Self {
        Self { unix_millis }
    }

    pub const fn unix_millis(self) -> i64 {
        self.unix_millis
    }

    pub fn from_system_time(t: SystemTime) -> Self {
        let millis = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Self::from_unix_millis(millis)
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.unix_millis >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.unix_millis.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.unix_millis.unsigned_abs())
        }
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(
            u64::try_from(self.unix_millis.saturating_sub(earlier.unix_millis)).unwrap_or(0),
        )
    }

    pub fn parse_rfc3339(s: &str) -> Result<Self, humantime::TimestampError> {
        humantime::parse_rfc3339_weak(s).map(Self::from_system_time)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses a duration with a unit as Maestro's API writes them (`"100s"`, `"2m"`, `"1h30m"`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("needs a unit, e.g. \"100s\"".into());
    }
    if let Some(d) = protojson_seconds(s) {
        return Ok(d);
    }
    // humantime's own errors point at byte offsets ("expected number at 0").
    humantime::parse_duration(s).map_err(|_| {
        format!("{s:?} is not a duration: a number and a unit, e.g. \"100s\", \"2m\", \"1h30m\"")
    })
}

/// `google.protobuf.Duration` as protojson writes a fraction (`"1.500s"`), which humantime
/// does not read.
fn protojson_seconds(s: &str) -> Option<Duration> {
    let (secs, fraction) = s.strip_suffix('s')?.split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    Some(Duration::new(secs.parse().ok()?, nanos))
}

/// Formats a duration as whole seconds (`"100s"`), the form Maestro answers with.
pub fn format_duration_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// In OpenAPI documents: an RFC 3339 string.
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_serialise_as_rfc3339() {
        let t = Timestamp::from_unix_millis(1_700_000_000_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("100s"), Ok(Duration::from_secs(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("100").unwrap_err().contains("unit"));
        assert!(parse_duration("").is_err());
        let soon = parse_duration("soon").unwrap_err();
        assert!(soon.contains("\"soon\" is not a duration"), "{soon}");
        // protojson's Duration with a fraction, as Go clients write it.
        assert_eq!(parse_duration("1.500s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.000000005s"), Ok(Duration::new(0, 5)));
        assert!(parse_duration("1.s").is_err());
    }

    proptest! {
        #[test]
        fn timestamp_text_round_trips(millis in 0i64..4_102_444_800_000) {
            let t = Timestamp::from_unix_millis(millis);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()).unwrap(), t);
        }

        #[test]
        fn seconds_round_trip(secs in 0u64..10_000_000) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse_duration(&format_duration_secs(d)).unwrap(), d);
        }

        #[test]
        fn since_is_never_negative(a in any::<i32>(), b in any::<i32>()) {
            let (a, b) = (Timestamp::from_unix_millis(a.into()), Timestamp::from_unix_millis(b.into()));
            let d = a.since(b);
            prop_assert_eq!(d.as_millis() as i64, (a.unix_millis() - b.unix_millis()).max(0));
        }
    }
}
