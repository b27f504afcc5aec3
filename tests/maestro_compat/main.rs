//! Maestro conformance: requests and expectations taken from Maestro's own sources, run
//! against `maestro dev` (real Temporal, local rooms), each case citing the Maestro file it
//! comes from (topfreegames/maestro unless said otherwise). Every answer is also decoded
//! strictly — unknown fields rejected — by Python protobuf's `json_format.Parse` with
//! messages compiled from our transcription of Maestro's protos (`proto/` here, and the rooms
//! API's `proto/proto/rooms.proto`), as a client generated from Maestro's protos would.
//! The calls carry no extensions header: this is a Maestro client.

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::Maestro;
use maestro_testkit::{TemporalDevServer, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NAME: &str = "scheduler-name-1";

/// The document of `test/data/handlers/fixtures/request/scheduler-config.json` (names, ports,
/// environment, forwarder), with a command our local runtime runs and no match allocation
/// (`scheduler-config-no-match-allocation.json`: Maestro answers its default).
fn scheduler_config() -> Value {
    json!({
        "name": NAME, "game": "game-name", "maxSurge": "10%", "roomsReplicas": 1,
        "portRange": {"start": 46900, "end": 46999},
        "spec": {
            "version": "v1.0.0",
            "terminationGracePeriod": "100s",
            "containers": [{
                "name": "game-room-container-name",
                "image": "game-room-container-image",
                "imagePullPolicy": "IfNotPresent",
                "command": [env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "500ms"],
                "environment": [
                    {"name": "env-var-name", "value": "env-var-value"},
                    {"name": "env-var-field-ref", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "requests": {"memory": "100Mi", "cpu": "100m"},
                "limits": {"memory": "200Mi", "cpu": "200m"},
                "ports": [{"name": "port-name", "protocol": "tcp", "port": 12345, "hostPort": 54321}]
            }]
        },
        "forwarders": [{
            "name": "forwarder-1", "enable": true, "type": "gRPC", "address": "127.0.0.1:9090",
            "options": {"timeout": "1000", "metadata": {"roomType": "red"}}
        }]
    })
}

/// One answer to decode strictly, and where the expectation comes from.
struct Answers {
    recorded: Vec<Value>,
}

impl Answers {
    fn record(&mut self, case: &str, message: &str, body: &Value) {
        self.recorded
            .push(json!({"case": case, "message": message, "body": body}));
    }
}

async fn call(
    maestro: &Maestro,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    maestro.call_as_maestro_client(method, path, body).await
}

/// Waits for an operation to be final; returns it as a Maestro client reads it.
async fn finished(maestro: &Maestro, id: &str) -> Result<Value> {
    let path = format!("/schedulers/{NAME}/operations/{id}");
    eventually(
        Duration::from_secs(90),
        "the operation to finish",
        || async {
            let (code, body) = call(maestro, Method::GET, &path, None).await.ok()?;
            let status = body["operation"]["status"].as_str()?.to_string();
            (code == StatusCode::OK && !["pending", "in_progress"].contains(&status.as_str()))
                .then_some(body)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maestro_clients_get_maestros_answers() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    // The health controller creates the scheduler's rooms on its first run: every second
    // here, not every minute.
    let maestro = Maestro::start_with(&temporal, &["--health-interval", "1s"]).await?;
    let mut answers = Answers {
        recorded: Vec::new(),
    };

    // internal/api/handlers/schedulers_handler.go CreateScheduler; the client's spec.version
    // is ignored and the first version is v1.0.0 (e2e/suites/create_scheduler_test.go).
    let (code, body) = call(
        &maestro,
        Method::POST,
        "/schedulers",
        Some(scheduler_config()),
    )
    .await?;
    ensure!(code == StatusCode::OK, "create: {code} {body}");
    answers.record(
        "create scheduler-config.json",
        "api.v1.CreateSchedulerResponse",
        &body,
    );
    let created = &body["scheduler"];
    assert_eq!(created["spec"]["version"], "v1.0.0");
    // requestadapters/schedulers.go fromApiMatchAllocation: the default is maxMatches 1.
    assert_eq!(created["matchAllocation"], json!({"maxMatches": 1}));
    // EmitUnpopulated (grpc-gateway's default marshaler): unset fields are written.
    assert_eq!(created["spec"]["toleration"], "");
    // requestadapters/schedulers.go: no restartPolicy is stored and answered as "Never".
    assert_eq!(created["spec"]["restartPolicy"], "Never");
    assert_eq!(created["annotations"], json!({}));
    assert_eq!(
        created["forwarders"][0]["options"]["timeout"], "1000",
        "int64 as a string"
    );
    assert_eq!(created["spec"]["terminationGracePeriod"], "100s");
    assert!(
        created.get("roomTokenRequired").is_none(),
        "no extension without asking"
    );

    // e2e/suites/create_scheduler_test.go: its document as the Go client sends it (no
    // Content-Type, `durationpb.New(15)` = "0.000000015s", quantities "1"); the create
    // operation is the first in the final stage, finished.
    let e2e = json!({
        "name": "e2e-create", "game": "test", "maxSurge": "10%", "roomsReplicas": 0,
        "spec": {"terminationGracePeriod": "0.000000015s", "containers": [{
            "name": "example", "image": "nginx", "command": ["echo", "hello"],
            "imagePullPolicy": "IfNotPresent",
            "requests": {"memory": "1", "cpu": "1"}, "limits": {"memory": "1", "cpu": "1"},
            "ports": [{"name": "default", "protocol": "tcp", "port": 80}]}]},
        "portRange": {"start": 40000, "end": 60000},
        "annotations": {"annotation1": "value1"}, "labels": {"label1": "value1"}
    });
    let created = maestro
        .http
        .post(format!("{}/schedulers", maestro.api))
        .bearer_auth(common::API_TOKEN)
        .body(e2e.to_string())
        .send()
        .await?;
    assert_eq!(created.status(), StatusCode::OK);
    answers.record(
        "create_scheduler_test.go",
        "api.v1.CreateSchedulerResponse",
        &created.json().await?,
    );
    let first = eventually(
        Duration::from_secs(30),
        "create_scheduler to finish",
        || async {
            let (_, page) = call(
                &maestro,
                Method::GET,
                "/schedulers/e2e-create/operations?stage=final",
                None,
            )
            .await
            .ok()?;
            (page["operations"][0]["status"] == "finished").then_some(page)
        },
    )
    .await?;
    assert_eq!(first["operations"][0]["definitionName"], "create_scheduler");
    answers.record(
        "create_scheduler_test.go operations",
        "api.v1.ListOperationsResponse",
        &first,
    );

    let (code, body) = call(&maestro, Method::GET, &format!("/schedulers/{NAME}"), None).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    answers.record("get scheduler", "api.v1.GetSchedulerResponse", &body);
    let (_, body) = call(&maestro, Method::GET, "/schedulers?game=game-name", None).await?;
    answers.record("list schedulers", "api.v1.ListSchedulersResponse", &body);
    assert_eq!(body["schedulers"][0]["version"], "v1.0.0");
    let (_, body) = call(
        &maestro,
        Method::GET,
        "/schedulers/info?game=game-name",
        None,
    )
    .await?;
    answers.record("schedulers info", "api.v1.GetSchedulersInfoResponse", &body);

    // proto/api/v1/schedulers.proto GetScheduler: any name reaches the lookup; unknown is 404.
    let (code, body) = call(&maestro, Method::GET, "/schedulers/NonExistent", None).await?;
    assert_eq!(
        (code, &body["code"]),
        (StatusCode::NOT_FOUND, &json!(5)),
        "{body}"
    );
    answers.record("unknown scheduler", "google.rpc.Status", &body);

    // A room of the scheduler pings as Maestro's docs show it (docs/reference/GameRoomLifecycle
    // and GettingStarted: form Content-Type, string timestamp); it needs its token here unless
    // `--room-tokens optional`.
    let rooms = maestro.wait_ready(NAME, 1).await?;
    let ping = maestro
        .http
        .put(format!(
            "{}/scheduler/{NAME}/rooms/{}/ping",
            maestro.rooms_api, rooms[0]
        ))
        .bearer_auth(common::room_token(NAME, &rooms[0]))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"status":"ready","timestamp":"12312312313"}"#)
        .send()
        .await?;
    assert_eq!(ping.status(), StatusCode::OK);
    let body: Value = ping.json().await?;
    assert_eq!(body["success"], true);
    answers.record(
        "documented ping",
        "api.v1.UpdateRoomWithPingResponse",
        &body,
    );
    // internal/api/handlers/rooms_handler.go: an unknown room answers success false.
    let unknown = maestro
        .http
        .put(format!(
            "{}/scheduler/{NAME}/rooms/no-such-room/ping",
            maestro.rooms_api
        ))
        .bearer_auth(common::room_token(NAME, "no-such-room"))
        .json(&json!({"status": "ready", "timestamp": 1}))
        .send()
        .await?;
    assert_eq!(unknown.status(), StatusCode::OK);
    let body: Value = unknown.json().await?;
    assert_eq!(body["success"], false);
    answers.record(
        "unknown room ping",
        "api.v1.UpdateRoomWithPingResponse",
        &body,
    );

    // fixtures/request/empty-scheduler-patch.json → schedulers_handler.go PatchScheduler:
    // AlreadyExists "no change found to scheduler …" (409).
    let base = format!("/schedulers/{NAME}");
    let (code, body) = call(&maestro, Method::PATCH, &base, Some(json!({}))).await?;
    assert_eq!(
        (code, &body["code"]),
        (StatusCode::CONFLICT, &json!(6)),
        "{body}"
    );
    assert_eq!(
        body["message"],
        format!("no change found to scheduler {NAME}")
    );
    answers.record("empty patch", "google.rpc.Status", &body);
    // fixtures/request/invalid-scheduler-patch.json: maxSurge as a number is InvalidArgument.
    let (code, body) = call(
        &maestro,
        Method::PATCH,
        &base,
        Some(json!({"maxSurge": 40})),
    )
    .await?;
    assert_eq!(
        (code, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!(3)),
        "{body}"
    );
    answers.record("invalid patch", "google.rpc.Status", &body);

    // fixtures/request/scheduler-patch.json: a minor version v1.1.0, made active by the
    // switch_active_version it enqueues (operations/schedulers/newversion/executor.go).
    let (code, body) = call(
        &maestro,
        Method::PATCH,
        &base,
        Some(json!({"roomsReplicas": 6})),
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    answers.record("patch", "api.v1.PatchSchedulerResponse", &body);
    let patch_id = body["operationId"]
        .as_str()
        .context("operationId")?
        .to_string();
    let op = finished(&maestro, &patch_id).await?;
    answers.record("get operation", "api.v1.GetOperationResponse", &op);
    assert_eq!(op["operation"]["status"], "finished", "{op}");
    assert_eq!(op["operation"]["input"]["scheduler"]["roomsReplicas"], 6);
    let switch = eventually(Duration::from_secs(60), "the switch to v1.1.0", || async {
        let (_, page) = call(
            &maestro,
            Method::GET,
            &format!("{base}/operations?stage=final&orderBy=createdAt%20desc"),
            None,
        )
        .await
        .ok()?;
        let ops = page["operations"].as_array()?.clone();
        let switch = ops
            .into_iter()
            .find(|o| o["definitionName"] == "switch_active_version")?;
        Some(switch)
    })
    .await?;
    let switch = finished(&maestro, switch["id"].as_str().context("id")?).await?;
    // switchversion/definition.go: the input is {"newActiveVersion": …}.
    assert_eq!(
        switch["operation"]["input"],
        json!({"newActiveVersion": "v1.1.0"})
    );
    let (_, body) = call(&maestro, Method::GET, &format!("{base}/versions"), None).await?;
    answers.record("versions", "api.v1.GetSchedulerVersionsResponse", &body);
    let versions: Vec<(Value, Value)> = body["versions"]
        .as_array()
        .context("versions")?
        .iter()
        .map(|v| (v["version"].clone(), v["isActive"].clone()))
        .collect();
    assert_eq!(
        versions,
        [
            (json!("v1.1.0"), json!(true)),
            (json!("v1.0.0"), json!(false))
        ]
    );

    // handlers/operations_handler.go extractPaginationParameters / extractSortingParameters,
    // fixtures/response/operations_handler/error_listing_*.json: InvalidArgument (400, 3).
    for (query, fixture) in [
        (
            "stage=active&page=1",
            "error_listing_active_operations_with_pag_parameters.json",
        ),
        (
            "stage=pending&perPage=1",
            "error_listing_pending_operations_with_pag_parameters.json",
        ),
        (
            "stage=final&page=0",
            "error_listing_final_operations_invalid_page.json",
        ),
        (
            "stage=final&perPage=101",
            "error_listing_final_operations_invalid_per_page.json",
        ),
        ("stage=invalid", "error_listing_invalid_operations.json"),
        (
            "stage=final&orderBy=name",
            "operations_handler.go extractSortingParameters",
        ),
    ] {
        let (code, body) = call(
            &maestro,
            Method::GET,
            &format!("{base}/operations?{query}"),
            None,
        )
        .await?;
        assert_eq!(
            (code, &body["code"]),
            (StatusCode::BAD_REQUEST, &json!(3)),
            "{query}: {body}"
        );
        answers.record(fixture, "google.rpc.Status", &body);
    }
    // list_operations_*: page, pageSize (what was asked, 15 by default), total; ascending
    // puts create_scheduler first; pending and active answer whole (pageSize = total).
    let (_, page) = call(
        &maestro,
        Method::GET,
        &format!("{base}/operations?stage=final&orderBy=createdAt%20asc"),
        None,
    )
    .await?;
    answers.record(
        "list_operations_ascending_sorting.json",
        "api.v1.ListOperationsResponse",
        &page,
    );
    assert_eq!(
        (&page["page"], &page["pageSize"]),
        (&json!(1), &json!(15)),
        "{page}"
    );
    assert_eq!(page["operations"][0]["definitionName"], "create_scheduler");
    let (_, page) = call(
        &maestro,
        Method::GET,
        &format!("{base}/operations?stage=final&page=1&per_page=2"),
        None,
    )
    .await?;
    answers.record(
        "list_operations_final_stage_pagination_success.json",
        "api.v1.ListOperationsResponse",
        &page,
    );
    assert_eq!(page["pageSize"], 2);
    assert!(page["operations"].as_array().is_some_and(|o| o.len() <= 2));
    let (_, page) = call(
        &maestro,
        Method::GET,
        &format!("{base}/operations?stage=pending"),
        None,
    )
    .await?;
    answers.record(
        "list_operations_pending_stage_success.json",
        "api.v1.ListOperationsResponse",
        &page,
    );
    assert_eq!(page["pageSize"], page["total"]);

    // A running operation carries its lease (messages.proto ListOperationItem.lease): a
    // validation room that never becomes ready keeps a major version running.
    let mut major = scheduler_config();
    major["spec"]["containers"][0]["command"] = json!(["sleep", "600"]);
    let (code, body) = call(&maestro, Method::POST, &base, Some(major)).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    answers.record("new version", "api.v1.NewSchedulerVersionResponse", &body);
    let slow = body["operationId"]
        .as_str()
        .context("operationId")?
        .to_string();
    let active = eventually(
        Duration::from_secs(60),
        "a lease on the running operation",
        || async {
            let (_, page) = call(
                &maestro,
                Method::GET,
                &format!("{base}/operations?stage=active"),
                None,
            )
            .await
            .ok()?;
            let running = &page["operations"][0];
            (running["id"] == json!(slow) && running["lease"]["ttl"].is_string()).then_some(page)
        },
    )
    .await?;
    answers.record(
        "list_operations_active_stage_success.json",
        "api.v1.ListOperationsResponse",
        &active,
    );
    let (code, body) = call(
        &maestro,
        Method::POST,
        &format!("{base}/operations/{slow}/cancel"),
        None,
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    answers.record("cancel", "api.v1.CancelOperationResponse", &body);

    // grpc-gateway: an unknown route is 404 code 5, a known path with another method 501 code 12.
    let (code, body) = call(&maestro, Method::GET, "/no/such/route", None).await?;
    assert_eq!((code, &body["code"]), (StatusCode::NOT_FOUND, &json!(5)));
    answers.record("unknown route", "google.rpc.Status", &body);
    let (code, body) = call(&maestro, Method::PATCH, "/schedulers", None).await?;
    assert_eq!(
        (code, &body["code"]),
        (StatusCode::NOT_IMPLEMENTED, &json!(12))
    );
    answers.record("wrong method", "google.rpc.Status", &body);

    finished(&maestro, &slow).await?;
    let (code, body) = call(&maestro, Method::DELETE, &base, None).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    answers.record("delete", "api.v1.DeleteSchedulerResponse", &body);

    strict_decode(&answers.recorded)
}

/// Runs `strict_decode.py` over every recorded answer; fails with its report.
fn strict_decode(recorded: &[Value]) -> Result<()> {
    let python_path = std::env::var("MAESTRO_PROTOBUF_PYTHONPATH").context(
        "MAESTRO_PROTOBUF_PYTHONPATH is unset: run through scripts/test (it installs grpcio-tools)",
    )?;
    let dir = std::env::temp_dir().join(format!("maestro-compat-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cases = dir.join("answers.json");
    std::fs::write(&cases, serde_json::to_vec_pretty(recorded)?)?;
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/maestro_compat");
    let output = std::process::Command::new("python3")
        .arg(format!("{here}/strict_decode.py"))
        .arg(&cases)
        .arg(format!("{here}/proto"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/proto"))
        .env("PYTHONPATH", python_path)
        .output()?;
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    ensure!(
        output.status.success(),
        "answers a client generated from Maestro's protos rejects:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
