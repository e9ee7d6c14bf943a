//! Deterministic fleets for tests, snapshots and benchmarks: a small two-node
//! fleet that exercises every visual state, and a generator for big fleets.

use cortex_common::event::{EVENT_SCHEMA_VERSION, Event, EventKind, FinishReason, RequestEnd};
use cortex_common::histogram::Distribution;
use cortex_common::neuron_api::{DeviceInfo, Progress};
use cortex_common::status::{
    FleetHealth, FleetStatus, ModelStatus, NodeState, NodeStatus, Placement, PlacementState,
};

/// 2026-01-01T12:00:00Z: a fixed clock so snapshots never change.
pub const T0: u64 = 1_767_268_800_000;
const MIB: u64 = 1024 * 1024;

pub fn event(seq: u64, ts_ms: u64, node: Option<&str>, kind: EventKind) -> Event {
    Event {
        v: EVENT_SCHEMA_VERSION,
        seq,
        ts_ms,
        node: node.map(str::to_string),
        kind,
    }
}

pub fn device(id: &str, name: &str, total_mb: u64, used_mb: u64) -> DeviceInfo {
    DeviceInfo {
        id: id.to_string(),
        kind: id.split(':').next().unwrap_or("cpu").to_string(),
        name: name.to_string(),
        memory_total_bytes: total_mb * MIB,
        memory_used_bytes: used_mb * MIB,
    }
}

pub fn node(name: &str, port: u16, state: NodeState, devices: Vec<DeviceInfo>) -> NodeStatus {
    NodeStatus {
        name: name.to_string(),
        endpoint: format!("http://127.0.0.1:{port}"),
        state,
        devices,
        in_flight: 0,
        reason: (state == NodeState::Down).then(|| "event stream closed".to_string()),
    }
}

pub fn placement(node: &str, state: PlacementState, in_flight: u32) -> Placement {
    Placement {
        node: node.to_string(),
        state,
        progress: None,
        in_flight,
        queued: 0,
        last_used_ms: Some(T0 - 5_000),
    }
}

/// A model with distributions drawn from `seed` so each looks different.
pub fn model(id: &str, placements: Vec<Placement>, seed: u64) -> ModelStatus {
    let mut ttft = Distribution::ttft_ms();
    let mut tok = Distribution::tok_s();
    let n = 20 + seed * 7 % 50;
    for i in 0..n {
        let jitter = ((i * 37 + seed * 11) % 23) as f64;
        ttft.record(12.0 + jitter * (3.0 + seed as f64) + (i % 5) as f64 * 40.0);
        tok.record(25.0 + jitter + seed as f64 * 3.0);
    }
    let ttft_histogram = ttft.snapshot();
    let tok_s_histogram = tok.snapshot();
    ModelStatus {
        id: id.to_string(),
        aliases: Vec::new(),
        source: "embedded".to_string(),
        pinned: false,
        residency_priority: 1,
        memory_mb: 180,
        in_flight: placements.iter().map(|p| p.in_flight).sum(),
        waiting: 0,
        placements,
        requests_total: n,
        errors_total: seed % 3,
        ttft_ms: ttft_histogram.percentiles,
        tok_s: tok_s_histogram.percentiles,
        ttft_histogram,
        tok_s_histogram,
    }
}

/// Two up nodes and one down, four models: loaded and pinned, loading with
/// progress, on two nodes, and not placed anywhere.
pub fn sample_status() -> FleetStatus {
    let nodes = vec![
        node(
            "alpha",
            13131,
            NodeState::Up,
            vec![device("cpu", "AMD EPYC 9B14", 1024, 420)],
        ),
        node(
            "beta",
            13132,
            NodeState::Up,
            vec![
                device("cpu", "Intel Xeon", 2048, 180),
                device("cuda:0", "RTX 4090", 24564, 20100),
            ],
        ),
        node("gamma", 13133, NodeState::Down, vec![]),
    ];
    let mut chat = model(
        "smollm2-chat",
        vec![placement("alpha", PlacementState::Loaded, 2)],
        1,
    );
    chat.pinned = true;
    // Busy: one of its two requests queued at the neuron, three more
    // waiting at the gateway.
    chat.placements[0].queued = 1;
    chat.waiting = 3;
    chat.aliases = vec!["chat".to_string()];
    let mut coder = model(
        "smollm2-coder",
        vec![placement("beta", PlacementState::Loading, 0)],
        2,
    );
    coder.placements[0].progress = Some(Progress {
        done: 60 * MIB,
        total: 150 * MIB,
    });
    coder.placements[0].last_used_ms = None;
    let both = model(
        "smollm2-tiny",
        vec![
            placement("alpha", PlacementState::Loaded, 0),
            placement("beta", PlacementState::Unloading, 1),
        ],
        3,
    );
    let mut cold = model("qwen3-0.6b", vec![], 4);
    cold.source = "Qwen/Qwen3-0.6B".to_string();
    cold.memory_mb = 1200;
    cold.residency_priority = 2;
    let models = vec![chat, coder, both, cold];
    FleetStatus {
        schema: cortex_common::status::STATUS_SCHEMA_VERSION,
        gateway_version: "0.1.0".to_string(),
        generated_at_ms: T0,
        health: FleetHealth::Degraded,
        nodes_up: 2,
        nodes_total: 3,
        requests_per_s: 1.4,
        tokens_per_s: 61.2,
        eviction_strategy: "lru".to_string(),
        nodes,
        models,
    }
}

/// A fleet of `nodes` nodes (two devices each) and `models` models spread
/// over them, for the render benchmark and large-size snapshots.
pub fn big_status(nodes: usize, models: usize) -> FleetStatus {
    let node_list: Vec<NodeStatus> = (0..nodes)
        .map(|i| {
            node(
                &format!("node-{i:02}"),
                13000 + i as u16,
                if i % 17 == 16 {
                    NodeState::Down
                } else {
                    NodeState::Up
                },
                vec![
                    device("cpu", "x86-64", 65536, (i as u64 * 997) % 65536),
                    device("cuda:0", "GPU", 24576, (i as u64 * 3331) % 24576),
                ],
            )
        })
        .collect();
    let model_list = (0..models)
        .map(|j| {
            let state = match j % 5 {
                0 => PlacementState::Loading,
                4 => PlacementState::Unloading,
                _ => PlacementState::Loaded,
            };
            let mut p = placement(
                &format!("node-{:02}", j % nodes.max(1)),
                state,
                (j % 4) as u32,
            );
            if state == PlacementState::Loading {
                p.progress = Some(Progress {
                    done: (j as u64 % 10) * 10,
                    total: 100,
                });
            }
            let mut m = model(&format!("model-{j:03}"), vec![p], j as u64 % 13);
            m.pinned = j % 7 == 0;
            m
        })
        .collect();
    FleetStatus {
        schema: cortex_common::status::STATUS_SCHEMA_VERSION,
        gateway_version: "0.1.0".to_string(),
        generated_at_ms: T0,
        health: FleetHealth::Degraded,
        nodes_up: node_list
            .iter()
            .filter(|n| n.state == NodeState::Up)
            .count() as u32,
        nodes_total: nodes as u32,
        requests_per_s: 12.5,
        tokens_per_s: 850.0,
        eviction_strategy: "priority".to_string(),
        nodes: node_list,
        models: model_list,
    }
}

/// A realistic stream of `n` deltas over `nodes` nodes and `models` models
/// (requests, device stats, loads, pins), starting after seq 1.
pub fn event_stream(n: usize, nodes: usize, models: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let seq = i as u64 + 2;
        let ts = T0 + i as u64 * 2;
        let node_name = format!("node-{:02}", i % nodes.max(1));
        let model_id = format!("model-{:03}", i % models.max(1));
        let kind = match i % 10 {
            0..=3 => EventKind::RequestStarted {
                request_id: format!("r{i}"),
                model: model_id,
                prompt_tokens: 20,
                cached_tokens: 0,
            },
            4..=7 => EventKind::RequestFinished {
                request_id: format!("r{}", i - 4),
                model: model_id,
                prompt_tokens: 20,
                cached_tokens: 0,
                completion_tokens: 64,
                reasoning_tokens: 0,
                ttft_ms: Some(40.0),
                prefill_tok_s: Some(300.0),
                decode_tok_s: Some(42.0),
                duration_ms: 1500.0,
                finish_reason: Some(FinishReason::Stop),
                ended: RequestEnd::Done,
                error: None,
            },
            8 => EventKind::ModelLoadProgress {
                model: model_id,
                done: (i % 100) as u64,
                total: 100,
                unit: "bytes".into(),
                phase: Default::default(),
            },
            _ => EventKind::Pinned { model: model_id },
        };
        out.push(event(seq, ts, Some(&node_name), kind));
    }
    out
}
