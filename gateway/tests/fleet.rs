//! The gateway against real neurons on loopback: catalogue, routing,
//! cold loads, eviction strategies, pins, ttl, node failure, the admin API,
//! the fleet event stream and the error envelopes.
//!
//! The neurons serve the embedded model (~100 MB resident) under several ids
//! with a 250 MB memory limit, so two copies fit on a node and a third
//! forces an eviction.

mod support;

use std::time::{Duration, Instant};

use cortex_common::event::{Event, EventKind, EvictionCause, UnloadReason};
use cortex_common::status::NodeState;
use eventsource_stream::Eventsource;
use serde_json::{Value, json};
use support::*;

fn assert_envelope(body: &Value, code: &str) {
    assert!(body["error"]["message"].is_string(), "no message in {body}");
    assert!(body["error"]["type"].is_string(), "no type in {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is not available ({e}); install the Debian package `prometheus`")
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool rejected the live metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_neurons_catalogue_chat_balancing_and_admin_auth() {
    let a = neuron("a", 250);
    let b = neuron("b", 250);
    let gw = gateway(&[&a, &b], "lru", &models_toml(&[("smol", "")]), "").await;

    // One catalogue over both nodes: not loaded yet, loadable on either.
    let list: Value = gw.get_json("/v1/models").await;
    assert_eq!(list["object"], "list");
    let card = &list["data"][0];
    assert_eq!(card["id"], "smol");
    assert_eq!(card["cortex"]["loadable_on"], json!(["a", "b"]));
    assert_eq!(card["cortex"]["placements"], json!([]));

    // Admin calls without the token (or with a wrong one) are refused and change nothing.
    for auth in [None, Some("wrong")] {
        let mut req = gw
            .http
            .post(format!("{}/admin/models/pin", gw.url))
            .json(&json!({"model": "smol"}));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_envelope(&resp.json().await.unwrap(), "invalid_api_key");
        let resp = gw
            .http
            .post(format!("{}/admin/models/load", gw.url))
            .json(&json!({"model": "smol"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let resp = gw
        .http
        .get(format!("{}/admin/status", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let s = gw.status().await;
    assert!(!s.models[0].pinned, "an unauthorised pin changed the state");
    assert!(
        placement_nodes(&s, "smol").is_empty(),
        "an unauthorised load happened"
    );

    // Non-streaming chat: a cold load, then an answer.
    let (status, first, body) = gw.chat("smol", 4).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 4);
    let first = first.expect("x-cortex-node");
    let other = if first == "a" { "b" } else { "a" };

    // A second replica on the other node, by the admin API.
    let (code, loaded) = gw
        .admin(
            "/admin/models/load",
            json!({"model": "smol", "node": other}),
        )
        .await;
    assert_eq!(code, 200, "{loaded}");
    assert_eq!(
        loaded,
        json!({"model": "smol", "node": other, "state": "loaded"})
    );
    let list: Value = gw.get_json("/v1/models").await;
    let mut nodes: Vec<String> = list["data"][0]["cortex"]["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["node"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["a", "b"], "{list}");

    // Least in-flight: while a stream occupies one replica, the next
    // request goes to the other.
    let long = gw.stream("smol", 48).await;
    assert_eq!(long.status(), 200);
    assert_eq!(long.headers()["content-type"], "text/event-stream");
    let busy = node_of(&long).expect("x-cortex-node on the stream");
    let (status, served, body) = gw.chat("smol", 2).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(
        served.as_deref(),
        Some(busy.as_str()),
        "routed to the busy replica"
    );

    // The stream passes through to [DONE] with content chunks.
    let data = read_sse(long).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunk: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(chunk["object"], "chat.completion.chunk");
    assert!(!data.iter().any(|d| d.contains("\"error\"")), "{data:?}");

    // Metrics: the named series, live, accepted by promtool.
    let s = gw
        .wait_status("request counts", Duration::from_secs(5), |s| {
            s.models[0].requests_total >= 3
        })
        .await;
    assert_eq!(s.models[0].errors_total, 0);
    assert_eq!(
        gw.metric_sum("cortex_cold_starts_total", &["model=\"smol\""])
            .await,
        2.0
    );
    assert!(gw.metric_sum("cortex_requests_total", &[]).await >= 3.0);
    let text = gw.metrics().await;
    for name in [
        "cortex_time_to_first_token_seconds_bucket",
        "cortex_tokens_per_second_bucket",
        "cortex_request_duration_seconds_bucket",
        "cortex_completion_tokens_total",
        "cortex_node_up{node=\"a\"} 1",
        "cortex_device_memory_total_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_requests_for_a_cold_model_make_one_load() {
    let (_a, gw) = smol_on_one_node("").await;
    let mut events = gw.events(None).await;
    assert_eq!(events.next().await.kind.name(), "snapshot");

    let requests = (0..20).map(|_| gw.chat("smol", 1));
    let results = futures::future::join_all(requests).await;
    for (status, node, body) in &results {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(node.as_deref(), Some("a"));
    }
    assert_eq!(gw.metric_sum("cortex_cold_starts_total", &[]).await, 1.0);
    let seen = events
        .until(|e| matches!(e.kind, EventKind::ModelLoaded { .. }))
        .await;
    let loads = seen
        .iter()
        .filter(|e| e.kind.name() == "model_load_started")
        .count();
    let cold = seen.iter().filter(|e| e.kind.name() == "cold_load").count();
    assert_eq!((loads, cold), (1, 1), "{seen:?}");
}

/// Neurons that require the fleet token serve a gateway that has it, and
/// nothing through one that does not (the node stays down, with why).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_protected_neurons_serve_only_a_gateway_with_the_token() {
    let env = [("CORTEX_NEURON_TOKEN", "fleet-token-42")];
    let a = neuron_env("a", 250, "127.0.0.1:0", &["--max-queue", "64"], &env);
    let gw = gateway_with(
        &[&a],
        "lru",
        &models_toml(&[("smol", "")]),
        "",
        "neuron_token = \"fleet-token-42\"",
    )
    .await;
    let (status, node, body) = gw.chat("smol", 2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(node.as_deref(), Some("a"));

    let b = neuron_env("b", 250, "127.0.0.1:0", &["--max-queue", "64"], &env);
    let tokenless = gateway_started(&[&b], "lru", &models_toml(&[("smol", "")]), "", "");
    let reason = refusal(&tokenless, "token").await;
    assert!(
        reason.contains("token") && reason.contains("neuron_token"),
        "{reason}"
    );
    let (status, _, body) = tokenless.chat("smol", 2).await;
    assert_eq!(status, 503, "{body}");
}

/// Each node may hold its own token: a `[[neurons]] token_file` (or
/// `token`) overrides the fleet's for that node's events, loads and chat
/// requests, while the other node keeps the fleet token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_node_gets_its_own_token() {
    let a = neuron_env(
        "a",
        250,
        "127.0.0.1:0",
        &["--max-queue", "64"],
        &[("CORTEX_NEURON_TOKEN", "fleet-token")],
    );
    let b = neuron_env(
        "b",
        250,
        "127.0.0.1:0",
        &["--max-queue", "64"],
        &[("CORTEX_NEURON_TOKEN", "bravo-own-token")],
    );
    let files = tempfile::tempdir().unwrap();
    let b_token = files.path().join("b.token");
    std::fs::write(&b_token, "bravo-own-token\n").unwrap();
    let b_extra = format!("token_file = {:?}", b_token.display().to_string());
    let gw = gateway_nodes(
        &[(&a, ""), (&b, &b_extra)],
        "lru",
        &models_toml(&[("smol", "")]),
        "",
        "neuron_token = \"fleet-token\"",
    );
    // Both event streams (control path) are accepted.
    gw.wait_status("both nodes up", Duration::from_secs(20), |s| {
        s.nodes_up == 2
    })
    .await;
    // Loads (control path) and chats (data path) on each node.
    for node in ["a", "b"] {
        gw.load("smol", Some(node)).await;
    }
    let mut served = std::collections::BTreeSet::new();
    let streams = futures::future::join_all((0..2).map(|_| gw.stream("smol", 24))).await;
    for resp in streams {
        assert_eq!(resp.status(), 200);
        served.insert(node_of(&resp).expect("x-cortex-node"));
        let data = read_sse(resp).await;
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
        assert!(!data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
    }
    assert_eq!(
        served.into_iter().collect::<Vec<_>>(),
        vec!["a", "b"],
        "two concurrent streams use both replicas"
    );
    // Unloading (control path) on the node with its own token.
    gw.admin_ok(
        "/admin/models/unload",
        json!({"model": "smol", "node": "b"}),
    )
    .await;

    // The fleet token alone does not open b: it stays down, saying why.
    let fleet_only = gateway_started(
        &[&b],
        "lru",
        &models_toml(&[("smol", "")]),
        "",
        "neuron_token = \"fleet-token\"",
    );
    refusal(&fleet_only, "token_file").await;
}

/// Waits until the gateway's only node is down for a reason that mentions
/// `word`; returns the reason.
async fn refusal(gw: &Gateway, word: &str) -> String {
    let st = gw
        .wait_status(
            &format!("the node's refusal ({word})"),
            Duration::from_secs(20),
            |s| {
                s.nodes[0]
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains(word))
            },
        )
        .await;
    assert_eq!(st.nodes[0].state, NodeState::Down, "{st:?}");
    st.nodes[0].reason.clone().unwrap_or_default()
}

/// A burst larger than the neuron's batch and queue together: the gateway
/// holds the overflow in its own line and every request is served, with
/// one cold start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_requests_wait_at_the_gateway_and_all_succeed() {
    let a = neuron_with(
        "a",
        250,
        "127.0.0.1:0",
        &["--max-batch", "2", "--max-queue", "2"],
    );
    let gw = gateway(&[&a], "lru", &models_toml(&[("smol", "")]), "").await;
    let requests = (0..40).map(|_| gw.chat("smol", 4));
    let results = futures::future::join_all(requests).await;
    for (status, _, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(gw.metric_sum("cortex_cold_starts_total", &[]).await, 1.0);
    let status = gw.status().await;
    assert_eq!(status.models[0].waiting, 0, "the line is empty afterwards");
}

/// A model whose line stays deep gets a second replica on the other node
/// when its `max_replicas` allows, with a placement event saying why, and
/// the waiting requests spread over both; a model left at the default of
/// one replica stays on one node however long its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deep_line_scales_out_to_max_replicas_and_no_further() {
    let flags = ["--max-batch", "1", "--max-queue", "0"];
    let a = neuron_with("a", 250, "127.0.0.1:0", &flags);
    let b = neuron_with("b", 250, "127.0.0.1:0", &flags);
    let models = models_toml(&[("solo", ""), ("smol", "max_replicas = 2")]);
    let gw = gateway(&[&a, &b], "lru", &models, "").await;
    let mut events = gw.events(None).await;

    let gw = &gw;
    let burst = |model: &'static str| {
        futures::future::join_all((0..12).map(move |_| async move { gw.chat(model, 24).await }))
    };
    // Default max_replicas: the line waits, one replica serves it all.
    let solo = burst("solo").await;
    for (status, node, body) in &solo {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(node, &solo[0].1, "one replica serves `solo`");
    }
    let st = gw.status().await;
    assert_eq!(placement_nodes(&st, "solo").len(), 1, "{st:?}");

    let smol = burst("smol").await;
    let mut served: Vec<String> = smol
        .iter()
        .map(|(status, node, body)| {
            assert_eq!(*status, 200, "{body}");
            node.clone().expect("x-cortex-node")
        })
        .collect();
    served.sort();
    served.dedup();
    assert_eq!(served, vec!["a", "b"], "both replicas served the burst");
    let st = gw.status().await;
    let mut nodes = placement_nodes(&st, "smol");
    nodes.sort();
    assert_eq!(nodes, vec!["a", "b"], "{st:?}");
    let smol_status = st.models.iter().find(|m| m.id == "smol").unwrap();
    assert_eq!(smol_status.waiting, 0, "the line is empty afterwards");

    let seen = events
        .until(|e| {
            matches!(&e.kind, EventKind::PlacementDecided { model, reason }
                if model == "smol" && reason.starts_with("scale-out"))
        })
        .await;
    let scale_outs: Vec<&Event> = seen
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::PlacementDecided { reason, .. }
                if reason.starts_with("scale-out"))
        })
        .collect();
    assert_eq!(
        scale_outs.len(),
        1,
        "only `smol` scales out: {scale_outs:?}"
    );
    let EventKind::PlacementDecided { reason, .. } = &scale_outs[0].kind else {
        unreachable!()
    };
    assert!(reason.contains("waiting at the gateway"), "{reason}");
    let waited = seen.iter().any(|e| {
        matches!(&e.kind, EventKind::ModelWaiting { model, waiting }
            if model == "solo" && *waiting > 0)
    });
    assert!(waited, "the line's depth went out as events");
    assert!(
        gw.metrics().await.contains("cortex_gateway_waiting"),
        "the waiting gauge is exported"
    );
}

/// A source a neuron reports for a model of its own (a path on that host)
/// is never sent to another node: a load elsewhere asks for the model by
/// its id, which that neuron resolves in its own roots (and here refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_neurons_own_source_is_never_copied_to_another_node() {
    let path = embedded_model();
    let preload = format!("private={}", path.display());
    let a = neuron_with("a", 250, "127.0.0.1:0", &["--preload", &preload]);
    let b = neuron("b", 250);
    let gw = gateway(&[&a, &b], "lru", &models_toml(&[("smol", "")]), "").await;
    gw.wait_status("a reports its own model", Duration::from_secs(20), |s| {
        placement_nodes(s, "private") == vec!["a".to_string()]
    })
    .await;
    let mut events = gw.events(None).await;
    let (status, body) = gw
        .admin(
            "/admin/models/load",
            json!({"model": "private", "node": "b"}),
        )
        .await;
    assert!(status >= 400, "b cannot load what only a has: {body}");
    let seen = events
        .until(|e| {
            e.node.as_deref() == Some("b")
                && matches!(&e.kind, EventKind::ModelLoadStarted { model, .. } if model == "private")
        })
        .await;
    let Some(EventKind::ModelLoadStarted { source, .. }) = seen.last().map(|e| &e.kind) else {
        unreachable!("until stops at b's load")
    };
    assert_eq!(source, "private", "asked by id, not by a's path");
    // Still served where it is.
    let (status, node, body) = gw.chat("private", 2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(node.as_deref(), Some("a"));
}

/// Runtime pins and unpins survive a gateway restart (even a SIGKILL: they
/// are written when made); a corrupt state file is a warning, and
/// models.toml's pins apply again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runtime_pins_survive_a_restart() {
    let a = neuron("a", 250);
    let models = models_toml(&[("smol", ""), ("fixed", "pinned = true")]);
    let mut gw = gateway(&[&a], "lru", &models, "").await;
    let pinned = |s: &cortex_common::status::FleetStatus, id: &str| {
        s.models.iter().find(|m| m.id == id).map(|m| m.pinned)
    };
    let st = gw.status().await;
    assert_eq!(
        (pinned(&st, "smol"), pinned(&st, "fixed")),
        (Some(false), Some(true))
    );
    assert_eq!(
        gw.admin("/admin/models/pin", json!({"model": "smol"}))
            .await
            .0,
        200
    );
    assert_eq!(
        gw.admin("/admin/models/unpin", json!({"model": "fixed"}))
            .await
            .0,
        200
    );
    let file = gw.dir().join("state/pins.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"fixed\": false")) {
        assert!(
            Instant::now() < deadline,
            "pins were not written to {file:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    gw.restart(1).await;
    let st = gw.status().await;
    assert_eq!(
        (pinned(&st, "smol"), pinned(&st, "fixed")),
        (Some(true), Some(false)),
        "the operator's pins, not models.toml's"
    );

    std::fs::write(&file, "{ not json").expect("corrupt the file");
    gw.restart(1).await;
    let st = gw.status().await;
    assert_eq!(
        (pinned(&st, "smol"), pinned(&st, "fixed")),
        (Some(false), Some(true)),
        "a corrupt file is ignored"
    );
}

/// `/admin/models/evict` (the console's `e`): the replica goes, the
/// gateway records an operator's eviction (event and counter), and the
/// neuron's `model_unloaded` says `evicted`; a model not
/// on that node, or a node that does not exist, answers 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_eviction_unloads_and_is_recorded_as_one() {
    let (_a, gw) = smol_on_one_node("").await;
    gw.warm("smol").await;
    let mut events = gw.events(None).await;
    let (status, body) = gw
        .admin("/admin/models/evict", json!({"model": "smol", "node": "a"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nodes"], json!(["a"]), "{body}");
    // The gateway's `evicted` and the neuron's `model_unloaded`, in
    // either order.
    let mut evicted = None;
    let mut unloaded = None;
    while evicted.is_none() || unloaded.is_none() {
        match events.next().await.kind {
            EventKind::Evicted {
                model,
                strategy,
                reason,
                ..
            } if model == "smol" => evicted = Some((strategy, reason)),
            EventKind::ModelUnloaded { model, reason } if model == "smol" => {
                unloaded = Some(reason)
            }
            _ => {}
        }
    }
    let (Some((strategy, reason)), Some(unloaded)) = (evicted, unloaded) else {
        unreachable!("the loop ends with both")
    };
    assert_eq!(strategy, EvictionCause::Operator);
    assert!(reason.contains("operator"), "{reason}");
    assert_eq!(unloaded, UnloadReason::Evicted, "the neuron says why");
    gw.wait_status("smol gone from a", Duration::from_secs(10), |s| {
        placement_nodes(s, "smol").is_empty()
    })
    .await;
    let counted = gw
        .metric_sum(
            "cortex_evictions_total",
            &["model=\"smol\"", "reason=\"operator\""],
        )
        .await;
    assert_eq!(counted, 1.0);
    let (status, body) = gw
        .admin("/admin/models/evict", json!({"model": "smol", "node": "a"}))
        .await;
    assert_eq!(status, 404, "not resident any more: {body}");
    let (status, body) = gw
        .admin(
            "/admin/models/evict",
            json!({"model": "smol", "node": "zz"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_envelope(&body, "node_not_found");
}

/// Two operator loads for a node with room for one, at once: the second
/// finds the first still loading (room is being made, not refused), waits,
/// evicts it once it is settled, and loads; neither gets a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_load_waits_while_room_is_being_made() {
    let a = neuron("a", 150);
    let gw = gateway(
        &[&a],
        "lru",
        &models_toml(&[("smol", ""), ("tiny", "")]),
        "",
    )
    .await;
    let ((s1, b1), (s2, b2)) = tokio::join!(
        gw.admin("/admin/models/load", json!({"model": "smol", "node": "a"})),
        gw.admin("/admin/models/load", json!({"model": "tiny", "node": "a"})),
    );
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    let status = gw.status().await;
    let resident: Vec<bool> = ["smol", "tiny"]
        .iter()
        .map(|m| placement_nodes(&status, m) == vec!["a".to_string()])
        .collect();
    assert_eq!(
        resident.iter().filter(|r| **r).count(),
        1,
        "room for one: {resident:?}"
    );
    assert_eq!(gw.metric_sum("cortex_evictions_total", &[]).await, 1.0);
}

/// With the gateway's line set small, the overflow gets a 503 with
/// `Retry-After` and an envelope saying why; the rest are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_gateway_line_answers_503_with_retry_after() {
    let a = neuron_with(
        "a",
        250,
        "127.0.0.1:0",
        &["--max-batch", "1", "--max-queue", "0"],
    );
    let gw = gateway(
        &[&a],
        "lru",
        &models_toml(&[("smol", "")]),
        "max_waiting = 2\nretry_after_secs = 3",
    )
    .await;
    // Warm: the model is loaded before the burst.
    assert_eq!(gw.chat("smol", 1).await.0, 200);
    let send = || async {
        let r = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&chat_body("smol", 24, false))
            .send()
            .await
            .expect("chat");
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (
            status,
            retry,
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let results = futures::future::join_all((0..10).map(|_| send())).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(ok + refused.len(), 10, "{results:?}");
    // One running, two waiting at the gateway: at least those are served.
    assert!(ok >= 3, "{results:?}");
    assert!(!refused.is_empty(), "the line of 2 overflowed: {results:?}");
    for (_, retry, body) in refused {
        assert_eq!(retry.as_deref(), Some("3"));
        assert_eq!(body["error"]["code"], "gateway_queue_full", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("wait"),
            "{body}"
        );
    }
}

/// On one node with room for two, loads `old` (priority 200) then `cheap`
/// (priority 50), then asks for `new` (priority 100, with `new_extra`)
/// under `strategy`: `victim` must have made room for it — gone, and
/// counted as evicted by the strategy — and the other two be on `a`.
/// Returns the fleet and its events since before the loads.
async fn one_eviction(
    strategy: &str,
    new_extra: &str,
    victim: &str,
) -> (Child, Gateway, EventReader) {
    let a = neuron("a", 250);
    let models = models_toml(&[
        ("old", "residency_priority = 200"),
        ("cheap", "residency_priority = 50"),
        ("new", &format!("residency_priority = 100\n{new_extra}")),
    ]);
    let gw = gateway(&[&a], strategy, &models, "").await;
    let events = gw.events(None).await;
    for m in ["old", "cheap"] {
        gw.load(m, None).await;
    }
    let (status, _, body) = gw.chat("new", 1).await;
    assert_eq!(status, 200, "{body}");
    let s = gw.status().await;
    for m in ["old", "cheap", "new"] {
        let want: Vec<String> = if m == victim {
            vec![]
        } else {
            vec!["a".into()]
        };
        assert_eq!(placement_nodes(&s, m), want, "{m} under {strategy}");
    }
    let (model, reason) = (
        format!("model=\"{victim}\""),
        format!("reason=\"{strategy}\""),
    );
    assert_eq!(
        gw.metric_sum("cortex_evictions_total", &[&model, &reason])
            .await,
        1.0
    );
    (a, gw, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lru_evicts_the_least_recently_used_and_spares_pinned() {
    // LRU ignores classes: `old` was used longest ago.
    let (_a, gw, _) = one_eviction("lru", "", "old").await;

    // Pinned survives pressure: `cheap` is now the least recently used, but pinned.
    let (code, body) = gw
        .admin("/admin/models/pin", json!({"model": "cheap"}))
        .await;
    assert_eq!(
        (code, body),
        (200, json!({"model": "cheap", "pinned": true}))
    );
    let (status, _, body) = gw.chat("old", 1).await;
    assert_eq!(status, 200, "{body}");
    let s = gw.status().await;
    assert_eq!(
        placement_nodes(&s, "cheap"),
        vec!["a"],
        "the pinned model was evicted"
    );
    assert!(
        placement_nodes(&s, "new").is_empty(),
        "new should have made room"
    );
    assert!(s.models.iter().find(|m| m.id == "cheap").unwrap().pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_evicts_the_lowest_class_and_ttl_unloads_idle_models() {
    // Same sequence as the LRU test, different victim: the low class goes.
    let (_a, gw, mut events) = one_eviction("priority", "ttl = \"3s\"", "cheap").await;

    // `new` has ttl 3s: idle, it is unloaded; `old` (no ttl) stays.
    let s = gw
        .wait_status("ttl unload of new", Duration::from_secs(15), |s| {
            s.models
                .iter()
                .any(|m| m.id == "new" && m.placements.is_empty())
        })
        .await;
    assert_eq!(placement_nodes(&s, "old"), vec!["a"]);
    assert_eq!(
        gw.metric_sum(
            "cortex_evictions_total",
            &["model=\"new\"", "reason=\"ttl\""]
        )
        .await,
        1.0
    );
    // The neuron says why each went: the gateway tells it.
    let seen = events
        .until(|e| matches!(&e.kind, EventKind::ModelUnloaded { model, .. } if model == "new"))
        .await;
    let why = |name: &str| {
        seen.iter().find_map(|e| match &e.kind {
            EventKind::ModelUnloaded { model, reason } if model == name => Some(reason.clone()),
            _ => None,
        })
    };
    assert_eq!(why("cheap"), Some(UnloadReason::Evicted));
    assert_eq!(why("new"), Some(UnloadReason::Ttl));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_neuron_is_noticed_at_once_and_rejoins_when_back() {
    let mut a = neuron("a", 250);
    let b = neuron("b", 250);
    let gw = gateway(&[&a, &b], "lru", &models_toml(&[("smol", "")]), "").await;
    for n in ["a", "b"] {
        gw.load("smol", Some(n)).await;
    }
    // Equal load: ties go to `a` first, then the idle `b`.
    let doomed = gw.stream("smol", 400).await;
    assert_eq!(node_of(&doomed).as_deref(), Some("a"));
    let survivor = gw.stream("smol", 12).await;
    assert_eq!(node_of(&survivor).as_deref(), Some("b"));
    // The doomed stream has started its answer (a request that has not is
    // retried elsewhere instead; see tests/faults.rs).
    let mut doomed = doomed.bytes_stream().eventsource();
    first_token(&mut doomed).await;

    let addr = a.url.trim_start_matches("http://").to_string();
    a.kill();
    let killed_at = Instant::now();
    gw.wait_status("a down", Duration::from_secs(1), |s| {
        node_state(s, "a") == Some(NodeState::Down)
    })
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(1));

    let data = read_events(&mut doomed).await;
    let n = data.len();
    assert!(n >= 2, "{data:?}");
    assert_eq!(data[n - 1], "[DONE]", "{data:?}");
    let err: Value = serde_json::from_str(&data[n - 2]).unwrap_or(Value::Null);
    assert!(
        err["error"]["message"].is_string(),
        "no error event before [DONE]: {data:?}"
    );

    let data = read_sse(survivor).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(!data.iter().any(|d| d.contains("\"error\"")), "{data:?}");

    // Traffic goes to b meanwhile.
    let (status, node, body) = gw.chat("smol", 1).await;
    assert_eq!((status, node.as_deref()), (200, Some("b")), "{body}");

    // Back on the same address: rejoins by itself, state re-read (empty).
    let _a = neuron_at("a", 250, &addr);
    let s = gw
        .wait_status("a back up", Duration::from_secs(15), |s| {
            node_state(s, "a") == Some(NodeState::Up)
        })
        .await;
    assert_eq!(placement_nodes(&s, "smol"), vec!["b"]);
    assert_eq!(s.health, cortex_common::status::FleetHealth::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_answer_an_envelope_and_the_gateway_stays_healthy() {
    let a = neuron("a", 250);
    let models = models_toml(&[("smol", ""), ("huge", "")]).replace(
        "id = \"huge\"\nsource = \"embedded\"\nmemory_mb = 100",
        "id = \"huge\"\nsource = \"embedded\"\nmemory_mb = 100000",
    );
    let gw = gateway_with(
        &[&a],
        "lru",
        &models,
        "max_body_bytes = 65536",
        "api_keys = [\"k1\"]",
    )
    .await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let post = |body: reqwest::Body, key: Option<&str>| {
        let mut r = gw
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let good = chat_body("smol", 1, false).to_string();

    let cases: Vec<(reqwest::Body, Option<&str>, u16, &str)> = vec![
        (good.clone().into(), None, 401, "invalid_api_key"),
        (good.clone().into(), Some("nope"), 401, "invalid_api_key"),
        ("{not json".into(), Some("k1"), 400, "invalid_json"),
        (
            r#"{"model":"smol","messages":"hi"}"#.into(),
            Some("k1"),
            400,
            "invalid_request",
        ),
        (
            r#"{"model":"smol","messages":[]}"#.into(),
            Some("k1"),
            400,
            "invalid_messages",
        ),
        (
            chat_body("no-such-model", 1, false).to_string().into(),
            Some("k1"),
            404,
            "model_not_found",
        ),
        (
            format!("{{\"model\":\"smol\",\"pad\":\"{}\"}}", "x".repeat(70_000)).into(),
            Some("k1"),
            413,
            "body_too_large",
        ),
    ];
    for (body, key, want, code) in cases {
        let resp = post(body, key).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "expected {want} {code}");
        let v: Value = resp.json().await.unwrap();
        assert_envelope(&v, code);
    }
    // Nothing can hold `huge`: 503 with Retry-After, promptly.
    let started = Instant::now();
    let resp = post(chat_body("huge", 1, false).to_string().into(), Some("k1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    assert_envelope(&resp.json().await.unwrap(), "no_capacity");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Streaming too: a clean 503 before any stream starts.
    let mut streaming = chat_body("huge", 1, true);
    streaming["stream"] = json!(true);
    let resp = post(streaming.to_string().into(), Some("k1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    // Unknown route.
    let resp = gw
        .http
        .get(format!("{}/v1/nothing", gw.url))
        .bearer_auth("k1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_envelope(&resp.json().await.unwrap(), "route_not_found");

    // Still healthy, nothing loaded, nothing counted against the node.
    let health: Value = gw.get_json("/health").await;
    assert_eq!(health["status"], "ok");
    let s = gw.status().await;
    assert_eq!(s.nodes_up, 1);
    assert!(s.models.iter().all(|m| m.placements.is_empty()));
}

async fn toggle(gw: &Gateway, times: usize) {
    for _ in 0..times {
        gw.admin_ok("/admin/models/pin", json!({"model": "smol"}))
            .await;
        gw.admin_ok("/admin/models/unpin", json!({"model": "smol"}))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_event_id_replays_what_was_missed_or_sends_a_snapshot() {
    let a = neuron("a", 250);
    let gw = gateway(
        &[&a],
        "lru",
        &models_toml(&[("smol", "")]),
        "event_buffer = 32",
    )
    .await;

    let mut live = gw.events(None).await;
    let snap = live.next().await;
    match &snap.kind {
        EventKind::Snapshot { status } => assert_eq!(status.nodes_total, 1),
        other => panic!("first event should be a snapshot, got {other:?}"),
    }
    toggle(&gw, 1).await;
    let seen = live
        .until(|e| matches!(e.kind, EventKind::Unpinned { .. }))
        .await;
    let last = seen.last().unwrap().seq;
    for w in seen.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "gap in the live stream");
    }
    drop(live);

    // Missed while away: replayed in order, from last + 1, nothing lost.
    toggle(&gw, 3).await;
    let mut resumed = gw.events(Some(last)).await;
    let mut replayed = Vec::new();
    let mut unpins = 0;
    while unpins < 3 {
        let e = resumed.next().await;
        assert_ne!(
            e.kind.name(),
            "snapshot",
            "resume should replay, not snapshot"
        );
        if matches!(e.kind, EventKind::Unpinned { .. }) {
            unpins += 1;
        }
        replayed.push(e);
    }
    assert_eq!(replayed[0].seq, last + 1);
    for w in replayed.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "gap in the replay");
    }
    let pins = replayed
        .iter()
        .filter(|e| e.kind.name() == "pinned")
        .count();
    assert_eq!(pins, 3);
    drop(resumed);

    // Too far behind for the 32-event buffer: a fresh snapshot instead.
    toggle(&gw, 20).await;
    let mut stale = gw.events(Some(last)).await;
    let first = stale.next().await;
    assert_eq!(first.kind.name(), "snapshot");
    assert!(first.seq > last + 40);
}

/// A model whose source is a path on the servers: `/v1/models` does not
/// show the path, and a failed load's error does not repeat it to the
/// client (the admin status still shows the source).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_paths_stay_out_of_client_answers() {
    let a = neuron("a", 250);
    let secret = "/srv/cortex-secret/models/nothing-here.gguf";
    let models = format!(
        "{}[[models]]\nid = \"local\"\nsource = \"{secret}\"\nmemory_mb = 100\n",
        models_toml(&[("smol", "")])
    );
    let gw = gateway(&[&a], "lru", &models, "").await;
    let list = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("\"local\""), "{list}");
    assert!(!list.contains("cortex-secret"), "{list}");
    assert!(
        list.contains("\"embedded\""),
        "other sources still show: {list}"
    );

    let (status, _, body) = gw.chat("local", 2).await;
    assert!(status >= 400, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(!body.to_string().contains("cortex-secret"), "{body}");
    let resp = gw.stream("local", 2).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains("cortex-secret"), "{text}");

    let s = gw.status().await;
    let local = s.models.iter().find(|m| m.id == "local").unwrap();
    assert_eq!(local.source, secret, "the admin API may show it");
}
