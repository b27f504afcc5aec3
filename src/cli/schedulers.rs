//! `maestro scheduler …`: create, get, list, versions, update, delete, switch-version.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

use super::{Client, ClientArgs, query, read_document, table, text, when};

#[derive(clap::Subcommand)]
pub enum SchedulerCommand {
    /// Create a scheduler from a YAML or JSON file (`--wait`: until its namespace is ready).
    Create {
        /// The scheduler document (Maestro's fields), `.yaml`, `.yml` or `.json`; what
        /// `maestro scheduler get NAME -o yaml` prints is one too.
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
    /// A scheduler's recorded versions, newest first, and which one is active.
    Versions {
        /// The scheduler's name.
        name: String,
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

pub async fn scheduler(args: ClientArgs, command: SchedulerCommand) -> Result<()> {
    let client = Client::new(args)?;
    use reqwest::Method;
    match command {
        SchedulerCommand::Create { file } => {
            let answer = client
                .mutate(Method::POST, "/schedulers", Some(read_document(&file)?))
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
        SchedulerCommand::Versions { name } => {
            let answer = client
                .call(Method::GET, &format!("/schedulers/{name}/versions"), None)
                .await?;
            client.print(&answer, |a| {
                table(
                    &["VERSION", "ACTIVE", "CREATED", "FAILED"],
                    a["versions"].as_array().into_iter().flatten().map(|v| {
                        vec![
                            text(&v["version"]),
                            if v["isActive"] == true { "yes" } else { "" }.into(),
                            when(&v["createdAt"]),
                            text(&v["failed"]),
                        ]
                    }),
                )
            })
        }
        SchedulerCommand::Update { name, file, patch } => {
            let method = if patch { Method::PATCH } else { Method::POST };
            let answer = client
                .mutate(
                    method,
                    &format!("/schedulers/{name}"),
                    Some(read_document(&file)?),
                )
                .await?;
            client.print_operation(&name, &answer).await
        }
        SchedulerCommand::Delete { name } => {
            let answer = client
                .mutate(Method::DELETE, &format!("/schedulers/{name}"), None)
                .await?;
            match client.print_operation(&name, &answer).await {
                // The delete finished and took the scheduler, its operations with it.
                Err(e) if client.args.wait && super::is_not_found(&e) => {
                    let gone = json!({ "operationId": answer["operationId"], "scheduler": name, "status": "deleted" });
                    client.print(&gone, |_| {
                        table(
                            &["SCHEDULER", "STATUS"],
                            [vec![name.clone(), "deleted".into()]],
                        )
                    })
                }
                other => other,
            }
        }
        SchedulerCommand::SwitchVersion { name, version } => {
            let answer = client
                .mutate(
                    Method::PUT,
                    &format!("/schedulers/{name}"),
                    Some(json!({ "version": version })),
                )
                .await?;
            client.print_operation(&name, &answer).await
        }
    }
}

fn scheduler_table(s: &Value) -> comfy_table::Table {
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
