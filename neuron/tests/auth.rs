//! The neuron token, through the real binary: with one, every route but
//! `/health` needs it and a refused call changes nothing; without one the
//! neuron will not listen beyond loopback unless told `--insecure-no-auth`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Neuron, neuron_bin};

const TOKEN: &str = "fleet-secret-123";

async fn call(
    n: &Neuron,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = match method {
        "GET" => n.http.get(n.at(path)),
        _ => n.http.post(n.at(path)),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_route_but_health_needs_the_token_and_a_refusal_changes_nothing() {
    let n = Neuron::start_with_env(&[], &[("CORTEX_NEURON_TOKEN", TOKEN)]);
    assert_eq!(call(&n, "GET", "/health", None, None).await.0, 200);
    for (method, path, body) in [
        ("GET", "/models", None),
        ("GET", "/discovery", None),
        ("GET", "/events", None),
        (
            "POST",
            "/models/load",
            Some(json!({"model": "smol", "source": "embedded"})),
        ),
        ("POST", "/models/unload", Some(json!({"model": "smol"}))),
        (
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}]})),
        ),
    ] {
        for token in [
            None,
            Some("wrong"),
            Some("fleet-secret-12"),
            Some("fleet-secret-1234"),
        ] {
            let (status, v) = call(&n, method, path, token, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {v}");
            assert_eq!(v["error"]["type"], "authentication_error", "{v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("token"),
                "{v}"
            );
        }
    }
    // Bodies are never read before the token is checked: a request
    // announcing a 6 MiB body gets its 401 before sending a byte of it, and
    // a malformed one is a 401 too; with the token, the usual 413 and 400.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = n.url.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            6 << 20
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let got = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..got]);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    }
    let r = n
        .post_raw("/v1/chat/completions", b"{not json".to_vec())
        .await;
    assert_eq!(r.status(), 401);
    let r = n
        .http
        .post(n.at("/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // On a connection of its own: the server may close it mid-body.
    let r = reqwest::Client::new()
        .post(n.at("/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; 6 << 20])
        .send()
        .await;
    // Too large with the token: 413, or the connection closed while the
    // rest of the body was still being written.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // The refused load did nothing.
    let (status, models) = call(&n, "GET", "/models", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(models["models"].as_array().unwrap().len(), 0, "{models}");
    // With the token, everything works.
    let (status, _) = call(
        &n,
        "POST",
        "/models/load",
        Some(TOKEN),
        Some(json!({"model": "smol", "source": "embedded"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(
        &n,
        "POST",
        "/v1/chat/completions",
        Some(TOKEN),
        Some(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn the_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let n = Neuron::start(&["--token-file", file.to_str().unwrap()]);
    assert_eq!(call(&n, "GET", "/models", None, None).await.0, 401);
    assert_eq!(call(&n, "GET", "/models", Some(TOKEN), None).await.0, 200);
}

/// Runs the neuron until it exits (or 20 s); returns its status and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(neuron_bin());
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.env_remove("CORTEX_NEURON_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn neuron");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_a_token_it_refuses_to_listen_beyond_loopback() {
    let (code, err) = run_to_exit(&["--listen", "0.0.0.0:0", "--name", "open"], &[]);
    assert_ne!(code, Some(0), "it must not start: {err}");
    assert!(code.is_some(), "it must exit, not serve");
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without a token")
            && err.contains("CORTEX_NEURON_TOKEN")
            && err.contains("--insecure-no-auth"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").unwrap();
    let (code, err) = run_to_exit(&["--token-file", empty.to_str().unwrap()], &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is empty"), "{err}");
    let (code, err) = run_to_exit(&[], &[("CORTEX_NEURON_TOKEN", "  ")]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("CORTEX_NEURON_TOKEN is set but empty"),
        "{err}"
    );
}

#[tokio::test]
async fn insecure_no_auth_serves_openly() {
    let mut cmd = Command::new(neuron_bin());
    cmd.args([
        "--listen",
        "0.0.0.0:0",
        "--name",
        "open",
        "--insecure-no-auth",
    ])
    .env_remove("CORTEX_NEURON_TOKEN");
    let child = cortex_process::spawn_server("neuron", cmd, Duration::from_secs(30), false)
        .expect("starts with --insecure-no-auth");
    let url = child.url.replace("0.0.0.0", "127.0.0.1");
    let r = reqwest::get(format!("{url}/models")).await.unwrap();
    assert_eq!(r.status(), 200);
}
