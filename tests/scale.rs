//! Listing schedulers at scale: 1 000 schedulers created through the REST API of the real
//! `maestro dev`, then `GET /schedulers` (Temporal visibility + each workflow's memo) must
//! list every one of them, filters included. The listing time is printed (see
//! docs/benchmarks.md); it is not asserted, as timing belongs in benchmarks.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::Maestro;
use futures::StreamExt;
use maestro_testkit::{TemporalDevServer, eventually};
use reqwest::StatusCode;
use serde_json::json;

const SCHEDULERS: usize = 1000;
/// Creations in flight at once (bounded load on a 2-core machine).
const CONCURRENCY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_1000_schedulers() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    // No health checks: this measures listing, not 1 000 idle health runs.
    let maestro = Maestro::start_with(&temporal, &["--health-interval", "0s"]).await?;
    let names: Vec<String> = (0..SCHEDULERS).map(|i| format!("scale-{i:04}")).collect();
    let started = Instant::now();
    let created: Vec<Result<()>> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let maestro = &maestro;
            async move {
                let game = if name.ends_with('7') {
                    "lucky"
                } else {
                    "scale-game"
                };
                let body = json!({
                    "name": name, "game": game, "maxSurge": "1", "roomsReplicas": 0,
                    "spec": {"terminationGracePeriod": "5s", "containers": [{
                        "name": "room", "image": "local", "command": ["true"],
                        "imagePullPolicy": "IfNotPresent", "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}]}
                });
                let (code, answer) = maestro.post("/schedulers", body).await?;
                anyhow::ensure!(code == StatusCode::OK, "{name}: {code} {answer}");
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    created.into_iter().collect::<Result<Vec<()>>>()?;
    eprintln!("created {SCHEDULERS} schedulers in {:?}", started.elapsed());

    let listed = eventually(
        Duration::from_secs(300),
        "every scheduler listed",
        || async {
            let (code, body) = maestro.get("/schedulers").await.ok()?;
            let listed: Vec<String> = body["schedulers"]
                .as_array()?
                .iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect();
            (code == StatusCode::OK && listed.len() == SCHEDULERS).then_some(listed)
        },
    )
    .await?;
    let expected: BTreeSet<&String> = names.iter().collect();
    assert_eq!(listed.iter().collect::<BTreeSet<_>>(), expected);
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "sorted by name");

    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (code, body) = maestro.get("/schedulers").await?;
        times.push(t.elapsed());
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            body["schedulers"].as_array().map(Vec::len),
            Some(SCHEDULERS)
        );
    }
    times.sort();
    eprintln!(
        "GET /schedulers with {SCHEDULERS} schedulers: median {:?}, max {:?}",
        times[2], times[4]
    );
    let (_, lucky) = maestro.get("/schedulers?game=lucky").await?;
    assert_eq!(
        lucky["schedulers"].as_array().map(Vec::len),
        Some(SCHEDULERS / 10)
    );
    let (_, one) = maestro.get("/schedulers?name=scale-0042").await?;
    assert_eq!(one["schedulers"][0]["name"], "scale-0042");
    Ok(())
}
