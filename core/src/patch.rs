//! A scheduler patch (`PATCH /schedulers/{name}`) and how it applies, as Maestro's
//! `PatchScheduler` does: each field sent replaces the active version's, except `spec`,
//! whose fields replace one by one, `spec.containers[i]`, merged field by field into the
//! container at index `i` (appended past the end), and `autoscaling`, merged field by field.
//! `null` is "not sent"; so are empty `forwarders`, `annotations` and `labels`, which
//! Maestro's protobuf request cannot tell from absent ones.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::scheduler::{
    AutoRollback, Autoscaling, AutoscalingPolicy, Container, ContainerPort, EnvVar, Forwarder,
    MatchAllocation, PolicyParameters, PortRange, Resources, Scheduler, proto_int_opt,
};

/// The fields of a scheduler a patch may set (Maestro's `PatchSchedulerRequest`, plus our
/// extensions). The scheduler's name comes from the path.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerPatch {
    #[serde(default, alias = "port_range")]
    pub port_range: Option<PortRange>,
    #[serde(default, alias = "max_surge")]
    pub max_surge: Option<String>,
    #[serde(default, alias = "rooms_replicas", deserialize_with = "proto_int_opt")]
    pub rooms_replicas: Option<i64>,
    #[serde(default)]
    pub spec: Option<SpecPatch>,
    #[serde(default)]
    pub autoscaling: Option<AutoscalingPatch>,
    #[serde(default)]
    pub forwarders: Option<Vec<Forwarder>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "match_allocation")]
    pub match_allocation: Option<MatchAllocation>,
    /// Extension (replaced whole).
    #[serde(default)]
    pub room_token_required: Option<bool>,
    /// Extension (replaced whole).
    #[serde(default)]
    pub auto_rollback: Option<AutoRollback>,
    /// Ignored: the path names the scheduler (checked by the caller when sent).
    #[serde(default)]
    pub name: Option<String>,
}

/// Maestro's `OptionalSpec` (no `restartPolicy`: a patch cannot change it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecPatch {
    #[serde(default, alias = "termination_grace_period")]
    pub termination_grace_period: Option<String>,
    #[serde(default)]
    pub containers: Option<Vec<ContainerPatch>>,
    #[serde(default)]
    pub toleration: Option<String>,
    #[serde(default)]
    pub affinity: Option<String>,
}

/// Maestro's `OptionalContainer`: each field sent replaces the container's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default, alias = "image_pull_policy")]
    pub image_pull_policy: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: Option<Vec<EnvVar>>,
    #[serde(default)]
    pub requests: Option<Resources>,
    #[serde(default)]
    pub limits: Option<Resources>,
    #[serde(default)]
    pub ports: Option<Vec<ContainerPort>>,
}

/// Maestro's `OptionalAutoscaling`: each field sent replaces the active one's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingPatch {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "proto_int_opt")]
    pub min: Option<i64>,
    #[serde(default, deserialize_with = "proto_int_opt")]
    pub max: Option<i64>,
    #[serde(default)]
    pub policy: Option<AutoscalingPolicy>,
    #[serde(default, deserialize_with = "proto_int_opt")]
    pub cooldown: Option<i64>,
}

fn sent<T>(value: Option<Vec<T>>) -> Option<Vec<T>> {
    value.filter(|v| !v.is_empty())
}

fn sent_map(value: Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    value.filter(|v| !v.is_empty())
}

impl SchedulerPatch {
    /// Nothing to change: Maestro answers `AlreadyExists`, "no change found".
    pub fn is_empty(&self) -> bool {
        let Self {
            port_range,
            max_surge,
            rooms_replicas,
            spec,
            autoscaling,
            forwarders,
            annotations,
            labels,
            match_allocation,
            room_token_required,
            auto_rollback,
            name: _,
        } = self;
        port_range.is_none()
            && max_surge.is_none()
            && rooms_replicas.is_none()
            && spec.is_none()
            && autoscaling.is_none()
            && forwarders.as_ref().is_none_or(Vec::is_empty)
            && annotations.as_ref().is_none_or(BTreeMap::is_empty)
            && labels.as_ref().is_none_or(BTreeMap::is_empty)
            && match_allocation.is_none()
            && room_token_required.is_none()
            && auto_rollback.is_none()
    }

    /// The active version with the patch applied (to be validated as any new version).
    pub fn apply(self, mut scheduler: Scheduler) -> Scheduler {
        if let Some(range) = self.port_range {
            scheduler.port_range = Some(range);
        }
        if let Some(surge) = self.max_surge {
            scheduler.max_surge = surge;
        }
        if let Some(replicas) = self.rooms_replicas {
            scheduler.rooms_replicas = replicas;
        }
        if let Some(forwarders) = sent(self.forwarders) {
            scheduler.forwarders = forwarders;
        }
        if let Some(spec) = self.spec {
            spec.apply(&mut scheduler);
        }
        if let Some(autoscaling) = self.autoscaling {
            scheduler.autoscaling = Some(autoscaling.apply(scheduler.autoscaling.take()));
        }
        if let Some(annotations) = sent_map(self.annotations) {
            scheduler.annotations = annotations;
        }
        if let Some(labels) = sent_map(self.labels) {
            scheduler.labels = labels;
        }
        if let Some(allocation) = self.match_allocation {
            scheduler.match_allocation = Some(allocation);
        }
        if let Some(required) = self.room_token_required {
            scheduler.room_token_required = required;
        }
        if let Some(rollback) = self.auto_rollback {
            scheduler.auto_rollback = Some(rollback);
        }
        scheduler
    }
}

impl SpecPatch {
    fn apply(self, scheduler: &mut Scheduler) {
        let spec = &mut scheduler.spec;
        if let Some(grace) = self.termination_grace_period {
            spec.termination_grace_period = grace;
        }
        if let Some(toleration) = self.toleration {
            spec.toleration = Some(toleration);
        }
        if let Some(affinity) = self.affinity {
            spec.affinity = Some(affinity);
        }
        for (i, patch) in sent(self.containers).into_iter().flatten().enumerate() {
            if spec.containers.len() <= i {
                spec.containers.push(empty_container());
            }
            if let Some(container) = spec.containers.get_mut(i) {
                patch.apply(container);
            }
        }
    }
}

/// What Maestro appends for a patched index past the end: a container with nothing set,
/// which validation then names field by field.
fn empty_container() -> Container {
    Container {
        name: String::new(),
        image: String::new(),
        image_pull_policy: None,
        command: Vec::new(),
        environment: Vec::new(),
        requests: None,
        limits: None,
        ports: Vec::new(),
    }
}

impl ContainerPatch {
    fn apply(self, container: &mut Container) {
        if let Some(name) = self.name {
            container.name = name;
        }
        if let Some(image) = self.image {
            container.image = image;
        }
        if let Some(policy) = self.image_pull_policy {
            container.image_pull_policy = Some(policy);
        }
        if let Some(command) = self.command {
            container.command = command;
        }
        if let Some(environment) = self.environment {
            container.environment = environment;
        }
        if let Some(requests) = self.requests {
            container.requests = Some(requests);
        }
        if let Some(limits) = self.limits {
            container.limits = Some(limits);
        }
        if let Some(ports) = self.ports {
            container.ports = ports;
        }
    }
}

impl AutoscalingPatch {
    /// Maestro starts from an empty autoscaling when the scheduler has none.
    fn apply(self, current: Option<Autoscaling>) -> Autoscaling {
        let mut autoscaling = current.unwrap_or(Autoscaling {
            enabled: false,
            min: 0,
            max: 0,
            cooldown: 0,
            policy: AutoscalingPolicy {
                kind: String::new(),
                parameters: PolicyParameters::default(),
            },
        });
        if let Some(enabled) = self.enabled {
            autoscaling.enabled = enabled;
        }
        if let Some(min) = self.min {
            autoscaling.min = min;
        }
        if let Some(max) = self.max {
            autoscaling.max = max;
        }
        if let Some(cooldown) = self.cooldown {
            autoscaling.cooldown = cooldown;
        }
        if let Some(policy) = self.policy {
            autoscaling.policy = policy;
        }
        autoscaling
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::fixtures::scheduler;
    use serde_json::json;

    fn patch(value: serde_json::Value) -> SchedulerPatch {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn containers_merge_field_by_field_at_their_index() {
        let base = scheduler();
        let patched = patch(json!({"spec": {"containers": [{"image": "registry/game:2.0"}]}}))
            .apply(base.clone());
        let (before, after) = (&base.spec.containers[0], &patched.spec.containers[0]);
        assert_eq!(after.image, "registry/game:2.0");
        assert_eq!(after.name, before.name);
        assert_eq!(after.command, before.command);
        assert_eq!(after.environment, before.environment);
        assert_eq!(after.ports, before.ports);
        assert_eq!(after.requests, before.requests);
        // The rest of the spec stays.
        assert_eq!(patched.spec.toleration, base.spec.toleration);
        assert_eq!(
            patched.spec.termination_grace_period,
            base.spec.termination_grace_period
        );

        let appended =
            patch(json!({"spec": {"containers": [{}, {"name": "sidecar"}]}})).apply(base.clone());
        assert_eq!(appended.spec.containers.len(), 2);
        assert_eq!(appended.spec.containers[0], base.spec.containers[0]);
        assert_eq!(appended.spec.containers[1].name, "sidecar");
        assert!(
            appended.validate().is_err(),
            "the appended container lacks its image"
        );
    }

    #[test]
    fn autoscaling_merges_field_by_field() {
        let base = scheduler();
        let patched = patch(json!({"autoscaling": {"min": 3}})).apply(base.clone());
        let (before, after) = (
            base.autoscaling.as_ref().unwrap(),
            patched.autoscaling.as_ref().unwrap(),
        );
        assert_eq!(after.min, 3);
        assert_eq!(after.max, before.max);
        assert_eq!(after.policy, before.policy);
        assert_eq!(after.enabled, before.enabled);
    }

    #[test]
    fn null_and_empty_collections_are_not_sent() {
        let base = scheduler();
        let p = patch(json!({"maxSurge": null, "forwarders": [], "labels": {}, "name": "x"}));
        assert!(p.is_empty());
        assert_eq!(p.apply(base.clone()), base);
        assert!(patch(json!({})).is_empty());
        // `spec: {}` is a change request: Maestro records an identical new version.
        assert!(!patch(json!({"spec": {}})).is_empty());
    }

    #[test]
    fn other_fields_replace_whole_and_snake_case_is_read() {
        let base = scheduler();
        let patched = patch(json!({
            "rooms_replicas": 7,
            "portRange": {"start": 1000, "end": 2000},
            "annotations": {"new": "x"},
            "match_allocation": {"max_matches": 4}
        }))
        .apply(base.clone());
        assert_eq!(patched.rooms_replicas, 7);
        assert_eq!(
            patched.port_range,
            Some(PortRange {
                start: 1000,
                end: 2000
            })
        );
        assert_eq!(patched.annotations.len(), 1);
        assert_eq!(patched.max_matches(), 4);
        assert_eq!(patched.labels, base.labels);
    }
}
