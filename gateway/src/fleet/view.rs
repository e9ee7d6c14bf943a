//! Reads of the fleet for routing, placement, the ttl sweep, the metrics
//! gauges and the model list: each returns owned values, so nothing
//! outside the fleet holds on to its insides.

use cortex_common::config::models::{DEFAULT_RESIDENCY_PRIORITY, ModelEntry};
use cortex_common::neuron_api::{DeviceInfo, SamplingDefaults};
use tokio::sync::watch;

use super::node::Node;
use super::replica::Replica;
use super::{FleetGuard, ReplicaState};
use crate::placement::{NodeCandidate, Resident, Want};

/// What the router needs to send a request to a replica.
#[derive(Debug, Clone)]
pub struct Route {
    pub idx: usize,
    pub node: String,
    pub endpoint: String,
    pub down: watch::Receiver<u64>,
}

/// One model on one node, as a waiter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The node's event stream is connected.
    pub up: bool,
    /// `None`: there is no such replica.
    pub state: Option<ReplicaState>,
}

/// A replica idle past its model's ttl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    pub idx: usize,
    pub model: String,
    pub idle_ms: u64,
    pub ttl_ms: u64,
}

/// A node's figures for the metrics gauges.
pub struct NodeGauges {
    pub name: String,
    pub up: bool,
    pub in_flight: u32,
    pub devices: Vec<DeviceInfo>,
    /// (model, requests admitted by the neuron, of which queued).
    pub models: Vec<(String, u32, u32)>,
}

impl FleetGuard<'_> {
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.inner.nodes.iter().position(|n| n.name == name)
    }

    pub fn node_name(&self, idx: usize) -> String {
        self.inner.nodes[idx].name.clone()
    }

    /// (name, endpoint) of node `idx`.
    pub fn node_addr(&self, idx: usize) -> (String, String) {
        let n = &self.inner.nodes[idx];
        (n.name.clone(), n.endpoint.clone())
    }

    /// A receiver that changes when node `name` goes down; `None` if it
    /// is down (or unknown) already.
    pub fn down_signal(&self, name: &str) -> Option<watch::Receiver<u64>> {
        self.inner
            .nodes
            .iter()
            .find(|n| n.name == name && n.up)
            .map(|n| n.epoch.subscribe())
    }

    pub fn seen(&self, idx: usize, model: &str) -> Seen {
        let n = &self.inner.nodes[idx];
        Seen {
            up: n.up,
            state: n.state_of(model),
        }
    }

    pub fn servable_on(&self, idx: usize, model: &str) -> bool {
        self.inner.nodes[idx].servable(model)
    }

    /// Whether an up node reports `model` (in any state).
    pub(super) fn reported_on_up_node(&self, model: &str) -> bool {
        self.inner.nodes.iter().any(|n| {
            n.up && n
                .replicas
                .get(model)
                .is_some_and(|r| r.reported().is_some())
        })
    }

    /// The sampling defaults an up node serving `model` reports for it (the
    /// model's own published ones), if any does.
    pub fn reported_sampling(&self, model: &str) -> Option<SamplingDefaults> {
        self.inner
            .nodes
            .iter()
            .filter(|n| n.up)
            .find_map(|n| n.replicas.get(model)?.reported()?.sampling)
    }

    /// Servable replicas of `model`, least in-flight first (the gateway's own
    /// count, then the neuron's queue depth, then name).
    pub fn replicas(&self, model: &str) -> Vec<usize> {
        let mut found: Vec<(u32, u32, &str, usize)> = self
            .inner
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.servable(model))
            .map(|(i, n)| {
                let queue = n
                    .replicas
                    .get(model)
                    .and_then(|r| r.reported())
                    .map(|m| m.queue_depth)
                    .unwrap_or(0);
                (n.in_flight_of(model), queue, n.name.as_str(), i)
            })
            .collect();
        found.sort();
        found.into_iter().map(|(.., i)| i).collect()
    }

    pub fn route(&self, idx: usize) -> Route {
        let n = &self.inner.nodes[idx];
        Route {
            idx,
            node: n.name.clone(),
            endpoint: n.endpoint.clone(),
            down: n.epoch.subscribe(),
        }
    }

    /// An up node where `model` is being loaded right now, if any.
    pub fn loading_on(&self, model: &str) -> Option<usize> {
        self.inner.nodes.iter().position(|n| {
            n.up && matches!(
                n.state_of(model),
                Some(ReplicaState::Reserved | ReplicaState::Loading)
            )
        })
    }

    /// Up nodes that hold `model` in any state (serving, loading, being
    /// unloaded), or have a load of it under way.
    pub fn holders(&self, model: &str) -> usize {
        self.inner
            .nodes
            .iter()
            .filter(|n| n.up && n.placement_state(model).is_some())
            .count()
    }

    /// Up nodes (`node`, or all) where the neuron holds `model` in any
    /// state: what an unload would address.
    pub fn resident_on(&self, model: &str, node: Option<&str>) -> Vec<usize> {
        self.inner
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.up && node.is_none_or(|want| want == n.name))
            .filter(|(_, n)| {
                n.state_of(model)
                    .is_some_and(|s| s != ReplicaState::Reserved)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The nodes `model` may go to (its affinity, or all) that do not hold
    /// it: where another replica could be placed.
    pub fn nodes_without(&self, model: &str, entry: Option<&ModelEntry>) -> Vec<String> {
        self.inner
            .nodes
            .iter()
            .filter(|n| n.placement_state(model).is_none())
            .filter(|n| {
                entry.is_none_or(|e| e.pinned_on.is_empty() || e.pinned_on.contains(&n.name))
            })
            .map(|n| n.name.clone())
            .collect()
    }

    /// Loaded replicas that no request has used for their model's ttl
    /// (`ttls`: model, ttl in ms), pinned models aside.
    pub fn idle_past_ttl(&self, ttls: &[(String, u64)], now_ms: u64) -> Vec<Idle> {
        let mut due = Vec::new();
        for (idx, n) in self.inner.nodes.iter().enumerate() {
            if !n.up {
                continue;
            }
            for (id, ttl_ms) in ttls {
                if self.is_pinned(id) || n.in_flight_of(id) > 0 {
                    continue;
                }
                let Some(r) = n.replicas.get(id) else {
                    continue;
                };
                let idle = r.state() == ReplicaState::Loaded
                    && r.reported().is_some_and(|m| m.in_flight == 0);
                let idle_ms = now_ms.saturating_sub(r.last_used_ms());
                if idle && idle_ms >= *ttl_ms {
                    due.push(Idle {
                        idx,
                        model: id.clone(),
                        idle_ms,
                        ttl_ms: *ttl_ms,
                    });
                }
            }
        }
        due
    }

    fn priority(&self, model: &str) -> u32 {
        self.fleet
            .catalogue
            .get(model)
            .map(|e| e.residency_priority)
            .unwrap_or(DEFAULT_RESIDENCY_PRIORITY)
    }

    /// The picture placement decides on.
    pub fn candidates(&self) -> Vec<NodeCandidate> {
        self.inner
            .nodes
            .iter()
            .map(|n| {
                let residents = n
                    .replicas
                    .iter()
                    .filter(|(_, r)| r.state() != ReplicaState::Failed)
                    .map(|(id, r)| Resident {
                        model: id.clone(),
                        bytes: r.memory_bytes().max(r.reserved_bytes()),
                        priority: self.priority(id),
                        pinned: self.is_pinned(id),
                        in_flight: n.in_flight_of(id)
                            + r.reported().map(|m| m.in_flight).unwrap_or(0),
                        last_used_ms: r.last_used_ms(),
                        settled: r.state() == ReplicaState::Loaded,
                    })
                    .collect();
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
            .inner
            .models
            .get(model)
            .and_then(|m| m.observed_bytes())
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

    /// Nodes where `model` could be loaded (up, enough devices, allowed,
    /// big enough), for the catalogue.
    pub fn loadable_on(&self, want: &Want) -> Vec<String> {
        self.inner
            .nodes
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

    /// The catalogue's ids, then any other model an up node reports.
    pub fn listed_ids(&self) -> Vec<String> {
        self.ids_with(|n, r| n.up && r.reported().is_some())
    }

    /// The catalogue's ids, then those of other models with a replica
    /// `other` accepts.
    pub(super) fn ids_with(&self, other: impl Fn(&Node, &Replica) -> bool) -> Vec<String> {
        let mut ids = self.fleet.catalogue_ids();
        for n in &self.inner.nodes {
            for (id, r) in &n.replicas {
                if other(n, r) && !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        ids
    }

    /// Node `idx`'s figures for the gauges.
    pub fn gauges(&self, idx: usize) -> NodeGauges {
        let n = &self.inner.nodes[idx];
        NodeGauges {
            name: n.name.clone(),
            up: n.up,
            in_flight: n.in_flight_total(),
            devices: n.devices.clone(),
            models: n
                .replicas
                .iter()
                .filter_map(|(id, r)| {
                    let m = r.reported()?;
                    Some((id.clone(), m.in_flight, m.queue_depth))
                })
                .collect(),
        }
    }
}
