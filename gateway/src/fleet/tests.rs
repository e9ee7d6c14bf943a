//! Server-less tests of the fleet: routing, status, reservations and the
//! neuron's word on loads, refused steps, request counts, and a snapshot
//! taken while changes are published counting each change once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cortex_common::config::gateway::GatewayConfig;
use cortex_common::config::models::ModelsConfig;
use cortex_common::event::{EventKind, FinishReason, RequestEnd, UnloadReason};
use cortex_common::neuron_api::{DeviceInfo, ModelInfo, ModelState};
use cortex_common::status::{FleetHealth, PlacementState};

use super::*;
use crate::events::EventBus;

fn fleet(strategy: &str) -> (Fleet, Arc<EventBus>) {
    let cfg = GatewayConfig::parse(
        Path::new("c.toml"),
        &format!(
            "[eviction]\nstrategy = \"{strategy}\"\n[[neurons]]\nname = \"a\"\nendpoint = \"http://x:1\"\n\
             [[neurons]]\nname = \"b\"\nendpoint = \"http://y:1\"\n"
        ),
    )
    .unwrap();
    let models = ModelsConfig::parse(
        Path::new("m.toml"),
        "[[models]]\nid = \"m\"\nsource = \"embedded\"\nmemory_mb = 100\n",
        None,
    )
    .unwrap();
    let bus = Arc::new(EventBus::new(1024, 1 << 24));
    (Fleet::new(&cfg, models, bus.clone()), bus)
}

fn device(total_mb: u64) -> DeviceInfo {
    DeviceInfo {
        id: "cpu".into(),
        kind: "cpu".into(),
        name: "cpu".into(),
        memory_total_bytes: total_mb << 20,
        memory_used_bytes: 0,
    }
}

fn loaded(id: &str) -> ModelInfo {
    ModelInfo {
        memory_bytes: 100 << 20,
        ..ModelInfo::bare(id, "embedded", ModelState::Loaded, "cpu")
    }
}

fn stats(models: Vec<ModelInfo>) -> EventKind {
    EventKind::DeviceStats {
        devices: vec![device(250)],
        models,
    }
}

fn finished(model: &str) -> EventKind {
    EventKind::RequestFinished {
        request_id: "r".into(),
        model: model.into(),
        prompt_tokens: 3,
        cached_tokens: 0,
        completion_tokens: 5,
        reasoning_tokens: 0,
        ttft_ms: Some(20.0),
        prefill_tok_s: None,
        decode_tok_s: Some(40.0),
        duration_ms: 100.0,
        finish_reason: Some(FinishReason::Stop),
        ended: RequestEnd::Done,
        error: None,
    }
}

/// The kinds published after `seq`, by name.
fn published_after(bus: &EventBus, seq: u64) -> Vec<&'static str> {
    bus.since(seq)
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect()
}

#[test]
fn least_in_flight_replica_first_and_down_nodes_skipped() {
    let (f, _) = fleet("lru");
    let mut g = f.lock();
    g.node_up(0, vec![device(250)], vec![loaded("m")]);
    g.node_up(1, vec![device(250)], vec![loaded("m")]);
    assert_eq!(g.replicas("m"), vec![0, 1]);
    let (route, total) = g.lease("m").unwrap();
    assert_eq!((route.node.as_str(), total), ("a", 1));
    assert_eq!(g.replicas("m"), vec![1, 0]);
    assert_eq!(g.release(0, "m"), 0);
    g.node_down(1, "stream dropped");
    assert_eq!(g.replicas("m"), vec![0]);
    assert_eq!(g.begin_unload(0, "m"), Ok(true));
    assert!(
        g.replicas("m").is_empty(),
        "nothing is routed to an unloading replica"
    );
}

#[test]
fn status_reflects_nodes_placements_and_histograms() {
    let (f, _) = fleet("priority");
    let mut g = f.lock();
    g.node_up(0, vec![device(250)], vec![loaded("m")]);
    g.apply(0, finished("m"));
    let s = g.status();
    assert_eq!(s.health, FleetHealth::Degraded);
    assert_eq!((s.nodes_up, s.nodes_total), (1, 2));
    assert_eq!(s.eviction_strategy, "priority");
    let m = &s.models[0];
    assert_eq!(m.placements.len(), 1);
    assert_eq!(m.placements[0].state, PlacementState::Loaded);
    assert_eq!(m.ttft_histogram.count, 1);
    assert!(m.tok_s.p50.is_some());
    assert_eq!(
        m.requests_total, 0,
        "a neuron's finished request is not a client request"
    );
}

#[test]
fn state_of_ids_a_node_no_longer_reports_is_freed() {
    let (f, _) = fleet("lru");
    let mut g = f.lock();
    let stray: Vec<ModelInfo> = (0..100).map(|i| loaded(&format!("stray-{i}"))).collect();
    g.node_up(0, vec![device(250)], stray.clone());
    g.apply(0, stats(stray));
    assert_eq!(
        g.inner.models.len(),
        101,
        "the catalogue's m and 100 strays"
    );
    assert_eq!(g.inner.nodes[0].replicas.len(), 100);
    let _lease = g.lease("stray-7").unwrap();
    g.apply(0, stats(vec![loaded("m")]));
    let kept: Vec<&String> = g.inner.models.keys().collect();
    assert_eq!(kept, vec!["m", "stray-7"], "in flight stays until it ends");
    g.release(0, "stray-7");
    g.node_down(0, "gone");
    assert_eq!(g.inner.models.keys().collect::<Vec<_>>(), vec!["m"]);
    assert!(g.inner.nodes[0].replicas.is_empty());
}

#[test]
fn a_reservation_holds_memory_until_the_neuron_reports_the_load() {
    let (f, bus) = fleet("lru");
    let mut g = f.lock();
    g.node_up(0, vec![device(250)], vec![]);
    let seq = bus.last_seq();
    g.reserve(0, "m", 100 << 20, &[], "room".into()).unwrap();
    assert_eq!(published_after(&bus, seq), vec!["placement_decided"]);
    assert_eq!(g.inner.nodes[0].used_bytes(), 100 << 20);
    assert_eq!(g.placements("m")[0].state, PlacementState::Loading);
    assert!(!g.servable_on(0, "m"));
    // The neuron's listing counts it once loaded: no double count.
    g.apply(
        0,
        EventKind::DeviceStats {
            devices: vec![DeviceInfo {
                memory_used_bytes: 100 << 20,
                ..device(250)
            }],
            models: vec![loaded("m")],
        },
    );
    assert_eq!(g.inner.nodes[0].used_bytes(), 100 << 20);
    assert!(g.servable_on(0, "m"));
}

#[test]
fn a_load_is_recorded_by_the_neurons_events_alone() {
    let (f, _) = fleet("lru");
    let mut g = f.lock();
    g.node_up(0, vec![device(250)], vec![]);
    g.reserve(0, "m", 100 << 20, &[], "room".into()).unwrap();
    g.apply(
        0,
        EventKind::ModelLoadStarted {
            model: "m".into(),
            source: "embedded".into(),
        },
    );
    assert_eq!(g.seen(0, "m").state, Some(ReplicaState::Loading));
    g.apply(
        0,
        EventKind::ModelLoaded {
            model: "m".into(),
            duration_ms: 5,
            memory_bytes: 90 << 20,
            quant: None,
            unquantized_bytes: None,
        },
    );
    assert_eq!(g.seen(0, "m").state, Some(ReplicaState::Loaded));
    assert!(g.servable_on(0, "m"));
    assert_eq!(
        g.inner.nodes[0].used_bytes(),
        90 << 20,
        "reservation released"
    );
    assert_eq!(g.inner.models["m"].observed_bytes(), Some(90 << 20));
    // Unload: the gateway starts it, the neuron ends it.
    g.begin_unload(0, "m").unwrap();
    g.apply(
        0,
        EventKind::ModelUnloaded {
            model: "m".into(),
            reason: UnloadReason::Evicted,
        },
    );
    assert_eq!(g.seen(0, "m").state, None);
}

#[test]
fn illegal_steps_are_refused_and_change_nothing() {
    let (f, bus) = fleet("lru");
    let mut g = f.lock();
    g.node_up(0, vec![device(250)], vec![loaded("m"), loaded("x")]);
    let seq = bus.last_seq();
    // Already loaded: no second reservation, no event.
    let refused = g.reserve(0, "m", 1, &[], "again".into()).unwrap_err();
    assert_eq!(refused.state, Some(ReplicaState::Loaded));
    assert!(refused.to_string().contains("loaded"), "{refused}");
    // A victim that is not loaded: nothing reserved, the other victim untouched.
    g.reserve(1, "m", 1, &[], "b".into()).unwrap();
    let refused = g
        .reserve(0, "y", 1, &["x".into(), "nope".into()], "r".into())
        .unwrap_err();
    assert_eq!(refused.model, "nope");
    assert_eq!(g.seen(0, "x").state, Some(ReplicaState::Loaded));
    assert_eq!(g.seen(0, "y").state, None);
    // Nothing to unload yet where only a reservation is.
    assert!(g.begin_unload(1, "m").is_err());
    assert_eq!(g.seen(1, "m").state, Some(ReplicaState::Reserved));
    // A failed unload that was never started changes nothing.
    g.unload_failed(0, "m");
    assert_eq!(g.seen(0, "m").state, Some(ReplicaState::Loaded));
    assert_eq!(published_after(&bus, seq), vec!["placement_decided"]);
}

#[test]
fn an_unload_that_fails_serves_again() {
    let (f, _) = fleet("lru");
    let mut g = f.lock();
    g.node_up(0, vec![device(250)], vec![loaded("m")]);
    assert_eq!(g.begin_unload(0, "m"), Ok(true));
    assert_eq!(g.begin_unload(0, "m"), Ok(false), "already under way");
    // A listing from before the unload does not undo it.
    g.apply(0, stats(vec![loaded("m")]));
    assert!(!g.servable_on(0, "m"));
    g.unload_failed(0, "m");
    assert!(g.servable_on(0, "m"));
}

#[test]
fn a_node_going_down_keeps_only_the_gateways_reservations() {
    let (f, bus) = fleet("lru");
    let mut g = f.lock();
    g.node_up(0, vec![device(250)], vec![loaded("x")]);
    g.reserve(0, "m", 100 << 20, &[], "room".into()).unwrap();
    let seq = bus.last_seq();
    assert!(g.node_down(0, "gone"));
    assert!(!g.node_down(0, "still gone"), "down once");
    assert_eq!(published_after(&bus, seq), vec!["node_down"]);
    assert_eq!(g.seen(0, "x").state, None);
    assert_eq!(g.seen(0, "m").state, Some(ReplicaState::Reserved));
    g.abandon_load(0, "m");
    assert_eq!(g.seen(0, "m").state, None);
}

#[test]
fn requests_are_counted_once_each_with_their_event() {
    let (f, bus) = fleet("lru");
    let mut g = f.lock();
    let seq = bus.last_seq();
    g.request_done("r1", "m", Some("a"), RequestEnd::Done);
    g.request_done("r2", "m", None, RequestEnd::ClientGone);
    g.request_done("r3", "m", Some("a"), RequestEnd::Error);
    let s = g.status();
    assert_eq!(
        (s.models[0].requests_total, s.models[0].errors_total),
        (3, 1)
    );
    assert_eq!(published_after(&bus, seq), vec!["request_done"; 3]);
}

/// A change made while a subscriber takes its snapshot shows either in the
/// snapshot or as a delta after it: never both, never neither.
#[test]
fn a_snapshot_and_its_deltas_count_every_change_once() {
    let (f, _) = fleet("lru");
    let f = Arc::new(f);
    // Fewer than the bus's live buffer holds, so no subscriber lags.
    const N: u64 = 500;
    let writer = {
        let f = f.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                f.lock()
                    .request_done(&format!("r{i}"), "m", None, RequestEnd::Done);
            }
        })
    };
    let mut subs = Vec::new();
    while !writer.is_finished() {
        subs.push(f.subscribe(None));
    }
    writer.join().unwrap();
    subs.push(f.subscribe(None));
    for (mut sub, snapshot) in subs {
        let snapshot = snapshot.expect("no replay asked for: a snapshot");
        let mut total = snapshot.models[0].requests_total;
        while let Ok(e) = sub.rx.try_recv() {
            assert!(e.seq > sub.last_seq, "a delta from before the snapshot");
            if matches!(e.kind, EventKind::RequestDone { .. }) {
                total += 1;
            }
        }
        assert_eq!(total, N, "snapshot at seq {} plus deltas", sub.last_seq);
    }
}

#[tokio::test]
async fn a_waiter_wakes_when_the_neuron_reports_the_load() {
    let (f, _) = fleet("lru");
    let f = Arc::new(f);
    {
        let mut g = f.lock();
        g.node_up(0, vec![device(250)], vec![]);
        g.reserve(0, "m", 1, &[], "room".into()).unwrap();
    }
    let waiter = {
        let f = f.clone();
        tokio::spawn(async move {
            f.wait_replica(0, "m", Duration::from_secs(10), |s| {
                s.state != Some(ReplicaState::Reserved)
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    f.lock().apply(0, stats(vec![loaded("m")]));
    let (seen, done) = waiter.await.unwrap();
    assert!(done);
    assert_eq!(seen.state, Some(ReplicaState::Loaded));
    // And gives up after its timeout, saying what it saw.
    let (seen, done) = f
        .wait_replica(0, "m", Duration::from_millis(20), |s| s.state.is_none())
        .await;
    assert!(!done);
    assert_eq!(seen.state, Some(ReplicaState::Loaded));
}
