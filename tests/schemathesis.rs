//! Property-based API testing with schemathesis (PyPI, installed by the README's test
//! command) against the served OpenAPI document of the real binary: generated requests for
//! every operation, stateful sequences included, must never get a 5xx and every answer must
//! match the document (status codes, content types, bodies, headers). Bounded in time.
//!
//! Unexpected methods are not sent (see the config written below: Maestro answers 501).
//! `positive_data_acceptance` is left out on purpose: the document is looser than the
//! validation (a scheduler name must be a DNS label, `amount` is 1..=1000, ...), so some
//! schema-valid requests are refused with a 400 that names the field, which is right.

mod common;

use std::process::Command;

use common::{API_TOKEN, Maestro};
use maestro_testkit::{TemporalDevServer, python_tools_dir, temp_dir};

#[tokio::test]
async fn generated_requests_never_get_5xx_and_answers_match_the_document() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    let reports = temp_dir("schemathesis");
    // A method a path lacks is answered as grpc-gateway answers it for Maestro: 501 with
    // code 12 (tests/bad_input.rs checks it). Schemathesis expects 405 there and counts 501
    // as a server error, so its coverage phase does not send unexpected methods.
    std::fs::write(
        reports.join("schemathesis.toml"),
        "[phases.coverage]\nunexpected-methods = []\n",
    )?;
    let output = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/openapi.json", maestro.api))
        .args(["--header", &format!("Authorization: Bearer {API_TOKEN}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args([
            "--max-examples",
            "15",
            "--max-time",
            "60",
            "--seed",
            "20261125",
        ])
        .args(["--request-timeout", "35", "--no-color"])
        .env("PYTHONPATH", python_tools_dir())
        .current_dir(&reports)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.contains("generated")
                || l.contains("passed")
                || l.contains("❌")
                || l.contains("Failures")
        })
        .collect();
    println!("{}", summary.join("\n"));
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
