//! The OpenAPI document describes every management route Maestro's API has (and our
//! extensions), generated from the handlers: a route added without its annotation, or an
//! endpoint of the spec not served, fails here.

use std::collections::BTreeSet;

/// (method, path) of every management endpoint: Maestro's table plus our extensions.
const EXPECTED: &[(&str, &str)] = &[
    ("get", "/schedulers"),
    ("post", "/schedulers"),
    ("get", "/schedulers/info"),
    ("get", "/schedulers/{name}"),
    ("post", "/schedulers/{name}"),
    ("patch", "/schedulers/{name}"),
    ("put", "/schedulers/{name}"),
    ("delete", "/schedulers/{name}"),
    ("get", "/schedulers/{name}/versions"),
    ("post", "/schedulers/{name}/add-rooms"),
    ("post", "/schedulers/{name}/remove-rooms"),
    ("get", "/schedulers/{name}/operations"),
    ("get", "/schedulers/{name}/operations/{id}"),
    ("post", "/schedulers/{name}/operations/{id}/cancel"),
    ("get", "/schedulers/{name}/rooms"),
    ("get", "/schedulers/{name}/rooms/{room}"),
];

#[test]
fn the_document_has_every_route_and_nothing_else() {
    let doc = serde_json::to_value(maestro_gateway::management::openapi()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("200"), "{method} {path}: no 200");
            if method != "get" {
                let params = operation["parameters"].to_string();
                assert!(params.contains("dryRun"), "{method} {path}: no dryRun");
                assert!(responses.contains_key("400"), "{method} {path}: no 400");
            }
        }
    }
    assert_eq!(documented, route_set(EXPECTED));
    // Bodies are described by schemas, not left opaque.
    assert_schemas(
        &doc,
        &[
            "Scheduler",
            "OperationDetail",
            "GameRoom",
            "StatusBody",
            "Lease",
        ],
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

fn route_set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

fn assert_schemas(doc: &serde_json::Value, names: &[&str]) {
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in names {
        assert!(schemas.contains_key(*name), "schema {name} missing");
    }
}

/// (method, path) of every rooms API endpoint: Maestro's game room and matchmaker routes.
const ROOMS: &[(&str, &str)] = &[
    ("put", "/scheduler/{scheduler}/rooms/{room}/ping"),
    ("put", "/scheduler/{scheduler}/rooms/{room}/status"),
    ("post", "/scheduler/{scheduler}/rooms/{room}/roomevent"),
    ("post", "/scheduler/{scheduler}/rooms/{room}/playerevent"),
    ("get", "/scheduler/{scheduler}/rooms/{room}/address"),
    ("post", "/scheduler/{scheduler}/rooms/allocate"),
];

/// Every operation of `doc`, as (method, path, operation), with its summary checked: the
/// Swagger UI list shows the summary, and an operation without one is a bare path there.
fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let summary = operation["summary"].as_str().unwrap_or_default();
            assert!(
                !summary.is_empty() && summary.len() <= 90 && !summary.ends_with('.'),
                "{method} {path}: summary {summary:?} (one short line, no full stop)"
            );
            all.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    all
}

#[test]
fn every_operation_has_a_summary() {
    for doc in [
        maestro_gateway::management::openapi(),
        maestro_gateway::rooms::http::openapi(),
    ] {
        let doc = serde_json::to_value(doc).unwrap();
        assert!(!operations(&doc).is_empty());
    }
}

#[test]
fn the_rooms_document_has_every_route_with_its_messages() {
    let doc = serde_json::to_value(maestro_gateway::rooms::http::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{method} {path}: no 200");
        assert!(responses.contains_key("400"), "{method} {path}: no 400");
        if method != "get" {
            assert!(
                operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    .is_string(),
                "{method} {path}: no request schema"
            );
        }
        documented.insert((method, path));
    }
    assert_eq!(documented, route_set(ROOMS));
    assert_schemas(
        &doc,
        &[
            "PingRequest",
            "EventRequest",
            "AllocateRequest",
            "Success",
            "EventAnswer",
            "Allocated",
            "RoomAddress",
            "StatusBody",
        ],
    );
    // The ping's fields, as a room sends them (camelCase, Maestro's names).
    let ping = &doc["components"]["schemas"]["PingRequest"]["properties"];
    for field in ["status", "timestamp", "runningMatches", "metadata"] {
        assert!(ping[field].is_object(), "PingRequest.{field}");
    }
}
