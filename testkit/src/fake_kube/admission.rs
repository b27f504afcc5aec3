//! What a real API server refuses before it stores an object, as a real one words it: names
//! and label values that are not valid (422 Invalid), new content in a namespace being
//! terminated (403 Forbidden, cause `NamespaceTerminating`), and Pod Security admission's
//! refusal of host ports below the `privileged` level (403 Forbidden).

use axum::response::Response;
use serde_json::{Value, json};

use super::{Inner, key, status_error_with};

/// The label that sets a namespace's enforced Pod Security level.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// Checks a create of `object` (of `kind`, in `namespace` when namespaced) against what
/// is stored; `default_level` is the cluster's Pod Security default.
pub(super) fn admit(
    inner: &Inner,
    resource: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    object: &Value,
    default_level: &str,
) -> Result<(), Box<Response>> {
    let invalid = |field: &str, value: &str, why: &str| {
        status_error_with(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: Invalid value: \"{value}\": {why}"),
            json!({"name": name, "kind": resource, "causes": [
                {"reason": "FieldValueInvalid", "message": format!("Invalid value: \"{value}\": {why}"), "field": field},
            ]}),
        )
    };
    let name_rule = if resource == "namespaces" {
        dns_label(name)
    } else {
        dns_subdomain(name)
    };
    if let Err(why) = name_rule {
        return Err(Box::new(invalid("metadata.name", name, &why)));
    }
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        for (label, value) in labels {
            let value = value.as_str().unwrap_or_default();
            if let Err(why) = label_value(value) {
                return Err(Box::new(invalid(
                    &format!("metadata.labels[{label}]"),
                    value,
                    &why,
                )));
            }
        }
    }
    if namespace.is_empty() {
        return Ok(());
    }
    let ns = inner
        .objects
        .get(&key("namespaces", "", namespace))
        .cloned()
        .unwrap_or(Value::Null);
    if ns["metadata"]["deletionTimestamp"].is_string() {
        let message = format!(
            "{resource} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated"
        );
        return Err(Box::new(status_error_with(
            403,
            "Forbidden",
            message.clone(),
            json!({"name": name, "kind": resource, "causes": [
                {"reason": "NamespaceTerminating", "message": message, "field": "metadata.namespace"},
            ]}),
        )));
    }
    if resource == "pods" {
        let level = ns["metadata"]["labels"][POD_SECURITY_ENFORCE]
            .as_str()
            .unwrap_or(default_level);
        if level != "privileged"
            && let Some((container, port)) = first_host_port(object)
        {
            return Err(Box::new(status_error_with(
                403,
                "Forbidden",
                format!(
                    "pods \"{name}\" is forbidden: violates PodSecurity \"{level}:latest\": hostPort (container \"{container}\" uses hostPort {port})"
                ),
                json!({"name": name, "kind": "pods"}),
            )));
        }
    }
    Ok(())
}

fn first_host_port(pod: &Value) -> Option<(String, u64)> {
    pod["spec"]["containers"].as_array()?.iter().find_map(|c| {
        let port = c["ports"]
            .as_array()?
            .iter()
            .find_map(|p| p["hostPort"].as_u64().filter(|p| *p != 0))?;
        Some((c["name"].as_str().unwrap_or_default().to_string(), port))
    })
}

fn dns_label(name: &str) -> Result<(), String> {
    let chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > 63 {
        Err("must be no more than 63 characters".into())
    } else if !chars || name.starts_with('-') || name.ends_with('-') {
        Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character".into())
    } else {
        Ok(())
    }
}

fn dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    name.split('.').try_for_each(dns_label)
}

fn label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    let inner_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = value.is_empty()
        || (value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric());
    if inner_ok && ends_ok {
        Ok(())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_label_values_follow_kubernetes_rules() {
        assert!(dns_label(&"a".repeat(63)).is_ok());
        assert!(dns_label(&"a".repeat(64)).is_err());
        assert!(dns_label("Upper").is_err());
        assert!(dns_subdomain("a.b-c").is_ok());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.0.0").is_ok());
        assert!(label_value(&"x".repeat(64)).is_err());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn host_ports_are_found_in_any_container() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 1}]},
            {"name": "b", "ports": [{"containerPort": 2, "hostPort": 40000}]},
        ]}});
        assert_eq!(first_host_port(&pod), Some(("b".into(), 40000)));
        assert_eq!(first_host_port(&json!({"spec": {"containers": []}})), None);
    }
}
