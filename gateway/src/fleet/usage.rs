//! How the fleet is used: requests in flight per replica (the router's
//! lease), per-model request counters, latency and speed distributions,
//! and pins.

use std::collections::{BTreeMap, BTreeSet};

use cortex_common::event::{EventKind, RequestEnd};
use cortex_common::histogram::Distribution;

use super::FleetGuard;
use super::view::Route;

/// What the gateway keeps per model beyond its replicas.
pub(super) struct ModelRuntime {
    pinned: bool,
    /// Client requests the gateway finished with (`request_done` events).
    requests_total: u64,
    /// Those that failed.
    errors_total: u64,
    ttft: Distribution,
    tok_s: Distribution,
    per_node: BTreeMap<String, (Distribution, Distribution)>,
    /// Nodes with new samples since the last `histograms` event.
    dirty: BTreeSet<String>,
    /// Largest size a neuron reported for it.
    observed_bytes: Option<u64>,
    /// Declared in models.toml: kept for the gateway's life.
    in_catalogue: bool,
}

impl ModelRuntime {
    /// A model models.toml declares.
    pub(super) fn declared(pinned: bool) -> Self {
        ModelRuntime {
            pinned,
            in_catalogue: true,
            ..Self::seen()
        }
    }

    /// A model the fleet came across (a neuron reports it).
    pub(super) fn seen() -> Self {
        ModelRuntime {
            pinned: false,
            requests_total: 0,
            errors_total: 0,
            ttft: Distribution::ttft_ms(),
            tok_s: Distribution::tok_s(),
            per_node: BTreeMap::new(),
            dirty: BTreeSet::new(),
            observed_bytes: None,
            in_catalogue: false,
        }
    }

    /// Kept even when no node refers to it.
    pub(super) fn kept(&self) -> bool {
        self.pinned || self.in_catalogue
    }

    pub(super) fn counts(&self) -> (u64, u64) {
        (self.requests_total, self.errors_total)
    }

    pub(super) fn distributions(&self) -> (&Distribution, &Distribution) {
        (&self.ttft, &self.tok_s)
    }

    pub(super) fn observed_bytes(&self) -> Option<u64> {
        self.observed_bytes
    }

    pub(super) fn observe_bytes(&mut self, bytes: u64) {
        self.observed_bytes = Some(self.observed_bytes.unwrap_or(0).max(bytes));
    }

    /// A request the neuron on `node` finished, with its measurements.
    pub(super) fn record_finished(
        &mut self,
        node: &str,
        ttft_ms: Option<f64>,
        decode_tok_s: Option<f64>,
    ) {
        let (nt, ns) = self
            .per_node
            .entry(node.to_string())
            .or_insert_with(|| (Distribution::ttft_ms(), Distribution::tok_s()));
        if let Some(t) = ttft_ms {
            self.ttft.record(t);
            nt.record(t);
        }
        if let Some(s) = decode_tok_s {
            self.tok_s.record(s);
            ns.record(s);
        }
        self.dirty.insert(node.to_string());
    }
}

impl FleetGuard<'_> {
    /// Claims the servable replica of `model` with the fewest requests in
    /// flight, counting one more there; with the node's new total.
    pub fn lease(&mut self, model: &str) -> Option<(Route, u32)> {
        let idx = *self.replicas(model).first()?;
        let now = cortex_common::now_ms();
        let n = &mut self.inner.nodes[idx];
        *n.in_flight.entry(model.to_string()).or_insert(0) += 1;
        if let Some(r) = n.replicas.get_mut(model) {
            r.touch(now);
        }
        let total = n.in_flight_total();
        Some((self.route(idx), total))
    }

    /// Ends what [`FleetGuard::lease`] counted; the node's new total.
    pub fn release(&mut self, idx: usize, model: &str) -> u32 {
        let now = cortex_common::now_ms();
        let n = &mut self.inner.nodes[idx];
        if let Some(c) = n.in_flight.get_mut(model) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                n.in_flight.remove(model);
            }
        }
        if let Some(r) = n.replicas.get_mut(model) {
            r.touch(now);
        }
        n.in_flight_total()
    }

    /// The gateway is done with client request `request_id` for `model`
    /// (last sent to `node`): counted, and published as `request_done`.
    pub fn request_done(
        &mut self,
        request_id: &str,
        model: &str,
        node: Option<&str>,
        ended: RequestEnd,
    ) {
        let rt = self.runtime(model);
        rt.requests_total += 1;
        if ended == RequestEnd::Error {
            rt.errors_total += 1;
        }
        self.fleet.bus.publish(
            node.map(str::to_string),
            EventKind::RequestDone {
                request_id: request_id.to_string(),
                model: model.to_string(),
                ended,
            },
        );
    }

    pub fn is_pinned(&self, model: &str) -> bool {
        self.inner.models.get(model).is_some_and(|m| m.pinned)
    }

    /// An operator pins or unpins `model`; returns whether that changed
    /// anything, and if so publishes `pinned` / `unpinned`.
    pub fn set_pinned(&mut self, model: &str, pinned: bool) -> bool {
        let rt = self.runtime(model);
        if rt.pinned == pinned {
            return false;
        }
        rt.pinned = pinned;
        let model = model.to_string();
        let kind = if pinned {
            EventKind::Pinned { model }
        } else {
            EventKind::Unpinned { model }
        };
        self.publish(None, kind);
        true
    }

    /// A pin kept from an earlier run, applied at start (before anyone
    /// watches, so no event).
    pub fn restore_pin(&mut self, model: &str, pinned: bool) {
        self.runtime(model).pinned = pinned;
    }

    /// Publishes a `histograms` event per model (and per model on each
    /// node) that has new samples since the last call.
    pub fn publish_histograms(&mut self) {
        let mut out = Vec::new();
        for (model, rt) in self.inner.models.iter_mut() {
            if rt.dirty.is_empty() {
                continue;
            }
            out.push((None, model.clone(), rt.ttft.snapshot(), rt.tok_s.snapshot()));
            for node in std::mem::take(&mut rt.dirty) {
                if let Some((t, s)) = rt.per_node.get(&node) {
                    out.push((Some(node), model.clone(), t.snapshot(), s.snapshot()));
                }
            }
        }
        for (node, model, ttft_ms, tok_s) in out {
            self.fleet.bus.publish(
                node,
                EventKind::Histograms {
                    model,
                    ttft_ms,
                    tok_s,
                },
            );
        }
    }
}
