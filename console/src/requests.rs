//! The requests flowing through the fleet, folded from the event stream:
//! each request's route, progress and outcome (the gateway and the neuron
//! report one request under the same id), the events that made it, and a
//! per-second history of finished tokens and requests for the throughput
//! chart. Bounded: the newest [`MAX_KEPT`] requests and [`HISTORY_SECONDS`]
//! of history.

use std::collections::{BTreeMap, HashMap, VecDeque};

use cortex_common::event::{Event, EventKind, FinishReason, RequestEnd};

/// Requests kept (in flight and recent), oldest dropped first.
pub const MAX_KEPT: usize = 300;
/// Seconds of throughput history.
pub const HISTORY_SECONDS: u64 = 300;
/// Events kept per request.
const MAX_EVENTS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Sent to a replica (or waiting for one).
    Routed,
    /// The neuron is reading the prompt.
    Prefill,
    /// Tokens are flowing.
    Generating,
    Done,
    ClientGone,
    Failed,
}

impl RequestState {
    pub fn label(self) -> &'static str {
        match self {
            RequestState::Routed => "routed",
            RequestState::Prefill => "prefill",
            RequestState::Generating => "generating",
            RequestState::Done => "done",
            RequestState::ClientGone => "client gone",
            RequestState::Failed => "failed",
        }
    }

    pub fn finished(self) -> bool {
        matches!(
            self,
            RequestState::Done | RequestState::ClientGone | RequestState::Failed
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    pub id: String,
    pub model: String,
    pub node: Option<String>,
    pub state: RequestState,
    pub first_seen_ms: u64,
    pub ended_ms: Option<u64>,
    pub prompt_tokens: Option<u32>,
    pub cached_tokens: u32,
    pub completion_tokens: Option<u32>,
    /// Of the completion tokens, those spent thinking.
    pub reasoning_tokens: u32,
    pub ttft_ms: Option<f64>,
    pub decode_tok_s: Option<f64>,
    pub duration_ms: Option<f64>,
    pub finish_reason: Option<FinishReason>,
    pub error: Option<String>,
    /// `(ts_ms, what happened)`, oldest first.
    pub events: Vec<(u64, String)>,
}

impl RequestView {
    fn new(id: &str, model: &str, ts: u64) -> Self {
        RequestView {
            id: id.to_string(),
            model: model.to_string(),
            node: None,
            state: RequestState::Routed,
            first_seen_ms: ts,
            ended_ms: None,
            prompt_tokens: None,
            cached_tokens: 0,
            completion_tokens: None,
            reasoning_tokens: 0,
            ttft_ms: None,
            decode_tok_s: None,
            duration_ms: None,
            finish_reason: None,
            error: None,
            events: Vec::new(),
        }
    }

    fn note(&mut self, ts: u64, what: String) {
        if self.events.len() == MAX_EVENTS {
            self.events.remove(1); // keep the first event
        }
        self.events.push((ts, what));
    }

    /// Milliseconds the request has taken so far, or took (as the neuron
    /// measured it when it says).
    pub fn elapsed_ms(&self, now_ms: u64) -> u64 {
        if let Some(d) = self.duration_ms {
            return d as u64;
        }
        self.ended_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.first_seen_ms)
    }
}

/// Finished tokens and requests in one second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    pub tokens: u64,
    pub requests: u64,
    pub per_model: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug, Default)]
pub struct RequestLog {
    by_id: HashMap<String, RequestView>,
    /// Ids in the order first seen.
    order: VecDeque<String>,
    /// Per second (key: Unix second), the last [`HISTORY_SECONDS`].
    history: BTreeMap<u64, Second>,
}

impl RequestLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&RequestView> {
        self.by_id.get(id)
    }

    /// In-flight requests first (oldest first), then finished ones (newest
    /// first).
    pub fn listed(&self) -> Vec<&RequestView> {
        let mut live: Vec<&RequestView> = Vec::new();
        let mut done: Vec<&RequestView> = Vec::new();
        for id in &self.order {
            if let Some(r) = self.by_id.get(id) {
                if r.state.finished() {
                    done.push(r);
                } else {
                    live.push(r);
                }
            }
        }
        done.reverse();
        live.extend(done);
        live
    }

    pub fn in_flight(&self) -> usize {
        self.by_id.values().filter(|r| !r.state.finished()).count()
    }

    /// `(second, tokens, requests)` for the last `seconds` up to `now_sec`,
    /// zeros where nothing finished; of one model when given.
    pub fn history(&self, now_sec: u64, seconds: u64, model: Option<&str>) -> Vec<(u64, u64, u64)> {
        let from = now_sec.saturating_sub(seconds.saturating_sub(1));
        (from..=now_sec)
            .map(|sec| {
                let (t, r) = match (self.history.get(&sec), model) {
                    (None, _) => (0, 0),
                    (Some(s), None) => (s.tokens, s.requests),
                    (Some(s), Some(m)) => s.per_model.get(m).copied().unwrap_or((0, 0)),
                };
                (sec, t, r)
            })
            .collect()
    }

    /// Folds one event in; events that are not about requests are ignored.
    pub fn apply(&mut self, ev: &Event) {
        let ts = ev.ts_ms;
        let node = ev.node.clone();
        match &ev.kind {
            EventKind::RequestRouted { request_id, model } => {
                let r = self.entry(request_id, model, ts);
                r.node = node.clone();
                r.note(ts, format!("routed to {}", node.as_deref().unwrap_or("?")));
            }
            EventKind::RequestStarted {
                request_id,
                model,
                prompt_tokens,
                cached_tokens,
            } => {
                let r = self.entry(request_id, model, ts);
                if node.is_some() {
                    r.node = node;
                }
                if !r.state.finished() {
                    r.state = RequestState::Prefill;
                }
                r.prompt_tokens = Some(*prompt_tokens);
                r.cached_tokens = *cached_tokens;
                r.note(
                    ts,
                    format!("started: {prompt_tokens} prompt tokens, {cached_tokens} cached"),
                );
            }
            EventKind::RequestFirstToken {
                request_id,
                model,
                ttft_ms,
            } => {
                let r = self.entry(request_id, model, ts);
                if node.is_some() {
                    r.node = node;
                }
                if !r.state.finished() {
                    r.state = RequestState::Generating;
                }
                r.ttft_ms = Some(*ttft_ms);
                r.note(ts, format!("first token after {ttft_ms:.0} ms"));
            }
            EventKind::RequestFinished {
                request_id,
                model,
                prompt_tokens,
                cached_tokens,
                completion_tokens,
                reasoning_tokens,
                ttft_ms,
                decode_tok_s,
                duration_ms,
                finish_reason,
                ended,
                error,
                ..
            } => {
                let r = self.entry(request_id, model, ts);
                if node.is_some() {
                    r.node = node;
                }
                r.state = match ended {
                    // An end this build does not know of (a newer neuron)
                    // is still an end.
                    RequestEnd::Done | RequestEnd::Unknown => RequestState::Done,
                    RequestEnd::ClientGone => RequestState::ClientGone,
                    RequestEnd::Error => RequestState::Failed,
                };
                r.ended_ms = Some(ts);
                r.prompt_tokens = Some(*prompt_tokens);
                r.cached_tokens = *cached_tokens;
                r.completion_tokens = Some(*completion_tokens);
                r.reasoning_tokens = *reasoning_tokens;
                r.ttft_ms = ttft_ms.or(r.ttft_ms);
                r.decode_tok_s = *decode_tok_s;
                r.duration_ms = Some(*duration_ms);
                r.finish_reason = finish_reason.clone();
                r.error = error.clone();
                let how = match (ended, finish_reason, error) {
                    (RequestEnd::Error, _, Some(e)) => format!("failed: {e}"),
                    (RequestEnd::ClientGone, ..) => "client went away".to_string(),
                    (_, Some(f), _) => format!("finished ({f})"),
                    _ => "finished".to_string(),
                };
                let thinking = match reasoning_tokens {
                    0 => String::new(),
                    n => format!(" ({n} reasoning)"),
                };
                r.note(
                    ts,
                    format!("{how}: {completion_tokens} tokens{thinking} in {duration_ms:.0} ms"),
                );
                let model = model.clone();
                self.count(ts, &model, u64::from(*completion_tokens));
            }
            EventKind::RequestFailed {
                request_id,
                model,
                status,
                reason,
            } => {
                let r = self.entry(request_id, model, ts);
                if node.is_some() {
                    r.node = node;
                }
                let newly = !r.state.finished();
                r.state = RequestState::Failed;
                r.ended_ms = Some(ts);
                r.error = Some(format!("{status}: {reason}"));
                r.note(ts, format!("failed ({status}): {reason}"));
                if newly {
                    let model = model.clone();
                    self.count(ts, &model, 0);
                }
            }
            _ => {}
        }
    }

    fn entry(&mut self, id: &str, model: &str, ts: u64) -> &mut RequestView {
        if !self.by_id.contains_key(id) {
            self.trim(1);
            self.order.push_back(id.to_string());
        }
        self.by_id
            .entry(id.to_string())
            .or_insert_with(|| RequestView::new(id, model, ts))
    }

    /// Makes room for `extra` more: drops the oldest finished requests past
    /// [`MAX_KEPT`], then the oldest of any kind past twice that (in-flight
    /// requests whose end was never seen).
    fn trim(&mut self, extra: usize) {
        let mut i = 0;
        while self.order.len() + extra > MAX_KEPT && i < self.order.len() {
            let finished = self
                .by_id
                .get(&self.order[i])
                .is_none_or(|r| r.state.finished());
            if finished {
                if let Some(id) = self.order.remove(i) {
                    self.by_id.remove(&id);
                }
            } else {
                i += 1;
            }
        }
        while self.order.len() + extra > 2 * MAX_KEPT {
            if let Some(id) = self.order.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }

    fn count(&mut self, ts: u64, model: &str, tokens: u64) {
        let sec = ts / 1000;
        let s = self.history.entry(sec).or_default();
        s.tokens += tokens;
        s.requests += 1;
        let m = s.per_model.entry(model.to_string()).or_default();
        m.0 += tokens;
        m.1 += 1;
        let horizon = sec.saturating_sub(HISTORY_SECONDS);
        self.history = self.history.split_off(&horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{T0, event};

    fn finished(id: &str, model: &str, tokens: u32, ended: RequestEnd) -> EventKind {
        EventKind::RequestFinished {
            request_id: id.into(),
            model: model.into(),
            prompt_tokens: 12,
            cached_tokens: 4,
            completion_tokens: tokens,
            reasoning_tokens: tokens / 3,
            ttft_ms: Some(80.0),
            prefill_tok_s: None,
            decode_tok_s: Some(40.0),
            duration_ms: 900.0,
            finish_reason: Some(FinishReason::Stop),
            ended,
            error: None,
        }
    }

    #[test]
    fn a_request_moves_through_its_states_under_one_id() {
        let mut log = RequestLog::new();
        let id = "gw-1-7";
        log.apply(&event(
            1,
            T0,
            Some("alpha"),
            EventKind::RequestRouted {
                request_id: id.into(),
                model: "chat".into(),
            },
        ));
        assert_eq!(log.get(id).unwrap().state, RequestState::Routed);
        log.apply(&event(
            2,
            T0 + 10,
            Some("alpha"),
            EventKind::RequestStarted {
                request_id: id.into(),
                model: "chat".into(),
                prompt_tokens: 12,
                cached_tokens: 4,
            },
        ));
        assert_eq!(log.get(id).unwrap().state, RequestState::Prefill);
        log.apply(&event(
            3,
            T0 + 90,
            Some("alpha"),
            EventKind::RequestFirstToken {
                request_id: id.into(),
                model: "chat".into(),
                ttft_ms: 80.0,
            },
        ));
        assert_eq!(log.get(id).unwrap().state, RequestState::Generating);
        assert_eq!(log.in_flight(), 1);
        log.apply(&event(
            4,
            T0 + 1000,
            Some("alpha"),
            finished(id, "chat", 33, RequestEnd::Done),
        ));
        let r = log.get(id).unwrap();
        assert_eq!(r.state, RequestState::Done);
        assert_eq!(r.node.as_deref(), Some("alpha"));
        assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(12), Some(33)));
        assert_eq!(r.elapsed_ms(T0 + 5000), 900, "the neuron's own duration");
        assert_eq!(r.events.len(), 4, "{:?}", r.events);
        assert_eq!(r.reasoning_tokens, 11);
        assert!(
            r.events[3]
                .1
                .contains("finished (stop): 33 tokens (11 reasoning)"),
            "{:?}",
            r.events
        );
        assert_eq!(log.in_flight(), 0);
        let sec = (T0 + 1000) / 1000;
        assert_eq!(
            log.history(sec, 3, None),
            vec![(sec - 2, 0, 0), (sec - 1, 0, 0), (sec, 33, 1)]
        );
        assert_eq!(log.history(sec, 1, Some("chat")), vec![(sec, 33, 1)]);
        assert_eq!(log.history(sec, 1, Some("other")), vec![(sec, 0, 0)]);
    }

    #[test]
    fn gateway_failures_count_once_and_in_flight_requests_list_first() {
        let mut log = RequestLog::new();
        log.apply(&event(1, T0, None, finished("a", "m", 5, RequestEnd::Done)));
        log.apply(&event(
            2,
            T0 + 1,
            None,
            EventKind::RequestStarted {
                request_id: "b".into(),
                model: "m".into(),
                prompt_tokens: 3,
                cached_tokens: 0,
            },
        ));
        for seq in [3, 4] {
            log.apply(&event(
                seq,
                T0 + 2,
                None,
                EventKind::RequestFailed {
                    request_id: "c".into(),
                    model: "m".into(),
                    status: 503,
                    reason: "no room".into(),
                },
            ));
        }
        let ids: Vec<&str> = log.listed().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["b", "c", "a"], "live first, then newest finished");
        let sec = T0 / 1000;
        assert_eq!(
            log.history(sec, 1, None),
            vec![(sec, 5, 2)],
            "the failure counts once"
        );
        assert_eq!(log.get("c").unwrap().error.as_deref(), Some("503: no room"));
    }

    #[test]
    fn the_log_is_bounded_and_keeps_live_requests() {
        let mut log = RequestLog::new();
        log.apply(&event(
            1,
            T0,
            None,
            EventKind::RequestStarted {
                request_id: "live".into(),
                model: "m".into(),
                prompt_tokens: 1,
                cached_tokens: 0,
            },
        ));
        for i in 0..(MAX_KEPT as u64 + 50) {
            let id = format!("r{i}");
            log.apply(&event(
                i + 2,
                T0 + i,
                None,
                finished(&id, "m", 1, RequestEnd::Done),
            ));
        }
        assert_eq!(log.len(), MAX_KEPT);
        assert!(log.get("live").is_some(), "in-flight requests stay");
        assert!(log.get("r0").is_none(), "the oldest finished go first");
        let mut late = log.history(T0 / 1000 + HISTORY_SECONDS + 10, 10, None);
        late.retain(|s| s.1 > 0);
        assert!(late.is_empty());
    }
}
