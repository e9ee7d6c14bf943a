//! The gateway's view of the fleet: each node as its event stream last told
//! it, one replica state machine per model on a node (`replica`), what the
//! gateway has under way there (loads, unloads, requests in flight), and
//! per-model counters and distributions.
//!
//! Everything sits behind one lock, held briefly and never across an await.
//! Other modules see it only through [`FleetGuard`]'s methods: reads return
//! owned values, and every change is a method named for what caused it.
//!
//! ## One writer per fact
//!
//! | fact | written by | methods |
//! |---|---|---|
//! | node up/down, devices, what each neuron reports | its event stream (`watch`) | `node_up`, `node_down`, `unreachable`, `apply` |
//! | a load the gateway placed (`Reserved`) | `load` | `reserve`, `abandon_load` |
//! | an unload the gateway runs (`Unloading`) | `evict` (for `admin`, placement, ttl) | `begin_unload`, `unload_failed`, `evicted` |
//! | a replica a neuron says it lacks | `router` | `not_served` |
//! | requests in flight, last use | `router`'s lease | `lease`, `release` |
//! | request counters | `proxy`'s request record | `request_done` |
//! | pins | `admin` (and the pin store at start) | `set_pinned`, `restore_pin` |
//!
//! A load is recorded as loaded only by the neuron's word (its `model_loaded`
//! event or its listing); the load task waits for it ([`Fleet::wait_replica`]).
//!
//! ## Events and the snapshot
//!
//! A method whose change the fleet event stream carries publishes that event
//! itself, while it holds the lock. [`Fleet::subscribe`] takes the lock,
//! subscribes, and builds the snapshot under it: so every change is either
//! in the snapshot (its event's seq is at most the snapshot's) or arrives
//! as a delta after it, never both.

mod apply;
mod lifecycle;
mod node;
mod replica;
mod status;
mod usage;
mod view;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cortex_common::config::gateway::{EvictionStrategy, GatewayConfig};
use cortex_common::config::models::{ModelEntry, ModelsConfig};
use cortex_common::event::EventKind;
use cortex_common::status::FleetStatus;
use tokio::sync::watch;

use crate::events::{EventBus, Subscription};
use node::Node;
use usage::ModelRuntime;

pub use replica::ReplicaState;
pub use view::{Idle, Route, Seen};

pub struct Fleet {
    inner: Mutex<FleetInner>,
    /// Where the changes are published (the `/admin/events` bus).
    bus: Arc<EventBus>,
    /// Bumped whenever a replica or node changes, for [`Fleet::wait_replica`].
    changed: watch::Sender<u64>,
    pub strategy: EvictionStrategy,
    pub catalogue: ModelsConfig,
}

struct FleetInner {
    nodes: Vec<Node>,
    models: BTreeMap<String, ModelRuntime>,
    /// (when, completion tokens) of requests the neurons finished, for the rates.
    finished: VecDeque<(Instant, u32)>,
}

/// The fleet, locked: its reads and its transitions. Events a transition
/// causes are published before the lock is released.
pub struct FleetGuard<'a> {
    inner: MutexGuard<'a, FleetInner>,
    fleet: &'a Fleet,
    /// A replica or node changed: waiters are woken when the lock goes.
    dirty: bool,
}

impl Drop for FleetGuard<'_> {
    fn drop(&mut self) {
        if self.dirty {
            self.fleet.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

impl Fleet {
    pub fn new(cfg: &GatewayConfig, catalogue: ModelsConfig, bus: Arc<EventBus>) -> Self {
        let nodes = cfg
            .neurons
            .iter()
            .map(|n| Node::new(&n.name, &n.endpoint))
            .collect();
        let models = catalogue
            .models
            .iter()
            .map(|m| (m.id.clone(), ModelRuntime::declared(m.pinned)))
            .collect();
        Fleet {
            inner: Mutex::new(FleetInner {
                nodes,
                models,
                finished: VecDeque::new(),
            }),
            bus,
            changed: watch::channel(0).0,
            strategy: cfg.eviction.strategy,
            catalogue,
        }
    }

    pub fn lock(&self) -> FleetGuard<'_> {
        FleetGuard {
            inner: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            fleet: self,
            dirty: false,
        }
    }

    pub fn entry(&self, id: &str) -> Option<&ModelEntry> {
        self.catalogue.get(id)
    }

    /// The ids models.toml declares, in its order.
    pub fn catalogue_ids(&self) -> Vec<String> {
        self.catalogue.models.iter().map(|m| m.id.clone()).collect()
    }

    /// The model id a client's name means, if the fleet knows it: a
    /// catalogue id, an alias, or a model some node reports.
    pub fn resolve(&self, name: &str) -> Option<String> {
        let id = self.catalogue.resolve(name);
        if self.catalogue.get(id).is_some() {
            return Some(id.to_string());
        }
        self.lock().reported_on_up_node(id).then(|| id.to_string())
    }

    pub fn node_count(&self) -> usize {
        self.lock().inner.nodes.len()
    }

    /// The `/admin/status` document (without the gateway's wait lines).
    pub fn status(&self) -> FleetStatus {
        self.lock().status()
    }

    /// Subscribes to the fleet events after `last_seen` (the client's
    /// `Last-Event-ID`). When they cannot be replayed, the snapshot to start
    /// from comes with it, taken under the same lock as the subscription:
    /// it holds exactly the changes up to the subscription's `last_seq`.
    pub fn subscribe(&self, last_seen: Option<u64>) -> (Subscription, Option<FleetStatus>) {
        let mut g = self.lock();
        let sub = self.bus.subscribe(last_seen);
        let snapshot = sub.replay.is_none().then(|| g.status());
        (sub, snapshot)
    }

    /// Waits until `done` holds for `model` on node `idx`, or `timeout`
    /// passes; returns what was seen last and whether `done` held.
    pub async fn wait_replica(
        &self,
        idx: usize,
        model: &str,
        timeout: Duration,
        done: impl Fn(Seen) -> bool,
    ) -> (Seen, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribed before looking, so a change in between wakes us.
        let mut changes = self.changed.subscribe();
        loop {
            let seen = self.lock().seen(idx, model);
            if done(seen) {
                return (seen, true);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out (the sender lives as long as `self`).
                _ => return (seen, false),
            }
        }
    }
}

impl FleetGuard<'_> {
    /// Publishes `kind` about node `idx` (or the fleet) under the lock.
    fn publish(&self, idx: Option<usize>, kind: EventKind) {
        let node = idx.map(|i| self.inner.nodes[i].name.clone());
        self.fleet.bus.publish(node, kind);
    }

    fn runtime(&mut self, model: &str) -> &mut ModelRuntime {
        self.inner
            .models
            .entry(model.to_string())
            .or_insert_with(ModelRuntime::seen)
    }

    /// Frees what is kept per model id once nothing refers to it any more:
    /// the counters of ids outside the catalogue that no node holds, loads
    /// or serves. Ids a neuron reported once must not be kept forever.
    fn forget_vanished(&mut self) {
        let FleetInner { nodes, models, .. } = &mut *self.inner;
        models.retain(|id, rt| rt.kept() || nodes.iter().any(|n| n.refers_to(id)));
    }

    /// Records the largest size a neuron reported for each model loaded on
    /// node `idx`: what placement assumes it takes next time.
    fn observe_sizes(&mut self, idx: usize) {
        let sizes: Vec<(String, u64)> = self.inner.nodes[idx]
            .replicas
            .iter()
            .filter(|(_, r)| r.state() == ReplicaState::Loaded && r.memory_bytes() > 0)
            .map(|(id, r)| (id.clone(), r.memory_bytes()))
            .collect();
        for (id, bytes) in sizes {
            self.runtime(&id).observe_bytes(bytes);
        }
    }
}

#[cfg(test)]
mod tests;
