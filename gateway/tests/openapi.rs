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
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);
    // Bodies are described by schemas, not left opaque.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Scheduler",
        "OperationDetail",
        "GameRoom",
        "StatusBody",
        "Lease",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
