//! The Metrics Reporter and component metrics end to end: a scripted scenario against the
//! real `maestro dev` binary, then exact values from `/metrics`, read through the real
//! parsers of the Python `prometheus_client` (Prometheus text and OpenMetrics).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use common::Maestro;
use maestro_testkit::{TemporalDevServer, eventually, python_tools_dir};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition with prometheus_client's parser for `format` ("prometheus" or
/// "openmetrics"); fails when the parser rejects it.
fn parse(text: &str, format: &str) -> Result<Vec<Sample>> {
    let script = r#"
import json, sys
fmt = sys.argv[1]
if fmt == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
out = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, format])
        .env("PYTHONPATH", python_tools_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run python3 (the README's test command installs prometheus_client)")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("python stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "prometheus_client rejected the {format} exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

struct Scrape(Vec<Sample>);

impl Scrape {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

async fn scrape(maestro: &Maestro, openmetrics: bool) -> Result<(String, String)> {
    let mut request = maestro.http.get(format!("{}/metrics", maestro.internal));
    if openmetrics {
        request = request.header("accept", "application/openmetrics-text; version=1.0.0");
    }
    let response = request.send().await?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((content_type, response.text().await?))
}

/// One Prometheus-format scrape, parsed.
async fn scrape_parsed(maestro: &Maestro) -> Result<Scrape> {
    let (_, text) = scrape(maestro, false).await?;
    Ok(Scrape(parse(&text, "prometheus")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_scripted_scenario() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start_with(
        &temporal,
        // No health operations: the scheduler stays idle unless the test acts.
        &["--metrics-interval", "300ms", "--health-interval", "1h"],
    )
    .await?;
    // The reporter's first refresh is its baseline (what it sees then is not counted): let
    // it pass before the scheduler exists, or a loaded box counts create_scheduler as old.
    eventually(Duration::from_secs(20), "the first refresh", || async {
        let scraped = scrape_parsed(&maestro).await.ok()?;
        (scraped.value("maestro_reporter_refresh_duration_seconds", &[])? > 0.0).then_some(())
    })
    .await?;
    let (scheduler, game) = ("metrics-x", "metrics-game");
    // Rooms ping once at start, then the test drives their status.
    let body = json!({
        "name": scheduler, "game": game, "maxSurge": "1", "roomsReplicas": 4,
        "portRange": {"start": 46600, "end": 46699},
        "spec": {"terminationGracePeriod": "5s", "containers": [{
            "name": "room", "image": "local/game-room",
            "imagePullPolicy": "IfNotPresent", "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"},
            "command": [env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "1h"],
            "ports": [{"name": "game", "protocol": "udp", "port": 7777}]}]}
    });
    let (code, answer) = maestro.post("/schedulers", body).await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let (code, answer) = maestro
        .post(
            &format!("/schedulers/{scheduler}/add-rooms"),
            json!({"amount": 4}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let rooms = maestro.wait_ready(scheduler, 4).await?;
    let status = maestro.ping_as(scheduler, &rooms[0], "occupied", 1).await?;
    assert_eq!(status, StatusCode::OK);

    let labels = [("game", game), ("scheduler", scheduler)];
    let scraped = eventually(
        Duration::from_secs(20),
        "the reporter to see it",
        || async {
            let scraped = scrape_parsed(&maestro).await.ok()?;
            let done = scraped.value("maestro_worker_gru_occupied", &labels) == Some(1.0)
                && scraped.value(
                    "maestro_worker_operation_executions_total",
                    &[("operation", "add_rooms"), ("status", "finished")],
                ) == Some(1.0);
            done.then_some(scraped)
        },
    )
    .await?;
    let expect = |name: &str, extra: &[(&str, &str)], want: f64| {
        let mut all: Vec<(&str, &str)> = labels.to_vec();
        all.extend_from_slice(extra);
        assert_eq!(scraped.value(name, &all), Some(want), "{name} {extra:?}");
    };
    expect("maestro_worker_gru_ready", &[], 3.0);
    expect("maestro_worker_gru_occupied", &[], 1.0);
    expect("maestro_worker_gru_pending", &[], 0.0);
    expect("maestro_worker_gru_allocated", &[], 0.0);
    expect("maestro_worker_instance_ready", &[], 4.0);
    expect("maestro_worker_current_rooms", &[], 4.0);
    expect("maestro_worker_desired_rooms", &[], 4.0);
    expect("maestro_worker_running_matches", &[], 1.0);
    expect("maestro_worker_max_matches", &[], 1.0);
    expect(
        "maestro_worker_rooms_by_version",
        &[("version", "v1.0.0")],
        4.0,
    );
    expect("maestro_worker_operations_pending", &[], 0.0);
    let global = |name: &str, labels: &[(&str, &str)]| scraped.value(name, labels);
    for operation in ["create_scheduler", "add_rooms"] {
        assert_eq!(
            global(
                "maestro_worker_operations_started_total",
                &[("operation", operation)]
            ),
            Some(1.0),
            "{operation}"
        );
    }
    for (operation, status) in [("create_scheduler", "finished"), ("add_rooms", "finished")] {
        assert_eq!(
            global(
                "maestro_worker_operation_executions_total",
                &[("operation", operation), ("status", status)]
            ),
            Some(1.0),
            "{operation}"
        );
    }
    assert_eq!(
        global(
            "maestro_worker_operation_duration_seconds_count",
            &[("operation", "add_rooms")]
        ),
        Some(1.0)
    );
    assert_eq!(
        global("maestro_pings_total", &[("status", "occupied")]),
        Some(1.0)
    );
    assert_eq!(
        global("maestro_pings_total", &[("status", "ready")]),
        Some(4.0)
    );
    assert_eq!(
        global(
            "maestro_runtime_calls_total",
            &[("call", "create_room"), ("outcome", "ok")]
        ),
        Some(4.0)
    );
    assert_eq!(
        global(
            "maestro_http_requests_total",
            &[
                ("api", "rooms"),
                ("route", "/scheduler/{scheduler}/rooms/{room}/ping"),
                ("code", "200")
            ]
        ),
        Some(5.0)
    );
    // Series that start at zero, so their first event is a rate: operations that did not
    // run, the gRPC methods no room used, pings of a status no room sent.
    for (name, labels) in [
        (
            "maestro_worker_operation_executions_total",
            &[("operation", "remove_rooms"), ("status", "error")][..],
        ),
        (
            "maestro_worker_operation_duration_seconds_count",
            &[("operation", "switch_active_version")],
        ),
        (
            "maestro_grpc_requests_total",
            &[("method", "UpdateRoomWithPing"), ("code", "Ok")],
        ),
        (
            "maestro_grpc_request_duration_seconds_count",
            &[("method", "AllocateRoom"), ("code", "Ok")],
        ),
        ("maestro_pings_total", &[("status", "terminated")]),
        ("maestro_watcher_events_total", &[("kind", "deleted")]),
    ] {
        assert_eq!(global(name, labels), Some(0.0), "{name} {labels:?}");
    }
    // Cardinality: no room id anywhere in a label.
    for sample in &scraped.0 {
        assert!(!sample.labels.contains_key("room"), "{sample:?}");
        for value in sample.labels.values() {
            assert!(
                !rooms.iter().any(|room| value.contains(room.as_str())),
                "room id in {sample:?}"
            );
        }
    }

    // OpenMetrics when asked: the strict parser accepts it, with the same values.
    let (content_type, text) = scrape(&maestro, true).await?;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"));
    let openmetrics = Scrape(parse(&text, "openmetrics")?);
    assert!(
        openmetrics
            .value("maestro_worker_gru_ready", &labels)
            .is_some()
    );
    let (content_type, _) = scrape(&maestro, false).await?;
    assert!(content_type.starts_with("text/plain"), "{content_type}");

    // An idle scheduler is not queried again while its memo's operations mark holds:
    // ~6 refreshes in 2 s ask at most twice (the mark may reach visibility a refresh or two
    // after the query that saw the operation finish). An operation after that still counts.
    let current = || async {
        let scraped = scrape_parsed(&maestro).await?;
        let figure = |name: &str, labels: &[(&str, &str)]| scraped.value(name, labels);
        anyhow::Ok((
            figure("maestro_reporter_operation_queries_total", &[]).unwrap_or(-1.0),
            figure(
                "maestro_worker_operation_executions_total",
                &[("operation", "add_rooms"), ("status", "finished")],
            ),
        ))
    };
    let (before, _) = current().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = current().await?;
    assert!(
        before >= 1.0 && idle - before <= 2.0,
        "queries of an idle scheduler: {before} -> {idle}"
    );
    let (code, answer) = maestro
        .post(
            &format!("/schedulers/{scheduler}/add-rooms"),
            json!({"amount": 1}),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let (asked, _) = eventually(
        Duration::from_secs(20),
        "the next operation counted",
        || async {
            let now = current().await.ok()?;
            (now.1 == Some(2.0)).then_some(now)
        },
    )
    .await?;
    assert!(
        asked > idle,
        "the finished operation was asked for: {idle} -> {asked}"
    );

    // A deleted scheduler's series go away.
    let (code, _) = maestro.delete(scheduler).await?;
    assert_eq!(code, StatusCode::OK);
    eventually(
        Duration::from_secs(30),
        "the scheduler's series to go",
        || async {
            let (_, text) = scrape(&maestro, false).await.ok()?;
            (!text.contains(&format!("scheduler=\"{scheduler}\""))).then_some(())
        },
    )
    .await?;

    // The Temporal SDK's worker metrics, on their own port.
    let worker = maestro
        .http
        .get(format!("{}/metrics", maestro.worker_metrics))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        worker.contains("temporal_workflow_task_execution_latency"),
        "worker metrics:\n{worker}"
    );
    parse(&worker, "prometheus")?;

    assert!(maestro.stop()?, "maestro dev stops cleanly");
    Ok(())
}
