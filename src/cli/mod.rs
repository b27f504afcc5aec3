//! The `maestro` client commands: the management API from the terminal (and from CI).
//! Specs come from YAML or JSON files; answers print as tables, or as JSON/YAML with `-o`;
//! `--wait` follows the operation a command starts (`wait.rs`).

mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use comfy_table::Table;
use serde_json::{Value, json};

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
    /// Output: a table, or the API's answer as JSON or YAML.
    #[arg(short, long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    /// For commands that start an operation: wait until it ends, showing its latest step on
    /// a terminal; exit 1 with its reason unless it finished.
    #[arg(long, global = true)]
    wait: bool,
    /// How long `--wait` waits before giving up (the operation goes on).
    #[arg(long, global = true, default_value = "10m", value_parser = maestro_core::time::parse_duration)]
    wait_timeout: Duration,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(clap::Subcommand)]
pub enum SchedulerCommand {
    /// Create a scheduler from a YAML or JSON file (`--wait`: until its namespace is ready).
    Create {
        /// The scheduler document (Maestro's fields), `.yaml`, `.yml` or `.json`.
        file: PathBuf,
    },
    /// Show a scheduler (the active version, or `--version`).
    Get {
        /// The scheduler's name.
        name: String,
        /// A recorded version instead of the active one (e.g. `v1.2.0`).
        #[arg(long)]
        version: Option<String>,
    },
    /// List schedulers.
    List {
        /// Only the schedulers of this game.
        #[arg(long)]
        game: Option<String>,
    },
    /// New version: a whole document from a file, or `--patch` to merge the file's fields.
    Update {
        /// The scheduler's name.
        name: String,
        /// The new document (or, with `--patch`, the fields to change).
        file: PathBuf,
        /// Merge the file's fields into the active version (Maestro's PATCH rules).
        #[arg(long)]
        patch: bool,
    },
    /// Delete a scheduler and all its rooms.
    Delete {
        /// The scheduler's name.
        name: String,
    },
    /// Make a recorded version the active one.
    SwitchVersion {
        /// The scheduler's name.
        name: String,
        /// The version to activate (e.g. `v1.0.0`).
        version: String,
    },
}

#[derive(clap::Subcommand)]
pub enum RoomsCommand {
    /// Add rooms to a scheduler (an `add_rooms` operation).
    Add {
        /// The scheduler's name.
        scheduler: String,
        /// How many rooms (at least 1).
        amount: u32,
    },
    /// Remove rooms (a `remove_rooms` operation; Maestro's order: unready and old first,
    /// occupied last).
    Remove {
        /// The scheduler's name.
        scheduler: String,
        /// How many rooms (at least 1).
        amount: u32,
    },
    /// List a scheduler's rooms with their status, version and last ping.
    List {
        /// The scheduler's name.
        scheduler: String,
        /// Only rooms in this status (ready, occupied, pending, …).
        #[arg(long)]
        status: Option<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum OperationCommand {
    /// List a scheduler's operations (pending, active and the latest final ones).
    List {
        /// The scheduler's name.
        scheduler: String,
        /// Only one stage: pending, active or final.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Show one operation with its execution history.
    Get {
        /// The scheduler's name.
        scheduler: String,
        /// The operation's id.
        id: String,
    },
    /// Cancel a pending or running operation.
    Cancel {
        /// The scheduler's name.
        scheduler: String,
        /// The operation's id.
        id: String,
    },
    /// Wait until an operation ends; exit 1 with its reason unless it finished.
    Wait {
        /// The scheduler's name.
        scheduler: String,
        /// The operation's id.
        id: String,
    },
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

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.args.server.trim_end_matches('/'));
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
            bail!(message);
        }
        Ok(answer)
    }

    /// Prints `answer` as asked; `table` renders the table form. A reader that went away
    /// (`maestro … | head -1`) ends the output quietly, as for any Unix tool.
    fn print(&self, answer: &Value, table: impl FnOnce(&Value) -> Table) -> Result<()> {
        let text = match self.args.output {
            Output::Json => format!("{}\n", serde_json::to_string_pretty(answer)?),
            Output::Yaml => serde_yaml_ng::to_string(answer)?,
            Output::Table => format!("{}\n", table(answer)),
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

/// A spec file: YAML or JSON (JSON is YAML, but JSON errors read better from the JSON parser).
fn read_document(file: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let is_json = file.extension().is_some_and(|e| e == "json");
    if is_json {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
    } else {
        serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not valid YAML", file.display()))
    }
}

fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
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

pub async fn scheduler(args: ClientArgs, command: SchedulerCommand) -> Result<()> {
    let client = Client::new(args)?;
    use reqwest::Method;
    match command {
        SchedulerCommand::Create { file } => {
            let answer = client
                .call(Method::POST, "/schedulers", Some(read_document(&file)?))
                .await?;
            if let Some(name) = answer["scheduler"]["name"].as_str() {
                client.follow_creation(name).await?;
            }
            client.print(&answer, |a| scheduler_table(&a["scheduler"]))
        }
        SchedulerCommand::Get { name, version } => {
            let path = format!(
                "/schedulers/{name}{}",
                query(&[("version", version.as_deref())])
            );
            let answer = client.call(Method::GET, &path, None).await?;
            client.print(&answer, |a| scheduler_table(&a["scheduler"]))
        }
        SchedulerCommand::List { game } => {
            let path = format!("/schedulers{}", query(&[("game", game.as_deref())]));
            let answer = client.call(Method::GET, &path, None).await?;
            client.print(&answer, |a| {
                table(
                    &["NAME", "GAME", "STATE", "VERSION", "REPLICAS"],
                    a["schedulers"].as_array().into_iter().flatten().map(|s| {
                        vec![
                            text(&s["name"]),
                            text(&s["game"]),
                            text(&s["state"]),
                            text(&s["version"]),
                            text(&s["roomsReplicas"]),
                        ]
                    }),
                )
            })
        }
        SchedulerCommand::Update { name, file, patch } => {
            let method = if patch { Method::PATCH } else { Method::POST };
            let answer = client
                .call(
                    method,
                    &format!("/schedulers/{name}"),
                    Some(read_document(&file)?),
                )
                .await?;
            client.print_operation(&name, &answer).await
        }
        SchedulerCommand::Delete { name } => {
            let answer = client
                .call(Method::DELETE, &format!("/schedulers/{name}"), None)
                .await?;
            client.print_operation(&name, &answer).await
        }
        SchedulerCommand::SwitchVersion { name, version } => {
            let answer = client
                .call(
                    Method::PUT,
                    &format!("/schedulers/{name}"),
                    Some(json!({ "version": version })),
                )
                .await?;
            client.print_operation(&name, &answer).await
        }
    }
}

fn scheduler_table(s: &Value) -> Table {
    table(
        &["NAME", "GAME", "STATE", "VERSION", "REPLICAS", "MAX SURGE"],
        [vec![
            text(&s["name"]),
            text(&s["game"]),
            text(&s["state"]),
            text(&s["spec"]["version"]),
            text(&s["roomsReplicas"]),
            text(&s["maxSurge"]),
        ]],
    )
}

pub async fn rooms(args: ClientArgs, command: RoomsCommand) -> Result<()> {
    let client = Client::new(args)?;
    use reqwest::Method;
    match command {
        RoomsCommand::Add { scheduler, amount } | RoomsCommand::Remove { scheduler, amount }
            if amount == 0 =>
        {
            bail!("amount must be at least 1 (scheduler {scheduler})")
        }
        RoomsCommand::Add { scheduler, amount } => {
            let path = format!("/schedulers/{scheduler}/add-rooms");
            let answer = client
                .call(Method::POST, &path, Some(json!({ "amount": amount })))
                .await?;
            client.print_operation(&scheduler, &answer).await
        }
        RoomsCommand::Remove { scheduler, amount } => {
            let path = format!("/schedulers/{scheduler}/remove-rooms");
            let answer = client
                .call(Method::POST, &path, Some(json!({ "amount": amount })))
                .await?;
            client.print_operation(&scheduler, &answer).await
        }
        RoomsCommand::List { scheduler, status } => {
            let path = format!(
                "/schedulers/{scheduler}/rooms{}",
                query(&[("status", status.as_deref())])
            );
            let answer = client.call(Method::GET, &path, None).await?;
            client.print(&answer, |a| {
                table(
                    &["ROOM", "STATUS", "VERSION", "LAST PING"],
                    a["rooms"].as_array().into_iter().flatten().map(|r| {
                        vec![
                            text(&r["id"]),
                            text(&r["status"]),
                            text(&r["version"]),
                            text(&r["lastPingAt"]),
                        ]
                    }),
                )
            })
        }
    }
}

pub async fn operation(args: ClientArgs, command: OperationCommand) -> Result<()> {
    let client = Client::new(args)?;
    use reqwest::Method;
    match command {
        OperationCommand::List { scheduler, stage } => {
            // Maestro lists one stage at a time; without --stage: pending, active, finished.
            let stages = match stage.as_deref() {
                Some(stage) => vec![stage],
                None => vec!["pending", "active", "final"],
            };
            let mut operations = Vec::new();
            for stage in stages {
                let path = format!(
                    "/schedulers/{scheduler}/operations{}",
                    query(&[("stage", Some(stage))])
                );
                let page = client.call(Method::GET, &path, None).await?;
                if let Value::Array(ops) = &page["operations"] {
                    operations.extend(ops.iter().cloned());
                }
            }
            let answer = serde_json::json!({ "operations": operations });
            client.print(&answer, |a| {
                table(
                    &["OPERATION", "KIND", "STATUS", "CREATED"],
                    a["operations"].as_array().into_iter().flatten().map(|o| {
                        vec![
                            text(&o["id"]),
                            text(&o["definitionName"]),
                            text(&o["status"]),
                            text(&o["createdAt"]),
                        ]
                    }),
                )
            })
        }
        OperationCommand::Get { scheduler, id } => {
            let path = format!("/schedulers/{scheduler}/operations/{id}");
            let answer = client.call(Method::GET, &path, None).await?;
            client.print(&answer, |a| {
                let o = &a["operation"];
                let mut t = table(
                    &["OPERATION", "KIND", "STATUS", "ERROR"],
                    [vec![
                        text(&o["id"]),
                        text(&o["definitionName"]),
                        text(&o["status"]),
                        text(&o["error"]),
                    ]],
                );
                for entry in o["executionHistory"].as_array().into_iter().flatten() {
                    t.add_row(vec![
                        String::new(),
                        text(&entry["createdAt"]),
                        text(&entry["event"]),
                        String::new(),
                    ]);
                }
                t
            })
        }
        OperationCommand::Wait { scheduler, id } => {
            let done = client.wait_for(&scheduler, &id).await?;
            client.print(&done, final_operation_table)
        }
        OperationCommand::Cancel { scheduler, id } => {
            let path = format!("/schedulers/{scheduler}/operations/{id}/cancel");
            let answer = client.call(Method::POST, &path, Some(json!({}))).await?;
            client.print(&answer, |_| {
                table(
                    &["OPERATION", "CANCEL"],
                    [vec![id.clone(), "requested".into()]],
                )
            })
        }
    }
}
