//! The Grafana dashboard (`deploy/grafana-dashboard.json`) against a real Prometheus
//! (Debian's, which `scripts/test` unpacks into `.tools/prometheus`), scraping a fresh
//! `maestro dev` as `deploy/prometheus.yml` says. After one scripted scenario, every
//! panel's queries, with the dashboard's variables resolved the way Grafana resolves "All",
//! give at least one number. The layout is checked too: ids unique, panels inside the 24
//! columns and not overlapping.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::Maestro;
use common::forwarder::start_forwarder;
use maestro_testkit::{TemporalDevServer, eventually, free_port, temp_dir, workspace_root};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Series that exist only once what they count happened, so a healthy scenario has none:
/// the dashboard charts them beside a series that always has data.
const COUNTED_ONLY_WHEN_IT_HAPPENS: &[&str] = &[
    "temporal_activity_execution_failed_total",
    "temporal_sticky_cache_miss_total",
    "temporal_sticky_cache_total_forced_eviction_total",
    "temporal_workflow_task_execution_failed_total",
];

fn prometheus_binary() -> Result<PathBuf> {
    let path = std::env::var_os("MAESTRO_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/prometheus/usr/bin/prometheus"));
    anyhow::ensure!(
        path.is_file(),
        "no prometheus at {}: run through scripts/test (it unpacks Debian's prometheus)",
        path.display()
    );
    Ok(path)
}

/// A Prometheus on a loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with `deploy/prometheus.yml`, its targets pointed at `maestro`'s
    /// ports and its interval shortened to 1 s (nothing else changed).
    async fn start(maestro: &Maestro) -> Result<Self> {
        let shipped = std::fs::read_to_string(workspace_root().join("deploy/prometheus.yml"))?;
        let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&shipped)?;
        config["global"]["scrape_interval"] = "1s".into();
        let jobs = config["scrape_configs"]
            .as_sequence_mut()
            .context("scrape_configs")?;
        for job in jobs.iter_mut() {
            let name = job["job_name"].as_str().unwrap_or_default().to_string();
            let target = match name.as_str() {
                "maestro-gateway" => &maestro.internal,
                "maestro-worker" => &maestro.worker_metrics,
                other => {
                    anyhow::bail!("deploy/prometheus.yml has a job {other} the test does not know")
                }
            };
            let host = target.trim_start_matches("http://");
            job["static_configs"] = serde_yaml_ng::from_str(&format!("[{{targets: ['{host}']}}]"))?;
        }
        let dir = temp_dir("prometheus");
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, serde_yaml_ng::to_string(&config)?)?;
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(prometheus_binary()?)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start prometheus")?;
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        eventually(Duration::from_secs(30), "prometheus ready", || async {
            let answer = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await
                .ok()?;
            answer.status().is_success().then_some(())
        })
        .await?;
        Ok(prometheus)
    }

    /// The `data` of a successful API answer; a refused query is an error naming it.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let answer: Value = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            answer["status"] == "success",
            "prometheus refused {path} {query:?}: {answer}"
        );
        Ok(answer["data"].clone())
    }

    /// The instant values of `expr` with their labels, NaN included.
    async fn series(&self, expr: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await?;
        let mut all = Vec::new();
        for series in data["result"].as_array().into_iter().flatten() {
            let labels = serde_json::from_value(series["metric"].clone())?;
            let value = series["value"][1].as_str().unwrap_or_default();
            all.push((labels, value.parse().unwrap_or(f64::NAN)));
        }
        Ok(all)
    }

    async fn values(&self, expr: &str) -> Result<Vec<f64>> {
        Ok(self
            .series(expr)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }
}

/// A variable's value as Grafana writes a multi-value "All" into a Prometheus query: each
/// value regex-escaped, one as itself, several as `(a|b)`.
fn grafana_all(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .flat_map(|c| {
                    let special = "\\^$*+?.()|[]{}".contains(c);
                    special
                        .then_some(['\\', '\\'])
                        .into_iter()
                        .flatten()
                        .chain([c])
                })
                .collect()
        })
        .collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("|")),
    }
}

fn expand(expr: &str, variables: &BTreeMap<String, String>) -> String {
    // Longest names first, so `$game` never eats the start of a longer name.
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names.iter().fold(expr.to_string(), |expr, name| {
        expr.replace(&format!("${name}"), &variables[*name])
    })
}

/// Resolves the dashboard's query variables in order (each may use the ones before it),
/// as Grafana does for `label_values(selector, label)`; every one must have values.
async fn resolve_variables(
    prometheus: &Prometheus,
    dashboard: &Value,
) -> Result<BTreeMap<String, String>> {
    let mut variables = BTreeMap::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().context("variable name")?;
        let query = variable["query"].as_str().context("variable query")?;
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .with_context(|| format!("{name}: not label_values(…): {query}"))?;
        let (selector, label) = inner
            .rsplit_once(',')
            .context("label_values(selector, label)")?;
        let selector = expand(selector.trim(), &variables);
        let data = prometheus
            .api(
                &format!("/api/v1/label/{}/values", label.trim()),
                &[("match[]", selector.as_str())],
            )
            .await?;
        let values: Vec<String> = serde_json::from_value(data)?;
        anyhow::ensure!(
            !values.is_empty(),
            "variable {name} ({query}) has no values"
        );
        variables.insert(name.to_string(), grafana_all(&values));
    }
    Ok(variables)
}

/// Panels none of whose queries give a number yet, each with what its queries gave.
async fn panels_without_data(prometheus: &Prometheus, dashboard: &Value) -> Result<Vec<String>> {
    let variables = resolve_variables(prometheus, dashboard).await?;
    let mut empty = Vec::new();
    for panel in charts(dashboard) {
        let mut seen = Vec::new();
        let mut has_data = false;
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = expand(target["expr"].as_str().unwrap_or_default(), &variables);
            let values = prometheus.values(&expr).await?;
            has_data |= values.iter().any(|v| v.is_finite());
            seen.push(format!("{expr} -> {values:?}"));
        }
        if !has_data {
            empty.push(format!("{}:\n    {}", panel["title"], seen.join("\n    ")));
        }
    }
    Ok(empty)
}

fn charts(dashboard: &Value) -> impl Iterator<Item = &Value> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] != "row")
}

fn load_dashboard() -> Result<Value> {
    let text = std::fs::read_to_string(workspace_root().join("deploy/grafana-dashboard.json"))?;
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn the_dashboard_layout_is_sound() -> Result<()> {
    let dashboard = load_dashboard()?;
    let panels = dashboard["panels"].as_array().context("panels")?;
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in panels {
        let title = &panel["title"];
        assert!(ids.insert(panel["id"].as_u64()), "duplicate id at {title}");
        let pos = |k: &str| panel["gridPos"][k].as_u64().unwrap_or(0);
        let (x, y, w, h) = (pos("x"), pos("y"), pos("w"), pos("h"));
        assert!(w > 0 && h > 0 && x + w <= 24, "{title} is outside the grid");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(
                cells.insert(cell),
                "{title} overlaps another panel at {cell:?}"
            );
        }
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
            assert!(panel["targets"].as_array().is_some_and(|t| !t.is_empty()));
        }
    }
    Ok(())
}

/// A scheduler of rooms that ping over gRPC every second and play 2 s matches, so their
/// status changes go to the forwarder.
fn forwarded_scheduler(forwarder: &str) -> Value {
    let mut body = common::scheduler_body("dash");
    body["game"] = json!("dash-game");
    body["roomsReplicas"] = json!(2);
    body["portRange"] = json!({"start": 46700, "end": 46799});
    body["spec"]["containers"][0]["command"] = json!([
        env!("CARGO_BIN_EXE_game-room"),
        "--protocol",
        "grpc",
        "--ping-interval",
        "1s",
        "--match-every",
        "2s",
        "--match-duration",
        "2s"
    ]);
    body["forwarders"] = json!([{
        "name": "matchmaker", "enable": true, "type": "gRPC", "address": forwarder,
        "options": {"timeout": 1000}
    }]);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_has_data_after_a_scripted_scenario() -> Result<()> {
    let dashboard = load_dashboard()?;
    let temporal = TemporalDevServer::start().await?;
    let (_forwarder, forwarder_address) = start_forwarder().await?;
    let maestro = Maestro::start_with(
        &temporal,
        &["--sample-rooms", "2", "--metrics-interval", "1s"],
    )
    .await?;
    let prometheus = Prometheus::start(&maestro).await?;
    eventually(Duration::from_secs(30), "both jobs scraped", || async {
        let up = prometheus.values("sum(up)").await.ok()?;
        (up == [2.0]).then_some(())
    })
    .await?;

    // The scenario: a scheduler with a forwarder and gRPC rooms, rooms added, one taken
    // by a matchmaker, one removed, and a new version that fails (its validation room exits at once).
    let (code, answer) = maestro
        .post("/schedulers", forwarded_scheduler(&forwarder_address))
        .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let (code, answer) = maestro
        .post("/schedulers/dash/add-rooms", json!({"amount": 2}))
        .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let id = answer["operationId"].as_str().context("operation id")?;
    let added = maestro
        .final_operation("dash", id, Duration::from_secs(60))
        .await?;
    assert_eq!(added["status"], "finished", "{added}");
    maestro.wait_ready("sample", 2).await?;
    let allocated = maestro
        .http
        .post(format!(
            "{}/scheduler/sample/rooms/allocate",
            maestro.rooms_api
        ))
        .bearer_auth(common::API_TOKEN)
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(allocated.status(), StatusCode::OK);
    let (code, answer) = maestro
        .post("/schedulers/dash/remove-rooms", json!({"amount": 1}))
        .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let id = answer["operationId"].as_str().context("operation id")?;
    maestro
        .final_operation("dash", id, Duration::from_secs(60))
        .await?;
    let mut broken = common::scheduler_body("dash-broken");
    broken["game"] = json!("dash-game");
    broken["roomsReplicas"] = json!(0);
    let (code, answer) = maestro.post("/schedulers", broken.clone()).await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    broken["spec"]["containers"][0]["command"] = json!(["/bin/false"]);
    let (code, answer) = maestro.post("/schedulers/dash-broken", broken).await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let id = answer["operationId"].as_str().context("operation id")?;
    let failed = maestro
        .final_operation("dash-broken", id, Duration::from_secs(60))
        .await?;
    assert_eq!(failed["status"], "error", "{failed}");

    // Every panel gives a number (within a minute: a few scrapes and reporter refreshes).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let empty = panels_without_data(&prometheus, &dashboard).await?;
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panels without data:\n{}",
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Operations that ran once, after the first scrape, show a duration: their series
    // started at zero, so that one run is an increase.
    let variables = resolve_variables(&prometheus, &dashboard).await?;
    let durations = charts(&dashboard)
        .find(|p| p["title"] == "Operation duration p95")
        .context("the operation duration panel")?;
    let expr = expand(
        durations["targets"][0]["expr"].as_str().unwrap_or_default(),
        &variables,
    );
    let charted: BTreeSet<String> = prometheus
        .series(&expr)
        .await?
        .into_iter()
        .filter(|(_, v)| v.is_finite())
        .filter_map(|(labels, _)| labels.get("operation").cloned())
        .collect();
    for operation in ["add_rooms", "remove_rooms", "create_new_scheduler_version"] {
        assert!(
            charted.contains(operation),
            "{operation} has no duration: {charted:?}"
        );
    }

    // Every series the dashboard names is one Prometheus scraped, or one that only exists
    // once what it counts happened.
    let scraped: BTreeSet<String> =
        serde_json::from_value(prometheus.api("/api/v1/label/__name__/values", &[]).await?)?;
    let text = dashboard.to_string();
    let named: BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("maestro_") || w.starts_with("temporal_"))
        .collect();
    for name in named {
        assert!(
            scraped.contains(name) || COUNTED_ONLY_WHEN_IT_HAPPENS.contains(&name),
            "the dashboard charts {name}, which no scrape served"
        );
    }
    Ok(())
}
