//! Scheduler versions (`v1.0`) and the rule that decides how a change bumps them:
//! anything under `spec` is a major change (rooms must be replaced), anything else is minor.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scheduler::Scheduler;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub const FIRST: Version = Version { major: 1, minor: 0 };

    pub fn bump(self, change: ChangeKind) -> Version {
        match change {
            ChangeKind::Major => Version {
                major: self.major.saturating_add(1),
                minor: 0,
            },
            ChangeKind::Minor => Version {
                major: self.major,
                minor: self.minor.saturating_add(1),
            },
            ChangeKind::None => self,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version like \"v1.2\"")]
pub struct VersionParseError(String);

impl FromStr for Version {
    type Err = VersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionParseError(s.to_string());
        let rest = s.strip_prefix('v').ok_or_else(err)?;
        let (major, minor) = match rest.split_once('.') {
            Some((major, minor)) => (major, minor),
            None => (rest, "0"),
        };
        let num = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                Err(err())
            } else {
                p.parse::<u32>().map_err(|_| err())
            }
        };
        Ok(Version {
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Nothing a client controls changed.
    None,
    /// Rooms can stay: replicas, surge, autoscaling, forwarders, ports range, labels...
    Minor,
    /// The room template changed: rooms must be replaced.
    Major,
}

/// How `proposed` differs from `current`. Fields Maestro sets itself (`state`, `createdAt`,
/// `spec.version`) never count as a change.
pub fn classify_change(current: &Scheduler, proposed: &Scheduler) -> ChangeKind {
    let mut current_spec = current.spec.clone();
    let mut proposed_spec = proposed.spec.clone();
    current_spec.version.clear();
    proposed_spec.version.clear();
    if current_spec != proposed_spec {
        return ChangeKind::Major;
    }
    let strip = |s: &Scheduler| {
        let mut s = s.clone();
        s.spec = current_spec.clone();
        s.state = None;
        s.created_at = None;
        s
    };
    if strip(current) != strip(proposed) {
        ChangeKind::Minor
    } else {
        ChangeKind::None
    }
}

/// What a proposed document would become: the kind of change against the active version and
/// the version number it gets (the latest recorded version bumped by that kind; the active
/// version when nothing changes).
pub fn next_version(
    recorded: impl IntoIterator<Item = Version>,
    active: &Scheduler,
    proposed: &Scheduler,
) -> (ChangeKind, Version) {
    let latest = recorded.into_iter().max().unwrap_or(Version::FIRST);
    match classify_change(active, proposed) {
        ChangeKind::None => (
            ChangeKind::None,
            active.spec.version.parse().unwrap_or(latest),
        ),
        kind => (kind, latest.bump(kind)),
    }
}

/// One recorded version of a scheduler (what the scheduler workflow keeps, last 50).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub version: Version,
    pub created_at: crate::time::Timestamp,
    pub scheduler: Scheduler,
    /// Set when the version failed validation: why. A failed version cannot be activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// In OpenAPI documents: a string such as `v1.2`.
impl utoipa::PartialSchema for Version {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^v[0-9]+\\.[0-9]+$"))
            .examples(["v1.0"])
            .into()
    }
}

impl utoipa::ToSchema for Version {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::SchedulerState;
    use crate::scheduler::fixtures::scheduler;
    use proptest::prelude::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("v1.2".parse(), Ok(Version { major: 1, minor: 2 }));
        assert_eq!("v3".parse(), Ok(Version { major: 3, minor: 0 }));
        assert_eq!(Version::FIRST.to_string(), "v1.0");
        for bad in ["1.0", "v", "v1.", "v.1", "vx.1", "v1.2.3", "v-1.0", "v+1.0"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bumps() {
        let v = Version { major: 1, minor: 2 };
        assert_eq!(v.bump(ChangeKind::Major).to_string(), "v2.0");
        assert_eq!(v.bump(ChangeKind::Minor).to_string(), "v1.3");
        assert_eq!(v.bump(ChangeKind::None), v);
    }

    #[test]
    fn spec_changes_are_major_everything_else_minor() {
        let base = scheduler();
        let mut image = base.clone();
        image.spec.containers[0].image = "registry/game:2.0".into();
        assert_eq!(classify_change(&base, &image), ChangeKind::Major);

        let mut grace = base.clone();
        grace.spec.termination_grace_period = "50s".into();
        assert_eq!(classify_change(&base, &grace), ChangeKind::Major);

        let mut replicas = base.clone();
        replicas.rooms_replicas = 9;
        assert_eq!(classify_change(&base, &replicas), ChangeKind::Minor);

        let mut fwd = base.clone();
        fwd.forwarders.clear();
        assert_eq!(classify_change(&base, &fwd), ChangeKind::Minor);

        let mut both = image.clone();
        both.max_surge = "1".into();
        assert_eq!(classify_change(&base, &both), ChangeKind::Major);
    }

    #[test]
    fn maestro_owned_fields_are_not_changes() {
        let base = scheduler();
        let mut same = base.clone();
        same.state = Some(SchedulerState::InSync);
        same.spec.version = "v7.0".into();
        assert_eq!(classify_change(&base, &same), ChangeKind::None);
    }

    proptest! {
        #[test]
        fn text_round_trips(major in 0u32..100_000, minor in 0u32..100_000) {
            let v = Version { major, minor };
            prop_assert_eq!(v.to_string().parse::<Version>().unwrap(), v);
        }

        #[test]
        fn bumps_only_go_up(major in 0u32..1000, minor in 0u32..1000) {
            let v = Version { major, minor };
            prop_assert!(v.bump(ChangeKind::Minor) > v);
            prop_assert!(v.bump(ChangeKind::Major) > v.bump(ChangeKind::Minor));
        }
    }
}
