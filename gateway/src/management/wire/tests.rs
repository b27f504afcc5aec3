use super::*;
use maestro_core::Scheduler;
use serde_json::json;

fn scheduler_json() -> Value {
    json!({
        "name": "s", "game": "g", "maxSurge": "10%", "roomsReplicas": 1,
        "spec": {"terminationGracePeriod": "2m", "containers": [{
            "name": "c", "image": "i", "imagePullPolicy": "Always", "command": ["x"],
            "requests": {"memory": "1Mi", "cpu": "1m"}, "limits": {"memory": "1Mi", "cpu": "1m"},
            "ports": [{"name": "p", "protocol": "udp", "port": 1}]
        }]},
        "forwarders": [{"name": "f", "enable": true, "type": "gRPC", "address": "a:1",
                        "options": {"timeout": 250}}],
        "roomTokenRequired": false
    })
}

#[test]
fn answers_carry_every_maestro_field_and_nothing_else() {
    let scheduler: Scheduler = serde_json::from_value(scheduler_json()).unwrap();
    let mut answer = json!({"scheduler": scheduler});
    conform(&mut answer, &GET_SCHEDULER, false);
    let s = &answer["scheduler"];
    // EmitUnpopulated: unset scalars are zero values, unset messages null, lists empty.
    assert_eq!(s["state"], "");
    assert_eq!(s["portRange"], Value::Null);
    assert_eq!(s["createdAt"], Value::Null);
    assert_eq!(s["annotations"], json!({}));
    assert_eq!(s["spec"]["toleration"], "");
    assert_eq!(s["spec"]["affinity"], "");
    assert_eq!(s["spec"]["version"], "");
    assert_eq!(s["spec"]["containers"][0]["environment"], json!([]));
    assert_eq!(s["spec"]["containers"][0]["ports"][0]["hostPort"], 0);
    // proto3 optional fields only when set.
    assert!(s.get("autoscaling").is_none());
    assert!(s.get("matchAllocation").is_none());
    assert!(s["spec"].get("restartPolicy").is_none());
    // int64 as a string, durations in seconds.
    assert_eq!(s["forwarders"][0]["options"]["timeout"], "250");
    assert_eq!(s["forwarders"][0]["options"]["metadata"], json!({}));
    assert_eq!(s["spec"]["terminationGracePeriod"], "120s");
    // Our extension is gone.
    assert!(s.get("roomTokenRequired").is_none());
}

#[test]
fn extensions_stay_when_asked_for() {
    let mut answer =
        json!({"operation": {"id": "1", "seq": 4, "error": "boom", "input": {"amount": 1}}});
    conform(&mut answer, &GET_OPERATION, true);
    assert_eq!(answer["operation"]["seq"], 4);
    assert_eq!(answer["operation"]["error"], "boom");
    assert_eq!(answer["operation"]["executionHistory"], json!([]));
    conform(&mut answer, &GET_OPERATION, false);
    assert!(answer["operation"].get("seq").is_none());
    assert_eq!(answer["operation"]["input"], json!({"amount": 1}));
}

#[test]
fn durations_are_protojson() {
    use std::time::Duration as D;
    assert_eq!(protojson_duration(D::from_secs(100)), "100s");
    assert_eq!(protojson_duration(D::from_millis(1500)), "1.500s");
    assert_eq!(protojson_duration(D::from_micros(1_000_001)), "1.000001s");
    assert_eq!(protojson_duration(D::new(0, 5)), "0.000000005s");
}

#[test]
fn the_extensions_header_is_read_leniently() {
    let mut headers = HeaderMap::new();
    assert!(!wants_extensions(&headers));
    headers.insert(EXTENSIONS_HEADER, "True".parse().unwrap());
    assert!(wants_extensions(&headers));
    headers.insert(EXTENSIONS_HEADER, "false".parse().unwrap());
    assert!(!wants_extensions(&headers));
}
