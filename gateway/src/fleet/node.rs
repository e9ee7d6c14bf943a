//! One node as the gateway sees it: whether its event stream is up, its
//! devices, its replicas (one state machine per model, see `replica`), and
//! the requests the gateway is proxying there; with the memory arithmetic
//! placement needs.

use std::collections::{BTreeMap, HashMap};

use cortex_common::neuron_api::DeviceInfo;
use cortex_common::status::PlacementState;
use tokio::sync::watch;

use super::replica::{Replica, ReplicaState};

pub(super) struct Node {
    pub(super) name: String,
    pub(super) endpoint: String,
    /// Its event stream is connected.
    pub(super) up: bool,
    /// Why it is down, when it is.
    pub(super) reason: Option<String>,
    pub(super) devices: Vec<DeviceInfo>,
    /// One per model the node holds or the gateway is loading there.
    pub(super) replicas: BTreeMap<String, Replica>,
    /// Requests the gateway is proxying here, per model. Kept apart from
    /// the replicas: a request outlives a replica that goes away under it.
    pub(super) in_flight: HashMap<String, u32>,
    /// Bumped when the node goes down; proxies watching it end their streams.
    pub(super) epoch: watch::Sender<u64>,
}

impl Node {
    pub(super) fn new(name: &str, endpoint: &str) -> Self {
        Node {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            up: false,
            reason: Some("not connected yet".into()),
            devices: Vec::new(),
            replicas: BTreeMap::new(),
            in_flight: HashMap::new(),
            epoch: watch::channel(0).0,
        }
    }

    pub(super) fn state_of(&self, model: &str) -> Option<ReplicaState> {
        self.replicas.get(model).map(Replica::state)
    }

    pub(super) fn total_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.memory_total_bytes).sum()
    }

    /// Memory taken now: what the neuron reports (or the sum of its models,
    /// if larger), plus loads the gateway placed that it has not counted yet.
    pub(super) fn used_bytes(&self) -> u64 {
        let reported: u64 = self.devices.iter().map(|d| d.memory_used_bytes).sum();
        let models: u64 = self.replicas.values().map(Replica::memory_bytes).sum();
        let reserved: u64 = self.replicas.values().map(Replica::reserved_bytes).sum();
        reported.max(models) + reserved
    }

    /// Loaded (so not being unloaded), node up.
    pub(super) fn servable(&self, model: &str) -> bool {
        self.up && self.state_of(model) == Some(ReplicaState::Loaded)
    }

    pub(super) fn in_flight_total(&self) -> u32 {
        self.in_flight.values().sum()
    }

    pub(super) fn in_flight_of(&self, model: &str) -> u32 {
        self.in_flight.get(model).copied().unwrap_or(0)
    }

    pub(super) fn placement_state(&self, model: &str) -> Option<PlacementState> {
        self.state_of(model).and_then(ReplicaState::placement)
    }

    /// Whether anything here still refers to `model`.
    pub(super) fn refers_to(&self, model: &str) -> bool {
        self.replicas.contains_key(model) || self.in_flight.contains_key(model)
    }
}
