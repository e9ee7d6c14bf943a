//! The gateway's view of the fleet: each node's state as its event stream
//! last told it, what the gateway itself has under way there (loads,
//! unloads, requests in flight), and per-model counters and distributions.
//! One lock, held briefly and never across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cortex_common::config::gateway::{EvictionStrategy, GatewayConfig};
use cortex_common::config::models::{DEFAULT_RESIDENCY_PRIORITY, ModelEntry, ModelsConfig};
use cortex_common::event::EventKind;
use cortex_common::histogram::Distribution;
use cortex_common::neuron_api::{DeviceInfo, ModelInfo, ModelState};
use cortex_common::status::{
    FleetHealth, FleetStatus, ModelStatus, NodeState, NodeStatus, Placement, PlacementState,
    STATUS_SCHEMA_VERSION,
};
use tokio::sync::watch;

use crate::placement::{NodeCandidate, Resident, Want};

/// Window of the requests/s and tokens/s rates.
const RATE_WINDOW: Duration = Duration::from_secs(10);

pub struct Fleet {
    inner: Mutex<FleetInner>,
    pub strategy: EvictionStrategy,
    pub catalogue: ModelsConfig,
}

pub struct FleetInner {
    pub nodes: Vec<NodeView>,
    pub models: BTreeMap<String, ModelRuntime>,
    finished: VecDeque<(Instant, u32)>,
}

pub struct NodeView {
    pub name: String,
    pub endpoint: String,
    pub up: bool,
    pub reason: Option<String>,
    pub devices: Vec<DeviceInfo>,
    /// Models as the neuron last reported them.
    pub reported: BTreeMap<String, ModelInfo>,
    /// Loads the gateway started here that the neuron has not reported as
    /// loaded yet, with the memory reserved for them.
    pub pending: BTreeMap<String, u64>,
    /// Replicas the gateway is unloading: no longer routed to.
    pub unloading: BTreeSet<String>,
    /// Requests the gateway is proxying here, per model.
    pub in_flight: HashMap<String, u32>,
    /// Last time a request for the model here finished or started (ms).
    pub last_used: HashMap<String, u64>,
    /// Bumped when the node goes down; proxies watching it end their streams.
    pub epoch: watch::Sender<u64>,
}

pub struct ModelRuntime {
    pub pinned: bool,
    pub requests_total: u64,
    pub errors_total: u64,
    pub ttft: Distribution,
    pub tok_s: Distribution,
    pub per_node: BTreeMap<String, (Distribution, Distribution)>,
    /// New samples since the last `histograms` event.
    pub dirty: BTreeSet<String>,
    /// Largest size a neuron reported for it.
    pub observed_bytes: Option<u64>,
    /// Declared in models.toml: kept for the gateway's life.
    in_catalogue: bool,
}

impl ModelRuntime {
    fn new(pinned: bool) -> Self {
        ModelRuntime {
            in_catalogue: false,
            pinned,
            requests_total: 0,
            errors_total: 0,
            ttft: Distribution::ttft_ms(),
            tok_s: Distribution::tok_s(),
            per_node: BTreeMap::new(),
            dirty: BTreeSet::new(),
            observed_bytes: None,
        }
    }
}

/// What the router needs to send a request to a replica.
#[derive(Debug, Clone)]
pub struct Replica {
    pub idx: usize,
    pub node: String,
    pub endpoint: String,
    pub down: watch::Receiver<u64>,
}

impl NodeView {
    fn new(name: &str, endpoint: &str) -> Self {
        NodeView {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            up: false,
            reason: Some("not connected yet".into()),
            devices: Vec::new(),
            reported: BTreeMap::new(),
            pending: BTreeMap::new(),
            unloading: BTreeSet::new(),
            in_flight: HashMap::new(),
            last_used: HashMap::new(),
            epoch: watch::channel(0).0,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.memory_total_bytes).sum()
    }

    /// Memory taken now: what the neuron reports (or the sum of its models,
    /// if larger), plus loads under way that it has not counted yet.
    pub fn used_bytes(&self) -> u64 {
        let reported: u64 = self.devices.iter().map(|d| d.memory_used_bytes).sum();
        let models: u64 = self
            .reported
            .values()
            .filter(|m| m.state != ModelState::Failed)
            .map(|m| m.memory_bytes)
            .sum();
        let pending: u64 = self
            .pending
            .iter()
            .filter(|(id, _)| {
                self.reported
                    .get(*id)
                    .is_none_or(|m| m.state != ModelState::Loaded)
            })
            .map(|(_, b)| *b)
            .sum();
        reported.max(models) + pending
    }

    /// Loaded, not being unloaded, node up.
    pub fn servable(&self, model: &str) -> bool {
        self.up
            && !self.unloading.contains(model)
            && self
                .reported
                .get(model)
                .is_some_and(|m| m.state == ModelState::Loaded)
    }

    pub fn in_flight_total(&self) -> u32 {
        self.in_flight.values().sum()
    }

    fn placement_state(&self, model: &str) -> Option<PlacementState> {
        if self.unloading.contains(model) {
            return Some(PlacementState::Unloading);
        }
        match self.reported.get(model).map(|m| m.state) {
            Some(ModelState::Loaded) => Some(PlacementState::Loaded),
            Some(ModelState::Loading) => Some(PlacementState::Loading),
            Some(ModelState::Unloading) => Some(PlacementState::Unloading),
            Some(ModelState::Failed) | None => self
                .pending
                .contains_key(model)
                .then_some(PlacementState::Loading),
        }
    }
}

impl Fleet {
    pub fn new(cfg: &GatewayConfig, catalogue: ModelsConfig) -> Self {
        let nodes = cfg
            .neurons
            .iter()
            .map(|n| NodeView::new(&n.name, &n.endpoint))
            .collect();
        let models = catalogue
            .models
            .iter()
            .map(|m| {
                let mut rt = ModelRuntime::new(m.pinned);
                rt.in_catalogue = true;
                (m.id.clone(), rt)
            })
            .collect();
        Fleet {
            inner: Mutex::new(FleetInner {
                nodes,
                models,
                finished: VecDeque::new(),
            }),
            strategy: cfg.eviction.strategy,
            catalogue,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, FleetInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn entry(&self, id: &str) -> Option<&ModelEntry> {
        self.catalogue.get(id)
    }

    /// The model id a client's name means, if the fleet knows it: a
    /// catalogue id, an alias, or a model some node reports.
    pub fn resolve(&self, name: &str) -> Option<String> {
        let id = self.catalogue.resolve(name);
        if self.catalogue.get(id).is_some() {
            return Some(id.to_string());
        }
        let inner = self.lock();
        inner
            .nodes
            .iter()
            .any(|n| n.up && n.reported.contains_key(id))
            .then(|| id.to_string())
    }

    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }
}

impl FleetInner {
    pub fn runtime(&mut self, model: &str) -> &mut ModelRuntime {
        self.models
            .entry(model.to_string())
            .or_insert_with(|| ModelRuntime::new(false))
    }

    pub fn is_pinned(&self, model: &str) -> bool {
        self.models.get(model).is_some_and(|m| m.pinned)
    }

    /// Servable replicas of `model`, least in-flight first (the gateway's own
    /// count, then the neuron's queue depth, then name).
    pub fn replicas(&self, model: &str) -> Vec<usize> {
        let mut found: Vec<(u32, u32, &str, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.servable(model))
            .map(|(i, n)| {
                let ours = n.in_flight.get(model).copied().unwrap_or(0);
                let queue = n.reported.get(model).map(|m| m.queue_depth).unwrap_or(0);
                (ours, queue, n.name.as_str(), i)
            })
            .collect();
        found.sort();
        found.into_iter().map(|(.., i)| i).collect()
    }

    pub fn replica(&self, idx: usize) -> Replica {
        let n = &self.nodes[idx];
        Replica {
            idx,
            node: n.name.clone(),
            endpoint: n.endpoint.clone(),
            down: n.epoch.subscribe(),
        }
    }

    /// Counts a request in flight on a replica.
    pub fn begin(&mut self, idx: usize, model: &str) {
        let now = cortex_common::now_ms();
        let n = &mut self.nodes[idx];
        *n.in_flight.entry(model.to_string()).or_insert(0) += 1;
        n.last_used.insert(model.to_string(), now);
    }

    /// Ends what [`FleetInner::begin`] counted.
    pub fn end(&mut self, idx: usize, model: &str) {
        let now = cortex_common::now_ms();
        let n = &mut self.nodes[idx];
        if let Some(c) = n.in_flight.get_mut(model) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                n.in_flight.remove(model);
            }
        }
        n.last_used.insert(model.to_string(), now);
    }

    /// The picture placement decides on.
    pub fn candidates(&self, catalogue: &ModelsConfig) -> Vec<NodeCandidate> {
        self.nodes
            .iter()
            .map(|n| {
                let mut residents: Vec<Resident> = n
                    .reported
                    .values()
                    .filter(|m| m.state != ModelState::Failed)
                    .map(|m| {
                        let entry = catalogue.get(&m.id);
                        Resident {
                            model: m.id.clone(),
                            bytes: m.memory_bytes,
                            priority: entry
                                .map(|e| e.residency_priority)
                                .unwrap_or(DEFAULT_RESIDENCY_PRIORITY),
                            pinned: self.is_pinned(&m.id),
                            in_flight: n.in_flight.get(&m.id).copied().unwrap_or(0) + m.in_flight,
                            last_used_ms: n.last_used.get(&m.id).copied().unwrap_or(0),
                            settled: m.state == ModelState::Loaded
                                && !n.unloading.contains(&m.id)
                                && !n.pending.contains_key(&m.id),
                        }
                    })
                    .collect();
                for (id, bytes) in &n.pending {
                    if !n.reported.contains_key(id) {
                        residents.push(Resident {
                            model: id.clone(),
                            bytes: *bytes,
                            priority: catalogue
                                .get(id)
                                .map(|e| e.residency_priority)
                                .unwrap_or(DEFAULT_RESIDENCY_PRIORITY),
                            pinned: self.is_pinned(id),
                            in_flight: 0,
                            last_used_ms: 0,
                            settled: false,
                        });
                    }
                }
                NodeCandidate {
                    name: n.name.clone(),
                    up: n.up,
                    devices: n.devices.len(),
                    total_bytes: n.total_bytes(),
                    used_bytes: n.used_bytes(),
                    residents,
                }
            })
            .collect()
    }

    /// What placement should assume `model` takes.
    pub fn want(
        &self,
        entry: Option<&ModelEntry>,
        model: &str,
        only_on: Option<Vec<String>>,
    ) -> Want {
        let configured = entry.and_then(|e| e.memory_bytes()).unwrap_or(0);
        let observed = self
            .models
            .get(model)
            .and_then(|m| m.observed_bytes)
            .unwrap_or(0);
        let affinity = entry
            .filter(|e| !e.pinned_on.is_empty())
            .map(|e| e.pinned_on.clone());
        Want {
            model: model.to_string(),
            bytes: configured.max(observed),
            priority: entry
                .map(|e| e.residency_priority)
                .unwrap_or(DEFAULT_RESIDENCY_PRIORITY),
            min_devices: entry.map(|e| e.min_devices as usize).unwrap_or(1),
            only_on: only_on.or(affinity),
        }
    }

    /// A load the gateway asked for finished: record it without waiting
    /// for the node's event to arrive.
    pub fn mark_loaded(&mut self, idx: usize, model: &str, source: &str, memory_bytes: u64) {
        let now = cortex_common::now_ms();
        let n = &mut self.nodes[idx];
        n.pending.remove(model);
        let device = n.devices.first().map(|d| d.id.clone()).unwrap_or_default();
        let info = n
            .reported
            .entry(model.to_string())
            .or_insert_with(|| ModelInfo {
                memory_bytes,
                ..ModelInfo::bare(model, source, ModelState::Loaded, &device)
            });
        info.state = ModelState::Loaded;
        info.progress = None;
        if memory_bytes > 0 {
            info.memory_bytes = memory_bytes;
        }
        n.last_used.insert(model.to_string(), now);
        self.observe_sizes(idx);
    }

    /// A node where `model` is being loaded right now, if any.
    /// Up nodes that hold `model` in any state (serving, loading, being
    /// unloaded), or have a load of it under way.
    pub fn holders(&self, model: &str) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.up && n.placement_state(model).is_some())
            .count()
    }

    /// The nodes `model` may go to (its affinity, or all) that do not hold
    /// it: where another replica could be placed.
    pub fn nodes_without(&self, model: &str, entry: Option<&ModelEntry>) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.placement_state(model).is_none())
            .filter(|n| {
                entry.is_none_or(|e| e.pinned_on.is_empty() || e.pinned_on.contains(&n.name))
            })
            .map(|n| n.name.clone())
            .collect()
    }

    pub fn loading_on(&self, model: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.up && (n.pending.contains_key(model)
                || n.reported
                    .get(model)
                    .is_some_and(|m| m.state == ModelState::Loading))
        })
    }

    /// A node's stream connected: its state as just read.
    pub fn node_up(&mut self, idx: usize, devices: Vec<DeviceInfo>, models: Vec<ModelInfo>) {
        let now = cortex_common::now_ms();
        let n = &mut self.nodes[idx];
        n.up = true;
        n.reason = None;
        n.devices = devices;
        n.reported = models.into_iter().map(|m| (m.id.clone(), m)).collect();
        for id in n.reported.keys() {
            n.last_used.entry(id.clone()).or_insert(now);
        }
        self.observe_sizes(idx);
    }

    /// A node's stream dropped: nothing is known about it any more.
    pub fn node_down(&mut self, idx: usize, reason: &str) -> bool {
        let n = &mut self.nodes[idx];
        let was_up = n.up;
        n.up = false;
        n.reason = Some(reason.to_string());
        n.reported.clear();
        n.unloading.clear();
        n.epoch.send_modify(|e| *e += 1);
        self.forget_vanished(idx);
        was_up
    }

    /// Frees what is kept per model id once nothing refers to the id any
    /// more: a node's `last_used` for ids it no longer has, and the
    /// counters of ids outside the catalogue that no node reports, loads or
    /// serves. Ids a neuron reported once must not be kept forever.
    fn forget_vanished(&mut self, idx: usize) {
        let n = &mut self.nodes[idx];
        let NodeView {
            reported,
            pending,
            in_flight,
            last_used,
            ..
        } = n;
        last_used.retain(|id, _| {
            reported.contains_key(id) || pending.contains_key(id) || in_flight.contains_key(id)
        });
        let nodes = &self.nodes;
        self.models.retain(|id, rt| {
            rt.pinned
                || rt.in_catalogue
                || nodes.iter().any(|n| {
                    n.reported.contains_key(id)
                        || n.pending.contains_key(id)
                        || n.in_flight.contains_key(id)
                })
        });
    }

    fn observe_sizes(&mut self, idx: usize) {
        let sizes: Vec<(String, u64)> = self.nodes[idx]
            .reported
            .values()
            .filter(|m| m.state == ModelState::Loaded && m.memory_bytes > 0)
            .map(|m| (m.id.clone(), m.memory_bytes))
            .collect();
        for (id, bytes) in sizes {
            let rt = self.runtime(&id);
            rt.observed_bytes = Some(rt.observed_bytes.unwrap_or(0).max(bytes));
        }
    }

    /// Folds one event from a node's stream into the view.
    pub fn apply(&mut self, idx: usize, kind: &EventKind) {
        let now = cortex_common::now_ms();
        match kind {
            EventKind::ModelLoadStarted { model, source } => {
                let n = &mut self.nodes[idx];
                let device = n.devices.first().map(|d| d.id.clone()).unwrap_or_default();
                n.reported.entry(model.clone()).or_insert_with(|| {
                    ModelInfo::bare(model, source, ModelState::Loading, &device)
                });
            }
            EventKind::ModelLoadProgress {
                model, done, total, ..
            } => {
                if let Some(m) = self.nodes[idx].reported.get_mut(model) {
                    m.progress = Some(cortex_common::neuron_api::Progress {
                        done: *done,
                        total: *total,
                    });
                }
            }
            EventKind::ModelLoaded {
                model,
                memory_bytes,
                ..
            } => {
                let n = &mut self.nodes[idx];
                if let Some(m) = n.reported.get_mut(model) {
                    m.state = ModelState::Loaded;
                    m.memory_bytes = *memory_bytes;
                    m.progress = None;
                }
                n.last_used.insert(model.clone(), now);
                self.observe_sizes(idx);
            }
            EventKind::ModelLoadFailed { model, .. } | EventKind::ModelUnloaded { model, .. } => {
                let n = &mut self.nodes[idx];
                n.reported.remove(model);
                n.unloading.remove(model);
            }
            EventKind::RequestFinished {
                model,
                completion_tokens,
                ttft_ms,
                decode_tok_s,
                ..
            } => {
                self.finished
                    .push_back((Instant::now(), *completion_tokens));
                let node = self.nodes[idx].name.clone();
                let rt = self.runtime(model);
                let (nt, ns) = rt
                    .per_node
                    .entry(node.clone())
                    .or_insert_with(|| (Distribution::ttft_ms(), Distribution::tok_s()));
                if let Some(t) = ttft_ms {
                    rt.ttft.record(*t);
                    nt.record(*t);
                }
                if let Some(s) = decode_tok_s {
                    rt.tok_s.record(*s);
                    ns.record(*s);
                }
                rt.dirty.insert(node);
            }
            EventKind::DeviceStats { devices, models } => {
                let n = &mut self.nodes[idx];
                n.devices = devices.clone();
                n.reported = models.iter().map(|m| (m.id.clone(), m.clone())).collect();
                for id in n.reported.keys() {
                    n.last_used.entry(id.clone()).or_insert(now);
                }
                n.unloading.retain(|id| n.reported.contains_key(id));
                self.observe_sizes(idx);
                self.forget_vanished(idx);
            }
            _ => {}
        }
    }

    fn rates(&mut self) -> (f64, f64) {
        let cutoff = Instant::now().checked_sub(RATE_WINDOW);
        while let (Some((t, _)), Some(c)) = (self.finished.front(), cutoff) {
            if *t < c {
                self.finished.pop_front();
            } else {
                break;
            }
        }
        let secs = RATE_WINDOW.as_secs_f64();
        let reqs = self.finished.len() as f64 / secs;
        let toks = self.finished.iter().map(|(_, n)| *n as f64).sum::<f64>() / secs;
        (reqs, toks)
    }

    /// The `/admin/status` document.
    pub fn status(&mut self, catalogue: &ModelsConfig, strategy: EvictionStrategy) -> FleetStatus {
        let (requests_per_s, tokens_per_s) = self.rates();
        let nodes_up = self.nodes.iter().filter(|n| n.up).count() as u32;
        let nodes_total = self.nodes.len() as u32;
        let health = if nodes_total > 0 && nodes_up == nodes_total {
            FleetHealth::Ok
        } else if nodes_up > 0 {
            FleetHealth::Degraded
        } else {
            FleetHealth::Down
        };
        let nodes = self
            .nodes
            .iter()
            .map(|n| NodeStatus {
                name: n.name.clone(),
                endpoint: n.endpoint.clone(),
                state: if n.up { NodeState::Up } else { NodeState::Down },
                devices: n.devices.clone(),
                in_flight: n.in_flight_total(),
                reason: n.reason.clone(),
            })
            .collect();
        let mut ids: Vec<String> = catalogue.models.iter().map(|m| m.id.clone()).collect();
        for n in &self.nodes {
            for id in n.reported.keys().chain(n.pending.keys()) {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        let models = ids
            .iter()
            .map(|id| self.model_status(catalogue, id))
            .collect();
        FleetStatus {
            schema: STATUS_SCHEMA_VERSION,
            gateway_version: env!("CARGO_PKG_VERSION").to_string(),
            generated_at_ms: cortex_common::now_ms(),
            health,
            nodes_up,
            nodes_total,
            requests_per_s,
            tokens_per_s,
            eviction_strategy: strategy.as_str().to_string(),
            nodes,
            models,
        }
    }

    pub fn placements(&self, id: &str) -> Vec<Placement> {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| {
                let state = n.placement_state(id)?;
                let reported = n.reported.get(id);
                Some(Placement {
                    node: n.name.clone(),
                    state,
                    progress: reported.and_then(|m| m.progress),
                    in_flight: n.in_flight.get(id).copied().unwrap_or(0),
                    queued: reported.map(|m| m.queue_depth).unwrap_or(0),
                    last_used_ms: n.last_used.get(id).copied(),
                })
            })
            .collect()
    }

    fn model_status(&self, catalogue: &ModelsConfig, id: &str) -> ModelStatus {
        let entry = catalogue.get(id);
        let placements = self.placements(id);
        let source = entry.map(|e| e.source().to_string()).unwrap_or_else(|| {
            self.nodes
                .iter()
                .find_map(|n| n.reported.get(id).map(|m| m.source.clone()))
                .unwrap_or_default()
        });
        let rt = self.models.get(id);
        let ttft = rt.map(|r| r.ttft.snapshot()).unwrap_or_default();
        let tok_s = rt.map(|r| r.tok_s.snapshot()).unwrap_or_default();
        ModelStatus {
            id: id.to_string(),
            aliases: catalogue.aliases_of(id),
            source,
            pinned: self.is_pinned(id),
            residency_priority: entry
                .map(|e| e.residency_priority)
                .unwrap_or(DEFAULT_RESIDENCY_PRIORITY),
            memory_mb: entry
                .and_then(|e| e.memory_mb)
                .or_else(|| {
                    rt.and_then(|r| r.observed_bytes)
                        .map(|b| b.div_ceil(1 << 20))
                })
                .unwrap_or(0),
            in_flight: placements.iter().map(|p| p.in_flight).sum(),
            waiting: 0,
            placements,
            requests_total: rt.map(|r| r.requests_total).unwrap_or(0),
            errors_total: rt.map(|r| r.errors_total).unwrap_or(0),
            ttft_ms: ttft.percentiles,
            tok_s: tok_s.percentiles,
            ttft_histogram: ttft,
            tok_s_histogram: tok_s,
        }
    }

    /// Nodes where `model` could be loaded (up, enough devices, allowed,
    /// big enough), for the catalogue.
    pub fn loadable_on(&self, want: &Want) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| {
                n.up && n.devices.len() >= want.min_devices && n.total_bytes() >= want.bytes
            })
            .filter(|n| {
                want.only_on
                    .as_ref()
                    .is_none_or(|only| only.contains(&n.name))
            })
            .map(|n| n.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fleet(strategy: &str) -> Fleet {
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
        Fleet::new(&cfg, models)
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

    #[test]
    fn least_in_flight_replica_first_and_down_nodes_skipped() {
        let f = fleet("lru");
        let mut g = f.lock();
        g.node_up(0, vec![device(250)], vec![loaded("m")]);
        g.node_up(1, vec![device(250)], vec![loaded("m")]);
        assert_eq!(g.replicas("m"), vec![0, 1]);
        g.begin(0, "m");
        assert_eq!(g.replicas("m"), vec![1, 0]);
        g.end(0, "m");
        g.node_down(1, "stream dropped");
        assert_eq!(g.replicas("m"), vec![0]);
        g.nodes[0].unloading.insert("m".into());
        assert!(g.replicas("m").is_empty());
    }

    #[test]
    fn status_reflects_nodes_placements_and_histograms() {
        let f = fleet("priority");
        let mut g = f.lock();
        g.node_up(0, vec![device(250)], vec![loaded("m")]);
        g.apply(
            0,
            &EventKind::RequestFinished {
                request_id: "r".into(),
                model: "m".into(),
                prompt_tokens: 3,
                cached_tokens: 0,
                completion_tokens: 5,
                reasoning_tokens: 0,
                ttft_ms: Some(20.0),
                prefill_tok_s: None,
                decode_tok_s: Some(40.0),
                duration_ms: 100.0,
                finish_reason: Some("stop".into()),
                ended: cortex_common::event::RequestEnd::Done,
                error: None,
            },
        );
        let s = g.status(&f.catalogue, f.strategy);
        assert_eq!(s.health, FleetHealth::Degraded);
        assert_eq!((s.nodes_up, s.nodes_total), (1, 2));
        assert_eq!(s.eviction_strategy, "priority");
        let m = &s.models[0];
        assert_eq!(m.placements.len(), 1);
        assert_eq!(m.placements[0].state, PlacementState::Loaded);
        assert_eq!(m.ttft_histogram.count, 1);
        assert!(m.tok_s.p50.is_some());
    }

    #[test]
    fn state_of_ids_a_node_no_longer_reports_is_freed() {
        let f = fleet("lru");
        let mut g = f.lock();
        let stray: Vec<ModelInfo> = (0..100).map(|i| loaded(&format!("stray-{i}"))).collect();
        g.node_up(0, vec![device(250)], stray.clone());
        g.apply(
            0,
            &EventKind::DeviceStats {
                devices: vec![device(250)],
                models: stray,
            },
        );
        assert_eq!(g.models.len(), 101, "the catalogue's m and 100 strays");
        assert_eq!(g.nodes[0].last_used.len(), 100);
        g.begin(0, "stray-7");
        g.apply(
            0,
            &EventKind::DeviceStats {
                devices: vec![device(250)],
                models: vec![loaded("m")],
            },
        );
        let kept: Vec<&String> = g.models.keys().collect();
        assert_eq!(kept, vec!["m", "stray-7"], "in flight stays until it ends");
        g.end(0, "stray-7");
        g.node_down(0, "gone");
        assert_eq!(g.models.keys().collect::<Vec<_>>(), vec!["m"]);
        assert!(g.nodes[0].last_used.is_empty());
    }

    #[test]
    fn pending_loads_reserve_memory_until_reported() {
        let f = fleet("lru");
        let mut g = f.lock();
        g.node_up(0, vec![device(250)], vec![]);
        g.nodes[0].pending.insert("m".into(), 100 << 20);
        assert_eq!(g.nodes[0].used_bytes(), 100 << 20);
        assert_eq!(g.placements("m")[0].state, PlacementState::Loading);
        g.apply(
            0,
            &EventKind::DeviceStats {
                devices: vec![DeviceInfo {
                    memory_used_bytes: 100 << 20,
                    ..device(250)
                }],
                models: vec![loaded("m")],
            },
        );
        assert_eq!(g.nodes[0].used_bytes(), 100 << 20);
    }
}
