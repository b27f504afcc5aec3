//! End to end through the public APIs: the real `maestro dev` binary (reusing a test
//! Temporal dev server), REST calls, and real `game-room` processes pinging the rooms API.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Maestro, room_processes, room_token, scheduler_body};
use maestro_testkit::{TemporalDevServer, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_lifecycle_through_the_rest_api() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start(&temporal).await?;
    let name = "e2e-lifecycle";

    // The management API wants a token; the health checks do not.
    let unauthenticated = maestro
        .http
        .get(format!("{}/schedulers", maestro.api))
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let body: Value = unauthenticated.json().await?;
    assert_eq!(body["code"], 16);
    let wrong = maestro
        .http
        .get(format!("{}/schedulers", maestro.api))
        .bearer_auth("not-the-token")
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    for probe in ["/healthz", "/readyz", "/openapi.json", "/docs"] {
        let response = maestro
            .http
            .get(format!("{}{probe}", maestro.api))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK, "{probe}");
        if probe == "/openapi.json" {
            let doc: Value = response.json().await?;
            assert!(doc["paths"]["/schedulers/{name}/add-rooms"]["post"].is_object());
        }
    }

    // Bad input: every bad field named, nothing created.
    let mut bad = scheduler_body(name);
    bad["game"] = json!("");
    bad["maxSurge"] = json!("lots");
    bad["spec"]["containers"][0]["ports"][0]["protocol"] = json!("HTTP");
    let (code, body) = maestro.post("/schedulers", bad).await?;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 3);
    let fields: Vec<&str> = body["details"][0]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["game", "maxSurge", "spec.containers[0].ports[0].protocol"]
    );
    let (code, body) = maestro
        .post("/schedulers", json!({"name": name, "game": 5}))
        .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "game");
    let (code, _) = maestro.get(&format!("/schedulers/{name}")).await?;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Create; a second create is a conflict.
    let (code, body) = maestro.post("/schedulers", scheduler_body(name)).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["scheduler"]["spec"]["version"], "v1.0.0");
    assert_eq!(body["scheduler"]["state"], "creating");
    // The answer is not read back from the workflow: what it says must be what the
    // workflow holds (created at the same moment) and what the listing's memo says.
    let created_at = body["scheduler"]["createdAt"].clone();
    assert!(created_at.is_string(), "{body}");
    let (_, read) = maestro.get(&format!("/schedulers/{name}")).await?;
    assert_eq!(read["scheduler"]["createdAt"], created_at, "{read}");
    let (_, versions) = maestro.get(&format!("/schedulers/{name}/versions")).await?;
    assert_eq!(
        versions["versions"][0]["createdAt"], created_at,
        "{versions}"
    );
    let (code, _) = maestro.post("/schedulers", scheduler_body(name)).await?;
    assert_eq!(code, StatusCode::CONFLICT);

    // 3 rooms: 3 real processes that report ready.
    let (code, body) = maestro
        .post(
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 3}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(
        body["operationId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    eventually(Duration::from_secs(60), "3 ready rooms", || async {
        (maestro.rooms(name, "ready").await.ok()? == 3).then_some(())
    })
    .await?;
    assert_eq!(room_processes(name), 3);
    let (_, body) = maestro.get(&format!("/schedulers/{name}")).await?;
    assert_eq!(body["scheduler"]["state"], "in-sync");

    // Listed from Temporal visibility (eventually consistent), without the spec; filters.
    let listed = eventually(
        Duration::from_secs(30),
        "the scheduler in the list",
        || async {
            let (_, list) = maestro.get("/schedulers?game=e2e-game").await.ok()?;
            let found = list["schedulers"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == name)?
                .clone();
            (found["state"] == "in-sync").then_some(found)
        },
    )
    .await?;
    assert_eq!(
        (listed["version"].as_str(), listed["roomsReplicas"].as_i64()),
        (Some("v1.0.0"), Some(3))
    );
    assert!(listed.get("spec").is_none(), "lists carry no spec");
    let (_, other) = maestro.get("/schedulers?game=another-game").await?;
    assert_eq!(other["schedulers"].as_array().map(Vec::len), Some(0));

    // Bad operations and pings are refused with the field named.
    let (code, body) = maestro
        .post(
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 0}),
        )
        .await?;
    assert_eq!(
        (
            code,
            body["details"][0]["fieldViolations"][0]["field"].as_str()
        ),
        (StatusCode::BAD_REQUEST, Some("amount"))
    );
    let (code, _) = maestro
        .post(
            "/schedulers/no-such-scheduler/add-rooms",
            json!({"amount": 1}),
        )
        .await?;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let ping = |room: &str, status: &str| {
        maestro
            .http
            .put(format!(
                "{}/scheduler/{name}/rooms/{room}/ping",
                maestro.rooms_api
            ))
            .bearer_auth(room_token(name, room))
            .json(&json!({"status": status, "timestamp": 1, "runningMatches": 0}))
            .send()
    };
    let (_, rooms) = maestro.get(&format!("/schedulers/{name}/rooms")).await?;
    let some_room = rooms["rooms"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        ping(&some_room, "dancing").await?.status(),
        StatusCode::BAD_REQUEST
    );
    let address: Value = maestro
        .http
        .get(format!(
            "{}/scheduler/{name}/rooms/{some_room}/address",
            maestro.rooms_api
        ))
        .bearer_auth(room_token(name, &some_room))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(address["host"], "127.0.0.1", "{address}");
    assert_eq!(address["ports"][0]["name"], "game");
    assert_eq!(address["ports"][0]["protocol"], "UDP");
    let port = address["ports"][0]["port"].as_u64().unwrap();
    assert!(
        (45000..=45999).contains(&port),
        "host port {port} from the port range"
    );
    let unknown = maestro
        .http
        .get(format!(
            "{}/scheduler/{name}/rooms/no-such-room/address",
            maestro.rooms_api
        ))
        .bearer_auth(room_token(name, "no-such-room"))
        .send()
        .await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // Maestro answers a ping for a room it does not know with 200 `success: false`.
    let unknown_ping = ping("no-such-room", "ready").await?;
    assert_eq!(unknown_ping.status(), StatusCode::OK);
    assert_eq!(
        unknown_ping.json::<Value>().await?,
        json!({"success": false})
    );

    // Remove 1: 2 remain, in the store and as processes.
    let (code, _) = maestro
        .post(
            &format!("/schedulers/{name}/remove-rooms"),
            json!({"amount": 1}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK);
    eventually(
        Duration::from_secs(60),
        "2 rooms and 2 processes",
        || async {
            (maestro.rooms(name, "").await.ok()? == 2 && room_processes(name) == 2).then_some(())
        },
    )
    .await?;
    // The rooms are gone a moment before the removal records itself final.
    let ops = eventually(
        Duration::from_secs(30),
        "three final operations",
        || async {
            let (_, ops) = maestro
                .get(&format!("/schedulers/{name}/operations?stage=final"))
                .await
                .ok()?;
            (ops["operations"].as_array()?.len() == 3).then_some(ops)
        },
    )
    .await?;
    let kinds: Vec<&str> = ops["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["definitionName"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["remove_rooms", "add_rooms", "create_scheduler"],
        "most recent first"
    );
    assert!(
        ops["operations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "finished")
    );

    // One operation in full: input and readable execution history.
    let add_id = ops["operations"][1]["id"].as_str().unwrap().to_string();
    let (code, detail) = maestro
        .get(&format!("/schedulers/{name}/operations/{add_id}"))
        .await?;
    assert_eq!(code, StatusCode::OK, "{detail}");
    let op = &detail["operation"];
    assert_eq!(
        (op["status"].as_str(), op["input"]["amount"].as_u64()),
        (Some("finished"), Some(3))
    );
    let events: Vec<&str> = op["executionHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["operation started", "created 3 of 3 rooms"]);
    let (code, _) = maestro
        .get(&format!("/schedulers/{name}/operations/no-such-operation"))
        .await?;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let (code, versions) = maestro.get(&format!("/schedulers/{name}/versions")).await?;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            versions["versions"][0]["version"].as_str(),
            versions["versions"][0]["isActive"].as_bool()
        ),
        (Some("v1.0.0"), Some(true))
    );
    let (code, _) = maestro.get("/readyz").await?;
    assert_eq!(code, StatusCode::OK, "Temporal and the room store answer");

    // Delete: no rooms, no processes, then 404.
    let (code, _) = maestro.delete(name).await?;
    assert_eq!(code, StatusCode::OK);
    eventually(
        Duration::from_secs(60),
        "the scheduler to be gone",
        || async {
            let (code, _) = maestro.get(&format!("/schedulers/{name}")).await.ok()?;
            (code == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await?;
    assert_eq!(room_processes(name), 0, "no orphan room process");
    let (code, _) = maestro.delete(name).await?;
    assert_eq!(code, StatusCode::NOT_FOUND, "a second delete is 404");

    // A burst of 30 concurrent requests all land as distinct operations, and a retried
    // request with an Idempotency-Key is not enqueued twice.
    let burst = "e2e-burst";
    let mut body = scheduler_body(burst);
    body["portRange"] = json!({"start": 46000, "end": 46999});
    let (code, _) = maestro.post("/schedulers", body).await?;
    assert_eq!(code, StatusCode::OK);
    let add_path = format!("/schedulers/{burst}/add-rooms");
    let adds = (0..30).map(|_| maestro.post(&add_path, json!({"amount": 1})));
    let mut ids = std::collections::BTreeSet::new();
    for result in futures::future::join_all(adds).await {
        let (code, body) = result?;
        assert_eq!(code, StatusCode::OK, "{body}");
        ids.insert(body["operationId"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 30, "30 distinct operations");
    let keyed = || {
        maestro
            .http
            .post(format!("{}/schedulers/{burst}/add-rooms", maestro.api))
            .bearer_auth(common::API_TOKEN)
            .bearer_auth(common::API_TOKEN)
            .header("Idempotency-Key", "retry-me-1")
            .json(&json!({"amount": 2}))
            .send()
    };
    let first: Value = keyed().await?.json().await?;
    let retried: Value = keyed().await?.json().await?;
    assert_eq!(
        first["operationId"], retried["operationId"],
        "same key, same operation"
    );
    eventually(Duration::from_secs(120), "32 ready rooms", || async {
        (maestro.rooms(burst, "ready").await.ok()? == 32).then_some(())
    })
    .await?;
    assert_eq!(
        room_processes(burst),
        32,
        "the retried request added no rooms"
    );
    let bad_key = maestro
        .http
        .post(format!("{}/schedulers/{burst}/add-rooms", maestro.api))
        .bearer_auth(common::API_TOKEN)
        .header("Idempotency-Key", "")
        .json(&json!({"amount": 1}))
        .send()
        .await?;
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);
    let (code, _) = maestro.delete(burst).await?;
    assert_eq!(code, StatusCode::OK);
    eventually(
        Duration::from_secs(120),
        "the burst scheduler's rooms to stop",
        || async { (room_processes(burst) == 0).then_some(()) },
    )
    .await?;

    assert!(maestro.stop()?, "maestro dev stops cleanly on SIGTERM");
    Ok(())
}

/// While a delete runs (rooms that ignore SIGTERM take their grace period to stop), the
/// listing, which reads the memo the workflow records, says `terminating` as `GET` (a
/// query) does, instead of the `in-sync` recorded before the delete; also when the delete
/// waits behind a running operation (a remove whose room takes its grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_delete_lists_as_terminating() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    tokio::try_join!(
        lists_terminating_once_deleted(&maestro, "e2e-slow-stop", false),
        lists_terminating_once_deleted(&maestro, "e2e-queued-stop", true),
    )?;
    Ok(())
}

async fn lists_terminating_once_deleted(
    maestro: &Maestro,
    name: &str,
    behind_a_remove: bool,
) -> Result<()> {
    let mut body = scheduler_body(name);
    body["roomsReplicas"] = 0.into();
    body["spec"]["terminationGracePeriod"] = "8s".into();
    body["spec"]["containers"][0]["command"] =
        json!(["bash", "-c", "trap '' TERM; exec sleep 600"]);
    let (status, answer) = maestro.post("/schedulers", body).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    maestro
        .submit(
            &format!("/schedulers/{name}/add-rooms"),
            json!({"amount": 2}),
        )
        .await?;
    eventually(Duration::from_secs(60), "two room processes", || async {
        (room_processes(name) == 2).then_some(())
    })
    .await?;
    let listed_state = || async {
        let (_, list) = maestro.get("/schedulers").await.ok()?;
        let found = list["schedulers"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)?
            .clone();
        found["state"].as_str().map(str::to_string)
    };
    eventually(Duration::from_secs(30), "listed in-sync", || async {
        (listed_state().await? == "in-sync").then_some(())
    })
    .await?;

    let remove = if behind_a_remove {
        let path = format!("/schedulers/{name}/remove-rooms");
        Some(maestro.submit(&path, json!({"amount": 1})).await?)
    } else {
        None
    };
    let (status, answer) = maestro.delete(name).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    eventually(Duration::from_secs(6), "listed terminating", || async {
        (listed_state().await? == "terminating").then_some(())
    })
    .await?;
    let (_, got) = maestro.get(&format!("/schedulers/{name}")).await?;
    assert_eq!(got["scheduler"]["state"], "terminating", "{got}");
    if let Some(remove) = remove {
        let (_, op) = maestro
            .get(&format!("/schedulers/{name}/operations/{remove}"))
            .await?;
        assert_eq!(
            op["operation"]["status"], "in_progress",
            "the remove still ran while the delete listed as terminating: {op}"
        );
    }
    assert!(
        room_processes(name) > 0,
        "the rooms were still stopping while it listed as terminating"
    );
    eventually(Duration::from_secs(60), "the scheduler gone", || async {
        let (status, _) = maestro.get(&format!("/schedulers/{name}")).await.ok()?;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await?;
    Ok(())
}
