//! What an operator sees in Temporal, read with the real Temporal CLI: an operation's
//! workflow ends as the operation did (completed, failed with the reason, cancelled), carries
//! Maestro's search attributes (registered by `maestro dev` on a server that had none), and
//! shows its progress as current details while it runs.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use common::Maestro;
use maestro_testkit::{TemporalDevServer, eventually, temp_dir, temporal_bin};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NAME: &str = "in-the-ui";

fn temporal(server: &TemporalDevServer, args: &[&str]) -> Result<Value> {
    let output = Command::new(temporal_bin())
        .args(args)
        .args(["--address", &server.address(), "-o", "json"])
        .output()
        .context("run the temporal CLI")?;
    anyhow::ensure!(
        output.status.success(),
        "temporal {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    // `workflow list -o json` prints one array; an empty listing may print nothing.
    Ok(serde_json::from_str(text.trim()).unwrap_or(Value::Null))
}

/// The first input of a workflow's start event, from `temporal workflow show -o json`
/// (payloads appear decoded or as base64, depending on the CLI's version).
fn started_input(history: &Value) -> Result<Value> {
    let payload =
        &history["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0];
    match payload.get("data").and_then(Value::as_str) {
        Some(data) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
            Ok(serde_json::from_slice(&bytes)?)
        }
        None if !payload.is_null() => Ok(payload.clone()),
        None => anyhow::bail!("no start input in {history}"),
    }
}

fn listed(server: &TemporalDevServer, query: &str) -> Result<Vec<Value>> {
    Ok(temporal(server, &["workflow", "list", "--query", query])?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn spec(program: &str, command: &[&str]) -> Value {
    let mut command: Vec<&str> = command.to_vec();
    command.insert(0, program);
    json!({
        "name": NAME, "game": "ui-game", "maxSurge": "1", "roomsReplicas": 0,
        "portRange": {"start": 47400, "end": 47499},
        "spec": {"terminationGracePeriod": "5s", "containers": [{
            "name": "room", "image": "local/game-room", "command": command,
            "imagePullPolicy": "IfNotPresent", "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"}}]}
    })
}

async fn final_operation(maestro: &Maestro, id: &str) -> Result<Value> {
    maestro
        .final_operation(NAME, id, Duration::from_secs(90))
        .await
}

fn workflow_of(id: &str) -> String {
    maestro_core::naming::operation_workflow_id(NAME, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_end_in_temporal_as_they_ended_and_can_be_filtered() -> Result<()> {
    let server = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&server).await?;
    let dir = temp_dir("temporal-ui");
    // A copy of the room program the test removes, to make one add_rooms fail.
    let program = dir.join("room-program");
    std::fs::copy(env!("CARGO_BIN_EXE_game-room"), &program)?;
    let program = program.display().to_string();

    let (code, body) = maestro.post("/schedulers", spec(&program, &[])).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let added = maestro
        .submit(
            &format!("/schedulers/{NAME}/add-rooms"),
            json!({"amount": 1}),
        )
        .await?;
    assert_eq!(
        final_operation(&maestro, &added).await?["status"],
        "finished"
    );

    std::fs::remove_file(&program)?;
    let failing = maestro
        .submit(
            &format!("/schedulers/{NAME}/add-rooms"),
            json!({"amount": 1}),
        )
        .await?;
    let failed = final_operation(&maestro, &failing).await?;
    assert_eq!(failed["status"], "error", "{failed}");
    let history: Vec<&str> = failed["executionHistory"]
        .as_array()
        .context("a history")?
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        history.iter().any(|e| e.starts_with("removed the")),
        "the child's own history reached the scheduler: {history:?}"
    );

    // Temporal says it failed, with the reason as the failure's message.
    let described = temporal(
        &server,
        &["workflow", "describe", "-w", &workflow_of(&failing)],
    )?;
    let text = described.to_string();
    assert!(text.contains("WORKFLOW_EXECUTION_STATUS_FAILED"), "{text}");
    assert!(text.contains("OperationFailed"), "{text}");
    // Its input is what was asked, not a status it has since left.
    let input = started_input(&temporal(
        &server,
        &["workflow", "show", "-w", &workflow_of(&failing)],
    )?)?;
    assert_eq!(input["operation"]["id"], failing.as_str(), "{input}");
    assert_eq!(input["operation"]["input"]["amount"], 1, "{input}");
    assert!(input["operation"].get("status").is_none(), "{input}");
    std::fs::copy(env!("CARGO_BIN_EXE_game-room"), &program)?;

    // A major version whose validation room never pings: cancelled while it waits, its
    // current details say what it waits for.
    let slow = maestro
        .submit(&format!("/schedulers/{NAME}"), spec("sleep", &["600"]))
        .await?;
    let details = eventually(
        Duration::from_secs(60),
        "the validation wait to show",
        || async {
            let metadata = temporal(
                &server,
                &["workflow", "metadata", "-w", &workflow_of(&slow)],
            )
            .ok()?;
            let text = metadata.to_string();
            text.contains("waiting for validation room").then_some(text)
        },
    )
    .await?;
    assert!(details.contains("attempt 1 of"), "{details}");
    let (code, body) = maestro
        .post(
            &format!("/schedulers/{NAME}/operations/{slow}/cancel"),
            json!({}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let cancelled = final_operation(&maestro, &slow).await?;
    assert_eq!(cancelled["status"], "canceled", "{cancelled}");
    let events: Vec<&Value> = cancelled["executionHistory"]
        .as_array()
        .context("a history")?
        .iter()
        .collect();
    assert!(
        events.iter().any(|e| e["event"]
            .as_str()
            .is_some_and(|t| t.contains("major change"))),
        "the cancelled child's history reached the scheduler: {events:?}"
    );
    assert_eq!(
        events.last().and_then(|e| e["event"].as_str()),
        Some("canceled while running"),
        "the cancellation comes last, in time order: {events:?}"
    );
    let times: Vec<&str> = events
        .iter()
        .filter_map(|e| e["createdAt"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "history in time order");

    // Filters an operator types.
    let scheduler = format!("MaestroScheduler = '{NAME}'");
    let by_outcome = |outcome: &str| format!("{scheduler} AND MaestroOutcome = '{outcome}'");
    let outcomes = eventually(
        Duration::from_secs(30),
        "visibility to catch up",
        || async {
            let failed = listed(&server, &by_outcome("failed")).ok()?;
            let canceled = listed(&server, &by_outcome("canceled")).ok()?;
            (failed.len() == 1 && canceled.len() == 1).then_some((failed, canceled))
        },
    )
    .await?;
    assert_eq!(
        outcomes.0[0]["execution"]["workflowId"],
        workflow_of(&failing)
    );
    assert_eq!(outcomes.1[0]["execution"]["workflowId"], workflow_of(&slow));
    let failed_add_rooms = listed(
        &server,
        &format!("{scheduler} AND MaestroOperation = 'add_rooms' AND ExecutionStatus = 'Failed'"),
    )?;
    assert_eq!(failed_add_rooms.len(), 1, "{failed_add_rooms:?}");
    let cancelled_versions = listed(
        &server,
        "MaestroGame = 'ui-game' AND ExecutionStatus = 'Canceled'",
    )?;
    assert_eq!(cancelled_versions.len(), 1, "{cancelled_versions:?}");
    let succeeded = listed(&server, &by_outcome("succeeded"))?;
    assert!(
        succeeded
            .iter()
            .any(|w| w["execution"]["workflowId"] == workflow_of(&added)),
        "{succeeded:?}"
    );
    let schedulers = listed(
        &server,
        &format!("{scheduler} AND WorkflowType = 'scheduler'"),
    )?;
    assert_eq!(schedulers.len(), 1, "{schedulers:?}");
    Ok(())
}
