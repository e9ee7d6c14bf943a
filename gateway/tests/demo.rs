//! `cortex demo --headless`: the fleet comes up (two nodes, the pinned model
//! loaded), serves a chat request, and SIGTERM stops it with no process
//! left behind; nor does SIGKILL leave any.

mod demo_fleet;
mod support;

use std::time::Duration;

use cortex_common::status::{NodeState, PlacementState};
use serde_json::{Value, json};
use support::FleetAdmin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_demo_serves_and_stops_cleanly() {
    let mut demo = demo_fleet::start();
    assert_eq!(
        demo.fleet_pids.len(),
        3,
        "the demo runs a gateway and two neurons: {:?}",
        demo.fleet_pids
    );

    let status = demo.status().await;
    assert_eq!(status.nodes.len(), 2, "two nodes");
    assert_eq!(status.nodes_up, 2, "both nodes up");
    assert!(status.nodes.iter().all(|n| n.state == NodeState::Up));
    let pinned = status
        .models
        .iter()
        .find(|m| m.id == "smollm2")
        .expect("the demo catalogue has smollm2");
    assert!(pinned.pinned, "smollm2 is pinned");
    assert!(
        pinned
            .placements
            .iter()
            .any(|p| p.state == PlacementState::Loaded),
        "the demo preloads the pinned model"
    );
    assert_eq!(status.models.len(), 4, "four model ids");

    // A chat through the alias, which cold-loads smollm2-chat.
    let resp = demo
        .http
        .post(format!("{}/v1/chat/completions", demo.url))
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8
        }))
        .send()
        .await
        .expect("chat request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("chat JSON");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!text.is_empty(), "a completion: {body}");
    demo.wait_status("smollm2-chat loaded", Duration::from_secs(10), |s| {
        s.models.iter().any(|m| {
            m.id == "smollm2-chat"
                && m.placements
                    .iter()
                    .any(|p| p.state == PlacementState::Loaded)
        })
    })
    .await;

    let metrics = demo
        .http
        .get(format!("{}/metrics", demo.metrics_url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("cortex_requests_total"), "metrics served");

    let pids = demo.fleet_pids.clone();
    let ok = tokio::task::block_in_place(|| demo.terminate(Duration::from_secs(20)));
    assert!(ok, "cortex demo exits 0 on SIGTERM");
    let left = demo_fleet::wait_gone(&pids, Duration::from_secs(5));
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// SIGKILL gives the demo no chance to stop its fleet: its children die
/// with it all the same (PR_SET_PDEATHSIG), on Linux.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_demo_leaves_no_orphans() {
    let mut demo = demo_fleet::start();
    assert_eq!(demo.fleet_pids.len(), 3, "{:?}", demo.fleet_pids);
    // The children outlive the start-up: they die with the demo only.
    assert_eq!(demo.status().await.nodes_up, 2);
    let pids = demo.fleet_pids.clone();
    demo.child.kill();
    let left = demo_fleet::wait_gone(&pids, Duration::from_secs(5));
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
