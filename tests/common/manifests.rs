//! Kubernetes manifests as the tests read them: `deploy/kubernetes/maestro.yaml`, and what
//! `helm template` renders of `deploy/helm/maestro`.

use serde_json::Value;

pub const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/kubernetes/maestro.yaml"
);

/// The objects of a multi-document YAML text.
pub fn objects(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let doc: Value = serde::Deserialize::deserialize(document)?;
        if !doc.is_null() {
            objects.push(doc);
        }
    }
    Ok(objects)
}

/// The objects of deploy/kubernetes/maestro.yaml.
pub fn manifest() -> anyhow::Result<Vec<Value>> {
    objects(&std::fs::read_to_string(MANIFEST)?)
}

pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Every ClusterRole's rules, flattened to `(group, resource, verb)`, sorted.
pub fn cluster_role_rules(objects: &[Value]) -> Vec<(String, String, String)> {
    let mut rules = Vec::new();
    for role in of_kind(objects, "ClusterRole") {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        rules.push((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    rules.sort();
    rules
}

/// The setting names of the ConfigMaps and Secrets (`data` / `stringData` keys), sorted.
pub fn settings(objects: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" || o["kind"] == "Secret")
        .flat_map(|o| {
            let data = if o["kind"] == "Secret" {
                &o["stringData"]
            } else {
                &o["data"]
            };
            data.as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys
}

/// `maestro serve --help`, where every setting shows as `env: NAME`.
pub fn serve_help() -> anyhow::Result<String> {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["serve", "--help"])
        .output()?;
    Ok(String::from_utf8(help.stdout)?)
}
