//! One model on one node: the replica state machine. Its state changes only
//! through the steps below, each named for what caused it — the gateway's
//! own decisions (reserve, unload) or what the neuron reported (load
//! started, loaded, failed, unloaded, its periodic listing). A step that
//! does not fit the state is refused (gateway) or ignored (neuron, whose
//! events can race the gateway's view) and logged.
//!
//! ```text
//!  (none) ──reserve──▶ Reserved ──neuron: load started──▶ Loading ──neuron: loaded──▶ Loaded
//!             gateway gives up │          neuron: failed / gone │        begin_unload │
//!                              ▼                                ▼                     ▼
//!                           (gone)                           (gone)               Unloading ──neuron: unloaded──▶ (gone)
//!                                                                       unload failed │
//!                                                                                     ▼ what the neuron reports
//! ```
//!
//! The neuron's own report of a replica (a listing, or an event for a load
//! the gateway did not start) creates it in whatever state the neuron says.
//! `Failed` is a load the neuron lists as failed: it holds no memory and
//! serves nothing.

use std::fmt;

use cortex_common::neuron_api::{ModelInfo, ModelState, Progress};
use cortex_common::status::PlacementState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// The gateway placed a load here and holds memory for it; the neuron
    /// has not reported the load yet.
    Reserved,
    /// The neuron is loading it.
    Loading,
    /// Serving.
    Loaded,
    /// Being unloaded (by the gateway, or as the neuron reports): routed
    /// nothing new.
    Unloading,
    /// The neuron lists its load as failed.
    Failed,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Reserved => "reserved",
            ReplicaState::Loading => "loading",
            ReplicaState::Loaded => "loaded",
            ReplicaState::Unloading => "unloading",
            ReplicaState::Failed => "failed",
        }
    }

    fn reported(state: ModelState) -> Self {
        match state {
            ModelState::Loading => ReplicaState::Loading,
            ModelState::Loaded => ReplicaState::Loaded,
            ModelState::Unloading => ReplicaState::Unloading,
            ModelState::Failed => ReplicaState::Failed,
        }
    }

    /// How the status document shows it; a failed load is no placement.
    pub fn placement(self) -> Option<PlacementState> {
        match self {
            ReplicaState::Reserved | ReplicaState::Loading => Some(PlacementState::Loading),
            ReplicaState::Loaded => Some(PlacementState::Loaded),
            ReplicaState::Unloading => Some(PlacementState::Unloading),
            ReplicaState::Failed => None,
        }
    }
}

impl fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step the gateway asked for that the replica's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub step: &'static str,
    pub model: String,
    pub node: String,
    /// The state it is in (`None`: there is no such replica).
    pub state: Option<ReplicaState>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            Some(s) => write!(
                f,
                "cannot {} `{}` on {}: it is {s} there",
                self.step, self.model, self.node
            ),
            None => write!(
                f,
                "cannot {} `{}` on {}: it is not there",
                self.step, self.model, self.node
            ),
        }
    }
}

/// Whether a step keeps the replica or ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Keep,
    Gone,
}

/// One model on one node.
#[derive(Debug, Clone)]
pub(super) struct Replica {
    state: ReplicaState,
    /// Memory the gateway holds for a load it placed here, until the
    /// neuron reports the model loaded (it may not count it before).
    reserved_bytes: u64,
    /// What the neuron last said about it; `None` until it has.
    reported: Option<ModelInfo>,
    /// Last time a request here started or ended, or it was loaded (ms).
    last_used_ms: u64,
}

impl Replica {
    /// A load the gateway placed here, holding `bytes`.
    pub(super) fn reserved(bytes: u64, now_ms: u64) -> Self {
        Replica {
            state: ReplicaState::Reserved,
            reserved_bytes: bytes,
            reported: None,
            last_used_ms: now_ms,
        }
    }

    /// A replica the neuron reports that the gateway did not know.
    pub(super) fn from_report(info: ModelInfo, now_ms: u64) -> Self {
        Replica {
            state: ReplicaState::reported(info.state),
            reserved_bytes: 0,
            reported: Some(info),
            last_used_ms: now_ms,
        }
    }

    pub(super) fn state(&self) -> ReplicaState {
        self.state
    }

    pub(super) fn reported(&self) -> Option<&ModelInfo> {
        self.reported.as_ref()
    }

    pub(super) fn last_used_ms(&self) -> u64 {
        self.last_used_ms
    }

    pub(super) fn reserved_bytes(&self) -> u64 {
        self.reserved_bytes
    }

    /// Memory the neuron reports it takes (0 while loading or failed).
    pub(super) fn memory_bytes(&self) -> u64 {
        match (&self.reported, self.state) {
            (_, ReplicaState::Failed) => 0,
            (Some(m), _) => m.memory_bytes,
            (None, _) => 0,
        }
    }

    pub(super) fn touch(&mut self, now_ms: u64) {
        self.last_used_ms = now_ms;
    }

    fn set(&mut self, state: ReplicaState) {
        self.state = state;
        if state == ReplicaState::Loaded {
            // The neuron counts it now.
            self.reserved_bytes = 0;
        }
    }

    // ---- what the neuron reports ----

    /// The neuron's listing (on connect, and every stats interval) says
    /// this about it. The gateway's own steps under way win over a listing
    /// that may predate them: a reservation over a listed failure (an
    /// earlier attempt), an unload over a listed load. (A listed failure
    /// ends an unload: there is nothing to unload.)
    pub(super) fn report(&mut self, info: ModelInfo) {
        let said = ReplicaState::reported(info.state);
        let next = match (self.state, said) {
            (ReplicaState::Reserved, ReplicaState::Failed) => ReplicaState::Reserved,
            (ReplicaState::Unloading, ReplicaState::Failed) => ReplicaState::Failed,
            (ReplicaState::Unloading, _) => ReplicaState::Unloading,
            (_, said) => said,
        };
        self.reported = Some(info);
        self.set(next);
    }

    /// The listing no longer has it.
    pub(super) fn unlisted(&self) -> Next {
        self.gone_unless_reserved()
    }

    /// The neuron started loading it; `false` (ignored) when it is loaded
    /// or being unloaded.
    pub(super) fn load_started(&mut self, fresh: ModelInfo) -> bool {
        match self.state {
            ReplicaState::Reserved | ReplicaState::Failed | ReplicaState::Loading => {
                if self.state != ReplicaState::Loading || self.reported.is_none() {
                    self.reported = Some(fresh);
                }
                self.set(ReplicaState::Loading);
                true
            }
            ReplicaState::Loaded | ReplicaState::Unloading => false,
        }
    }

    /// How far the neuron's load has got; `false` (ignored) when it is
    /// not loading.
    pub(super) fn load_progress(&mut self, progress: Progress) -> bool {
        match self.state {
            ReplicaState::Reserved | ReplicaState::Loading => {
                if let Some(m) = self.reported.as_mut() {
                    m.progress = Some(progress);
                }
                self.set(ReplicaState::Loading);
                true
            }
            _ => false,
        }
    }

    /// The neuron finished loading it, taking `memory_bytes`. An unload
    /// the gateway started stays under way.
    pub(super) fn loaded(&mut self, fresh: ModelInfo, memory_bytes: u64, now_ms: u64) {
        let info = self.reported.get_or_insert(fresh);
        info.state = ModelState::Loaded;
        info.progress = None;
        info.memory_bytes = memory_bytes;
        if self.state == ReplicaState::Unloading {
            self.reserved_bytes = 0;
        } else {
            self.set(ReplicaState::Loaded);
        }
        self.last_used_ms = now_ms;
    }

    /// The neuron's load of it failed.
    pub(super) fn load_failed(&self) -> Next {
        self.gone_unless_reserved()
    }

    /// The neuron unloaded it.
    pub(super) fn unloaded(&self) -> Next {
        self.gone_unless_reserved()
    }

    /// A reservation is the gateway's own: a neuron's word about an earlier
    /// instance of the model does not end it (the load that holds it does).
    fn gone_unless_reserved(&self) -> Next {
        if self.state == ReplicaState::Reserved {
            Next::Keep
        } else {
            Next::Gone
        }
    }

    // ---- what the gateway does ----

    /// The gateway starts unloading it. `Ok(false)`: an unload was already
    /// under way.
    pub(super) fn begin_unload(&mut self) -> Result<bool, ReplicaState> {
        match self.state {
            ReplicaState::Loading | ReplicaState::Loaded | ReplicaState::Failed => {
                self.set(ReplicaState::Unloading);
                Ok(true)
            }
            ReplicaState::Unloading => Ok(false),
            ReplicaState::Reserved => Err(self.state),
        }
    }

    /// The gateway's unload did not happen: back to what the neuron
    /// reports. Refused when no unload is under way.
    pub(super) fn unload_failed(&mut self) -> Result<Next, ReplicaState> {
        if self.state != ReplicaState::Unloading {
            return Err(self.state);
        }
        Ok(match &self.reported {
            Some(m) => {
                let back = ReplicaState::reported(m.state);
                self.set(back);
                Next::Keep
            }
            None => Next::Gone,
        })
    }

    /// The load the gateway placed here did not go through: the
    /// reservation ends. A load the neuron has reported goes on under the
    /// neuron's word (it counts its memory itself).
    pub(super) fn abandon_load(&mut self) -> Next {
        match self.state {
            ReplicaState::Reserved => Next::Gone,
            _ => {
                self.reserved_bytes = 0;
                Next::Keep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: ModelState) -> ModelInfo {
        ModelInfo {
            memory_bytes: if state == ModelState::Loaded { 100 } else { 0 },
            ..ModelInfo::bare("m", "embedded", state, "cpu")
        }
    }

    #[test]
    fn a_placed_load_goes_reserved_loading_loaded_and_frees_its_reservation() {
        let mut r = Replica::reserved(100, 1);
        assert_eq!(r.state(), ReplicaState::Reserved);
        assert_eq!(r.reserved_bytes(), 100);
        assert!(r.load_started(info(ModelState::Loading)));
        assert_eq!(r.state(), ReplicaState::Loading);
        assert_eq!(r.reserved_bytes(), 100, "held until the neuron counts it");
        assert!(r.load_progress(Progress { done: 5, total: 10 }));
        assert_eq!(
            r.reported().and_then(|m| m.progress).map(|p| p.done),
            Some(5)
        );
        r.loaded(info(ModelState::Loaded), 100, 9);
        assert_eq!(r.state(), ReplicaState::Loaded);
        assert_eq!(r.reserved_bytes(), 0);
        assert_eq!(r.last_used_ms(), 9);
        assert_eq!(r.reported().and_then(|m| m.progress), None);
    }

    #[test]
    fn an_unload_runs_from_loaded_and_a_failed_one_goes_back() {
        let mut r = Replica::from_report(info(ModelState::Loaded), 1);
        assert_eq!(r.begin_unload(), Ok(true));
        assert_eq!(r.state(), ReplicaState::Unloading);
        assert_eq!(r.begin_unload(), Ok(false), "already under way");
        assert_eq!(r.unload_failed(), Ok(Next::Keep));
        assert_eq!(
            r.state(),
            ReplicaState::Loaded,
            "back to what the neuron said"
        );
        r.begin_unload().unwrap();
        assert_eq!(r.unloaded(), Next::Gone);
    }

    #[test]
    fn illegal_steps_are_refused_or_ignored() {
        // Nothing to unload before the neuron has even started the load.
        let mut r = Replica::reserved(100, 1);
        assert_eq!(r.begin_unload(), Err(ReplicaState::Reserved));
        assert_eq!(r.state(), ReplicaState::Reserved);
        // A loaded replica does not go back to loading on a stray event.
        let mut r = Replica::from_report(info(ModelState::Loaded), 1);
        assert!(!r.load_started(info(ModelState::Loading)));
        assert_eq!(r.state(), ReplicaState::Loaded);
        assert!(!r.load_progress(Progress { done: 1, total: 2 }));
        assert_eq!(r.state(), ReplicaState::Loaded);
        // An unload failure for a replica not being unloaded changes nothing.
        assert_eq!(r.unload_failed(), Err(ReplicaState::Loaded));
        assert_eq!(r.state(), ReplicaState::Loaded);
    }

    #[test]
    fn a_reservation_outlives_news_of_an_earlier_instance() {
        let mut r = Replica::reserved(100, 1);
        assert_eq!(r.unloaded(), Next::Keep);
        assert_eq!(r.load_failed(), Next::Keep);
        assert_eq!(r.unlisted(), Next::Keep);
        r.report(info(ModelState::Failed));
        assert_eq!(
            r.state(),
            ReplicaState::Reserved,
            "a listed failure is the last attempt's"
        );
        assert_eq!(
            r.abandon_load(),
            Next::Gone,
            "the gateway's own give-up ends it"
        );
    }

    #[test]
    fn a_listing_cannot_undo_an_unload_under_way() {
        let mut r = Replica::from_report(info(ModelState::Failed), 1);
        r.begin_unload().unwrap();
        r.report(info(ModelState::Failed));
        assert_eq!(r.state(), ReplicaState::Failed, "nothing to unload");
        let mut r = Replica::from_report(info(ModelState::Loaded), 1);
        r.begin_unload().unwrap();
        r.report(info(ModelState::Loaded));
        assert_eq!(r.state(), ReplicaState::Unloading);
        r.loaded(info(ModelState::Loaded), 100, 2);
        assert_eq!(r.state(), ReplicaState::Unloading);
        assert_eq!(r.unlisted(), Next::Gone);
    }

    #[test]
    fn a_load_the_neuron_reported_survives_the_gateway_giving_up() {
        let mut r = Replica::reserved(100, 1);
        r.load_started(info(ModelState::Loading));
        assert_eq!(r.abandon_load(), Next::Keep);
        assert_eq!(r.state(), ReplicaState::Loading);
        assert_eq!(r.reserved_bytes(), 0);
        assert_eq!(r.load_failed(), Next::Gone);
    }
}
