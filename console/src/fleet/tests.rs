use super::*;
use crate::fixtures::{T0, device, event, sample_status};
use cortex_common::neuron_api::ModelInfo;

fn snapshot_event(seq: u64) -> Event {
    event(
        seq,
        T0,
        None,
        EventKind::Snapshot {
            status: Box::new(sample_status()),
        },
    )
}

fn placement_state(fleet: &Fleet, model: &str, node: &str) -> Option<PlacementState> {
    fleet.models[model]
        .status
        .placements
        .iter()
        .find(|p| p.node == node)
        .map(|p| p.state)
}

#[test]
fn snapshot_replaces_the_whole_state() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    assert!(fleet.has_snapshot);
    assert_eq!(fleet.last_seq, 1);
    assert_eq!(fleet.nodes.len(), 3);
    assert_eq!(fleet.nodes_up(), 2);
    assert_eq!(fleet.health(), FleetHealth::Degraded);
    assert_eq!(fleet.models.len(), 4);
    assert_eq!(fleet.rates(), (1.4, 61.2));
    assert_eq!(
        fleet.log.back().unwrap().text,
        "snapshot: 3 nodes, 4 models"
    );
}

#[test]
fn load_lifecycle_moves_through_states() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    fleet.apply(event(
        2,
        T0 + 1,
        Some("beta"),
        EventKind::ModelLoadStarted {
            model: "qwen3-0.6b".into(),
            source: "Qwen/Qwen3-0.6B".into(),
        },
    ));
    assert_eq!(
        placement_state(&fleet, "qwen3-0.6b", "beta"),
        Some(PlacementState::Loading)
    );
    fleet.apply(event(
        3,
        T0 + 2,
        Some("beta"),
        EventKind::ModelLoadProgress {
            model: "qwen3-0.6b".into(),
            done: 50,
            total: 200,
            unit: "bytes".into(),
            phase: cortex_common::event::LoadPhase::Download,
        },
    ));
    let p = &fleet.models["qwen3-0.6b"].status.placements[0];
    assert_eq!(
        p.progress,
        Some(Progress {
            done: 50,
            total: 200
        })
    );
    assert_eq!(
        fleet.models["qwen3-0.6b"].load_phase(),
        Some(cortex_common::event::LoadPhase::Download)
    );
    fleet.apply(event(
        4,
        T0 + 3,
        Some("beta"),
        EventKind::ModelLoaded {
            model: "qwen3-0.6b".into(),
            duration_ms: 1500,
            memory_bytes: 1 << 30,
            quant: None,
            unquantized_bytes: None,
        },
    ));
    let p = &fleet.models["qwen3-0.6b"].status.placements[0];
    assert_eq!(p.state, PlacementState::Loaded);
    assert_eq!(p.progress, None);
    assert_eq!(fleet.models["qwen3-0.6b"].load_phase(), None);
    assert!(
        fleet
            .log
            .back()
            .unwrap()
            .text
            .contains("loaded qwen3-0.6b on beta in 1.5s")
    );
    fleet.apply(event(
        5,
        T0 + 4,
        Some("beta"),
        EventKind::ModelUnloaded {
            model: "qwen3-0.6b".into(),
            reason: cortex_common::event::UnloadReason::Requested,
        },
    ));
    assert_eq!(placement_state(&fleet, "qwen3-0.6b", "beta"), None);
    assert_eq!(fleet.last_seq, 5);
}

#[test]
fn failed_load_is_logged_as_error_and_removes_the_placement() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    fleet.apply(event(
        2,
        T0,
        Some("beta"),
        EventKind::ModelLoadFailed {
            model: "smollm2-coder".into(),
            reason: "out of memory".into(),
        },
    ));
    assert_eq!(placement_state(&fleet, "smollm2-coder", "beta"), None);
    let last = fleet.log.back().unwrap();
    assert_eq!(last.level, Level::Error);
    assert!(last.text.contains("out of memory"));
}

#[test]
fn requests_count_in_flight_tokens_and_errors() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    let before = fleet.models["smollm2-tiny"].status.clone();
    fleet.apply(event(
        2,
        T0 + 10,
        Some("alpha"),
        EventKind::RequestStarted {
            request_id: "r1".into(),
            model: "smollm2-tiny".into(),
            prompt_tokens: 5,
            cached_tokens: 0,
        },
    ));
    assert_eq!(
        fleet.models["smollm2-tiny"].status.in_flight,
        before.in_flight + 1
    );
    assert_eq!(fleet.nodes["alpha"].in_flight, 1);
    fleet.apply(event(
        3,
        T0 + 900,
        Some("alpha"),
        EventKind::RequestFinished {
            request_id: "r1".into(),
            model: "smollm2-tiny".into(),
            prompt_tokens: 5,
            cached_tokens: 0,
            completion_tokens: 40,
            reasoning_tokens: 0,
            ttft_ms: Some(20.0),
            prefill_tok_s: None,
            decode_tok_s: Some(40.0),
            duration_ms: 1000.0,
            finish_reason: None,
            ended: RequestEnd::Error,
            error: Some("device fault".into()),
        },
    ));
    let m = &fleet.models["smollm2-tiny"];
    assert_eq!(m.status.in_flight, before.in_flight);
    assert_eq!(m.spark.back(), Some(&40));
    assert_eq!(fleet.nodes["alpha"].in_flight, 0);
    assert_eq!(fleet.log.back().unwrap().level, Level::Error);
    // The counts are the gateway's: one per client request, when it is
    // done with it, however many attempts it took and whatever failed.
    assert_eq!(
        (m.status.requests_total, m.status.errors_total),
        (before.requests_total, before.errors_total),
        "a neuron's finished attempt is not a client request"
    );
    fleet.apply(event(
        4,
        T0 + 910,
        Some("alpha"),
        EventKind::RequestFailed {
            request_id: "r1".into(),
            model: "smollm2-tiny".into(),
            status: 502,
            reason: "device fault".into(),
        },
    ));
    for (seq, id, ended) in [(5, "r1", RequestEnd::Error), (6, "r2", RequestEnd::Done)] {
        fleet.apply(event(
            seq,
            T0 + 920,
            Some("alpha"),
            EventKind::RequestDone {
                request_id: id.into(),
                model: "smollm2-tiny".into(),
                ended,
            },
        ));
    }
    let m = &fleet.models["smollm2-tiny"];
    assert_eq!(m.status.requests_total, before.requests_total + 2);
    assert_eq!(m.status.errors_total, before.errors_total + 1);
}

#[test]
fn local_rates_take_over_after_one_window() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    for i in 0..10u64 {
        fleet.apply(event(
            2 + i,
            T0 + 1000 + i * 500,
            Some("alpha"),
            EventKind::RequestFinished {
                request_id: format!("r{i}"),
                model: "smollm2-chat".into(),
                prompt_tokens: 1,
                cached_tokens: 0,
                completion_tokens: 10,
                reasoning_tokens: 0,
                ttft_ms: None,
                prefill_tok_s: None,
                decode_tok_s: None,
                duration_ms: 1.0,
                finish_reason: None,
                ended: RequestEnd::Done,
                error: None,
            },
        ));
    }
    // Last event at T0+5500: the window (T0+500, T0+5500] holds all 10.
    assert_eq!(fleet.rates(), (2.0, 20.0));
}

#[test]
fn node_down_clears_its_placements_and_node_up_restores_it() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    fleet.apply(event(
        2,
        T0,
        Some("alpha"),
        EventKind::NodeDown {
            endpoint: "http://127.0.0.1:13131".into(),
            reason: "connection reset".into(),
        },
    ));
    assert_eq!(fleet.nodes["alpha"].state, NodeState::Down);
    assert_eq!(placement_state(&fleet, "smollm2-chat", "alpha"), None);
    assert_eq!(fleet.health(), FleetHealth::Degraded);
    fleet.apply(event(
        3,
        T0,
        Some("alpha"),
        EventKind::NodeUp {
            endpoint: "http://127.0.0.1:13131".into(),
        },
    ));
    assert_eq!(fleet.nodes["alpha"].state, NodeState::Up);
    assert_eq!(fleet.nodes["alpha"].reason, None);
}

#[test]
fn device_stats_are_authoritative_for_a_node() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    let info = ModelInfo {
        memory_bytes: 1,
        in_flight: 3,
        queue_depth: 1,
        ..ModelInfo::bare("fresh", "embedded", ModelState::Loaded, "cpu")
    };
    fleet.apply(event(
        2,
        T0 + 2000,
        Some("alpha"),
        EventKind::DeviceStats {
            devices: vec![device("cpu", "cpu", 2048, 999)],
            models: vec![info],
        },
    ));
    // alpha now holds only `fresh`: the others' placements there are gone.
    assert_eq!(placement_state(&fleet, "smollm2-chat", "alpha"), None);
    assert_eq!(placement_state(&fleet, "smollm2-tiny", "alpha"), None);
    assert_eq!(
        placement_state(&fleet, "fresh", "alpha"),
        Some(PlacementState::Loaded)
    );
    assert_eq!(fleet.models["fresh"].status.in_flight, 3);
    assert_eq!(
        fleet.models["fresh"].load(),
        (2, 1, 0),
        "two running, one queued at the neuron"
    );
    assert_eq!(fleet.nodes["alpha"].in_flight, 3);
    assert_eq!(fleet.nodes["alpha"].devices[0].memory_used_bytes, 999 << 20);
}

#[test]
fn the_gateway_line_follows_model_waiting_events() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    let before = fleet.models["smollm2-chat"].load();
    assert_eq!(before.2, 3, "the snapshot's waiting count");
    for (seq, waiting) in [(2, 7), (3, 0)] {
        fleet.apply(event(
            seq,
            T0 + seq * 100,
            None,
            EventKind::ModelWaiting {
                model: "smollm2-chat".into(),
                waiting,
            },
        ));
        let (running, queued, w) = fleet.models["smollm2-chat"].load();
        assert_eq!((running, queued, w), (before.0, before.1, waiting));
    }
}

#[test]
fn pins_evictions_and_histograms() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    fleet.apply(event(
        2,
        T0,
        None,
        EventKind::Pinned {
            model: "smollm2-tiny".into(),
        },
    ));
    assert!(fleet.models["smollm2-tiny"].status.pinned);
    fleet.apply(event(
        3,
        T0,
        None,
        EventKind::Unpinned {
            model: "smollm2-chat".into(),
        },
    ));
    assert!(!fleet.models["smollm2-chat"].status.pinned);
    fleet.apply(event(
        4,
        T0,
        Some("alpha"),
        EventKind::Evicted {
            model: "smollm2-tiny".into(),
            for_model: "qwen3-0.6b".into(),
            strategy: cortex_common::event::EvictionCause::Lru,
            reason: "least recently used".into(),
        },
    ));
    assert_eq!(
        placement_state(&fleet, "smollm2-tiny", "alpha"),
        Some(PlacementState::Unloading)
    );
    let last = fleet.log.back().unwrap();
    assert_eq!(last.level, Level::Warn);
    assert!(
        last.text
            .contains("for qwen3-0.6b (lru: least recently used)")
    );

    let mut d = cortex_common::histogram::Distribution::ttft_ms();
    d.record(7.0);
    let snap = d.snapshot();
    fleet.apply(event(
        5,
        T0,
        Some("beta"),
        EventKind::Histograms {
            model: "smollm2-tiny".into(),
            ttft_ms: snap.clone(),
            tok_s: Default::default(),
        },
    ));
    assert_eq!(fleet.models["smollm2-tiny"].per_node["beta"].ttft_ms, snap);
    fleet.apply(event(
        6,
        T0,
        None,
        EventKind::Histograms {
            model: "smollm2-tiny".into(),
            ttft_ms: snap.clone(),
            tok_s: Default::default(),
        },
    ));
    assert_eq!(fleet.models["smollm2-tiny"].status.ttft_histogram, snap);
    assert_eq!(
        fleet.models["smollm2-tiny"].status.ttft_ms,
        snap.percentiles
    );
}

#[test]
fn a_gap_in_seq_is_logged_and_a_new_snapshot_keeps_history() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    fleet.apply(event(
        2,
        T0 + 1000,
        Some("alpha"),
        EventKind::RequestFinished {
            request_id: "r".into(),
            model: "smollm2-chat".into(),
            prompt_tokens: 1,
            cached_tokens: 0,
            completion_tokens: 7,
            reasoning_tokens: 0,
            ttft_ms: None,
            prefill_tok_s: None,
            decode_tok_s: None,
            duration_ms: 1.0,
            finish_reason: None,
            ended: RequestEnd::Done,
            error: None,
        },
    ));
    fleet.apply(event(
        9,
        T0 + 1000,
        None,
        EventKind::Pinned { model: "x".into() },
    ));
    assert!(
        fleet
            .log
            .iter()
            .any(|e| e.text == "missed events 3..8 (stream gap)")
    );
    fleet.apply(snapshot_event(50));
    assert_eq!(fleet.last_seq, 50);
    assert_eq!(fleet.models["smollm2-chat"].spark.back(), Some(&7));
    assert!(
        !fleet.models.contains_key("x"),
        "snapshot drops unknown models"
    );
}

#[test]
fn sparkline_window_slides_and_is_bounded() {
    let mut fleet = Fleet::new();
    fleet.apply(snapshot_event(1));
    for s in 0..200u64 {
        fleet.apply(event(
            2 + s,
            T0 + s * 1000,
            Some("alpha"),
            EventKind::DeviceStats {
                devices: vec![],
                models: vec![],
            },
        ));
    }
    let m = &fleet.models["smollm2-chat"];
    assert_eq!(m.spark.len(), SPARK_SECONDS);
    assert!(m.spark.iter().all(|v| *v == 0));
}

#[test]
fn log_is_a_bounded_ring() {
    let mut fleet = Fleet::new();
    for i in 0..(LOG_CAPACITY as u64 + 10) {
        fleet.apply(event(
            i + 1,
            T0,
            None,
            EventKind::Pinned {
                model: format!("m{i}"),
            },
        ));
    }
    assert_eq!(fleet.log.len(), LOG_CAPACITY);
    assert_eq!(fleet.log.front().unwrap().text, "pinned m10");
}

#[test]
fn human_bytes_formats() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(180 << 20), "180 MiB");
    assert_eq!(human_bytes(3 << 30), "3.0 GiB");
}
