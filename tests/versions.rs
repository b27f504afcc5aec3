//! Scheduler versions through the REST API on the real `maestro dev` binary: a minor change
//! (recorded and active, rooms kept), a major change validated by a real room before the
//! switch, a major change whose room cannot start (recorded as failed, active version
//! untouched, nothing left behind), switching back, and every error path.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::Maestro;
use maestro_testkit::{TemporalDevServer, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NAME: &str = "versioned";

fn document(command: &[&str]) -> Value {
    json!({
        "name": NAME, "game": "versions-game", "maxSurge": "1", "roomsReplicas": 2,
        "portRange": {"start": 46700, "end": 46799},
        "spec": {"terminationGracePeriod": "5s", "containers": [{
            "name": "room", "image": "local/game-room", "command": command,
            "imagePullPolicy": "IfNotPresent", "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"},
            "ports": [{"name": "game", "protocol": "udp", "port": 7777}]}]}
    })
}

fn game_room(interval: &'static str) -> Vec<&'static str> {
    vec![env!("CARGO_BIN_EXE_game-room"), "--ping-interval", interval]
}

/// Waits for the operation to be final; returns it.
async fn finished(maestro: &Maestro, id: &str) -> Result<Value> {
    maestro
        .final_operation(NAME, id, Duration::from_secs(90))
        .await
}

async fn call(
    maestro: &Maestro,
    method: reqwest::Method,
    body: Value,
) -> Result<(StatusCode, Value)> {
    maestro
        .call(method, &format!("/schedulers/{NAME}"), Some(body))
        .await
}

async fn active_version(maestro: &Maestro) -> Result<String> {
    let (_, body) = maestro.get(&format!("/schedulers/{NAME}")).await?;
    Ok(body["scheduler"]["spec"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// How many operations have finished (dry runs must not add any).
async fn final_operations(maestro: &Maestro) -> Result<Value> {
    let path = format!("/schedulers/{NAME}/operations?stage=final");
    Ok(maestro.get(&path).await?.1["total"].clone())
}

async fn room_ids(maestro: &Maestro) -> Result<Vec<String>> {
    let (_, body) = maestro.get(&format!("/schedulers/{NAME}/rooms")).await?;
    let mut ids: Vec<String> = body["rooms"]
        .as_array()
        .map(|rooms| {
            rooms
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_minor_major_failed_and_switch() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start(&temporal).await?;
    let (code, body) = maestro
        .post("/schedulers", document(&game_room("1s")))
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = maestro
        .post(
            &format!("/schedulers/{NAME}/add-rooms"),
            json!({"amount": 2}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    eventually(Duration::from_secs(60), "2 ready rooms", || async {
        (maestro.rooms(NAME, "ready").await.ok()? == 2).then_some(())
    })
    .await?;
    let rooms = room_ids(&maestro).await?;

    // Info, one room, operations in order.
    let (code, info) = maestro.get("/schedulers/info?game=versions-game").await?;
    assert_eq!(code, StatusCode::OK, "{info}");
    let entries = info["schedulers"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{info}");
    assert_eq!(
        (
            &entries[0]["name"],
            &entries[0]["roomsReady"],
            &entries[0]["roomsReplicas"]
        ),
        (&json!(NAME), &json!(2), &json!(2))
    );
    let (_, info) = maestro.get("/schedulers/info?game=no-such-game").await?;
    assert_eq!(info["schedulers"], json!([]));
    let (code, room) = maestro
        .get(&format!("/schedulers/{NAME}/rooms/{}", rooms[0]))
        .await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(room["room"]["id"], json!(rooms[0]));
    let (code, _) = maestro
        .get(&format!("/schedulers/{NAME}/rooms/no-such-room"))
        .await?;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, ops) = maestro
        .get(&format!(
            "/schedulers/{NAME}/operations?stage=final&orderBy=createdAt%20asc"
        ))
        .await?;
    assert_eq!(ops["operations"][0]["definitionName"], "create_scheduler");
    let (code, body) = maestro
        .get(&format!(
            "/schedulers/{NAME}/operations?stage=final&orderBy=createdAt%20sideways"
        ))
        .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "orderBy");

    // Dry runs: the plan, and nothing enqueued.
    let before = final_operations(&maestro).await?;
    assert!(before.as_u64().is_some_and(|n| n >= 2), "{before}");
    let dry = |method: reqwest::Method, path: String, body: Option<Value>| {
        let maestro = &maestro;
        async move { maestro.call(method, &path, body).await }
    };
    let base = format!("/schedulers/{NAME}");
    let (code, body) = dry(
        reqwest::Method::PATCH,
        format!("{base}?dryRun=true"),
        Some(json!({"roomsReplicas": 3})),
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["dryRun"], true);
    assert_eq!(
        (&body["plan"]["changeKind"], &body["plan"]["version"]),
        (&json!("minor"), &json!("v1.1.0"))
    );
    let (_, body) = dry(
        reqwest::Method::POST,
        format!("{base}?dryRun=true"),
        Some(document(&game_room("2s"))),
    )
    .await?;
    assert_eq!(
        (&body["plan"]["changeKind"], &body["plan"]["version"]),
        (&json!("major"), &json!("v2.0.0"))
    );
    assert_eq!(body["plan"]["validationRoom"], true);
    let (_, body) = dry(
        reqwest::Method::POST,
        format!("{base}/add-rooms?dryRun=true"),
        Some(json!({"amount": 2})),
    )
    .await?;
    assert_eq!(body["plan"]["roomsToCreate"], 2);
    let (_, body) = dry(
        reqwest::Method::POST,
        format!("{base}/remove-rooms?dryRun=true"),
        Some(json!({"amount": 1})),
    )
    .await?;
    let picked = body["plan"]["roomsToRemove"].as_array().unwrap().clone();
    assert_eq!(picked.len(), 1);
    assert!(rooms.contains(&picked[0].as_str().unwrap().to_string()));
    let (_, body) = dry(reqwest::Method::DELETE, format!("{base}?dryRun=true"), None).await?;
    assert_eq!(body["plan"]["roomsToRemove"].as_array().unwrap().len(), 2);
    let (_, body) = dry(
        reqwest::Method::PUT,
        format!("{base}?dryRun=true"),
        Some(json!({"version": "v1.0.0"})),
    )
    .await?;
    assert_eq!(body["plan"]["definitionName"], "switch_active_version");
    let (code, _) = dry(
        reqwest::Method::POST,
        "/schedulers?dryRun=true".into(),
        Some(document(&game_room("1s"))),
    )
    .await?;
    assert_eq!(code, StatusCode::CONFLICT, "it exists");
    let mut fresh = document(&game_room("1s"));
    fresh["name"] = json!("never-created");
    let (code, body) = dry(
        reqwest::Method::POST,
        "/schedulers?dryRun=true".into(),
        Some(fresh),
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["plan"]["roomsToCreate"], 2);
    let (code, _) = maestro.get("/schedulers/never-created").await?;
    assert_eq!(code, StatusCode::NOT_FOUND, "a dry run creates nothing");
    let (code, body) = dry(
        reqwest::Method::PATCH,
        format!("{base}?dryRun=maybe"),
        Some(json!({"roomsReplicas": 3})),
    )
    .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "dryRun");
    assert_eq!(
        final_operations(&maestro).await?,
        before,
        "nothing was enqueued"
    );
    assert_eq!(active_version(&maestro).await?, "v1.0.0");

    // Minor (PATCH): v1.1.0, switched to by the operation that follows, the same rooms.
    let (code, body) = call(
        &maestro,
        reqwest::Method::PATCH,
        json!({"roomsReplicas": 3}),
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let op = finished(&maestro, body["operationId"].as_str().unwrap()).await?;
    assert_eq!(op["status"], "finished", "{op}");
    let switch = finished(&maestro, &format!("{}-switch", op["id"].as_str().unwrap())).await?;
    assert_eq!(switch["input"], json!({"newActiveVersion": "v1.1.0"}));
    assert_eq!(active_version(&maestro).await?, "v1.1.0");
    let (_, body) = maestro.get(&format!("/schedulers/{NAME}")).await?;
    assert_eq!(body["scheduler"]["roomsReplicas"], 3);
    assert_eq!(body["scheduler"]["state"], "in-sync");
    assert_eq!(
        room_ids(&maestro).await?,
        rooms,
        "a minor change keeps rooms"
    );

    // Major (POST, whole document): a validation room reports ready, then the switch runs.
    let mut major = document(&game_room("2s"));
    major["roomsReplicas"] = json!(3);
    let (code, body) = call(&maestro, reqwest::Method::POST, major.clone()).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let op = finished(&maestro, body["operationId"].as_str().unwrap()).await?;
    assert_eq!(op["status"], "finished", "{op}");
    let history = op["executionHistory"].to_string();
    assert!(history.contains("validation room"), "{history}");
    let switch_id = format!("{}-switch", op["id"].as_str().unwrap());
    let switch = finished(&maestro, &switch_id).await?;
    assert_eq!(switch["definitionName"], "switch_active_version");
    assert_eq!(active_version(&maestro).await?, "v2.0.0");
    assert_eq!(
        room_ids(&maestro).await?,
        rooms,
        "the validation room is gone"
    );

    // A major version whose rooms cannot start: recorded as failed, v2.0 stays active.
    let (code, body) = call(&maestro, reqwest::Method::POST, document(&["false"])).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let op = finished(&maestro, body["operationId"].as_str().unwrap()).await?;
    assert_eq!(op["status"], "error", "{op}");
    let reason = op["error"].as_str().unwrap();
    assert!(reason.contains("validation room failed"), "{op}");
    // The reason says which room, how it ended and where its output is.
    assert!(reason.contains(&format!("room {NAME}-")), "{reason}");
    assert!(reason.contains("exit status: 1"), "{reason}");
    assert!(reason.contains(".log"), "{reason}");
    // Log lines a person reads: no SDK span prefix, no Rust Debug in the room's lines.
    let log = maestro.log_text();
    assert!(log.contains("room start settled: failed"), "{log}");
    for noise in ["RunActivity{", "Some(", "verdict=Failed("] {
        assert!(!log.contains(noise), "the log has {noise:?}");
    }
    assert_eq!(active_version(&maestro).await?, "v2.0.0");
    assert_eq!(
        room_ids(&maestro).await?,
        rooms,
        "no validation room left behind"
    );
    let (_, versions) = maestro.get(&format!("/schedulers/{NAME}/versions")).await?;
    let listed: Vec<(String, bool, bool)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_string(),
                v["isActive"].as_bool().unwrap(),
                v.get("failed").is_some(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("v3.0.0".into(), false, true),
            ("v2.0.0".into(), true, false),
            ("v1.1.0".into(), false, false),
            ("v1.0.0".into(), false, false)
        ]
    );

    // Switch back to v1.1.0 (PUT; `v1.1` names it too); a failed, unknown or malformed
    // version is refused.
    let put = reqwest::Method::PUT;
    let (code, body) = call(&maestro, put.clone(), json!({"version": "v1.1"})).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    finished(&maestro, body["operationId"].as_str().unwrap()).await?;
    assert_eq!(active_version(&maestro).await?, "v1.1.0");
    let (code, body) = call(&maestro, put.clone(), json!({"version": "v3.0.0"})).await?;
    // Maestro's FailedPrecondition (code 9), which grpc-gateway answers with 400.
    assert_eq!(
        (code, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(9)),
        "{body}"
    );
    let (code, _) = call(&maestro, put.clone(), json!({"version": "v9.0.0"})).await?;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = call(&maestro, put.clone(), json!({"version": "nine"})).await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "version");

    // Bad new versions: every bad field named; a rename refused; unknown schedulers 404.
    let mut renamed = document(&game_room("1s"));
    renamed["name"] = json!("other-name");
    let (code, body) = call(&maestro, reqwest::Method::POST, renamed).await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "name");
    let mut invalid = document(&game_room("1s"));
    invalid["maxSurge"] = json!("lots");
    invalid["spec"]["containers"][0]["ports"][0]["protocol"] = json!("HTTP");
    let (code, body) = call(&maestro, reqwest::Method::POST, invalid).await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = body["details"][0]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["maxSurge", "spec.containers[0].ports[0].protocol"]);
    let (code, body) = call(
        &maestro,
        reqwest::Method::PATCH,
        json!({"roomsReplicas": "many"}),
    )
    .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["details"][0]["fieldViolations"][0]["field"],
        "roomsReplicas"
    );
    let (code, _) = call(&maestro, reqwest::Method::PATCH, json!([1, 2])).await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = maestro
        .call(
            reqwest::Method::PATCH,
            "/schedulers/nobody",
            Some(json!({"roomsReplicas": 1})),
        )
        .await?;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Idempotency-Key: a retried new version is the same operation. A minor change after
    // the switch back to v1.1.0 is v1.2.0, as Maestro counts (not v3.1.0).
    let retried = || async {
        let response = maestro
            .http
            .patch(format!("{}/schedulers/{NAME}", maestro.api))
            .bearer_auth(common::API_TOKEN)
            .header("Idempotency-Key", "patch-once")
            .json(&json!({"maxSurge": "2"}))
            .send()
            .await?;
        anyhow::Ok(response.json::<Value>().await?["operationId"].clone())
    };
    let first = retried().await?;
    assert_eq!(retried().await?, first);
    finished(&maestro, first.as_str().unwrap()).await?;
    finished(&maestro, &format!("{}-switch", first.as_str().unwrap())).await?;
    assert_eq!(active_version(&maestro).await?, "v1.2.0");

    // Cancel through the API: a validation waiting for a room that never pings stops and
    // records nothing; final and unknown operations are refused.
    let (code, body) = call(&maestro, reqwest::Method::POST, document(&["sleep", "600"])).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let slow = body["operationId"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(30), "the validation to run", || async {
        let (_, body) = maestro
            .get(&format!("/schedulers/{NAME}/operations/{slow}"))
            .await
            .ok()?;
        (body["operation"]["status"] == "in_progress").then_some(())
    })
    .await?;
    let cancel = |id: String| {
        let maestro = &maestro;
        async move {
            maestro
                .post(
                    &format!("/schedulers/{NAME}/operations/{id}/cancel"),
                    json!({}),
                )
                .await
        }
    };
    let (code, body) = cancel(slow.clone()).await?;
    assert_eq!((code, body), (StatusCode::OK, json!({})));
    let op = finished(&maestro, &slow).await?;
    assert_eq!(op["status"], "canceled", "{op}");
    assert_eq!(active_version(&maestro).await?, "v1.2.0");
    assert_eq!(
        room_ids(&maestro).await?,
        rooms,
        "no validation room left behind"
    );
    let (code, body) = cancel(slow).await?;
    assert_eq!(
        (code, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(9)),
        "{body}"
    );
    let (code, _) = cancel("no-such-operation".into()).await?;
    assert_eq!(code, StatusCode::NOT_FOUND);

    assert!(maestro.stop()?, "maestro dev stops cleanly");
    Ok(())
}
