//! The console's local model of the fleet: built from the `snapshot` event of
//! `/admin/events`, then kept current by applying each delta in order. It
//! also keeps what the gateway's status document does not: a ring buffer of
//! notable events for the log pane, per-second token counts for sparklines,
//! per-node histograms, and rolling fleet rates.

use std::collections::{BTreeMap, VecDeque};

use cortex_common::event::{Event, EventKind, LoadPhase, RequestEnd};
use cortex_common::histogram::HistogramSnapshot;
use cortex_common::neuron_api::{DeviceInfo, ModelState, Progress};
use cortex_common::status::{
    FleetHealth, FleetStatus, ModelStatus, NodeState, NodeStatus, Placement, PlacementState,
};

/// Entries kept for the log pane.
pub const LOG_CAPACITY: usize = 1000;
/// Seconds of history behind each tok/s sparkline.
pub const SPARK_SECONDS: usize = 60;
/// Window of the locally computed fleet rates.
const RATE_WINDOW_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub ts_ms: u64,
    pub level: Level,
    /// The node the entry is about, if any.
    pub node: Option<String>,
    pub text: String,
}

/// One model as the console shows it: the gateway's [`ModelStatus`] plus
/// history the console accumulates itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelView {
    pub status: ModelStatus,
    /// Completion tokens finished per second, oldest first; the last entry is
    /// the second of `spark_sec`.
    pub spark: VecDeque<u64>,
    spark_sec: u64,
    /// Latest per-node distributions from `histograms` events.
    pub per_node: BTreeMap<String, NodeHistograms>,
    /// What each node's load is doing (downloading, reading), from
    /// `model_load_progress` events; gone once the load ends.
    pub load_phases: BTreeMap<String, LoadPhase>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeHistograms {
    pub ttft_ms: HistogramSnapshot,
    pub tok_s: HistogramSnapshot,
}

impl ModelView {
    fn new(status: ModelStatus) -> Self {
        ModelView {
            status,
            spark: VecDeque::with_capacity(SPARK_SECONDS),
            spark_sec: 0,
            per_node: BTreeMap::new(),
            load_phases: BTreeMap::new(),
        }
    }

    fn placeholder(id: &str, source: &str) -> Self {
        Self::new(ModelStatus {
            id: id.to_string(),
            aliases: Vec::new(),
            source: source.to_string(),
            pinned: false,
            residency_priority: 0,
            memory_mb: 0,
            placements: Vec::new(),
            in_flight: 0,
            waiting: 0,
            requests_total: 0,
            errors_total: 0,
            ttft_ms: Default::default(),
            tok_s: Default::default(),
            ttft_histogram: Default::default(),
            tok_s_histogram: Default::default(),
        })
    }

    fn placement_mut(&mut self, node: &str) -> &mut Placement {
        let idx = match self.status.placements.iter().position(|p| p.node == node) {
            Some(i) => i,
            None => {
                self.status.placements.push(Placement {
                    node: node.to_string(),
                    state: PlacementState::Loading,
                    progress: None,
                    in_flight: 0,
                    queued: 0,
                    last_used_ms: None,
                });
                self.status.placements.sort_by(|a, b| a.node.cmp(&b.node));
                self.status
                    .placements
                    .iter()
                    .position(|p| p.node == node)
                    .unwrap_or(0)
            }
        };
        &mut self.status.placements[idx]
    }

    /// The phase of the load the console shows (the first node's loading).
    pub fn load_phase(&self) -> Option<LoadPhase> {
        let p = self
            .status
            .placements
            .iter()
            .find(|p| p.state == PlacementState::Loading)?;
        self.load_phases.get(&p.node).copied()
    }

    fn remove_placement(&mut self, node: &str) {
        self.load_phases.remove(node);
        self.status.placements.retain(|p| p.node != node);
        self.recount_in_flight();
    }

    /// Requests for the model: generating on a neuron, queued at a neuron
    /// for a batch slot, and waiting at the gateway for room on a replica.
    pub fn load(&self) -> (u32, u32, u32) {
        let queued: u32 = self.status.placements.iter().map(|p| p.queued).sum();
        (
            self.status.in_flight.saturating_sub(queued),
            queued,
            self.status.waiting,
        )
    }

    fn recount_in_flight(&mut self) {
        let placed: u32 = self.status.placements.iter().map(|p| p.in_flight).sum();
        self.status.in_flight = placed;
    }

    /// Adds finished tokens to the second `sec`, shifting the window.
    fn add_tokens(&mut self, sec: u64, tokens: u64) {
        self.advance_to(sec);
        if sec + (SPARK_SECONDS as u64) <= self.spark_sec {
            return; // older than the window
        }
        let back = (self.spark_sec - sec) as usize;
        let len = self.spark.len();
        if back < len {
            self.spark[len - 1 - back] += tokens;
        }
    }

    /// Moves the window so its last second is `sec` (never backwards).
    fn advance_to(&mut self, sec: u64) {
        if self.spark.is_empty() {
            self.spark_sec = sec;
            self.spark.push_back(0);
            return;
        }
        if sec <= self.spark_sec {
            return;
        }
        let gap = (sec - self.spark_sec).min(SPARK_SECONDS as u64);
        for _ in 0..gap {
            if self.spark.len() == SPARK_SECONDS {
                self.spark.pop_front();
            }
            self.spark.push_back(0);
        }
        self.spark_sec = sec;
    }

    /// Tokens per second over the last `secs` full seconds of the sparkline.
    pub fn recent_tok_s(&self, secs: usize) -> f64 {
        let n = secs.min(self.spark.len());
        if n == 0 {
            return 0.0;
        }
        self.spark.iter().rev().take(n).sum::<u64>() as f64 / n as f64
    }
}

/// The fleet as the console knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Whether a snapshot has ever been applied.
    pub has_snapshot: bool,
    pub gateway_version: String,
    pub eviction_strategy: String,
    /// `seq` of the last event applied: the `Last-Event-ID` to resume from.
    pub last_seq: u64,
    /// Newest event timestamp seen: the console's clock for rates, so the
    /// model is a pure function of the events.
    pub now_ms: u64,
    pub nodes: BTreeMap<String, NodeStatus>,
    pub models: BTreeMap<String, ModelView>,
    pub log: VecDeque<LogEntry>,
    /// Events applied since start, for the header.
    pub events_applied: u64,
    snapshot_rates: (f64, f64),
    snapshot_ms: u64,
    /// (ts_ms, completion tokens) of recently finished requests.
    finished: VecDeque<(u64, u64)>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            has_snapshot: false,
            gateway_version: String::new(),
            eviction_strategy: String::new(),
            last_seq: 0,
            now_ms: 0,
            nodes: BTreeMap::new(),
            models: BTreeMap::new(),
            log: VecDeque::with_capacity(LOG_CAPACITY),
            events_applied: 0,
            snapshot_rates: (0.0, 0.0),
            snapshot_ms: 0,
            finished: VecDeque::new(),
        }
    }
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fleet model seeded from a status document (as `snapshot` does).
    pub fn from_status(status: FleetStatus) -> Self {
        let mut fleet = Fleet::new();
        fleet.load_snapshot(status, 0);
        fleet
    }

    pub fn nodes_up(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Up)
            .count()
    }

    pub fn health(&self) -> FleetHealth {
        let up = self.nodes_up();
        if self.nodes.is_empty() || up == 0 {
            FleetHealth::Down
        } else if up == self.nodes.len() {
            FleetHealth::Ok
        } else {
            FleetHealth::Degraded
        }
    }

    /// (requests/s, tokens/s) across the fleet: the snapshot's figures until
    /// the console has watched a full window itself.
    pub fn rates(&self) -> (f64, f64) {
        if self.now_ms < self.snapshot_ms + RATE_WINDOW_MS {
            return self.snapshot_rates;
        }
        let from = self.now_ms.saturating_sub(RATE_WINDOW_MS);
        let (mut reqs, mut toks) = (0u64, 0u64);
        for (ts, t) in self.finished.iter().rev() {
            if *ts <= from {
                break;
            }
            reqs += 1;
            toks += t;
        }
        let secs = RATE_WINDOW_MS as f64 / 1000.0;
        (reqs as f64 / secs, toks as f64 / secs)
    }

    pub fn push_log(&mut self, ts_ms: u64, level: Level, node: Option<String>, text: String) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(LogEntry {
            ts_ms,
            level,
            node,
            text,
        });
    }

    fn load_snapshot(&mut self, status: FleetStatus, ts_ms: u64) {
        self.has_snapshot = true;
        self.gateway_version = status.gateway_version;
        self.eviction_strategy = status.eviction_strategy;
        self.snapshot_rates = (status.requests_per_s, status.tokens_per_s);
        self.snapshot_ms = ts_ms.max(status.generated_at_ms);
        self.now_ms = self.now_ms.max(self.snapshot_ms);
        self.finished.clear();
        self.nodes = status
            .nodes
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let mut old = std::mem::take(&mut self.models);
        for m in status.models {
            // Keep the history the console gathered itself across snapshots.
            let view = match old.remove(&m.id) {
                Some(mut v) => {
                    v.status = m;
                    v
                }
                None => ModelView::new(m),
            };
            self.models.insert(view.status.id.clone(), view);
        }
    }

    /// Applies one event of the fleet stream.
    pub fn apply(&mut self, ev: Event) {
        self.events_applied += 1;
        let is_snapshot = matches!(ev.kind, EventKind::Snapshot { .. });
        if !is_snapshot && self.last_seq != 0 && ev.seq > self.last_seq + 1 {
            let text = format!(
                "missed events {}..{} (stream gap)",
                self.last_seq + 1,
                ev.seq - 1
            );
            self.push_log(ev.ts_ms, Level::Warn, None, text);
        }
        if ev.seq != 0 {
            self.last_seq = ev.seq;
        }
        self.now_ms = self.now_ms.max(ev.ts_ms);
        if let Some(l) = describe::describe(&ev) {
            self.push_log(ev.ts_ms, l.level, l.node, l.text);
        }
        let ts = ev.ts_ms;
        let node = ev.node;

        match ev.kind {
            EventKind::Snapshot { status } => self.load_snapshot(*status, ts),
            EventKind::NodeUp { endpoint } => {
                let name = node.clone().unwrap_or_else(|| endpoint.clone());
                let entry = self.nodes.entry(name.clone()).or_insert(NodeStatus {
                    name: name.clone(),
                    endpoint: endpoint.clone(),
                    state: NodeState::Up,
                    devices: Vec::new(),
                    in_flight: 0,
                    reason: None,
                });
                entry.state = NodeState::Up;
                entry.endpoint = endpoint.clone();
                entry.reason = None;
            }
            EventKind::NodeDown { endpoint, reason } => {
                let name = node.clone().unwrap_or_else(|| endpoint.clone());
                if let Some(n) = self.nodes.get_mut(&name) {
                    n.state = NodeState::Down;
                    n.reason = Some(reason.clone());
                    n.in_flight = 0;
                    for d in &mut n.devices {
                        d.memory_used_bytes = 0;
                    }
                }
                // Whatever was resident there is gone with the process.
                for m in self.models.values_mut() {
                    m.remove_placement(&name);
                }
            }
            EventKind::ModelLoadStarted { model, source } => {
                if let Some(n) = &node {
                    let view = self.model_entry(&model, &source);
                    view.load_phases.remove(n);
                    let p = view.placement_mut(n);
                    p.state = PlacementState::Loading;
                    p.progress = None;
                }
            }
            EventKind::ModelLoadProgress {
                model,
                done,
                total,
                phase,
                ..
            } => {
                if let Some(n) = &node {
                    let view = self.model_entry(&model, "");
                    view.load_phases.insert(n.clone(), phase);
                    let p = view.placement_mut(n);
                    p.state = PlacementState::Loading;
                    p.progress = Some(Progress { done, total });
                }
            }
            EventKind::ModelLoaded {
                model,
                memory_bytes,
                ..
            } => {
                if let Some(n) = &node {
                    let view = self.model_entry(&model, "");
                    if view.status.memory_mb == 0 {
                        view.status.memory_mb = memory_bytes / (1024 * 1024);
                    }
                    view.load_phases.remove(n);
                    let p = view.placement_mut(n);
                    p.state = PlacementState::Loaded;
                    p.progress = None;
                }
            }
            EventKind::ModelLoadFailed { model, .. } | EventKind::ModelUnloaded { model, .. } => {
                if let (Some(n), Some(view)) = (&node, self.models.get_mut(&model)) {
                    view.remove_placement(n);
                }
            }
            EventKind::RequestStarted { model, .. } => {
                let view = self.model_entry(&model, "");
                view.status.in_flight += 1;
                if let Some(n) = &node {
                    if let Some(p) = view.status.placements.iter_mut().find(|p| &p.node == n) {
                        p.in_flight += 1;
                        p.last_used_ms = Some(ts);
                    }
                    if let Some(ns) = self.nodes.get_mut(n) {
                        ns.in_flight += 1;
                    }
                }
            }
            EventKind::RequestFirstToken { .. }
            | EventKind::RequestRouted { .. }
            | EventKind::RequestRetried { .. }
            | EventKind::ToolCallUnparsed { .. } => {}
            EventKind::ModelWaiting { model, waiting } => {
                self.model_entry(&model, "").status.waiting = waiting;
            }
            EventKind::RequestFinished {
                model,
                completion_tokens,
                ..
            } => {
                self.finished.push_back((ts, completion_tokens as u64));
                let horizon = ts.saturating_sub(RATE_WINDOW_MS * 2);
                while self.finished.front().is_some_and(|(t, _)| *t < horizon) {
                    self.finished.pop_front();
                }
                let view = self.model_entry(&model, "");
                view.status.in_flight = view.status.in_flight.saturating_sub(1);
                view.add_tokens(ts / 1000, completion_tokens as u64);
                if let Some(n) = &node {
                    if let Some(p) = view.status.placements.iter_mut().find(|p| &p.node == n) {
                        p.in_flight = p.in_flight.saturating_sub(1);
                        p.last_used_ms = Some(ts);
                    }
                    if let Some(ns) = self.nodes.get_mut(n) {
                        ns.in_flight = ns.in_flight.saturating_sub(1);
                    }
                }
            }
            EventKind::DeviceStats { devices, models } => {
                if let Some(n) = &node {
                    self.apply_device_stats(n, devices, models);
                }
                // Advance every sparkline so idle seconds show as zero.
                let sec = ts / 1000;
                for m in self.models.values_mut() {
                    m.advance_to(sec);
                }
            }
            EventKind::PlacementDecided { .. } | EventKind::ColdLoad { .. } => {}
            EventKind::Evicted { model, .. } => {
                if let (Some(n), Some(view)) = (&node, self.models.get_mut(&model))
                    && let Some(p) = view.status.placements.iter_mut().find(|p| &p.node == n)
                {
                    p.state = PlacementState::Unloading;
                }
            }
            EventKind::Pinned { model } => {
                self.model_entry(&model, "").status.pinned = true;
            }
            EventKind::Unpinned { model } => {
                self.model_entry(&model, "").status.pinned = false;
            }
            // What the gateway's `requests_total` and `errors_total` count:
            // one per client request, however many attempts it took.
            EventKind::RequestDone { model, ended, .. } => {
                let view = self.model_entry(&model, "");
                view.status.requests_total += 1;
                if ended == RequestEnd::Error {
                    view.status.errors_total += 1;
                }
            }
            EventKind::RequestFailed { .. } => {}
            EventKind::Histograms {
                model,
                ttft_ms,
                tok_s,
            } => {
                let view = self.model_entry(&model, "");
                match node {
                    Some(n) => {
                        view.per_node.insert(n, NodeHistograms { ttft_ms, tok_s });
                    }
                    None => {
                        view.status.ttft_ms = ttft_ms.percentiles;
                        view.status.tok_s = tok_s.percentiles;
                        view.status.ttft_histogram = ttft_ms;
                        view.status.tok_s_histogram = tok_s;
                    }
                }
            }
        }
    }

    fn model_entry(&mut self, id: &str, source: &str) -> &mut ModelView {
        self.models
            .entry(id.to_string())
            .or_insert_with(|| ModelView::placeholder(id, source))
    }

    fn apply_device_stats(
        &mut self,
        node: &str,
        devices: Vec<DeviceInfo>,
        models: Vec<cortex_common::neuron_api::ModelInfo>,
    ) {
        let mut node_in_flight = 0;
        for info in &models {
            node_in_flight += info.in_flight;
            let view = self.model_entry(&info.id, &info.source);
            match info.state {
                ModelState::Failed => view.remove_placement(node),
                state => {
                    let p = view.placement_mut(node);
                    p.state = match state {
                        ModelState::Loading => PlacementState::Loading,
                        ModelState::Unloading => PlacementState::Unloading,
                        _ => PlacementState::Loaded,
                    };
                    p.progress = if state == ModelState::Loading {
                        info.progress.or(p.progress)
                    } else {
                        None
                    };
                    p.in_flight = info.in_flight;
                    p.queued = info.queue_depth;
                    view.recount_in_flight();
                }
            }
        }
        // The neuron's list is authoritative for what is resident there.
        for view in self.models.values_mut() {
            if view.status.placements.iter().any(|p| p.node == node)
                && !models.iter().any(|m| m.id == view.status.id)
            {
                view.remove_placement(node);
            }
        }
        let entry = self
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeStatus {
                name: node.to_string(),
                endpoint: String::new(),
                state: NodeState::Up,
                devices: Vec::new(),
                in_flight: 0,
                reason: None,
            });
        entry.devices = devices;
        entry.in_flight = node_in_flight;
    }
}

/// `1.5 GiB`, `512 MiB`, `3 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub mod describe;

#[cfg(test)]
mod tests;
