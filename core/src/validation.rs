//! Scheduler validation that reports every invalid field by its JSON path
//! (`spec.containers[0].ports[1].protocol`), so a client can fix all of them at once.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::scheduler::{
    Autoscaling, Container, ContainerPort, EnvVar, Forwarder, PortRange, Resources, Scheduler,
};
use crate::time::parse_duration;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every invalid field of one document, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, thiserror::Error)]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        write!(f, "invalid fields: {}", parts.join("; "))
    }
}

impl ValidationErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(field, message);
        errors
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// True when some error is about `field` exactly (handy in tests and clients).
    pub fn has_field(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

pub const MAX_NAME_LEN: usize = 63;
const PULL_POLICIES: [&str; 3] = ["IfNotPresent", "Always", "Never"];
/// Maestro's protocols are lowercase (`internal/validations`); the runtime upper-cases them
/// for Kubernetes as Maestro does.
const PROTOCOLS: [&str; 3] = ["tcp", "udp", "sctp"];
const RESTART_POLICIES: [&str; 3] = ["Never", "OnFailure", "Always"];
/// Maestro's longest port name (`max=15`, as Kubernetes' IANA_SVC_NAME).
const MAX_PORT_NAME_LEN: usize = 15;
/// Maestro's `matchAllocation.maxMatches` bounds.
const MAX_MATCHES: std::ops::RangeInclusive<i64> = 1..=35;
pub const POLICY_ROOM_OCCUPANCY: &str = "roomOccupancy";
pub const POLICY_FIXED_BUFFER: &str = "fixedBuffer";

/// A Kubernetes DNS-1123 label: what a scheduler name (its namespace) must be.
pub fn check_dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is required".into());
    }
    if value.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !value.starts_with('-') && !value.ends_with('-');
    if ok_chars && ok_ends {
        Ok(())
    } else {
        Err("must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// Namespaces a cluster or Maestro's own deployment holds: a scheduler is its namespace on
/// Kubernetes, so these names would mean taking them over.
const RESERVED_NAMESPACES: [&str; 2] = ["default", "maestro"];
/// Kubernetes keeps `kube-*` for itself (`kube-system`, `kube-public`, `kube-node-lease`).
const RESERVED_NAMESPACE_PREFIX: &str = "kube-";

/// A scheduler name: a DNS-1123 label that is not a reserved path segment.
pub fn check_scheduler_name(name: &str) -> Result<(), String> {
    check_dns_label(name)?;
    if name == "info" {
        return Err("\"info\" is reserved".into());
    }
    Ok(())
}

/// A new scheduler's name is not a namespace the cluster or Maestro itself uses (Maestro
/// accepts those; see docs/maestro-compatibility.md). Checked on creation only: a
/// scheduler recorded before the rule existed still replays and takes new versions.
pub fn check_not_reserved_namespace(name: &str) -> Result<(), String> {
    if RESERVED_NAMESPACES.contains(&name) || name.starts_with(RESERVED_NAMESPACE_PREFIX) {
        return Err(format!(
            "\"{name}\" is reserved: it names a namespace the cluster or Maestro itself uses \
             (reserved: {}, {RESERVED_NAMESPACE_PREFIX}*)",
            RESERVED_NAMESPACES.join(", ")
        ));
    }
    Ok(())
}

/// `maxSurge`: `"N%"` (percent of current rooms) or `"N"` (absolute), N >= 1.
pub fn parse_max_surge(value: &str) -> Result<MaxSurge, String> {
    let (digits, percent) = match value.strip_suffix('%') {
        Some(d) => (d, true),
        None => (value, false),
    };
    let n: u32 = digits
        .parse()
        .map_err(|_| "must be a whole number or a percentage, e.g. \"3\" or \"30%\"".to_string())?;
    if n < 1 {
        return Err("must be at least 1".into());
    }
    Ok(if percent {
        MaxSurge::Percent(n)
    } else {
        MaxSurge::Absolute(n)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSurge {
    Absolute(u32),
    Percent(u32),
}

impl MaxSurge {
    /// Rooms that may be added above `current` during a rolling replacement (at least 1).
    pub fn rooms(self, current: u64) -> u64 {
        match self {
            Self::Absolute(n) => u64::from(n).max(1),
            Self::Percent(p) => (current * u64::from(p)).div_ceil(100).max(1),
        }
    }
}

/// A Kubernetes resource quantity such as `100m`, `0.5`, `20Mi`, `1e3`.
pub fn check_quantity(value: &str) -> Result<(), String> {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T",
    ];
    let bad = || format!("{value:?} is not a Kubernetes quantity (e.g. \"100m\", \"20Mi\")");
    let (number, _) = SUFFIXES
        .iter()
        .find_map(|s| value.strip_suffix(s).map(|n| (n, *s)))
        .or_else(|| {
            // Decimal exponent form: 1e3, 2E6.
            value
                .find(['e', 'E'])
                .filter(|&i| i > 0 && value[i + 1..].parse::<i32>().is_ok())
                .map(|i| (&value[..i], ""))
        })
        .unwrap_or((value, ""));
    let mut parts = number.splitn(2, '.');
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next();
    let digits_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match frac_part {
        None => digits_ok(int_part),
        Some(frac) => {
            (int_part.is_empty() || digits_ok(int_part))
                && digits_ok(frac)
                && !(int_part.is_empty() && frac.is_empty())
        }
    };
    if ok { Ok(()) } else { Err(bad()) }
}

impl Scheduler {
    /// Validates everything a client sends; `state`, `createdAt` and `spec.version` are
    /// Maestro's to set and are not checked.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        if let Err(m) = check_scheduler_name(&self.name) {
            errs.push("name", m);
        }
        if self.game.trim().is_empty() {
            errs.push("game", "is required");
        }
        if let Err(m) = parse_max_surge(&self.max_surge) {
            errs.push("maxSurge", m);
        }
        if self.rooms_replicas < 0 {
            errs.push("roomsReplicas", "must be >= 0");
        }
        if let Some(range) = &self.port_range {
            check_port_range(range, "portRange", &mut errs);
        }
        self.validate_spec(&mut errs);
        if let Some(a) = &self.autoscaling {
            validate_autoscaling(a, &mut errs);
        }
        if let Some(r) = &self.auto_rollback {
            if !(r.error_share > 0.0 && r.error_share <= 1.0) {
                errs.push("autoRollback.errorShare", "must be in (0, 1]");
            }
            if r.min_rooms < 1 {
                errs.push("autoRollback.minRooms", "must be >= 1");
            }
        }
        validate_forwarders(&self.forwarders, &mut errs);
        crate::ports::check_capacity(self, &mut errs);
        if let Some(m) = &self.match_allocation
            && m.max_matches < *MAX_MATCHES.start()
        {
            errs.push("matchAllocation.maxMatches", "must be >= 1");
        }
        errs.into_result()
    }

    /// [`Scheduler::validate`] plus Maestro's rules for documents submitted now
    /// (`internal/validations`, its entities' `validate` tags): what a client sends must
    /// pass both.
    ///
    /// Kept apart on purpose: the scheduler workflow re-checks every request it accepts,
    /// also when it replays a recorded history, so `validate` must stay the rules those
    /// histories were made with; a stricter rule there would refuse, on replay, a document
    /// the history accepted.
    pub fn validate_submission(&self) -> Result<(), ValidationErrors> {
        let mut errs = match self.validate() {
            Ok(()) => ValidationErrors::default(),
            Err(errs) => errs,
        };
        self.maestro_rules(&mut errs);
        errs.into_result()
    }

    /// [`Self::validate_submission`] for a new scheduler, whose name must also not be a
    /// reserved namespace (new versions of one created before that rule are still taken).
    pub fn validate_creation(&self) -> Result<(), ValidationErrors> {
        let mut errs = match self.validate_submission() {
            Ok(()) => ValidationErrors::default(),
            Err(errs) => errs,
        };
        if let Err(m) = check_not_reserved_namespace(&self.name) {
            errs.push("name", m);
        }
        errs.into_result()
    }

    fn maestro_rules(&self, errs: &mut ValidationErrors) {
        for (i, c) in self.spec.containers.iter().enumerate() {
            let path = format!("spec.containers[{i}]");
            if c.image_pull_policy.is_none() {
                errs.push(
                    format!("{path}.imagePullPolicy"),
                    format!("is required, one of {}", PULL_POLICIES.join(", ")),
                );
            }
            for (kind, res) in [("requests", &c.requests), ("limits", &c.limits)] {
                let res = res.clone().unwrap_or_default();
                for (name, value) in [("memory", &res.memory), ("cpu", &res.cpu)] {
                    if value.as_deref().is_none_or(str::is_empty) {
                        errs.push(format!("{path}.{kind}.{name}"), "is required");
                    }
                }
            }
            for (j, port) in c.ports.iter().enumerate() {
                let port_path = format!("{path}.ports[{j}]");
                if port.name.len() > MAX_PORT_NAME_LEN {
                    errs.push(
                        format!("{port_path}.name"),
                        format!("must be at most {MAX_PORT_NAME_LEN} characters"),
                    );
                }
                // `validate` accepts any case (documents recorded before were upper case).
                if PROTOCOLS.contains(&port.protocol.to_ascii_lowercase().as_str())
                    && !PROTOCOLS.contains(&port.protocol.as_str())
                {
                    errs.push(
                        format!("{port_path}.protocol"),
                        format!("must be one of {} (lower case)", PROTOCOLS.join(", ")),
                    );
                }
            }
        }
        if let Some(m) = &self.match_allocation
            && m.max_matches > *MAX_MATCHES.end()
        {
            errs.push(
                "matchAllocation.maxMatches",
                format!(
                    "must be between {} and {}",
                    MAX_MATCHES.start(),
                    MAX_MATCHES.end()
                ),
            );
        }
    }

    fn validate_spec(&self, errs: &mut ValidationErrors) {
        match parse_duration(&self.spec.termination_grace_period) {
            Ok(d) if d.is_zero() => errs.push("spec.terminationGracePeriod", "must be > 0"),
            Ok(_) => {}
            Err(m) => errs.push("spec.terminationGracePeriod", m),
        }
        if let Some(p) = &self.spec.restart_policy
            && !RESTART_POLICIES.contains(&p.as_str())
        {
            errs.push(
                "spec.restartPolicy",
                format!("must be one of {}", RESTART_POLICIES.join(", ")),
            );
        }
        if self.spec.containers.is_empty() {
            errs.push("spec.containers", "at least one container is required");
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.spec.containers.iter().enumerate() {
            let path = format!("spec.containers[{i}]");
            if !c.name.is_empty() && !names.insert(c.name.as_str()) {
                errs.push(
                    format!("{path}.name"),
                    format!("duplicate container name {:?}", c.name),
                );
            }
            validate_container(c, &path, self.port_range.is_some(), errs);
        }
    }
}

fn check_port_range(range: &PortRange, path: &str, errs: &mut ValidationErrors) {
    if !(1..=65535).contains(&range.start) {
        errs.push(format!("{path}.start"), "must be between 1 and 65535");
    }
    if !(1..=65535).contains(&range.end) {
        errs.push(format!("{path}.end"), "must be between 1 and 65535");
    }
    if range.start >= range.end {
        errs.push(path.to_string(), "start must be lower than end");
    }
}

fn validate_container(
    c: &Container,
    path: &str,
    has_scheduler_port_range: bool,
    errs: &mut ValidationErrors,
) {
    if let Err(m) = check_dns_label(&c.name) {
        errs.push(format!("{path}.name"), m);
    }
    if c.image.trim().is_empty() {
        errs.push(format!("{path}.image"), "is required");
    }
    if let Some(p) = &c.image_pull_policy
        && !PULL_POLICIES.contains(&p.as_str())
    {
        errs.push(
            format!("{path}.imagePullPolicy"),
            format!("must be one of {}", PULL_POLICIES.join(", ")),
        );
    }
    let mut env_names = BTreeSet::new();
    for (i, env) in c.environment.iter().enumerate() {
        let env_path = format!("{path}.environment[{i}]");
        if !env.name.is_empty() && !env_names.insert(env.name.as_str()) {
            errs.push(
                format!("{env_path}.name"),
                format!("duplicate variable {:?}", env.name),
            );
        }
        validate_env(env, &env_path, errs);
    }
    for (kind, res) in [("requests", &c.requests), ("limits", &c.limits)] {
        if let Some(res) = res {
            validate_resources(res, &format!("{path}.{kind}"), errs);
        }
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let port_path = format!("{path}.ports[{i}]");
        if !port.name.is_empty() && !port_names.insert(port.name.as_str()) {
            errs.push(
                format!("{port_path}.name"),
                format!("duplicate port name {:?}", port.name),
            );
        }
        validate_port(port, &port_path, has_scheduler_port_range, errs);
    }
}

fn validate_env(env: &EnvVar, path: &str, errs: &mut ValidationErrors) {
    let name_ok = !env.name.is_empty()
        && !env.name.starts_with(|c: char| c.is_ascii_digit())
        && env
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !name_ok {
        errs.push(
            format!("{path}.name"),
            "must be a valid environment variable name",
        );
    }
    match (&env.value, &env.value_from) {
        (Some(_), Some(_)) => {
            errs.push(path.to_string(), "set either value or valueFrom, not both")
        }
        (None, None) => errs.push(format!("{path}.value"), "value or valueFrom is required"),
        (None, Some(from)) => match (&from.field_ref, &from.secret_key_ref) {
            (Some(f), None) => {
                if f.field_path.trim().is_empty() {
                    errs.push(
                        format!("{path}.valueFrom.fieldRef.fieldPath"),
                        "is required",
                    );
                }
            }
            (None, Some(s)) => {
                if s.name.trim().is_empty() {
                    errs.push(format!("{path}.valueFrom.secretKeyRef.name"), "is required");
                }
                if s.key.trim().is_empty() {
                    errs.push(format!("{path}.valueFrom.secretKeyRef.key"), "is required");
                }
            }
            _ => errs.push(
                format!("{path}.valueFrom"),
                "exactly one of fieldRef or secretKeyRef is required",
            ),
        },
        (Some(_), None) => {}
    }
}

fn validate_resources(res: &Resources, path: &str, errs: &mut ValidationErrors) {
    for (name, value) in [("memory", &res.memory), ("cpu", &res.cpu)] {
        if let Some(v) = value
            && let Err(m) = check_quantity(v)
        {
            errs.push(format!("{path}.{name}"), m);
        }
    }
}

fn validate_port(
    port: &ContainerPort,
    path: &str,
    has_scheduler_port_range: bool,
    errs: &mut ValidationErrors,
) {
    if port.name.trim().is_empty() {
        errs.push(format!("{path}.name"), "is required");
    }
    if !PROTOCOLS.contains(&port.protocol.to_ascii_lowercase().as_str()) {
        errs.push(
            format!("{path}.protocol"),
            format!("must be one of {}", PROTOCOLS.join(", ")),
        );
    }
    if !(1..=65535).contains(&port.port) {
        errs.push(format!("{path}.port"), "must be between 1 and 65535");
    }
    match (&port.host_port_range, has_scheduler_port_range) {
        (Some(_), true) => errs.push(
            format!("{path}.hostPortRange"),
            "set either the scheduler's portRange or a hostPortRange per port, not both",
        ),
        (None, false) => errs.push(
            format!("{path}.hostPortRange"),
            "is required when the scheduler has no portRange",
        ),
        (Some(range), false) => check_port_range(range, &format!("{path}.hostPortRange"), errs),
        (None, true) => {}
    }
}

fn validate_autoscaling(a: &Autoscaling, errs: &mut ValidationErrors) {
    if a.min < 1 {
        errs.push("autoscaling.min", "must be >= 1");
    }
    if a.max != -1 && a.max <= a.min {
        errs.push(
            "autoscaling.max",
            "must be greater than min, or -1 for no limit",
        );
    }
    if a.cooldown < 0 {
        errs.push("autoscaling.cooldown", "must be >= 0");
    }
    let params = &a.policy.parameters;
    match a.policy.kind.as_str() {
        POLICY_ROOM_OCCUPANCY => match &params.room_occupancy {
            None => errs.push("autoscaling.policy.parameters.roomOccupancy", "is required"),
            Some(p) => {
                let open_unit = |x: f64| x > 0.0 && x < 1.0;
                if !open_unit(p.ready_target) {
                    errs.push(
                        "autoscaling.policy.parameters.roomOccupancy.readyTarget",
                        "must be between 0 and 1 (exclusive)",
                    );
                }
                if !open_unit(p.down_threshold) {
                    errs.push(
                        "autoscaling.policy.parameters.roomOccupancy.downThreshold",
                        "must be between 0 and 1 (exclusive)",
                    );
                }
            }
        },
        POLICY_FIXED_BUFFER => match &params.fixed_buffer {
            None => errs.push("autoscaling.policy.parameters.fixedBuffer", "is required"),
            Some(p) if p.amount < 1 => errs.push(
                "autoscaling.policy.parameters.fixedBuffer.amount",
                "must be >= 1",
            ),
            Some(_) => {}
        },
        _ => errs.push(
            "autoscaling.policy.type",
            format!("must be one of {POLICY_ROOM_OCCUPANCY}, {POLICY_FIXED_BUFFER}"),
        ),
    }
}

/// The longest a forwarder may take per call: events wait for it, so it bounds what a slow
/// forwarder can hold.
pub const MAX_FORWARDER_TIMEOUT_MS: i64 = 10_000;

fn validate_forwarders(forwarders: &[Forwarder], errs: &mut ValidationErrors) {
    let mut names = BTreeSet::new();
    for (i, fwd) in forwarders.iter().enumerate() {
        let path = format!("forwarders[{i}]");
        if fwd.name.trim().is_empty() {
            errs.push(format!("{path}.name"), "is required");
        } else if !names.insert(fwd.name.as_str()) {
            errs.push(
                format!("{path}.name"),
                format!("duplicate forwarder {:?}", fwd.name),
            );
        }
        if fwd.kind != "gRPC" {
            errs.push(format!("{path}.type"), "must be gRPC");
        }
        let has_port = fwd
            .address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            errs.push(format!("{path}.address"), "must be host:port");
        }
        if let Some(o) = &fwd.options
            && !(0..=MAX_FORWARDER_TIMEOUT_MS).contains(&o.timeout)
        {
            errs.push(
                format!("{path}.options.timeout"),
                format!("must be 0 to {MAX_FORWARDER_TIMEOUT_MS} (milliseconds; 0 is the default)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::fixtures::{scheduler, scheduler_json};
    use proptest::prelude::*;

    fn errors_of(json: serde_json::Value) -> ValidationErrors {
        let s: Scheduler = serde_json::from_value(json).unwrap();
        s.validate().unwrap_err()
    }

    #[test]
    fn the_fixture_is_valid() {
        scheduler().validate().unwrap();
        scheduler().validate_submission().unwrap();
    }

    /// Maestro's submission rules refuse what recorded histories accepted; `validate` (the
    /// workflow's re-check on replay) still accepts it.
    #[test]
    fn maestro_rules_apply_to_submissions_only() {
        let mut j = scheduler_json();
        let container = &mut j["spec"]["containers"][0];
        container.as_object_mut().unwrap().remove("requests");
        container.as_object_mut().unwrap().remove("imagePullPolicy");
        container["ports"][0]["protocol"] = "UDP".into();
        container["ports"][0]["name"] = "a-very-long-port-name".into();
        j["matchAllocation"]["maxMatches"] = 36.into();
        let s: Scheduler = serde_json::from_value(j).unwrap();
        s.validate().unwrap();
        let errs = s.validate_submission().unwrap_err();
        for field in [
            "spec.containers[0].imagePullPolicy",
            "spec.containers[0].requests.memory",
            "spec.containers[0].requests.cpu",
            "spec.containers[0].ports[0].protocol",
            "spec.containers[0].ports[0].name",
            "matchAllocation.maxMatches",
        ] {
            assert!(errs.has_field(field), "{field}: {errs}");
        }
    }

    #[test]
    fn every_bad_field_is_reported_by_path() {
        let mut j = scheduler_json();
        j["name"] = "Bad_Name".into();
        j["game"] = "".into();
        j["maxSurge"] = "0".into();
        j["roomsReplicas"] = (-1).into();
        j["spec"]["terminationGracePeriod"] = "100".into();
        j["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes".into();
        j["spec"]["containers"][0]["ports"][0]["protocol"] = "HTTP".into();
        j["spec"]["containers"][0]["requests"]["memory"] = "lots".into();
        j["spec"]["containers"][0]["environment"][0]["value"] = serde_json::Value::Null;
        j["autoscaling"]["max"] = 1.into();
        j["autoscaling"]["policy"]["parameters"]["roomOccupancy"]["readyTarget"] = 1.5.into();
        j["forwarders"][0]["address"] = "nohost".into();
        j["matchAllocation"]["maxMatches"] = 0.into();
        let errs = errors_of(j);
        for field in [
            "name",
            "game",
            "maxSurge",
            "roomsReplicas",
            "spec.terminationGracePeriod",
            "spec.containers[0].imagePullPolicy",
            "spec.containers[0].ports[0].protocol",
            "spec.containers[0].requests.memory",
            "spec.containers[0].environment[0].value",
            "autoscaling.max",
            "autoscaling.policy.parameters.roomOccupancy.readyTarget",
            "forwarders[0].address",
            "matchAllocation.maxMatches",
        ] {
            assert!(errs.has_field(field), "missing {field} in {errs}");
        }
        assert_eq!(errs.errors.len(), 13, "{errs}");
    }

    #[test]
    fn port_range_is_scheduler_wide_xor_per_port() {
        let mut j = scheduler_json();
        j["spec"]["containers"][0]["ports"][0]["hostPortRange"] =
            serde_json::json!({"start": 1000, "end": 2000});
        assert!(errors_of(j.clone()).has_field("spec.containers[0].ports[0].hostPortRange"));

        j["portRange"] = serde_json::Value::Null;
        let s: Scheduler = serde_json::from_value(j.clone()).unwrap();
        s.validate().unwrap();

        j["spec"]["containers"][0]["ports"][0]["hostPortRange"] = serde_json::Value::Null;
        assert!(errors_of(j).has_field("spec.containers[0].ports[0].hostPortRange"));
    }

    #[test]
    fn containers_are_required_and_unique() {
        let mut j = scheduler_json();
        j["spec"]["containers"] = serde_json::json!([]);
        assert!(errors_of(j.clone()).has_field("spec.containers"));
        let c = scheduler_json()["spec"]["containers"][0].clone();
        j["spec"]["containers"] = serde_json::json!([c.clone(), c]);
        assert!(errors_of(j).has_field("spec.containers[1].name"));
    }

    #[test]
    fn env_value_from_needs_exactly_one_source() {
        let mut j = scheduler_json();
        j["spec"]["containers"][0]["environment"][1]["valueFrom"] = serde_json::json!({});
        assert!(errors_of(j).has_field("spec.containers[0].environment[1].valueFrom"));
    }

    #[test]
    fn unknown_policies_and_missing_parameters_are_reported() {
        let mut j = scheduler_json();
        j["autoscaling"]["policy"]["type"] = "magic".into();
        assert!(errors_of(j.clone()).has_field("autoscaling.policy.type"));
        j["autoscaling"]["policy"] = serde_json::json!({"type": "fixedBuffer"});
        assert!(errors_of(j).has_field("autoscaling.policy.parameters.fixedBuffer"));
    }

    #[test]
    fn scheduler_names_are_dns_labels_and_never_info() {
        assert!(check_scheduler_name("game-1").is_ok());
        assert!(check_scheduler_name("info").is_err());
        assert!(check_scheduler_name("-a").is_err());
        assert!(check_scheduler_name("a-").is_err());
        assert!(check_scheduler_name("UPPER").is_err());
        assert!(check_scheduler_name("ünïcode").is_err());
        assert!(check_scheduler_name(&"a".repeat(63)).is_ok());
        assert!(check_scheduler_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn cluster_and_maestro_namespaces_are_not_scheduler_names() {
        for taken in [
            "default",
            "maestro",
            "kube-system",
            "kube-public",
            "kube-node-lease",
        ] {
            let err = check_not_reserved_namespace(taken).unwrap_err();
            assert!(err.contains("reserved"), "{taken}: {err}");
        }
        for free in ["game", "maestro-game", "my-kube-game", "defaults"] {
            assert!(check_not_reserved_namespace(free).is_ok(), "{free}");
        }
        let mut s = scheduler();
        s.name = "kube-system".into();
        assert!(s.validate().is_ok(), "replayed schedulers keep validating");
        assert!(s.validate_submission().is_ok(), "and take new versions");
        assert!(s.validate_creation().unwrap_err().has_field("name"));
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "0.5", "20Mi", "1Gi", "1e3", "2", ".5", "1.5k"] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "m", "lots", "1.2.3", "-1", "20 Mi", "1e"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn max_surge_forms() {
        assert_eq!(parse_max_surge("3"), Ok(MaxSurge::Absolute(3)));
        assert_eq!(parse_max_surge("30%"), Ok(MaxSurge::Percent(30)));
        assert!(parse_max_surge("0%").is_err());
        assert!(parse_max_surge("x").is_err());
        assert_eq!(MaxSurge::Percent(30).rooms(10), 3);
        assert_eq!(MaxSurge::Percent(30).rooms(11), 4);
        assert_eq!(MaxSurge::Percent(30).rooms(0), 1);
    }

    proptest! {
        #[test]
        fn percent_surge_is_at_least_one_and_covers_the_share(p in 1u32..=100, current in 0u64..100_000) {
            let rooms = MaxSurge::Percent(p).rooms(current);
            prop_assert!(rooms >= 1);
            prop_assert!(rooms * 100 >= current * u64::from(p));
            prop_assert!(rooms == 1 || (rooms - 1) * 100 < current * u64::from(p));
        }

        #[test]
        fn generated_dns_labels_are_accepted(name in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assume!(name != "info");
            prop_assert!(check_scheduler_name(&name).is_ok());
        }

        #[test]
        fn validation_never_panics_on_arbitrary_text(name in ".*", surge in ".*", grace in ".*") {
            let mut s = scheduler();
            s.name = name;
            s.max_surge = surge;
            s.spec.termination_grace_period = grace;
            let _ = s.validate();
        }
    }
}
