//! The README's "Try it" section, run as written: every `sh` block, top to bottom, in bash
//! with `set -euo pipefail`, against `maestro dev` (sample scheduler included, no tokens, as
//! `./scripts/dev` runs it). curl fails on any HTTP error answer, so a block that only prints
//! a refusal fails too. What differs from a person's terminal, and only that: the ports (free
//! ones instead of 8080/8070/7233), the directory the binaries are in, and a scratch working
//! directory holding `examples/` (so `my-game.yaml` is not written into the repository). A
//! block preceded by `<!-- readme: not run (why) -->` is skipped.

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use common::Maestro;
use maestro_testkit::{TemporalDevServer, temp_dir, temporal_bin, workspace_root};

const SECTION: &str = "## Try it";
const SKIP: &str = "<!-- readme: not run";

/// One `sh` block of the section, with the line it starts on (for failure messages).
struct Block {
    line: usize,
    script: String,
}

/// The section's `sh` blocks, skipped ones left out.
fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let (mut in_section, mut current, mut skip_next) = (false, None::<Block>, false);
    for (n, line) in readme.lines().enumerate() {
        if let Some(block) = current.as_mut() {
            if line == "```" {
                blocks.extend(current.take());
            } else {
                block.script.push_str(line);
                block.script.push('\n');
            }
            continue;
        }
        if line.starts_with("## ") {
            in_section = line == SECTION;
        } else if in_section && line.starts_with(SKIP) {
            skip_next = true;
        } else if in_section && line.starts_with("```") {
            if line == "```sh" && !skip_next {
                current = Some(Block {
                    line: n + 1,
                    script: String::new(),
                });
            }
            skip_next = false;
        }
    }
    blocks
}

fn dir_of(binary: &Path) -> String {
    binary
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_block_of_the_readme_runs_as_written() -> Result<()> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let blocks = blocks(&readme);
    let all: String = blocks.iter().map(|b| b.script.as_str()).collect();
    // The tour must keep covering what it covers today, or this test would pass on nothing.
    for needed in [
        "rooms/allocate",
        "examples/my-game.json",
        "examples/patch.yaml",
        "maestro rooms allocate",
        "maestro operation wait",
        "temporal workflow list",
        "temporal workflow query",
        "-XDELETE",
    ] {
        assert!(all.contains(needed), "no README block runs {needed:?}");
    }

    let temporal = TemporalDevServer::start().await?;
    let maestro =
        Maestro::start_with(&temporal, &["--insecure-no-auth", "--sample-rooms", "3"]).await?;
    // "Once ./scripts/dev has printed its URLs and the sample's rooms are ready."
    maestro.wait_ready("sample", 3).await?;

    let work = temp_dir("readme");
    std::os::unix::fs::symlink(workspace_root().join("examples"), work.join("examples"))?;
    let maestro_dir = dir_of(Path::new(env!("CARGO_BIN_EXE_maestro")));
    let temporal_dir = dir_of(&temporal_bin());
    let path = format!(
        "{maestro_dir}:{temporal_dir}:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let substitutions = [
        ("localhost:8080", maestro.api.trim_start_matches("http://")),
        (
            "localhost:8070",
            maestro.rooms_api.trim_start_matches("http://"),
        ),
        ("$HOME/.cache/maestro-target/debug", maestro_dir.as_str()),
        ("$PWD/.tools/temporal-bin/bin", temporal_dir.as_str()),
    ];
    for block in &blocks {
        let mut script = block.script.clone();
        for (from, to) in substitutions {
            script = script.replace(from, to);
        }
        let prelude = "set -euo pipefail\n\
                       curl() { command curl --fail-with-body --show-error \"$@\"; }\n";
        let out = run_bash(
            &format!("{prelude}{script}"),
            &work,
            &path,
            &maestro,
            &temporal,
        )?;
        assert!(
            out.status.success(),
            "README block at line {} failed ({}):\n{}\n--- stdout\n{}\n--- stderr\n{}\n--- maestro's last log lines\n{}",
            block.line,
            out.status,
            block.script,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            last_lines(&maestro.log_text(), 40)
        );
    }
    // The last block deleted both schedulers: nothing of the tour is left behind.
    let (status, _) = maestro.get("/schedulers/my-game").await?;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    Ok(())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs one block in bash, bounded by coreutils' `timeout`: a block that hangs fails the
/// test instead of the CI job.
fn run_bash(
    script: &str,
    dir: &Path,
    path: &str,
    maestro: &Maestro,
    temporal: &TemporalDevServer,
) -> Result<std::process::Output> {
    Command::new("timeout")
        .args(["300", "bash", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("MAESTRO_SERVER", &maestro.api)
        .env("MAESTRO_ROOMS_SERVER", &maestro.rooms_api)
        .env("TEMPORAL_ADDRESS", temporal.address())
        .env_remove("MAESTRO_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .context("run bash")
}
