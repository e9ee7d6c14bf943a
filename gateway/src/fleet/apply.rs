//! What a node's event stream tells the fleet: the node coming up (with its
//! state as just read), going down, and each event it sends, folded into
//! the node's replicas and the model counters, then published on the fleet
//! stream labelled with the node. Only the node's stream task calls these.

use std::time::Instant;

use cortex_common::event::EventKind;
use cortex_common::neuron_api::{DeviceInfo, ModelInfo, ModelState, Progress};

use super::replica::{Next, Replica};
use super::{FleetGuard, ReplicaState};

impl FleetGuard<'_> {
    /// Node `idx`'s stream connected (or reconnected after a blip): its
    /// state as just read. Publishes `node_up` when it was down.
    pub fn node_up(&mut self, idx: usize, devices: Vec<DeviceInfo>, models: Vec<ModelInfo>) {
        let n = &mut self.inner.nodes[idx];
        let was_up = n.up;
        n.up = true;
        n.reason = None;
        n.devices = devices;
        self.merge_listing(idx, models);
        if !was_up {
            let endpoint = self.inner.nodes[idx].endpoint.clone();
            self.publish(Some(idx), EventKind::NodeUp { endpoint });
        }
    }

    /// Node `idx`'s stream dropped: nothing is known about it any more
    /// (loads the gateway placed there stay reserved until their own
    /// request fails). Returns whether it was up; if so, publishes
    /// `node_down`.
    pub fn node_down(&mut self, idx: usize, reason: &str) -> bool {
        self.dirty = true;
        let n = &mut self.inner.nodes[idx];
        let was_up = n.up;
        n.up = false;
        n.reason = Some(reason.to_string());
        n.replicas
            .retain(|_, r| r.state() == ReplicaState::Reserved);
        n.epoch.send_modify(|e| *e += 1);
        self.forget_vanished();
        if was_up {
            let endpoint = self.inner.nodes[idx].endpoint.clone();
            self.publish(
                Some(idx),
                EventKind::NodeDown {
                    endpoint,
                    reason: reason.to_string(),
                },
            );
        }
        was_up
    }

    /// Node `idx` could not be reached (it is down already): why.
    pub fn unreachable(&mut self, idx: usize, reason: String) {
        self.inner.nodes[idx].reason = Some(reason);
    }

    /// Folds one event from node `idx`'s stream into the view and publishes
    /// it, labelled with the node.
    pub fn apply(&mut self, idx: usize, kind: EventKind) {
        self.fold(idx, &kind);
        self.publish(Some(idx), kind);
    }

    fn fold(&mut self, idx: usize, kind: &EventKind) {
        let now = cortex_common::now_ms();
        match kind {
            EventKind::ModelLoadStarted { model, source } => {
                let fresh = self.bare(idx, model, source, ModelState::Loading);
                self.dirty = true;
                let n = &mut self.inner.nodes[idx];
                match n.replicas.get_mut(model) {
                    Some(r) => {
                        if !r.load_started(fresh) {
                            tracing::debug!(node = %n.name, %model, state = %r.state(), "load started for a replica that is not loading; ignored");
                        }
                    }
                    None => {
                        n.replicas
                            .insert(model.clone(), Replica::from_report(fresh, now));
                    }
                }
            }
            EventKind::ModelLoadProgress {
                model, done, total, ..
            } => {
                let progress = Progress {
                    done: *done,
                    total: *total,
                };
                let n = &mut self.inner.nodes[idx];
                let taken = n
                    .replicas
                    .get_mut(model)
                    .is_some_and(|r| r.load_progress(progress));
                if !taken {
                    let state = n.state_of(model).map(|s| s.as_str()).unwrap_or("absent");
                    tracing::debug!(node = %n.name, %model, state, "load progress for a replica that is not loading; ignored");
                }
            }
            EventKind::ModelLoaded {
                model,
                memory_bytes,
                ..
            } => {
                let fresh = self.bare(idx, model, "", ModelState::Loaded);
                self.dirty = true;
                let n = &mut self.inner.nodes[idx];
                match n.replicas.get_mut(model) {
                    Some(r) => r.loaded(fresh, *memory_bytes, now),
                    None => {
                        let info = ModelInfo {
                            memory_bytes: *memory_bytes,
                            ..fresh
                        };
                        n.replicas
                            .insert(model.clone(), Replica::from_report(info, now));
                    }
                }
                self.observe_sizes(idx);
            }
            EventKind::ModelLoadFailed { model, .. } => {
                self.step(idx, model, Replica::load_failed);
            }
            EventKind::ModelUnloaded { model, .. } => {
                self.step(idx, model, Replica::unloaded);
            }
            EventKind::RequestFinished {
                model,
                completion_tokens,
                ttft_ms,
                decode_tok_s,
                ..
            } => {
                self.inner
                    .finished
                    .push_back((Instant::now(), *completion_tokens));
                let node = self.inner.nodes[idx].name.clone();
                self.runtime(model)
                    .record_finished(&node, *ttft_ms, *decode_tok_s);
            }
            EventKind::DeviceStats { devices, models } => {
                self.inner.nodes[idx].devices = devices.clone();
                self.merge_listing(idx, models.clone());
            }
            _ => {}
        }
    }

    /// A neuron's word that may end the replica (`Next::Gone`); a
    /// reservation it does not end is kept, and said so.
    fn step(&mut self, idx: usize, model: &str, f: impl FnOnce(&Replica) -> Next) {
        let n = &mut self.inner.nodes[idx];
        match n.replicas.get(model).map(f) {
            Some(Next::Gone) => {
                n.replicas.remove(model);
                self.dirty = true;
                self.forget_vanished();
            }
            Some(Next::Keep) => {
                tracing::debug!(node = %n.name, %model, "the neuron ended an earlier instance of a replica the gateway has reserved; the reservation stays");
            }
            None => {}
        }
    }

    /// The neuron's full listing of its models: each listed one takes what
    /// it says (see `Replica::report`), unlisted ones are gone.
    fn merge_listing(&mut self, idx: usize, models: Vec<ModelInfo>) {
        let now = cortex_common::now_ms();
        self.dirty = true;
        let n = &mut self.inner.nodes[idx];
        n.replicas
            .retain(|id, r| models.iter().any(|m| &m.id == id) || r.unlisted() == Next::Keep);
        for m in models {
            match n.replicas.get_mut(&m.id) {
                Some(r) => r.report(m),
                None => {
                    n.replicas
                        .insert(m.id.clone(), Replica::from_report(m, now));
                }
            }
        }
        self.observe_sizes(idx);
        self.forget_vanished();
    }

    /// What the gateway knows of a model the neuron names in an event,
    /// before (or without) its listing.
    fn bare(&self, idx: usize, model: &str, source: &str, state: ModelState) -> ModelInfo {
        let device = self.inner.nodes[idx]
            .devices
            .first()
            .map(|d| d.id.as_str())
            .unwrap_or_default();
        ModelInfo::bare(model, source, state, device)
    }
}
