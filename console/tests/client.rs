//! The client against a small in-test gateway stand-in (axum): the event
//! stream resumes with Last-Event-ID after a drop, a silent stream is
//! abandoned after the idle timeout, admin calls map answers and errors, and
//! the binary's `--json` / not-a-terminal behaviour.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cortex_common::event::EventKind;
use cortex_console::client::{AdminRequest, Backoff, Client, ClientError, StreamMsg};
use cortex_console::fixtures::{T0, event, sample_status};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

const TOKEN: &str = "s3cret";

#[derive(Clone, Default)]
struct Gw {
    /// Last-Event-ID of each /admin/events connection, in order.
    resumed_from: Arc<Mutex<Vec<Option<String>>>>,
    /// Answer the first connection with headers and then silence.
    silent_first: bool,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"message": "bad admin token", "type": "authentication_error", "code": "invalid_admin_token"}})),
    )
        .into_response()
}

fn sse(ev: cortex_common::event::Event) -> Result<SseEvent, std::convert::Infallible> {
    Ok(SseEvent::default()
        .id(ev.seq.to_string())
        .data(serde_json::to_string(&ev).unwrap()))
}

async fn events(State(gw): State<Gw>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let n = {
        let mut r = gw.resumed_from.lock().unwrap();
        r.push(last.clone());
        r.len()
    };
    if gw.silent_first && n == 1 {
        return Sse::new(futures::stream::pending::<
            Result<SseEvent, std::convert::Infallible>,
        >())
        .into_response();
    }
    let evs = match last.as_deref() {
        // A fresh connection: snapshot, one delta, then the gateway "restarts".
        None => vec![
            event(
                1,
                T0,
                None,
                EventKind::Snapshot {
                    status: Box::new(sample_status()),
                },
            ),
            event(
                2,
                T0,
                None,
                EventKind::Pinned {
                    model: "smollm2-tiny".into(),
                },
            ),
        ],
        Some(_) => vec![event(
            3,
            T0,
            None,
            EventKind::Unpinned {
                model: "smollm2-tiny".into(),
            },
        )],
    };
    let stream = futures::stream::iter(evs.into_iter().map(sse));
    if last.is_none() && !gw.silent_first {
        Sse::new(stream).into_response()
    } else {
        Sse::new(stream.chain(futures::stream::pending())).into_response()
    }
}

async fn status(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    Json(sample_status()).into_response()
}

async fn pin(headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    Json(json!({"model": body["model"], "pinned": true})).into_response()
}

async fn load() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "2")],
        Json(json!({"error": {"message": "no node has room for qwen3-0.6b", "type": "overloaded_error", "code": "no_capacity"}})),
    )
        .into_response()
}

async fn serve(gw: Gw) -> String {
    let app = Router::new()
        .route("/admin/events", get(events))
        .route("/admin/status", get(status))
        .route("/admin/models/pin", post(pin))
        .route("/admin/models/load", post(load))
        .with_state(gw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn next(rx: &mut mpsc::Receiver<StreamMsg>) -> StreamMsg {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no stream message within 10 s")
        .expect("stream task ended")
}

fn seq(msg: &StreamMsg) -> u64 {
    match msg {
        StreamMsg::Event(ev) => ev.seq,
        other => panic!("expected an event, got {other:?}"),
    }
}

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(100),
    idle_timeout: Duration::from_secs(30),
};

#[tokio::test]
async fn stream_reconnects_and_resumes_after_the_last_id() {
    let gw = Gw::default();
    let url = serve(gw.clone()).await;
    let client = Client::new(&url, Some(TOKEN.into())).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(async move { client.run_event_stream(tx, FAST).await });

    assert_eq!(next(&mut rx).await, StreamMsg::Connected);
    assert_eq!(seq(&next(&mut rx).await), 1);
    assert_eq!(seq(&next(&mut rx).await), 2);
    match next(&mut rx).await {
        StreamMsg::Disconnected { attempt, error, .. } => {
            assert_eq!(attempt, 1);
            assert!(error.contains("closed"), "{error}");
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert_eq!(next(&mut rx).await, StreamMsg::Connected);
    assert_eq!(seq(&next(&mut rx).await), 3);
    assert_eq!(
        *gw.resumed_from.lock().unwrap(),
        vec![None, Some("2".to_string())]
    );
    // Dropping the receiver ends the task.
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stream task did not stop")
        .unwrap();
}

#[tokio::test]
async fn a_silent_stream_is_abandoned_after_the_idle_timeout() {
    let gw = Gw {
        silent_first: true,
        ..Gw::default()
    };
    let url = serve(gw.clone()).await;
    let client = Client::new(&url, Some(TOKEN.into())).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let backoff = Backoff {
        idle_timeout: Duration::from_millis(300),
        ..FAST
    };
    tokio::spawn(async move { client.run_event_stream(tx, backoff).await });
    assert_eq!(next(&mut rx).await, StreamMsg::Connected);
    match next(&mut rx).await {
        StreamMsg::Disconnected { error, .. } => assert!(error.contains("no data"), "{error}"),
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert_eq!(next(&mut rx).await, StreamMsg::Connected);
}

#[tokio::test]
async fn unreachable_and_unauthorized_are_reported_and_retried() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move { client.run_event_stream(tx, FAST).await });
    for want in 1..=3 {
        match next(&mut rx).await {
            StreamMsg::Disconnected {
                attempt,
                error,
                retry_in,
            } => {
                assert_eq!(attempt, want);
                assert_eq!(retry_in, FAST.delay(want));
                assert!(error.contains("unreachable"), "{error}");
            }
            other => panic!("expected a disconnect, got {other:?}"),
        }
    }

    let url = serve(Gw::default()).await;
    let client = Client::new(&url, Some("wrong".into())).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move { client.run_event_stream(tx, FAST).await });
    match next(&mut rx).await {
        StreamMsg::Disconnected { error, .. } => {
            assert!(error.contains("refused the admin token"), "{error}");
            assert!(error.contains("bad admin token"), "{error}");
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

#[tokio::test]
async fn admin_calls_map_answers_and_errors() {
    let url = serve(Gw::default()).await;
    let client = Client::new(&url, Some(TOKEN.into())).unwrap();
    let pinned = client
        .admin(&AdminRequest::Pin { model: "m".into() })
        .await
        .unwrap();
    assert_eq!(pinned, "m pinned");
    let err = client
        .admin(&AdminRequest::Load {
            model: "qwen3-0.6b".into(),
            node: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ClientError::Api {
            status: 503,
            message: "no node has room for qwen3-0.6b".into(),
            code: Some("no_capacity".into()),
        }
    );
    let bad = Client::new(&url, None).unwrap();
    assert!(matches!(
        bad.admin(&AdminRequest::Pin { model: "m".into() }).await,
        Err(ClientError::Unauthorized { .. })
    ));
}

fn console() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cortex-console"));
    cmd.env_remove("CORTEX_ADMIN_TOKEN")
        .env_remove("CORTEX_GATEWAY")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn json_prints_the_status_document() {
    let url = serve(Gw::default()).await;
    let out = console()
        .args(["--json", "--gateway", &url])
        .env("CORTEX_ADMIN_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: cortex_common::status::FleetStatus = serde_json::from_slice(&out.stdout).unwrap();
    let want = sample_status();
    let names = |d: &cortex_common::status::FleetStatus| {
        (
            d.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
            d.models.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(names(&doc), names(&want));
    assert_eq!(doc.nodes.len(), 3);
    assert_eq!(doc.models.len(), 4);
    assert_eq!(doc.models[0].placements, want.models[0].placements);
}

#[tokio::test]
async fn json_fails_clearly_on_a_bad_token_or_no_gateway() {
    let url = serve(Gw::default()).await;
    let out = console()
        .args(["--json", "--gateway", &url, "--token", "wrong"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the admin token"), "{err}");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = console()
        .args(["--json", "--gateway", &format!("http://127.0.0.1:{port}")])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
}

#[tokio::test]
async fn without_a_terminal_it_says_so_instead_of_drawing() {
    let out = console().output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "drew on a pipe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a terminal") && err.contains("--json"),
        "{err}"
    );
}
