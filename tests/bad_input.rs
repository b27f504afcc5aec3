//! Bad input on the real binary: oversized bodies, wrong content types, unknown fields, huge
//! numbers, unicode names, broken JSON. Every answer is a 4xx whose message or fields name
//! what is wrong; nothing is a 5xx.

mod common;

use common::{API_TOKEN, Maestro, room_token, scheduler_body};
use maestro_testkit::TemporalDevServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(
    maestro: &Maestro,
    url: String,
    content_type: &str,
    body: Vec<u8>,
    token: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let (status, body, _) = send_for_headers(maestro, url, content_type, body, token).await?;
    Ok((status, body))
}

async fn send_for_headers(
    maestro: &Maestro,
    url: String,
    content_type: &str,
    body: Vec<u8>,
    token: &str,
) -> anyhow::Result<(StatusCode, Value, reqwest::header::HeaderMap)> {
    let response = maestro
        .http
        .post(url)
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    ))
}

/// Sends a request over a raw connection and reads whatever answer arrives: a server that
/// refuses an oversized body answers before reading it all and closes, which an HTTP client
/// may report as a broken connection even though the answer was sent.
async fn raw(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(url)?;
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port().unwrap_or(80)
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path(),
        url.host_str().unwrap_or_default(),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}

/// The answer (a `google.rpc.Status`) names `what` in its message or in a field violation
/// of its `google.rpc.BadRequest` detail.
fn names(body: &Value, what: &str) -> bool {
    body["message"].as_str().is_some_and(|m| m.contains(what))
        || body["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .flat_map(|d| d["fieldViolations"].as_array().into_iter().flatten())
            .any(|f| f["field"].as_str().is_some_and(|f| f.contains(what)))
}

/// The fields the answer says were ignored.
fn ignored(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("x-maestro-ignored-fields")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn bad_requests_get_4xx_answers_that_name_the_problem() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    let create = format!("{}/schedulers", maestro.api);
    let json_body = |v: &Value| serde_json::to_vec(v).unwrap_or_default();

    // Oversized: 413 before anything is parsed.
    let mut huge = scheduler_body("huge");
    huge["annotations"] = json!({"padding": "x".repeat(3 << 20)});
    let auth = format!("Bearer {API_TOKEN}");
    let (code, body) = raw(
        &create,
        "POST",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &json_body(&huge),
    )
    .await?;
    assert_eq!(code, 413, "{body}");
    assert!(names(&body, "body"), "{body}");

    // Any Content-Type is read as JSON, as grpc-gateway reads it for Maestro (curl's
    // default form type included).
    let (code, body) = send(
        &maestro,
        create.clone(),
        "text/plain",
        json_body(&scheduler_body("plain")),
        API_TOKEN,
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");

    // Routes nobody serves, as grpc-gateway answers them for Maestro: an unknown path is
    // 404 with code 5, a known path with another method 501 with code 12; both JSON.
    let unknown = maestro
        .http
        .get(format!("{}/no/such/route", maestro.api))
        .bearer_auth(API_TOKEN)
        .send()
        .await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await?["code"], 5);
    let wrong_method = maestro
        .http
        .delete(format!("{}/schedulers", maestro.api))
        .bearer_auth(API_TOKEN)
        .send()
        .await?;
    assert_eq!(wrong_method.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(wrong_method.json::<Value>().await?["code"], 12);

    // Broken JSON: 400.
    let (code, body) = send(
        &maestro,
        create.clone(),
        "application/json",
        b"{\"name\": ".to_vec(),
        API_TOKEN,
    )
    .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");

    // Unknown fields, top level and nested: ignored as Maestro ignores them, but named in
    // the answer's header so a typo is still visible.
    let mut unknown = scheduler_body("unknown-field");
    unknown["roomReplicas"] = json!(3);
    let (code, body, headers) = send_for_headers(
        &maestro,
        create.clone(),
        "application/json",
        json_body(&unknown),
        API_TOKEN,
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(ignored(&headers), "roomReplicas");
    let mut nested = scheduler_body("unknown-nested");
    nested["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    let (code, body, headers) = send_for_headers(
        &maestro,
        create.clone(),
        "application/json",
        json_body(&nested),
        API_TOKEN,
    )
    .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(ignored(&headers), "spec.containers.0.imagePullPolcy");

    // Huge numbers: 400 naming the field, never an overflow.
    for (field, value) in [
        ("roomsReplicas", "1e300"),
        ("roomsReplicas", "99999999999999999999999"),
        ("roomsReplicas", "-5"),
    ] {
        let text = serde_json::to_string(&scheduler_body("huge-number"))?
            .replace("\"roomsReplicas\":3", &format!("\"roomsReplicas\":{value}"));
        let (code, body) = send(
            &maestro,
            create.clone(),
            "application/json",
            text.into_bytes(),
            API_TOKEN,
        )
        .await?;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{value}: {body}");
        assert!(names(&body, field), "{value}: {body}");
    }
    let mut ports = scheduler_body("huge-port");
    ports["portRange"] = json!({"start": 1, "end": 4_294_967_296_i64});
    let (code, body) = send(
        &maestro,
        create.clone(),
        "application/json",
        json_body(&ports),
        API_TOKEN,
    )
    .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(names(&body, "portRange"), "{body}");

    // Unicode and other names a namespace cannot have: 400 naming `name`.
    for name in [
        "ゲーム",
        "Game",
        "a b",
        "-dash",
        &"x".repeat(64),
        "emoji-🎮",
    ] {
        let (code, body) = send(
            &maestro,
            create.clone(),
            "application/json",
            json_body(&scheduler_body(name)),
            API_TOKEN,
        )
        .await?;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert!(names(&body, "name"), "{name}: {body}");
    }
    // A unicode game name is fine (it is only a label value in metrics).
    let mut unicode_game = scheduler_body("unicode-game");
    unicode_game["game"] = json!("ゲーム");
    let (code, body) = send(
        &maestro,
        create.clone(),
        "application/json",
        json_body(&unicode_game),
        API_TOKEN,
    )
    .await?;
    assert!(
        code == StatusCode::OK || code == StatusCode::BAD_REQUEST,
        "{body}"
    );

    // Rooms API: the same limits on pings.
    let (code, body) = maestro
        .post("/schedulers", scheduler_body("rooms-input"))
        .await?;
    assert_eq!(code, StatusCode::OK, "{body}");
    let ping = format!("{}/scheduler/rooms-input/rooms/r1/ping", maestro.rooms_api);
    let token = room_token("rooms-input", "r1");
    let big_ping =
        json!({"status": "ready", "timestamp": 1, "metadata": {"pad": "x".repeat(1 << 20)}});
    let auth = format!("Bearer {token}");
    let (code, body) = raw(
        &ping,
        "PUT",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &json_body(&big_ping),
    )
    .await?;
    assert_eq!(code, 413, "{body}");
    let response = maestro
        .http
        .put(&ping)
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("status=ready")
        .send()
        .await?;
    // Any Content-Type is read as JSON; a form body is not JSON.
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = maestro
        .http
        .put(&ping)
        .bearer_auth(&token)
        .json(&json!({"status": "dancing", "timestamp": 1}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert!(names(&body, "status"), "{body}");
    // A field of the wrong type is named (the decoder's second, path-tracking reading); an
    // unknown one is ignored and named in the answer (its first reading).
    let response = maestro
        .http
        .put(&ping)
        .bearer_auth(&token)
        .json(&json!({"status": "ready", "runningMatches": "two"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(fields(&body), ["runningMatches"], "{body}");
    let response = maestro
        .http
        .put(&ping)
        .bearer_auth(&token)
        .json(&json!({"status": "ready", "runingMatches": 1}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(ignored(response.headers()), "runingMatches");
    Ok(())
}

/// Field names of a 400's `fields`.
fn fields(body: &Value) -> Vec<String> {
    body["details"][0]["fieldViolations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["field"].as_str().map(str::to_string))
        .collect()
}

/// What could never run is refused when it is submitted, naming the field, not accepted to
/// fail every health run: no command or a program that does not exist (the process runtime),
/// more rooms than the port range holds, a forwarder timeout past the maximum. A reused
/// Idempotency-Key with another request is 400 (code 9) naming the key.
#[tokio::test]
async fn schedulers_that_can_never_run_are_refused_naming_the_field() -> anyhow::Result<()> {
    let temporal = TemporalDevServer::start().await?;
    let maestro = Maestro::start(&temporal).await?;
    // (what, changes by JSON pointer, the field the answer must name)
    let cases = [
        (
            "no command",
            vec![("/spec/containers/0/command", json!([]))],
            "spec.containers[0].command",
        ),
        (
            "a program that does not exist",
            vec![("/spec/containers/0/command", json!(["/nonexistent"]))],
            "spec.containers[0].command",
        ),
        (
            "more rooms than host ports",
            vec![
                ("/portRange", json!({"start": 46000, "end": 46009})),
                ("/roomsReplicas", json!(11)),
            ],
            "roomsReplicas",
        ),
        (
            "a forwarder timeout of 10 minutes",
            vec![(
                "/forwarders",
                json!([{"name": "mm", "enable": true, "type": "gRPC",
                    "address": "127.0.0.1:1", "options": {"timeout": 600000}}]),
            )],
            "forwarders[0].options.timeout",
        ),
    ];
    for (what, changes, field) in &cases {
        let mut body = scheduler_body("never-runs");
        for (pointer, value) in changes {
            let (parent, key) = pointer.rsplit_once('/').unwrap_or_default();
            let target = if parent.is_empty() {
                &mut body
            } else {
                body.pointer_mut(parent)
                    .expect("the document has the parent")
            };
            match target {
                Value::Array(items) => items[key.parse::<usize>()?] = value.clone(),
                other => other[key] = value.clone(),
            }
        }
        let (code, answer) = maestro.post("/schedulers", body).await?;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert!(
            fields(&answer).contains(&field.to_string()),
            "{what}: {answer}"
        );
    }

    // Names of namespaces the cluster or Maestro itself holds (a real cluster showed a
    // scheduler named `maestro` take over Maestro's namespace and delete it).
    for taken in ["default", "maestro", "kube-system"] {
        let (code, answer) = maestro.post("/schedulers", scheduler_body(taken)).await?;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{taken}: {answer}");
        assert_eq!(
            fields(&answer),
            vec!["name".to_string()],
            "{taken}: {answer}"
        );
    }

    // The same refusals for a new version of a scheduler that runs.
    let (code, answer) = maestro.post("/schedulers", scheduler_body("runs")).await?;
    assert_eq!(code, StatusCode::OK, "{answer}");
    let mut version = scheduler_body("runs");
    version["spec"]["containers"][0]["command"] = json!(["/nonexistent"]);
    let (code, answer) = maestro.post("/schedulers/runs", version).await?;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{answer}");
    assert!(fields(&answer).contains(&"spec.containers[0].command".to_string()));
    let patch = json!({"portRange": {"start": 46000, "end": 46001}, "roomsReplicas": 5});
    let (code, answer) = maestro
        .call(reqwest::Method::PATCH, "/schedulers/runs", Some(patch))
        .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        fields(&answer).contains(&"roomsReplicas".to_string()),
        "{answer}"
    );

    // An Idempotency-Key reused for another request: 400 naming the key, nothing enqueued.
    let keyed = |amount: u32| {
        maestro
            .http
            .post(format!("{}/schedulers/runs/add-rooms", maestro.api))
            .bearer_auth(API_TOKEN)
            .header("Idempotency-Key", "reused")
            .json(&json!({"amount": amount}))
            .send()
    };
    let first = keyed(1).await?;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await?;
    let again: Value = keyed(1).await?.json().await?;
    assert_eq!(
        again["operationId"], first["operationId"],
        "a retry is the same operation"
    );
    let reused = keyed(2).await?;
    // FailedPrecondition (code 9): 400, as grpc-gateway answers every precondition.
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let reused: Value = reused.json().await?;
    assert_eq!(
        fields(&reused),
        vec!["Idempotency-Key".to_string()],
        "{reused}"
    );
    Ok(())
}
