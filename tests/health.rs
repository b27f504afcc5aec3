//! The health controller on the real `maestro dev` binary (health checks every second) with
//! real `game-room` processes: converging to `roomsReplicas`, replacing a room that crashed,
//! scaling up with the room-occupancy autoscaler, and a rolling replacement of 10 rooms with
//! maxSurge 3 while 2 rooms are occupied — the serving count never drops below 10 and the
//! occupied rooms go last.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use common::Maestro;
use maestro_testkit::{TemporalDevServer, eventually, processes_with_env};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn document(name: &str, replicas: u32, ports: (u16, u16), interval: &str) -> Value {
    json!({
        "name": name, "game": "health-game", "maxSurge": "3", "roomsReplicas": replicas,
        "portRange": {"start": ports.0, "end": ports.1},
        "spec": {"terminationGracePeriod": "5s", "containers": [{
            "name": "room", "image": "local/game-room",
            "imagePullPolicy": "IfNotPresent", "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"},
            // One ping at start, then silence: the test sets statuses itself.
            "command": [env!("CARGO_BIN_EXE_game-room"), "--ping-interval", interval],
            "ports": [{"name": "game", "protocol": "udp", "port": 7777}]}]}
    })
}

/// id → (status, version) of every room.
async fn rooms(maestro: &Maestro, name: &str) -> Result<BTreeMap<String, (String, String)>> {
    let (code, body) = maestro.get(&format!("/schedulers/{name}/rooms")).await?;
    anyhow::ensure!(code == StatusCode::OK, "{code} {body}");
    Ok(body["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                (
                    r["status"].as_str().unwrap_or_default().to_string(),
                    r["version"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect())
}

fn serving(rooms: &BTreeMap<String, (String, String)>) -> usize {
    rooms
        .values()
        .filter(|(s, _)| matches!(s.as_str(), "ready" | "occupied" | "active" | "allocated"))
        .count()
}

async fn occupy(maestro: &Maestro, name: &str, room: &str) -> Result<()> {
    let status = maestro.ping_as(name, room, "occupied", 1).await?;
    anyhow::ensure!(status.is_success(), "{status}");
    Ok(())
}

async fn ready_rooms(maestro: &Maestro, name: &str, n: usize) -> Result<Vec<String>> {
    eventually(Duration::from_secs(60), "ready rooms", || async {
        let rooms = rooms(maestro, name).await.ok()?;
        let ready: Vec<String> = rooms
            .iter()
            .filter(|(_, (s, _))| s == "ready")
            .map(|(id, _)| id.clone())
            .collect();
        (ready.len() == n && rooms.len() == n).then_some(ready)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_controller_converges_replaces_and_scales() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start_with(&temporal, &["--health-interval", "1s"]).await?;

    // Converge: no add-rooms call, the health controller creates roomsReplicas rooms.
    let (code, body) = maestro
        .post("/schedulers", document("healed", 3, (46800, 46849), "1h"))
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let ids = ready_rooms(&maestro, "healed", 3).await?;

    // A room that crashes is removed and replaced.
    let victim = &ids[0];
    for pid in processes_with_env("MAESTRO_ROOM_ID", victim) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid)?),
            nix::sys::signal::Signal::SIGKILL,
        )?;
    }
    eventually(
        Duration::from_secs(30),
        "the crashed room replaced",
        || async {
            let rooms = rooms(&maestro, "healed").await.ok()?;
            let replaced = !rooms.contains_key(victim)
                && rooms.len() == 3
                && rooms.values().all(|(s, _)| s == "ready");
            replaced.then_some(())
        },
    )
    .await?;

    // Autoscaling (roomOccupancy, ready target 0.5): 2 occupied rooms → 4 rooms.
    let mut auto = document("scaled", 2, (46850, 46899), "1h");
    auto["autoscaling"] = json!({
        "enabled": true, "min": 2, "max": 10, "cooldown": 0,
        "policy": {"type": "roomOccupancy",
                   "parameters": {"roomOccupancy": {"readyTarget": 0.5, "downThreshold": 0.99}}}
    });
    let (code, body) = maestro.post("/schedulers", auto).await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let ids = ready_rooms(&maestro, "scaled", 2).await?;
    for id in &ids {
        occupy(&maestro, "scaled", id).await?;
    }
    let started = Instant::now();
    eventually(
        Duration::from_secs(30),
        "the autoscaler's rooms",
        || async {
            let rooms = rooms(&maestro, "scaled").await.ok()?;
            (rooms.len() == 4).then_some(())
        },
    )
    .await?;
    eprintln!(
        "autoscaler: 4 rooms requested {:?} after occupancy rose",
        started.elapsed()
    );
    // Matches end: back down to the minimum, 2 rooms (cooldown 0).
    for id in &ids {
        assert!(
            maestro
                .ping_as("scaled", id, "ready", 0)
                .await?
                .is_success()
        );
    }
    eventually(
        Duration::from_secs(30),
        "the autoscaler to scale down",
        || async {
            let rooms = rooms(&maestro, "scaled").await.ok()?;
            (rooms.len() == 2).then_some(())
        },
    )
    .await?;

    // Rolling replacement: 10 rooms, 2 occupied, maxSurge 3, then a major change.
    let (code, body) = maestro
        .post("/schedulers", document("rolled", 10, (46900, 46999), "1h"))
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let ids = ready_rooms(&maestro, "rolled", 10).await?;
    let occupied: BTreeSet<String> = ids.iter().take(2).cloned().collect();
    for id in &occupied {
        occupy(&maestro, "rolled", id).await?;
    }
    let (code, body) = maestro
        .call(
            reqwest::Method::POST,
            "/schedulers/rolled",
            Some(document("rolled", 10, (46900, 46999), "59m")),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let version_op = body["operationId"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(60), "the switch to v2.0", || async {
        let (_, body) = maestro
            .get(&format!(
                "/schedulers/rolled/operations/{version_op}-switch"
            ))
            .await
            .ok()?;
        (body["operation"]["status"] == "finished").then_some(())
    })
    .await?;
    let old: BTreeSet<String> = ids.iter().cloned().collect();
    let mut min_serving = usize::MAX;
    let mut max_total = 0;
    let mut occupied_gone_while_ready_old_left = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = rooms(&maestro, "rolled").await?;
        min_serving = min_serving.min(serving(&now));
        max_total = max_total.max(now.len());
        let old_ready_left = now
            .iter()
            .any(|(id, (s, _))| old.contains(id) && !occupied.contains(id) && s == "ready");
        let occupied_left = occupied.iter().filter(|id| now.contains_key(*id)).count();
        occupied_gone_while_ready_old_left |= occupied_left < 2 && old_ready_left;
        let done = now.len() == 10 && now.values().all(|(s, v)| v == "v2.0.0" && s == "ready");
        if done {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "rollout not done: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(min_serving >= 10, "serving rooms dropped to {min_serving}");
    assert!(
        max_total <= 13,
        "at most maxSurge above desired, saw {max_total}"
    );
    assert!(
        !occupied_gone_while_ready_old_left,
        "an occupied room went before the ready old rooms"
    );
    let (_, ops) = maestro
        .get("/schedulers/rolled/operations?stage=final&perPage=100")
        .await?;
    let health_runs = ops["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["definitionName"] == "health_controller")
        .count();
    assert!(
        health_runs >= 4,
        "a rollout takes several runs, saw {health_runs}"
    );

    // A rollout whose rooms pass validation but then crash is rolled back: v1.0 active
    // again, the failed rooms replaced by v1.0 rooms, and the history says why.
    let (code, body) = maestro
        .post("/schedulers", document("rollback", 4, (47000, 47099), "1h"))
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    ready_rooms(&maestro, "rollback", 4).await?;
    let mut crashing = document("rollback", 4, (47000, 47099), "1s");
    crashing["spec"]["containers"][0]["command"] = json!([
        env!("CARGO_BIN_EXE_game-room"),
        "--ping-interval",
        "1s",
        "--exit-after",
        "3s"
    ]);
    let (code, body) = maestro
        .call(
            reqwest::Method::POST,
            "/schedulers/rollback",
            Some(crashing),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let reason = eventually(Duration::from_secs(90), "the rollback", || async {
        let (_, ops) = maestro
            .get("/schedulers/rollback/operations?stage=final&perPage=100")
            .await
            .ok()?;
        let health_runs = ops["operations"]
            .as_array()?
            .iter()
            .filter(|op| op["definitionName"] == "health_controller");
        for op in health_runs {
            let id = op["id"].as_str()?;
            let (_, detail) = maestro
                .get(&format!("/schedulers/rollback/operations/{id}"))
                .await
                .ok()?;
            let history = detail["operation"]["executionHistory"].to_string();
            if history.contains("rolled back to v1.0.0") {
                return Some(history);
            }
        }
        None
    })
    .await?;
    assert!(reason.contains("failed"), "{reason}");
    let (_, body) = maestro.get("/schedulers/rollback").await?;
    assert_eq!(body["scheduler"]["spec"]["version"], "v1.0.0");
    eventually(Duration::from_secs(60), "v1.0 rooms back", || async {
        let rooms = rooms(&maestro, "rollback").await.ok()?;
        let back = rooms.len() == 4 && rooms.values().all(|(s, v)| s == "ready" && v == "v1.0.0");
        back.then_some(())
    })
    .await?;

    assert!(maestro.stop()?, "maestro dev stops cleanly");
    Ok(())
}

/// Rooms whose program exits at once (`/bin/false`) crash-loop: replacements back off
/// (10 s, 20 s, … like Kubernetes' CrashLoopBackOff) instead of being made every health run,
/// the scheduler says `on-error` in its state, its info and `maestro_scheduler_on_error`, and
/// no room record outlives its instance by more than a health run. A fixed version brings it
/// back to `in-sync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loops_back_off_and_mark_the_scheduler_on_error() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start_with(
        &temporal,
        &["--health-interval", "1s", "--metrics-interval", "1s"],
    )
    .await?;
    let name = format!("crashloop-{}", std::process::id());
    let mut body = document(&name, 3, (47100, 47199), "1s");
    body["spec"]["containers"][0]["command"] = json!(["/bin/false"]);
    let (code, answer) = maestro.post("/schedulers", body.clone()).await?;
    anyhow::ensure!(code == StatusCode::OK, "{answer}");

    let scrape = || async {
        let response = maestro
            .http
            .get(format!("{}/metrics", maestro.internal))
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    };
    // One sample's value: the metric's lines that contain every `label`, summed.
    let sample = |text: &str, metric: &str, labels: &[&str]| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(metric) && labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let creations = |text: &str| {
        sample(
            text,
            "maestro_runtime_calls_total",
            &["call=\"create_room\""],
        )
    };
    let on_error = |text: &str| sample(text, "maestro_scheduler_on_error", &[name.as_str()]);
    let started = Instant::now();
    eventually(
        Duration::from_secs(30),
        "on-error in the metrics",
        || async { (on_error(&scrape().await?) == 1.0).then_some(()) },
    )
    .await?;
    let (_, scheduler) = maestro.get(&format!("/schedulers/{name}")).await?;
    assert_eq!(scheduler["scheduler"]["state"], "on-error", "{scheduler}");
    let (_, info) = maestro.get("/schedulers/info?game=health-game").await?;
    let info = info["schedulers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(info["state"], "on-error", "{info}");

    // 25 s of health runs every second: without backoff about 24 rounds of 3 rooms; with it
    // the first replacement waits 10 s and the next 20 s.
    tokio::time::sleep(Duration::from_secs(25).saturating_sub(started.elapsed())).await;
    let created = creations(&scrape().await.unwrap_or_default());
    println!(
        "{created} rooms created in {:?} of crash loop",
        started.elapsed()
    );
    assert!(
        (3.0..=9.0).contains(&created),
        "{created} room creations in 25 s: no backoff?"
    );
    // Crashed rooms are removed each run, never left as records with no process.
    let left = rooms(&maestro, &name).await?;
    assert!(left.len() <= 3, "{left:?}");

    // A version whose rooms run: replaced once the backoff allows, and healthy again.
    body["spec"]["containers"][0]["command"] =
        json!([env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "1s"]);
    let (code, answer) = maestro.post(&format!("/schedulers/{name}"), body).await?;
    anyhow::ensure!(code == StatusCode::OK, "{answer}");
    eventually(Duration::from_secs(120), "in-sync again", || async {
        let (_, s) = maestro.get(&format!("/schedulers/{name}")).await.ok()?;
        let ready = serving(&rooms(&maestro, &name).await.ok()?);
        (s["scheduler"]["state"] == "in-sync" && ready == 3).then_some(())
    })
    .await?;
    eventually(
        Duration::from_secs(30),
        "on-error cleared in the metrics",
        || async {
            let text = scrape().await?;
            (text.contains("maestro_scheduler_on_error") && on_error(&text) == 0.0).then_some(())
        },
    )
    .await?;
    println!(
        "healthy again {:?} after the crash loop began",
        started.elapsed()
    );
    let (code, _) = maestro.delete(&name).await?;
    anyhow::ensure!(code == StatusCode::OK);
    Ok(())
}
