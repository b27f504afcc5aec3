//! `maestro serve` reaches a Temporal that wants TLS, a client certificate and an API key
//! (Temporal Cloud's ways in) by configuration alone. The dev server has no TLS settings,
//! so a TLS front (`maestro_testkit::tls_front`) with its own CA stands before it: a real
//! handshake, a real certificate check, every request forwarded to the real server.

mod common;

use std::time::Duration;

use common::{Maestro, scheduler_body};
use maestro_testkit::tls_front::{TestPki, TlsFront};
use maestro_testkit::{TemporalDevServer, eventually, temp_dir};
use reqwest::StatusCode;

#[tokio::test]
async fn maestro_serve_reaches_temporal_over_mtls_with_an_api_key() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let pki = TestPki::generate()?;
    let front = TlsFront::start(&temporal.address(), &pki, true).await?;
    let dir = temp_dir("temporal-tls");
    let file = |name: &str, pem: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        std::fs::write(&path, pem)?;
        Ok(path.display().to_string())
    };
    let (ca, cert, key) = (
        file("ca.pem", &pki.ca_pem)?,
        file("client.pem", &pki.client_cert_pem)?,
        file("client.key", &pki.client_key_pem)?,
    );

    // TLS without the client certificate the server asks for: refused at the handshake,
    // and `maestro serve` gives up at its connect timeout instead of starting blind.
    let refused = Maestro::serve(
        "all",
        &front.address(),
        &["--temporal-tls-ca", &ca, "--temporal-connect-timeout", "2s"],
        &[],
    )
    .await;
    assert!(refused.is_err(), "started without a client certificate");
    assert!(
        !front.refused_handshakes().is_empty(),
        "the front saw no refused handshake"
    );

    let mut maestro = Maestro::serve(
        "all",
        &front.address(),
        &[
            "--temporal-tls-ca",
            &ca,
            "--temporal-tls-cert",
            &cert,
            "--temporal-tls-key",
            &key,
            "--temporal-api-key",
            "cloud-api-key-123",
        ],
        &[],
    )
    .await?;
    // Gateway and worker both go through the front: a scheduler is created and its first
    // operation runs to the end.
    let (code, answer) = maestro.post("/schedulers", scheduler_body("tls")).await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    eventually(
        Duration::from_secs(60),
        "create_scheduler finished",
        || async {
            let (_, page) = maestro
                .get("/schedulers/tls/operations?stage=final")
                .await
                .ok()?;
            let done = page["operations"]
                .as_array()?
                .iter()
                .any(|op| op["definitionName"] == "create_scheduler" && op["status"] == "finished");
            done.then_some(())
        },
    )
    .await?;
    let keys = front.authorizations();
    assert!(!keys.is_empty(), "no request carried the API key");
    assert!(
        keys.iter().all(|k| k == "Bearer cloud-api-key-123"),
        "{keys:?}"
    );
    assert!(maestro.stop()?, "maestro serve stops cleanly");
    Ok(())
}
