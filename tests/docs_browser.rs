//! The APIs' own documentation as a person opens it: Debian's chromium (headless, installed
//! by `scripts/test`) loads `/docs/` of the management and the rooms API from the real
//! binary with every host but loopback unresolvable, so Swagger UI must come from the
//! binary itself, and the rendered page must list every operation by its summary.
//! `GET /` of each port is a JSON index linking there.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::Maestro;
use maestro_testkit::{TemporalDevServer, temp_dir};
use serde_json::Value;

fn chromium() -> Result<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    ensure!(
        path.exists(),
        "no chromium at {}: run through scripts/test (it installs Debian's chromium)",
        path.display()
    );
    Ok(path)
}

/// The DOM of `url` once its scripts have run (chromium's `--dump-dom`), offline.
async fn rendered(url: &str) -> Result<String> {
    let profile = temp_dir("chromium-profile");
    let run = tokio::process::Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Offline: no name resolves but loopback's, so a CDN reference cannot load.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            // Virtual time stops while requests are pending: the page is dumped after
            // Swagger UI has fetched the document and rendered it.
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .context("chromium did not finish in 120 s")??;
    ensure!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Text as chromium serialises it inside an element.
fn as_html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn check_docs(maestro: &Maestro, base: &str, api: &str) -> Result<()> {
    let index: Value = maestro
        .http
        .get(format!("{base}/"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(index["api"], api, "{index}");
    assert_eq!(index["links"]["docs"], "/docs/", "{index}");
    let document: Value = maestro
        .http
        .get(format!(
            "{base}{}",
            index["links"]["openapi"].as_str().unwrap_or_default()
        ))
        .send()
        .await?
        .json()
        .await?;

    // The page references nothing off this port.
    let page = maestro.http.get(format!("{base}/docs")).send().await?;
    assert_eq!(page.url().path(), "/docs/", "/docs redirects to /docs/");
    let page = page.text().await?;
    for external in ["src=\"http", "href=\"http", "unpkg.com", "cdn"] {
        assert!(
            !page.contains(external),
            "{api} /docs/ references {external}"
        );
    }

    let dom = rendered(&format!("{base}/docs/")).await?;
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().context("no paths")? {
        for (method, operation) in item.as_object().context("no operations")? {
            operations += 1;
            let summary = operation["summary"].as_str().unwrap_or_default();
            assert!(
                dom.contains(&as_html_text(summary)),
                "{api}: {method} {path}: summary {summary:?} not on the rendered page"
            );
            assert!(
                dom.contains(&format!("data-path=\"{path}\"")),
                "{api}: {method} {path} not on the rendered page"
            );
        }
    }
    let rendered_blocks = dom.matches("class=\"opblock opblock-").count();
    assert_eq!(
        rendered_blocks, operations,
        "{api}: the page shows {rendered_blocks} operations, the document has {operations}"
    );
    assert!(
        dom.contains(document["info"]["title"].as_str().unwrap_or("?")),
        "{api}: title not rendered"
    );
    Ok(())
}

#[tokio::test]
async fn swagger_ui_renders_every_operation_offline() -> Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    check_docs(&maestro, &maestro.api, "management").await?;
    check_docs(&maestro, &maestro.rooms_api, "rooms").await?;
    Ok(())
}
