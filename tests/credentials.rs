//! Credentials by role, through the real binary: tokens that can read cannot change, tokens
//! that change cannot delete a scheduler, matchmakers only allocate and read addresses, and
//! a caller without a credential learns nothing about which schedulers or rooms exist. Then
//! the one setting with which clients written for Maestro (no credentials) get in.

mod common;

use common::{Maestro, scheduler_body};
use maestro_testkit::TemporalDevServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKENS: &str = "admin:admin-token,read:reader-token,write:writer-token,matchmaker:mm-token";

async fn call(
    maestro: &Maestro,
    base: &str,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = maestro.http.request(method, format!("{base}{path}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn every_role_does_what_it_names_and_strangers_learn_nothing() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start_with(&temporal, &["--api-tokens", TOKENS]).await?;
    let api = maestro.api.clone();
    let rooms = maestro.rooms_api.clone();
    let m = &maestro;

    // The scheme is case-insensitive and may be followed by several spaces (RFC 7235).
    for reader in [
        "Bearer reader-token",
        "bearer reader-token",
        "Bearer   reader-token",
    ] {
        let (code, answer) = call(m, &api, Method::GET, "/schedulers", Some(reader), None).await?;
        assert_eq!(code, StatusCode::OK, "{reader:?}: {answer}");
    }
    for malformed in [
        "Bearer",
        "Bearer    ",
        "Basic cmVhZGVy",
        "Bearer reader-token extra",
    ] {
        let (code, answer) =
            call(m, &api, Method::GET, "/schedulers", Some(malformed), None).await?;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{malformed:?}: {answer}");
    }
    // The API's own description needs no token (it holds no data).
    let (code, _) = call(m, &api, Method::GET, "/openapi.json", None, None).await?;
    assert_eq!(code, StatusCode::OK);

    let body = scheduler_body("roles");
    let (code, answer) = call(
        m,
        &api,
        Method::POST,
        "/schedulers",
        Some("Bearer reader-token"),
        Some(body.clone()),
    )
    .await?;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("role (read)") && message.contains("write token"),
        "{answer}"
    );
    let (code, answer) = call(
        m,
        &api,
        Method::GET,
        "/schedulers",
        Some("Bearer mm-token"),
        None,
    )
    .await?;
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "a matchmaker does not read schedulers: {answer}"
    );
    let (code, answer) = call(
        m,
        &api,
        Method::POST,
        "/schedulers",
        Some("Bearer writer-token"),
        Some(body),
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let (code, answer) = call(
        m,
        &api,
        Method::DELETE,
        "/schedulers/roles",
        Some("Bearer writer-token"),
        None,
    )
    .await?;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("admin token"),
        "{answer}"
    );

    // Matchmaker calls: without a credential, an existing and an unknown scheduler get the
    // same refusal, before anything is looked up.
    let mut strangers = Vec::new();
    for path in [
        "/scheduler/roles/rooms/allocate",
        "/scheduler/nobody/rooms/allocate",
    ] {
        let (code, answer) = call(m, &rooms, Method::POST, path, None, Some(json!({}))).await?;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}: {answer}");
        strangers.push(answer);
    }
    assert_eq!(
        strangers[0], strangers[1],
        "the answer tells which scheduler exists"
    );
    for path in [
        "/scheduler/roles/rooms/r1/address",
        "/scheduler/nobody/rooms/r1/address",
    ] {
        let (code, answer) = call(m, &rooms, Method::GET, path, None, None).await?;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}: {answer}");
    }
    let (code, answer) = call(
        m,
        &rooms,
        Method::POST,
        "/scheduler/roles/rooms/allocate",
        Some("Bearer reader-token"),
        Some(json!({})),
    )
    .await?;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    // A matchmaker token gets Maestro's answers: a room, or "no ready rooms" (500 code 2).
    for token in ["Bearer mm-token", "Bearer admin-token"] {
        let (code, answer) = call(
            m,
            &rooms,
            Method::POST,
            "/scheduler/roles/rooms/allocate",
            Some(token),
            Some(json!({})),
        )
        .await?;
        assert!(
            code == StatusCode::OK
                || (code == StatusCode::INTERNAL_SERVER_ERROR && answer["code"] == 2),
            "{token}: {code} {answer}"
        );
    }
    let (code, answer) = call(
        m,
        &rooms,
        Method::GET,
        "/scheduler/roles/rooms/nope/address",
        Some("Bearer mm-token"),
        None,
    )
    .await?;
    assert_eq!(code, StatusCode::NOT_FOUND, "{answer}");

    let (code, answer) = call(
        m,
        &api,
        Method::DELETE,
        "/schedulers/roles",
        Some("Bearer admin-token"),
        None,
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert!(maestro.stop()?, "maestro stops cleanly");
    Ok(())
}

#[tokio::test]
async fn clients_written_for_maestro_get_in_with_one_setting() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let mut maestro = Maestro::start_with(&temporal, &["--accept-maestro-clients"]).await?;
    let rooms = maestro.rooms_api.clone();
    let m = &maestro;
    // A matchmaker that sends nothing: Maestro's answer for a scheduler with nothing ready.
    let (code, answer) = call(
        m,
        &rooms,
        Method::POST,
        "/scheduler/nobody/rooms/allocate",
        None,
        Some(json!({})),
    )
    .await?;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["code"], 2, "{answer}");
    // A room that sends no token: Maestro's answer for a room it does not know.
    let (code, answer) = call(
        m,
        &rooms,
        Method::PUT,
        "/scheduler/nobody/rooms/r1/ping",
        None,
        Some(json!({"status": "ready", "timestamp": "12312312313"})),
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], false, "{answer}");
    // A token that is sent is still checked.
    let (code, answer) = call(
        m,
        &rooms,
        Method::POST,
        "/scheduler/nobody/rooms/allocate",
        Some("Bearer guessed"),
        Some(json!({})),
    )
    .await?;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    assert!(maestro.stop()?, "maestro stops cleanly");
    Ok(())
}
