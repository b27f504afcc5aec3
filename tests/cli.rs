//! The `maestro` command-line client through the real binary, against `maestro dev`: specs
//! from YAML and JSON files, tables by default, `-o json|yaml`, errors with the bad fields
//! and a non-zero exit.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Result;
use common::{API_TOKEN, Maestro};
use maestro_testkit::{TemporalDevServer, eventually, temp_dir};
use serde_json::Value;

fn maestro_cli(maestro: &Maestro, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_maestro"));
    command.args(args).env("MAESTRO_SERVER", &maestro.api);
    match token {
        Some(token) => command.env("MAESTRO_TOKEN", token),
        None => command.env_remove("MAESTRO_TOKEN"),
    };
    command.output().expect("run the maestro binary")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_management_api() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    let dir = temp_dir("cli");
    let spec = dir.join("scheduler.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: cli-sched\ngame: cli-game\nmaxSurge: \"1\"\nroomsReplicas: 2\n\
             portRange: {{start: 47100, end: 47199}}\n\
             spec:\n  terminationGracePeriod: 5s\n  containers:\n  - name: room\n    image: local\n    \
             imagePullPolicy: IfNotPresent\n    requests: {{cpu: 10m, memory: 32Mi}}\n    \
             limits: {{cpu: 500m, memory: 256Mi}}\n    command: [\"{}\", \"--ping-interval\", \"1s\"]\n",
            env!("CARGO_BIN_EXE_game-room")
        ),
    )?;
    let cli = |args: &[&str]| maestro_cli(&maestro, Some(API_TOKEN), args);

    let created = ok(&cli(&["scheduler", "create", spec.to_str().unwrap()]));
    assert!(
        created.contains("cli-sched") && created.contains("NAME"),
        "{created}"
    );
    let got = json_of(&cli(&["scheduler", "get", "cli-sched", "-o", "json"]));
    assert_eq!(got["scheduler"]["spec"]["version"], "v1.0.0");
    let listed = ok(&cli(&["scheduler", "list", "--game", "cli-game"]));
    assert!(listed.contains("cli-sched"), "{listed}");

    let added = json_of(&cli(&["rooms", "add", "cli-sched", "2", "-o", "json"]));
    let add_id = added["operationId"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(60), "2 ready rooms", || async {
        let out = cli(&[
            "rooms",
            "list",
            "cli-sched",
            "--status",
            "ready",
            "-o",
            "yaml",
        ]);
        let rooms: Value = serde_yaml_ng::from_slice(&out.stdout).ok()?;
        (rooms["rooms"].as_array()?.len() == 2).then_some(())
    })
    .await?;
    let table = ok(&cli(&["rooms", "list", "cli-sched"]));
    assert!(
        table.contains("ready") && table.contains("v1.0.0"),
        "{table}"
    );
    let ops = ok(&cli(&[
        "operation",
        "list",
        "cli-sched",
        "--stage",
        "final",
    ]));
    assert!(ops.contains("add_rooms") && ops.contains(&add_id), "{ops}");
    let op = json_of(&cli(&[
        "operation",
        "get",
        "cli-sched",
        &add_id,
        "-o",
        "json",
    ]));
    assert_eq!(op["operation"]["status"], "finished");

    // A new version from a JSON patch file, then back to v1.0.
    let patch = dir.join("patch.json");
    std::fs::write(&patch, r#"{"roomsReplicas": 3}"#)?;
    let updated = json_of(&cli(&[
        "scheduler",
        "update",
        "cli-sched",
        patch.to_str().unwrap(),
        "--patch",
        "-o",
        "json",
    ]));
    assert!(updated["operationId"].is_string());
    eventually(Duration::from_secs(30), "v1.1 active", || async {
        let got = json_of(&cli(&["scheduler", "get", "cli-sched", "-o", "json"]));
        (got["scheduler"]["spec"]["version"] == "v1.1.0").then_some(())
    })
    .await?;
    ok(&cli(&[
        "scheduler",
        "switch-version",
        "cli-sched",
        "v1.0.0",
    ]));
    eventually(Duration::from_secs(30), "v1.0 active again", || async {
        let got = json_of(&cli(&["scheduler", "get", "cli-sched", "-o", "json"]));
        (got["scheduler"]["spec"]["version"] == "v1.0.0").then_some(())
    })
    .await?;

    // Errors: a non-zero exit and the API's reason, with the bad fields.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: cli-bad\ngame: \"\"\nmaxSurge: lots\nspec: {terminationGracePeriod: 5s, containers: []}\n",
    )?;
    let refused = cli(&["scheduler", "create", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("maxSurge") && stderr.contains("game"),
        "{stderr}"
    );
    let final_cancel = cli(&["operation", "cancel", "cli-sched", &add_id]);
    assert!(!final_cancel.status.success());
    // FailedPrecondition: 400 as grpc-gateway answers it.
    assert!(String::from_utf8_lossy(&final_cancel.stderr).contains("400"));
    let anonymous = maestro_cli(&maestro, None, &["scheduler", "list"]);
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("401"));

    let deleted = ok(&cli(&["scheduler", "delete", "cli-sched"]));
    assert!(deleted.contains("OPERATION"), "{deleted}");
    eventually(Duration::from_secs(60), "the scheduler gone", || async {
        let out = cli(&["scheduler", "get", "cli-sched"]);
        (!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("404"))
            .then_some(())
    })
    .await?;
    Ok(())
}

/// `maestro dev` with neither tokens nor `--insecure-no-auth` refuses to start (before it
/// touches Temporal or a port), naming both ways out.
#[test]
fn maestro_dev_refuses_an_open_management_api_unless_asked() {
    let out = Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["dev", "--data-dir"])
        .arg(temp_dir("no-auth"))
        .env_remove("MAESTRO_API_TOKENS")
        .env_remove("MAESTRO_INSECURE_NO_AUTH")
        .output()
        .expect("run the maestro binary");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--api-tokens") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
}

/// A bad duration flag is refused naming the value and the format, not a byte offset.
#[test]
fn a_bad_duration_flag_says_what_a_duration_looks_like() {
    let out = Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args([
            "operation",
            "wait",
            "sample",
            "some-id",
            "--wait-timeout",
            "soon",
        ])
        .output()
        .expect("run the maestro binary");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"soon\" is not a duration") && stderr.contains("\"100s\""),
        "{stderr}"
    );
    assert!(!stderr.contains(" at 0"), "{stderr}");
}

/// `--wait` follows an operation to its end (exit 0 when it finished, 1 with its reason when
/// not), errors print once without a backtrace even with `RUST_BACKTRACE=1`, a closed pipe
/// ends the output quietly, and shell completion is generated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_waits_for_operations_and_fails_as_they_fail() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    let dir = temp_dir("cli-wait");
    // The room's program, a copy that the test removes to make the next add_rooms fail.
    let program = dir.join("room-program");
    std::fs::copy(env!("CARGO_BIN_EXE_game-room"), &program)?;
    let spec = dir.join("waiting.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: cli-wait\ngame: cli-game\nmaxSurge: \"1\"\nroomsReplicas: 0\n\
             portRange: {{start: 47300, end: 47399}}\n\
             spec:\n  terminationGracePeriod: 5s\n  containers:\n  - name: room\n    image: local\n    \
             imagePullPolicy: IfNotPresent\n    requests: {{cpu: 10m, memory: 32Mi}}\n    \
             limits: {{cpu: 500m, memory: 256Mi}}\n    command: [\"{}\"]\n",
            program.display()
        ),
    )?;
    let cli = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_maestro"));
        command
            .args(args)
            .env("MAESTRO_SERVER", &maestro.api)
            .env("MAESTRO_TOKEN", API_TOKEN)
            .env("RUST_BACKTRACE", "1");
        command.output().expect("run the maestro binary")
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    ok(&cli(&[
        "scheduler",
        "create",
        spec.to_str().unwrap(),
        "--wait",
    ]));
    let added = ok(&cli(&["rooms", "add", "cli-wait", "1", "--wait"]));
    assert!(
        added.contains("add_rooms") && added.contains("finished"),
        "{added}"
    );

    std::fs::remove_file(&program)?;
    let failed = cli(&["rooms", "add", "cli-wait", "1", "--wait"]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let said = stderr(&failed);
    assert!(said.starts_with("error: add_rooms "), "{said}");
    assert!(said.contains("ended error:"), "{said}");
    assert!(!said.contains("backtrace"), "{said}");

    // An API refusal: one line, no backtrace.
    let missing = cli(&["scheduler", "get", "no-such-scheduler"]);
    assert_eq!(missing.status.code(), Some(1));
    let said = stderr(&missing);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("404"), "{said}");

    // The reader goes away before the answer is written: no panic, success.
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' operation list cli-wait 2>'{}' | true; exit ${{PIPESTATUS[0]}}",
            env!("CARGO_BIN_EXE_maestro"),
            dir.join("pipe.err").display()
        ))
        .env("MAESTRO_SERVER", &maestro.api)
        .env("MAESTRO_TOKEN", API_TOKEN)
        .output()?;
    let piped_err = std::fs::read_to_string(dir.join("pipe.err"))?;
    assert!(piped.status.success(), "{piped_err}");
    assert!(!piped_err.contains("panicked"), "{piped_err}");

    let completion = ok(&cli(&["completions", "bash"]));
    assert!(completion.contains("_maestro") && completion.contains("switch-version"));
    Ok(())
}

/// Every line of a table answer fits 100 columns.
fn assert_fits(output: &str) {
    for line in output.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.chars().count()
        );
    }
}

/// The verbs an operator reaches for next: versions, allocate (on the rooms API),
/// `--dry-run` (the plan, nothing changes), paging of final operations, `-o id` for
/// scripts, `get -o yaml` fed back to `update`, and a describe view of an operation that
/// fits 100 columns; plus a run in a real terminal (a pty from util-linux's `script`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_versions_plans_pages_and_allocates() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    let dir = temp_dir("cli-verbs");
    let spec = dir.join("verbs.json");
    let mut document: Value = serde_json::from_str(&std::fs::read_to_string(
        maestro_testkit::workspace_root().join("examples/my-game.json"),
    )?)?;
    document["name"] = "cli-verbs".into();
    document["roomsReplicas"] = 0.into();
    document["portRange"] = serde_json::json!({"start": 47500, "end": 47599});
    document["spec"]["containers"][0]["command"][0] = env!("CARGO_BIN_EXE_game-room").into();
    std::fs::write(&spec, document.to_string())?;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_maestro"))
            .args(args)
            .env("MAESTRO_SERVER", &maestro.api)
            .env("MAESTRO_ROOMS_SERVER", &maestro.rooms_api)
            .env("MAESTRO_TOKEN", API_TOKEN)
            .output()
            .expect("run the maestro binary")
    };
    let spec_arg = spec.to_str().unwrap();

    // A dry run plans and creates nothing.
    let plan = ok(&cli(&["scheduler", "create", spec_arg, "--dry-run"]));
    assert!(plan.contains("create_scheduler"), "{plan}");
    let absent = cli(&["scheduler", "get", "cli-verbs"]);
    assert!(String::from_utf8_lossy(&absent.stderr).contains("404"));
    ok(&cli(&["scheduler", "create", spec_arg, "--wait"]));

    // -o id, then the operation's describe view.
    let id = ok(&cli(&["rooms", "add", "cli-verbs", "2", "-o", "id"]));
    let id = id.trim();
    assert_eq!(id.lines().count(), 1, "{id}");
    ok(&cli(&["operation", "wait", "cli-verbs", id]));
    let described = ok(&cli(&["operation", "get", "cli-verbs", id]));
    for label in ["Operation:", "Kind:", "Status:", "Input:", "History:"] {
        assert!(described.contains(label), "{label} in {described}");
    }
    assert!(described.contains(r#"{"amount":2}"#), "{described}");
    assert_fits(&described);

    // Allocate, as a matchmaker: a room with the metadata its pings report, or a refusal.
    maestro.wait_ready("cli-verbs", 2).await?;
    let allocated = json_of(&cli(&[
        "rooms",
        "allocate",
        "cli-verbs",
        "--selector",
        "region=eu",
        "-o",
        "json",
    ]));
    let room = allocated["roomId"].as_str().unwrap();
    assert!(room.starts_with("cli-verbs-"), "{allocated}");
    assert_eq!(maestro.rooms("cli-verbs", "allocated").await?, 1);
    let elsewhere = cli(&["rooms", "allocate", "cli-verbs", "--selector", "region=us"]);
    assert_eq!(elsewhere.status.code(), Some(1));
    let bad_selector = cli(&["rooms", "allocate", "cli-verbs", "--selector", "eu"]);
    assert_eq!(bad_selector.status.code(), Some(2));

    // get -o yaml, edited and fed back: a major version (the spec changed), planned first.
    let saved = dir.join("saved.yaml");
    let yaml = ok(&cli(&["scheduler", "get", "cli-verbs", "-o", "yaml"]));
    std::fs::write(
        &saved,
        yaml.replace("terminationGracePeriod: 10s", "terminationGracePeriod: 7s"),
    )?;
    let saved_arg = saved.to_str().unwrap();
    let plan = json_of(&cli(&[
        "scheduler",
        "update",
        "cli-verbs",
        saved_arg,
        "--dry-run",
        "-o",
        "json",
    ]));
    assert_eq!(plan["plan"]["changeKind"], "major", "{plan}");
    assert_eq!(plan["plan"]["version"], "v2.0.0", "{plan}");
    ok(&cli(&[
        "scheduler",
        "update",
        "cli-verbs",
        saved_arg,
        "--wait",
    ]));
    eventually(Duration::from_secs(60), "v2.0.0 active", || async {
        let versions = json_of(&cli(&["scheduler", "versions", "cli-verbs", "-o", "json"]));
        let active = versions["versions"]
            .as_array()?
            .iter()
            .find(|v| v["isActive"] == true)?;
        (active["version"] == "v2.0.0").then_some(())
    })
    .await?;
    let versions = ok(&cli(&["scheduler", "versions", "cli-verbs"]));
    assert!(
        versions.contains("v1.0.0") && versions.contains("v2.0.0") && versions.contains("yes"),
        "{versions}"
    );

    // Paging: more final operations than a page holds; the hint names the next page.
    for _ in 0..3 {
        let id = ok(&cli(&["rooms", "remove", "cli-verbs", "1", "-o", "id"]));
        ok(&cli(&["operation", "wait", "cli-verbs", id.trim()]));
    }
    let final_page = |page: &str| {
        ok(&cli(&[
            "operation",
            "list",
            "cli-verbs",
            "--stage",
            "final",
            "--per-page",
            "2",
            "--page",
            page,
            "-o",
            "id",
        ]))
    };
    let (first, second) = (final_page("1"), final_page("2"));
    assert_eq!(first.lines().count(), 2, "{first}");
    assert_eq!(second.lines().count(), 2, "{second}");
    assert!(
        first.lines().all(|id| !second.contains(id)),
        "{first} / {second}"
    );
    let table = cli(&[
        "operation",
        "list",
        "cli-verbs",
        "--stage",
        "final",
        "--per-page",
        "2",
    ]);
    assert!(
        String::from_utf8_lossy(&table.stderr).contains("--page 2"),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let listed = ok(&cli(&["operation", "list", "cli-verbs"]));
    assert!(listed.contains("create_new_scheduler_version"), "{listed}");
    assert_fits(&listed);

    // In a terminal (a pty, 100 columns): --wait ends with the final table, every line fits.
    let typed = format!(
        "stty cols 100; '{}' rooms add cli-verbs 1 --wait",
        env!("CARGO_BIN_EXE_maestro")
    );
    let terminal = Command::new("script")
        .args(["-qec", &typed, "/dev/null"])
        .env("MAESTRO_SERVER", &maestro.api)
        .env("MAESTRO_TOKEN", API_TOKEN)
        .output()?;
    let shown = String::from_utf8_lossy(&terminal.stdout);
    assert!(terminal.status.success(), "{shown}");
    assert!(
        shown.contains("add_rooms") && shown.contains("finished"),
        "{shown}"
    );
    assert!(!shown.contains("panicked"), "{shown}");
    for line in shown.split(['\n', '\r']) {
        let visible = console::strip_ansi_codes(line);
        assert!(visible.chars().count() <= 100, "{visible}");
    }
    Ok(())
}

/// Maestro's APIs answer before its startup has finished. A SIGTERM in that window (a
/// rollout, or a test done with it) must still stop it gracefully: before the handler was
/// installed first thing, the default action killed it (a fresh-clone CI run failed on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_as_soon_as_maestro_answers_stops_it_cleanly() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    for _ in 0..3 {
        let mut maestro = Maestro::start(&temporal).await?;
        let stopped = maestro.stop()?;
        assert!(
            stopped,
            "maestro did not stop cleanly:\n{}",
            maestro.log_text()
        );
    }
    Ok(())
}
