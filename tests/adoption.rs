//! `kill -9` of the whole `maestro dev` (process runtime, memory store) in the middle of
//! `add-rooms 400`, then a restart: the operation finishes once and there are exactly 400
//! room processes — no room id twice, no host port shared — the store knows all 400, and the
//! rooms that were running before the kill are the same processes (adopted, not restarted),
//! so their matches go on.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{API_TOKEN, Maestro, room_processes, scheduler_body};
use maestro_testkit::{TemporalDevServer, eventually, processes_with_env};
use reqwest::StatusCode;
use serde_json::json;

const ROOMS: usize = 400;

/// `(room id, host port)` of a room process, from its environment.
fn room_of(pid: u32) -> Option<(String, String)> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let var = |name: &str| {
        environ
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix(name).map(str::to_string))
    };
    Some((var("MAESTRO_ROOM_ID=")?, var("MAESTRO_PORT_GAME=")?))
}

/// Every live room process of the scheduler: pid → (room id, port).
fn room_table(scheduler: &str) -> BTreeMap<u32, (String, String)> {
    processes_with_env("MAESTRO_SCHEDULER_NAME", scheduler)
        .into_iter()
        .filter_map(|pid| Some((pid, room_of(pid)?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_maestro_dev_adopts_its_rooms_and_finishes_add_rooms_exactly() -> anyhow::Result<()>
{
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start_with(&temporal, &["--health-interval", "1h"]).await?;
    // Unique per process: room processes are found by scheduler name machine-wide.
    let name = format!("adopt-{}", std::process::id());
    let mut body = scheduler_body(&name);
    body["roomsReplicas"] = json!(0);
    body["spec"]["containers"][0]["command"] =
        json!([env!("CARGO_BIN_EXE_game-room"), "--ping-interval", "2s"]);
    let (code, answer) = maestro.post("/schedulers", body).await?;
    anyhow::ensure!(code == StatusCode::OK, "{answer}");
    eventually(Duration::from_secs(60), "the scheduler in sync", || async {
        let (_, s) = maestro.get(&format!("/schedulers/{name}")).await.ok()?;
        (s["scheduler"]["state"] == "in-sync").then_some(())
    })
    .await?;

    let response = maestro
        .http
        .post(format!("{}/schedulers/{name}/add-rooms", maestro.api))
        .bearer_auth(API_TOKEN)
        .header("Idempotency-Key", "add-400")
        .json(&json!({"amount": ROOMS}))
        .send()
        .await?;
    anyhow::ensure!(response.status() == StatusCode::OK);
    let operation = response.json::<serde_json::Value>().await?["operationId"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Mid-way: some batches done, one under way.
    let before = eventually(Duration::from_secs(120), "150 room processes", || async {
        let table = room_table(&name);
        (table.len() >= 150).then_some(table)
    })
    .await?;
    let killed_at = Instant::now();
    maestro.restart().await?;
    println!(
        "killed with {} room processes running; up again in {:?}",
        before.len(),
        killed_at.elapsed()
    );

    let finished = maestro
        .final_operation(&name, &operation, Duration::from_secs(300))
        .await?;
    assert_eq!(finished["status"], "finished", "{finished}");
    println!(
        "add_rooms finished {:?} after the kill",
        killed_at.elapsed()
    );

    let table = eventually(
        Duration::from_secs(60),
        "exactly 400 room processes",
        || async {
            let table = room_table(&name);
            (table.len() == ROOMS).then_some(table)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {} processes", room_processes(&name)))?;
    let ids: BTreeSet<&String> = table.values().map(|(id, _)| id).collect();
    let ports: BTreeSet<&String> = table.values().map(|(_, port)| port).collect();
    assert_eq!(ids.len(), ROOMS, "a room id runs twice");
    assert_eq!(ports.len(), ROOMS, "a host port is shared");
    for (pid, room) in &before {
        assert_eq!(
            table.get(pid),
            Some(room),
            "room {} (pid {pid}) was restarted or lost, not adopted",
            room.0
        );
    }
    let known = eventually(
        Duration::from_secs(60),
        "the store knows all 400",
        || async {
            let (_, rooms) = maestro
                .get(&format!("/schedulers/{name}/rooms"))
                .await
                .ok()?;
            let ids: BTreeSet<String> = rooms["rooms"]
                .as_array()?
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect();
            (ids.len() == ROOMS).then_some(ids)
        },
    )
    .await?;
    assert_eq!(known, ids.into_iter().cloned().collect::<BTreeSet<_>>());
    let ready = eventually(Duration::from_secs(60), "every room ready", || async {
        let n = maestro.rooms(&name, "ready").await.ok()?;
        (n == ROOMS).then_some(n)
    })
    .await?;
    println!("{ready} rooms ready; {} adopted", before.len());

    let (code, answer) = maestro.delete(&name).await?;
    anyhow::ensure!(code == StatusCode::OK, "{answer}");
    eventually(
        Duration::from_secs(120),
        "every room process gone",
        || async { (room_processes(&name) == 0).then_some(()) },
    )
    .await?;
    Ok(())
}
