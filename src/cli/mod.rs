//! The `maestro` client commands: the management API from the terminal (and from CI).
//! Specs come from YAML or JSON files; answers print as tables, or as JSON/YAML with `-o`;
//! `--wait` follows the operation a command starts (`wait.rs`), `--dry-run` shows what it
//! would do. One module per noun: `schedulers.rs`, `rooms.rs`, `operations.rs`.

mod operations;
mod rooms;
mod schedulers;
mod wait;

pub use operations::{OperationCommand, operation};
pub use rooms::{RoomsCommand, rooms};
pub use schedulers::{SchedulerCommand, scheduler};

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use comfy_table::Table;
use serde_json::Value;

#[derive(clap::Args)]
pub struct ClientArgs {
    /// The management API.
    #[arg(
        long,
        env = "MAESTRO_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Bearer token for the management API.
    #[arg(long, env = "MAESTRO_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output: a table, the API's answer as JSON or YAML, or only the id(s) it names, one
    /// per line (for scripts: `op=$(maestro rooms add my-game 1 -o id)`).
    #[arg(short, long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    /// For commands that start an operation: wait until it ends, showing its latest step on
    /// a terminal; exit 1 with its reason unless it finished.
    #[arg(long, global = true)]
    wait: bool,
    /// How long `--wait` waits before giving up (the operation goes on).
    #[arg(long, global = true, default_value = "10m", value_parser = maestro_core::time::parse_duration)]
    wait_timeout: Duration,
    /// For commands that start an operation: print what it would do (the API's plan) and
    /// change nothing.
    #[arg(long, global = true, conflicts_with = "wait")]
    dry_run: bool,
    /// The rooms API, for `maestro rooms allocate` (what matchmakers call).
    #[arg(
        long,
        env = "MAESTRO_ROOMS_SERVER",
        default_value = "http://127.0.0.1:8070",
        global = true
    )]
    rooms_server: String,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
    Id,
}

struct Client {
    http: reqwest::Client,
    args: ClientArgs,
}

impl Client {
    fn new(args: ClientArgs) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self { http, args })
    }

    /// A management API call; its answer, or an error with the API's message and bad fields.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        self.call_at(&self.args.server, method, path, body).await
    }

    /// A mutating call: with `--dry-run`, the same call asking only for the plan.
    async fn mutate(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        if self.args.dry_run {
            let separator = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{separator}dryRun=true");
            return self.call(method, &path, body).await;
        }
        self.call(method, path, body).await
    }

    async fn call_at(
        &self,
        server: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", server.trim_end_matches('/'));
        // Our answers in full (seq, error, startedAt, …), not only Maestro's fields.
        let mut request = self
            .http
            .request(method, &url)
            .header(maestro_gateway::management::EXTENSIONS_HEADER, "true");
        if let Some(token) = &self.args.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let mut message = format!(
                "{status}: {}",
                answer["message"].as_str().unwrap_or(&answer.to_string())
            );
            // grpc-gateway's `google.rpc.Status`: bad fields are BadRequest violations.
            let violations = answer["details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|d| d["fieldViolations"].as_array().into_iter().flatten());
            for field in violations {
                message.push_str(&format!(
                    "\n  {}: {}",
                    field["field"].as_str().unwrap_or("?"),
                    field["description"].as_str().unwrap_or("?")
                ));
            }
            return Err(Refused { status, message }.into());
        }
        Ok(answer)
    }

    /// Prints `answer` as asked; `table` renders the table form. A reader that went away
    /// (`maestro … | head -1`) ends the output quietly, as for any Unix tool.
    fn print(&self, answer: &Value, table: impl FnOnce(&Value) -> Table) -> Result<()> {
        let text = match self.args.output {
            Output::Json => format!("{}\n", serde_json::to_string_pretty(answer)?),
            Output::Yaml => serde_yaml_ng::to_string(answer)?,
            // A dry run answers a plan whatever the command: one rendering for all of them.
            Output::Table if answer["dryRun"] == true => format!("{}\n", plan_table(answer)),
            Output::Table => format!("{}\n", table(answer)),
            Output::Id => ids(answer).into_iter().map(|id| id + "\n").collect(),
        };
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    /// Prints what a command that starts an operation answers: the acceptance, or with
    /// `--wait` the operation as it ended.
    async fn print_operation(&self, scheduler: &str, accepted: &Value) -> Result<()> {
        if self.args.wait {
            let done = self.follow(scheduler, accepted).await?;
            return self.print(&done, final_operation_table);
        }
        self.print(accepted, operation_table)
    }
}

/// The API answered with an error status: its code and readable message (with bad fields).
#[derive(Debug)]
struct Refused {
    status: reqwest::StatusCode,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// Whether `error` is the API answering 404 (what a finished delete leaves behind).
fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<Refused>()
        .is_some_and(|r| r.status == reqwest::StatusCode::NOT_FOUND)
}

/// What `-o id` prints: the operation an answer accepted, or the ids of what it shows.
fn ids(answer: &Value) -> Vec<String> {
    let one = |v: &Value| v.as_str().map(str::to_string);
    if let Some(id) = one(&answer["operationId"]).or_else(|| one(&answer["roomId"])) {
        return vec![id];
    }
    if let Some(id) = one(&answer["operation"]["id"]).or_else(|| one(&answer["scheduler"]["name"]))
    {
        return vec![id];
    }
    let lists = [
        ("operations", "id"),
        ("rooms", "id"),
        ("schedulers", "name"),
        ("versions", "version"),
    ];
    lists
        .iter()
        .flat_map(|(list, key)| {
            answer[*list]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| one(&item[*key]))
        })
        .collect()
}

/// A spec file: YAML or JSON (JSON is YAML, but JSON errors read better from the JSON parser).
/// What `scheduler get -o yaml|json` prints (`{scheduler: {…}}`) is taken as its scheduler, so
/// a scheduler can be saved, edited and fed back; the fields Maestro owns (state, createdAt,
/// the version) are ignored by the API.
fn read_document(file: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let is_json = file.extension().is_some_and(|e| e == "json");
    let document: Value = if is_json {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?
    } else {
        serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not valid YAML", file.display()))?
    };
    Ok(match document {
        Value::Object(mut map) if map.len() == 1 && map.contains_key("scheduler") => {
            map.remove("scheduler").unwrap_or_default()
        }
        other => other,
    })
}

/// The widest a table is drawn: long cells wrap instead (details belong in a describe view).
const MAX_WIDTH: u16 = 100;

/// A table without borders that wraps long cells to stay within [`MAX_WIDTH`].
fn bare_table() -> Table {
    let mut table = Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(MAX_WIDTH);
    table
}

fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut table = bare_table();
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    table
}

/// A describe view: a label, then its value (wrapped within the table's width).
fn describe(rows: impl IntoIterator<Item = (String, String)>) -> Table {
    let mut table = bare_table();
    for (label, value) in rows {
        let label = if label.is_empty() {
            label
        } else {
            format!("{label}:")
        };
        table.add_row(vec![label, value]);
    }
    table
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A timestamp as a person reads it in a column: to the second, in UTC.
fn when(value: &Value) -> String {
    match value.as_str() {
        Some(stamp) => match maestro_core::time::Timestamp::parse_rfc3339(stamp) {
            Ok(t) => humantime::format_rfc3339_seconds(t.to_system_time()).to_string(),
            Err(_) => stamp.to_string(),
        },
        None => text(value),
    }
}

/// A dry run's plan: one row per planned field.
fn plan_table(answer: &Value) -> Table {
    let rows = answer["plan"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| vec![key.clone(), text(value)]);
    table(&["DRY RUN", "PLAN"], rows)
}

fn final_operation_table(answer: &Value) -> Table {
    let o = &answer["operation"];
    table(
        &["OPERATION", "KIND", "STATUS"],
        [vec![
            text(&o["id"]),
            text(&o["definitionName"]),
            text(&o["status"]),
        ]],
    )
}

fn operation_table(answer: &Value) -> Table {
    table(
        &["OPERATION", "STATUS"],
        [vec![text(&answer["operationId"]), "accepted".into()]],
    )
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let set: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.map(|v| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        })
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}
