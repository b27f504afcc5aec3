//! `maestro operation …`: list (paged), get (a describe view), cancel, wait.

use anyhow::Result;
use serde_json::{Value, json};

use super::{Client, ClientArgs, describe, query, table, text, when};

#[derive(clap::Subcommand)]
pub enum OperationCommand {
    /// List a scheduler's operations (pending, active and the latest final ones).
    List {
        /// The scheduler's name.
        scheduler: String,
        /// Only one stage: pending, active or final.
        #[arg(long)]
        stage: Option<String>,
        /// Which page of the final operations, newest first (Maestro pages only those).
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Final operations per page (1 to 100).
        #[arg(long, default_value_t = 15)]
        per_page: u32,
    },
    /// Show one operation: its kind, status, input, reason and execution history.
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

pub async fn operation(args: ClientArgs, command: OperationCommand) -> Result<()> {
    let client = Client::new(args)?;
    use reqwest::Method;
    match command {
        OperationCommand::List {
            scheduler,
            stage,
            page,
            per_page,
        } => {
            // Maestro lists one stage at a time; without --stage: pending, active, final.
            let stages = match stage.as_deref() {
                Some(stage) => vec![stage],
                None => vec!["pending", "active", "final"],
            };
            let mut operations = Vec::new();
            let mut paging = Value::Null;
            let (page, per_page) = (page.to_string(), per_page.to_string());
            for stage in stages {
                let paged = stage == "final";
                let path = format!(
                    "/schedulers/{scheduler}/operations{}",
                    query(&[
                        ("stage", Some(stage)),
                        ("page", paged.then_some(page.as_str())),
                        ("perPage", paged.then_some(per_page.as_str())),
                    ])
                );
                let mut answer = client.call(Method::GET, &path, None).await?;
                if let Value::Array(ops) = answer["operations"].take() {
                    operations.extend(ops);
                }
                if paged {
                    paging = json!({
                        "page": answer["page"],
                        "pageSize": answer["pageSize"],
                        "total": answer["total"],
                    });
                }
            }
            let answer = json!({ "operations": operations, "final": paging });
            client.print(&answer, |a| {
                table(
                    &["OPERATION", "KIND", "STATUS", "CREATED"],
                    a["operations"].as_array().into_iter().flatten().map(|o| {
                        vec![
                            text(&o["id"]),
                            text(&o["definitionName"]),
                            text(&o["status"]),
                            when(&o["createdAt"]),
                        ]
                    }),
                )
            })?;
            if client.args.output == super::Output::Table {
                more_pages_hint(&scheduler, &answer["final"]);
            }
            Ok(())
        }
        OperationCommand::Get { scheduler, id } => {
            let path = format!("/schedulers/{scheduler}/operations/{id}");
            let answer = client.call(Method::GET, &path, None).await?;
            client.print(&answer, |a| describe_operation(&a["operation"]))
        }
        OperationCommand::Wait { scheduler, id } => {
            let done = client.wait_for(&scheduler, &id).await?;
            client.print(&done, super::final_operation_table)
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

/// On stderr, so that the table alone goes down a pipe: where the next page of final
/// operations is, when there is one.
fn more_pages_hint(scheduler: &str, paging: &Value) {
    let (Some(page), Some(size), Some(total)) = (
        paging["page"].as_u64(),
        paging["pageSize"].as_u64(),
        paging["total"].as_u64(),
    ) else {
        return;
    };
    if page.saturating_mul(size) < total {
        eprintln!(
            "final operations {}–{} of {total}: `maestro operation list {scheduler} --stage final --page {}` for more",
            (page - 1) * size + 1,
            page * size,
            page + 1
        );
    }
}

/// `operation get`: one field per line, then the execution history, within 100 columns.
fn describe_operation(o: &Value) -> comfy_table::Table {
    let mut rows = vec![
        ("Operation", text(&o["id"])),
        ("Scheduler", text(&o["schedulerName"])),
        ("Kind", text(&o["definitionName"])),
        ("Status", text(&o["status"])),
        ("Created", when(&o["createdAt"])),
    ];
    for (label, field) in [("Started", "startedAt"), ("Finished", "finishedAt")] {
        if !o[field].is_null() {
            rows.push((label, when(&o[field])));
        }
    }
    if !o["input"].is_null() {
        rows.push(("Input", o["input"].to_string()));
    }
    if !o["error"].is_null() {
        rows.push(("Error", text(&o["error"])));
    }
    let history = o["executionHistory"].as_array().into_iter().flatten();
    let mut table = describe(rows.into_iter().map(|(k, v)| (k.to_string(), v)));
    let mut first = true;
    for entry in history {
        let label = if first { "History:" } else { "" };
        first = false;
        table.add_row(vec![
            label.to_string(),
            format!("{}  {}", when(&entry["createdAt"]), text(&entry["event"])),
        ]);
    }
    table
}
