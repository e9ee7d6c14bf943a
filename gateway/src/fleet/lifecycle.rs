//! The replica steps the gateway itself takes: reserving room for a load it
//! placed (and giving it up), unloading (and an unload that failed), and
//! forgetting a replica a neuron says it does not have. A step the state
//! does not allow is refused, logged, and changes nothing.

use cortex_common::event::{EventKind, EvictionCause};

use super::replica::{Next, Refused, Replica};
use super::{FleetGuard, ReplicaState};

impl FleetGuard<'_> {
    fn refused(&self, step: &'static str, idx: usize, model: &str) -> Refused {
        let n = &self.inner.nodes[idx];
        let r = Refused {
            step,
            model: model.to_string(),
            node: n.name.clone(),
            state: n.state_of(model),
        };
        tracing::warn!("{r}");
        r
    }

    /// Placement chose node `idx` for `model`: holds `bytes` there until the
    /// neuron reports the load, marks the `victims` as unloading (nothing
    /// new is routed to them), and publishes `placement_decided` with
    /// `reason`. Refused, changing nothing, when the model is already there
    /// (other than as a failed load) or a victim is not loaded.
    pub fn reserve(
        &mut self,
        idx: usize,
        model: &str,
        bytes: u64,
        victims: &[String],
        reason: String,
    ) -> Result<(), Refused> {
        let n = &self.inner.nodes[idx];
        if n.state_of(model).is_some_and(|s| s != ReplicaState::Failed) {
            return Err(self.refused("reserve room for", idx, model));
        }
        if let Some(v) = victims
            .iter()
            .find(|v| n.state_of(v) != Some(ReplicaState::Loaded))
        {
            return Err(self.refused("evict", idx, v));
        }
        self.dirty = true;
        let now = cortex_common::now_ms();
        let n = &mut self.inner.nodes[idx];
        for v in victims {
            if let Some(r) = n.replicas.get_mut(v) {
                // Loaded, checked above: cannot be refused.
                let _ = r.begin_unload();
            }
        }
        n.replicas
            .insert(model.to_string(), Replica::reserved(bytes, now));
        self.publish(
            Some(idx),
            EventKind::PlacementDecided {
                model: model.to_string(),
                reason,
            },
        );
        Ok(())
    }

    /// The load the gateway placed on node `idx` did not go through (making
    /// room or asking the neuron failed): its reservation ends.
    pub fn abandon_load(&mut self, idx: usize, model: &str) {
        let n = &mut self.inner.nodes[idx];
        if let Some(r) = n.replicas.get_mut(model)
            && r.abandon_load() == Next::Gone
        {
            n.replicas.remove(model);
            self.dirty = true;
            self.forget_vanished();
        }
    }

    /// Starts unloading `model` from node `idx`: nothing new is routed
    /// there. `Ok(false)`: an unload was already under way. Refused when
    /// there is nothing there to unload yet (or at all).
    pub fn begin_unload(&mut self, idx: usize, model: &str) -> Result<bool, Refused> {
        let started = match self.inner.nodes[idx].replicas.get_mut(model) {
            Some(r) => r.begin_unload().ok(),
            None => None,
        };
        match started {
            Some(started) => {
                self.dirty |= started;
                Ok(started)
            }
            None => Err(self.refused("unload", idx, model)),
        }
    }

    /// The gateway's unload of `model` from node `idx` failed: it serves
    /// again if the neuron still reports it loaded.
    pub fn unload_failed(&mut self, idx: usize, model: &str) {
        let n = &mut self.inner.nodes[idx];
        let Some(r) = n.replicas.get_mut(model) else {
            return;
        };
        match r.unload_failed() {
            Ok(Next::Keep) => self.dirty = true,
            Ok(Next::Gone) => {
                n.replicas.remove(model);
                self.dirty = true;
                self.forget_vanished();
            }
            Err(_) => {
                self.refused("end a failed unload of", idx, model);
            }
        }
    }

    /// The neuron took `model` off node `idx` because the gateway evicted
    /// it (`cause`: the strategy, `ttl` or `operator`): publishes `evicted`.
    /// The replica itself goes when the neuron says it is gone.
    pub fn evicted(
        &mut self,
        idx: usize,
        model: &str,
        for_model: &str,
        cause: EvictionCause,
        reason: String,
    ) {
        self.publish(
            Some(idx),
            EventKind::Evicted {
                model: model.to_string(),
                for_model: for_model.to_string(),
                strategy: cause,
                reason,
            },
        );
    }

    /// Node `idx` answered that it does not have `model` although the view
    /// said it did: the replica is gone (its events will say the rest).
    pub fn not_served(&mut self, idx: usize, model: &str) {
        let n = &mut self.inner.nodes[idx];
        if n.replicas
            .get(model)
            .is_some_and(|r| r.state() != ReplicaState::Reserved)
        {
            n.replicas.remove(model);
            self.dirty = true;
            self.forget_vanished();
        }
    }
}
