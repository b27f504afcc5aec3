//! `maestro rooms …`: add, remove, list, and allocate (the matchmaker's call, on the rooms API).

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{Client, ClientArgs, query, table, text, when};

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
    /// Hand a ready room to a match, as a matchmaker does (the rooms API, `--rooms-server`):
    /// the room shows `allocated` until it reports occupied, or for 5 minutes.
    Allocate {
        /// The scheduler's name.
        scheduler: String,
        /// Only a room whose pings reported this metadata (`KEY=VALUE`, repeatable).
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = key_value)]
        selector: Vec<(String, String)>,
    },
}

fn key_value(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{pair:?} is not KEY=VALUE")),
    }
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
                .mutate(Method::POST, &path, Some(json!({ "amount": amount })))
                .await?;
            client.print_operation(&scheduler, &answer).await
        }
        RoomsCommand::Remove { scheduler, amount } => {
            let path = format!("/schedulers/{scheduler}/remove-rooms");
            let answer = client
                .mutate(Method::POST, &path, Some(json!({ "amount": amount })))
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
                            when(&r["lastPingAt"]),
                        ]
                    }),
                )
            })
        }
        RoomsCommand::Allocate {
            scheduler,
            selector,
        } => {
            let selector: serde_json::Map<String, Value> = selector
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let body = if selector.is_empty() {
                json!({})
            } else {
                json!({ "metadataSelector": selector })
            };
            let path = format!("/scheduler/{scheduler}/rooms/allocate");
            let server = client.args.rooms_server.clone();
            let answer = client
                .call_at(&server, Method::POST, &path, Some(body))
                .await?;
            if answer["success"] == false {
                bail!(
                    "no room allocated from {scheduler}: {}",
                    answer["message"].as_str().unwrap_or("no reason given")
                );
            }
            client.print(&answer, |a| {
                let ports = a["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{}:{}/{}",
                            text(&p["name"]),
                            text(&p["port"]),
                            text(&p["protocol"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                table(
                    &["ROOM", "HOST", "PORTS"],
                    [vec![text(&a["roomId"]), text(&a["host"]), ports]],
                )
            })
        }
    }
}
