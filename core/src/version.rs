//! Scheduler versions, semver as Maestro writes them (`v1.0.0`; `v1.0` and `v1` still parse:
//! stored histories and rooms carry them), and Maestro's rule deciding how a change bumps
//! them (`IsMajorVersion`): a change rooms cannot keep — the room template (`spec`, except
//! fixed host ports), `portRange`, `forwarders`, `labels` or `annotations` — is major;
//! anything else, an identical document too, is minor.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scheduler::Scheduler;

/// `vMAJOR.MINOR.0`: Maestro increments only major and minor, so the patch is always 0.
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
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.0", self.major, self.minor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version like \"v1.2.0\"")]
pub struct VersionParseError(String);

impl FromStr for Version {
    type Err = VersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionParseError(s.to_string());
        let rest = s.strip_prefix('v').ok_or_else(err)?;
        let mut parts = rest.split('.');
        let num = |p: Option<&str>| match p {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u32>().map_err(|_| err())
            }
            _ => Err(err()),
        };
        let major = num(parts.next())?;
        let minor = match parts.next() {
            None => 0,
            some => num(some)?,
        };
        // Only x.y.0 exists here; a patch would be lost, so anything else is refused.
        match parts.next() {
            None => {}
            some if num(some)? == 0 => {}
            _ => return Err(err()),
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Version { major, minor })
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
    /// Rooms can stay: replicas, surge, autoscaling, match allocation, host ports... or
    /// nothing at all (Maestro records an identical document as a new minor version).
    Minor,
    /// Rooms must be replaced.
    Major,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minor => "minor",
            Self::Major => "major",
        }
    }
}

/// How `proposed` differs from `current`, as Maestro's `IsMajorVersion` decides: the fields
/// it ignores (name, game, state, createdAt, `spec.version`, maxSurge, roomsReplicas,
/// autoscaling, matchAllocation; our extensions too) and a port's fixed `hostPort` never
/// make a change major.
pub fn classify_change(current: &Scheduler, proposed: &Scheduler) -> ChangeKind {
    /// What rooms are made from: the spec without its version and fixed host ports, the
    /// port range, forwarders, labels and annotations.
    #[derive(PartialEq)]
    struct Template<'a> {
        spec: crate::scheduler::Spec,
        port_range: Option<crate::scheduler::PortRange>,
        forwarders: &'a [crate::scheduler::Forwarder],
        labels: &'a std::collections::BTreeMap<String, String>,
        annotations: &'a std::collections::BTreeMap<String, String>,
    }
    fn template(s: &Scheduler) -> Template<'_> {
        let mut spec = s.spec.clone();
        spec.version.clear();
        for port in spec.containers.iter_mut().flat_map(|c| c.ports.iter_mut()) {
            port.host_port = 0;
        }
        Template {
            spec,
            port_range: s.port_range,
            forwarders: &s.forwarders,
            labels: &s.labels,
            annotations: &s.annotations,
        }
    }
    if template(current) != template(proposed) {
        ChangeKind::Major
    } else {
        ChangeKind::Minor
    }
}

/// What a proposed document becomes: the kind of change against the active version and the
/// number it gets, as Maestro's `calculateNew{Major,Minor}Version` count: a major change
/// gets the greatest recorded major + 1; a minor one the greatest minor recorded under the
/// active version's major + 1 (after a switch back to v1.0.0 with v1.1.0 and v2.0.0
/// recorded, a minor change is v1.2.0).
pub fn next_version(
    recorded: impl IntoIterator<Item = Version>,
    active: &Scheduler,
    proposed: &Scheduler,
) -> (ChangeKind, Version) {
    let current: Version = active.spec.version.parse().unwrap_or(Version::FIRST);
    let kind = classify_change(active, proposed);
    let recorded = recorded.into_iter();
    let greatest = match kind {
        ChangeKind::Major => recorded
            .max_by_key(|v| v.major)
            .filter(|v| v.major > current.major)
            .unwrap_or(current),
        ChangeKind::Minor => recorded
            .filter(|v| v.major == current.major)
            .max()
            .filter(|v| *v > current)
            .unwrap_or(current),
    };
    (kind, greatest.bump(kind))
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

/// In OpenAPI documents: a string such as `v1.2.0`.
impl utoipa::PartialSchema for Version {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^v[0-9]+(\\.[0-9]+(\\.0)?)?$"))
            .examples(["v1.0.0"])
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
        assert_eq!("v1.2.0".parse(), Ok(Version { major: 1, minor: 2 }));
        // What stored histories and rooms written before semver carry.
        assert_eq!("v1.2".parse(), Ok(Version { major: 1, minor: 2 }));
        assert_eq!("v3".parse(), Ok(Version { major: 3, minor: 0 }));
        assert_eq!(Version::FIRST.to_string(), "v1.0.0");
        for bad in [
            "1.0", "v", "v1.", "v.1", "vx.1", "v1.2.3", "v1.2.0.0", "v1.2.", "v-1.0", "v+1.0",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bumps() {
        let v = Version { major: 1, minor: 2 };
        assert_eq!(v.bump(ChangeKind::Major).to_string(), "v2.0.0");
        assert_eq!(v.bump(ChangeKind::Minor).to_string(), "v1.3.0");
    }

    #[test]
    fn changes_rooms_cannot_keep_are_major_everything_else_minor() {
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

        // Maestro's IsMajorVersion: forwarders, labels, annotations and the port range are
        // major; a port's fixed hostPort is not.
        let mut fwd = base.clone();
        fwd.forwarders.clear();
        assert_eq!(classify_change(&base, &fwd), ChangeKind::Major);
        let mut labels = base.clone();
        labels.labels.insert("team".into(), "a".into());
        assert_eq!(classify_change(&base, &labels), ChangeKind::Major);
        let mut annotations = base.clone();
        annotations.annotations.insert("a".into(), "b".into());
        assert_eq!(classify_change(&base, &annotations), ChangeKind::Major);
        let mut range = base.clone();
        range.port_range = Some(crate::scheduler::PortRange { start: 1, end: 2 });
        assert_eq!(classify_change(&base, &range), ChangeKind::Major);
        let mut host_port = base.clone();
        for port in host_port
            .spec
            .containers
            .iter_mut()
            .flat_map(|c| &mut c.ports)
        {
            port.host_port = 7777;
        }
        assert_eq!(classify_change(&base, &host_port), ChangeKind::Minor);
        let mut autoscaling = base.clone();
        autoscaling.autoscaling = None;
        autoscaling.match_allocation = Some(crate::scheduler::MatchAllocation { max_matches: 3 });
        assert_eq!(classify_change(&base, &autoscaling), ChangeKind::Minor);

        let mut both = image.clone();
        both.max_surge = "1".into();
        assert_eq!(classify_change(&base, &both), ChangeKind::Major);
    }

    #[test]
    fn an_identical_document_is_a_minor_version() {
        let base = scheduler();
        let mut same = base.clone();
        same.state = Some(SchedulerState::InSync);
        same.spec.version = "v7.0.0".into();
        assert_eq!(classify_change(&base, &same), ChangeKind::Minor);
        let recorded = [Version::FIRST, Version { major: 1, minor: 1 }];
        assert_eq!(
            next_version(recorded, &base, &same),
            (ChangeKind::Minor, Version { major: 1, minor: 2 })
        );
    }

    /// Maestro's e2e suite `create_new_scheduler_version_test.go`: v1.1.0 minor, v2.0.0
    /// major, switch back to v1.0.0, then v1.2.0 minor and v3.0.0 major.
    #[test]
    fn numbers_count_as_maestro_counts_them() {
        let mut active = scheduler();
        active.spec.version = "v1.0.0".into();
        let mut minor = active.clone();
        minor.rooms_replicas += 1;
        let mut major = active.clone();
        major.spec.containers[0].image = "registry/game:2.0".into();
        let v = |major, minor| Version { major, minor };
        let recorded = [v(1, 0), v(1, 1), v(2, 0)];
        assert_eq!(next_version(recorded, &active, &minor).1, v(1, 2));
        assert_eq!(next_version(recorded, &active, &major).1, v(3, 0));
        active.spec.version = "v2.0.0".into();
        assert_eq!(next_version(recorded, &active, &minor).1, v(2, 1));
        assert_eq!(next_version([v(1, 0)], &active, &major).1, v(3, 0));
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
