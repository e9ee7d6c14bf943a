//! The fleet event stream against the gateway's status, with real neurons
//! on loopback: subscribers that join while models load, get evicted,
//! unload and serve requests each fold their snapshot and the deltas after
//! it with the console's own model, and end with exactly the placements,
//! pins and request counts of the final `/admin/status` — no change counted
//! twice, none missed.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cortex_common::event::EventKind;
use cortex_common::status::{FleetStatus, NodeState, PlacementState};
use cortex_console::fleet::Fleet as ConsoleFleet;
use serde_json::json;
use support::*;

/// What both sides must agree on about a model.
#[derive(Debug, PartialEq)]
struct ModelPicture {
    /// (node, state), by node.
    placements: Vec<(String, PlacementState)>,
    requests_total: u64,
    errors_total: u64,
    pinned: bool,
}

/// What both sides must agree on: every model, and each node's state.
#[derive(Debug, PartialEq)]
struct Picture {
    models: BTreeMap<String, ModelPicture>,
    nodes: BTreeMap<String, NodeState>,
}

fn picture<'a>(
    models: impl Iterator<Item = &'a cortex_common::status::ModelStatus>,
    nodes: impl Iterator<Item = &'a cortex_common::status::NodeStatus>,
) -> Picture {
    Picture {
        models: models
            .map(|m| {
                let mut placements: Vec<(String, PlacementState)> = m
                    .placements
                    .iter()
                    .map(|p| (p.node.clone(), p.state))
                    .collect();
                placements.sort_by(|a, b| a.0.cmp(&b.0));
                let seen = ModelPicture {
                    placements,
                    requests_total: m.requests_total,
                    errors_total: m.errors_total,
                    pinned: m.pinned,
                };
                (m.id.clone(), seen)
            })
            .collect(),
        nodes: nodes.map(|n| (n.name.clone(), n.state)).collect(),
    }
}

fn of_status(s: &FleetStatus) -> Picture {
    picture(s.models.iter(), s.nodes.iter())
}

fn of_fold(f: &ConsoleFleet) -> Picture {
    picture(f.models.values().map(|m| &m.status), f.nodes.values())
}

/// Loads, evictions (three models, room for two), unloads, requests (one
/// that no node can take, so it fails at the gateway) and pins, `rounds`
/// times over; returns the requests sent.
async fn churn(gw: &Gateway, rounds: usize) -> u64 {
    let mut sent = 0;
    for _ in 0..rounds {
        gw.load("smol", Some("a")).await;
        let chats = futures::future::join_all((0..3).map(|_| gw.chat("smol", 2))).await;
        for (status, _, body) in &chats {
            assert_eq!(*status, 200, "{body}");
        }
        sent += chats.len() as u64;
        // Cold loads by request: the third model evicts one of the others.
        for m in ["tiny", "spare"] {
            let (status, _, body) = gw.chat(m, 1).await;
            assert_eq!(status, 200, "{m}: {body}");
            sent += 1;
        }
        let (status, _, body) = gw.chat("huge", 1).await;
        assert_eq!(status, 503, "{body}");
        sent += 1;
        gw.admin_ok("/admin/models/pin", json!({"model": "tiny"}))
            .await;
        gw.admin_ok("/admin/models/unload", json!({"model": "spare"}))
            .await;
        gw.admin_ok("/admin/models/unpin", json!({"model": "tiny"}))
            .await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_and_deltas_fold_to_the_final_status() {
    let a = neuron("a", 250);
    let models = models_toml(&[("smol", ""), ("tiny", ""), ("spare", ""), ("marker", "")])
        + "[[models]]\nid = \"huge\"\nsource = \"embedded\"\nmemory_mb = 100000\n";
    let gw = gateway(&[&a], "lru", &models, "").await;

    // Subscribers join all through the churn, each at its own snapshot.
    let mut readers = vec![gw.events(None).await];
    let work = churn(&gw, 3);
    tokio::pin!(work);
    let sent = loop {
        tokio::select! {
            sent = &mut work => break sent,
            _ = tokio::time::sleep(Duration::from_millis(150)) => {
                readers.push(gw.events(None).await);
            }
        }
    };
    assert!(readers.len() > 3, "too few subscribers joined mid-churn");
    // A last change every reader can wait for: after it, all is settled.
    gw.admin_ok("/admin/models/pin", json!({"model": "marker"}))
        .await;

    let status = gw.status().await;
    let total: u64 = status.models.iter().map(|m| m.requests_total).sum();
    assert_eq!(total, sent, "one count per client request");
    let huge = status.models.iter().find(|m| m.id == "huge").unwrap();
    assert_eq!((huge.requests_total, huge.errors_total), (3, 3));
    assert_eq!(
        gw.metric_sum("cortex_requests_total", &[]).await,
        sent as f64,
        "the metric counts the same requests"
    );
    let want = of_status(&status);
    for (i, mut reader) in readers.into_iter().enumerate() {
        let mut fold = ConsoleFleet::new();
        let mut snapshot_seq = None;
        loop {
            let e = reader.next().await;
            if matches!(e.kind, EventKind::Snapshot { .. }) {
                snapshot_seq = Some(e.seq);
            } else if let Some(s) = snapshot_seq {
                assert!(
                    e.seq > s,
                    "reader {i}: delta {} not after the snapshot {s}",
                    e.seq
                );
            }
            let marker = matches!(&e.kind, EventKind::Pinned { model } if model == "marker");
            fold.apply(e);
            if marker {
                break;
            }
        }
        assert!(snapshot_seq.is_some(), "reader {i} started with a snapshot");
        assert_eq!(
            of_fold(&fold),
            want,
            "reader {i}'s fold differs from the status"
        );
    }
}
