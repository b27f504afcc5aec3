//! `--wait` and `maestro operation wait`: follow an operation to its end, showing its latest
//! step on a terminal, and fail (exit 1, with the operation's reason) unless it finished.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::Client;

/// How often a waiting client asks again.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// A spinner on stderr when it is a terminal; nothing otherwise (logs, CI).
fn spinner(what: &str) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The operation's last recorded step, for the spinner.
fn latest_step(operation: &Value) -> String {
    operation["executionHistory"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|e| e["event"].as_str())
        .unwrap_or_default()
        .to_string()
}

impl Client {
    /// Waits until operation `id` of `scheduler` is final; its detail, or an error with the
    /// operation's reason when it did not finish (error, canceled, evicted).
    pub(super) async fn wait_for(&self, scheduler: &str, id: &str) -> Result<Value> {
        let path = format!("/schedulers/{scheduler}/operations/{id}");
        let bar = spinner(&format!("operation {id}"));
        let deadline = Instant::now() + self.args.wait_timeout;
        loop {
            let answer = self.call(reqwest::Method::GET, &path, None).await?;
            let operation = &answer["operation"];
            let status = operation["status"].as_str().unwrap_or_default();
            bar.set_message(format!("{status}: {}", latest_step(operation)));
            match status {
                "finished" => {
                    bar.finish_and_clear();
                    return Ok(answer);
                }
                "error" | "canceled" | "evicted" => {
                    bar.finish_and_clear();
                    let reason = operation["error"].as_str().unwrap_or("no reason recorded");
                    let kind = operation["definitionName"].as_str().unwrap_or("operation");
                    bail!("{kind} {id} of scheduler {scheduler} ended {status}: {reason}");
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                bar.finish_and_clear();
                bail!(
                    "operation {id} of scheduler {scheduler} is still {status} after {} \
                     (--wait-timeout); it goes on: `maestro operation wait {scheduler} {id}`",
                    humantime::format_duration(self.args.wait_timeout)
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Follows the operation an answer (`{operationId}`) names (`--wait`).
    pub(super) async fn follow(&self, scheduler: &str, accepted: &Value) -> Result<Value> {
        let Some(id) = accepted["operationId"].as_str() else {
            return Ok(accepted.clone());
        };
        self.wait_for(scheduler, id).await
    }

    /// With `--wait`, follows a new scheduler's `create_scheduler` operation (#1, whose id the
    /// create answer does not carry).
    pub(super) async fn follow_creation(&self, scheduler: &str) -> Result<()> {
        if !self.args.wait {
            return Ok(());
        }
        let deadline = Instant::now() + self.args.wait_timeout;
        loop {
            for stage in ["final", "active", "pending"] {
                let path = format!("/schedulers/{scheduler}/operations?stage={stage}");
                let page = self.call(reqwest::Method::GET, &path, None).await?;
                let first = page["operations"].as_array().and_then(|ops| {
                    ops.iter()
                        .find(|o| o["definitionName"] == "create_scheduler")
                        .and_then(|o| o["id"].as_str())
                        .map(str::to_string)
                });
                if let Some(id) = first {
                    self.wait_for(scheduler, &id).await?;
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("scheduler {scheduler} shows no create_scheduler operation yet");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
