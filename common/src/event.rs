//! The event schema: one envelope for everything the neurons and the gateway
//! report, versioned. Neurons serve these on `GET /events`; the gateway
//! re-labels them with the node, adds its own, and serves the fleet stream on
//! `GET /admin/events`. Both are Server-Sent Events whose `id:` is `seq` and
//! whose `data:` is one [`Event`] as JSON.

use serde::{Deserialize, Serialize};

use crate::config::gateway::EvictionStrategy;
use crate::histogram::HistogramSnapshot;
pub use crate::neuron_api::UnloadReason;
use crate::neuron_api::{DeviceInfo, ModelInfo};
use crate::open_enum::open_enum;
use crate::openai;
use crate::status::FleetStatus;

/// Bumped on any incompatible change of [`Event`] or [`EventKind`].
pub const EVENT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version, [`EVENT_SCHEMA_VERSION`].
    pub v: u32,
    /// Monotonic per stream, starting at 1. The SSE `id`.
    pub seq: u64,
    /// Wall clock, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The neuron the event is about (set by the gateway on re-labelled
    /// neuron events and on node events; a neuron leaves it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// How a request's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestEnd {
    /// Generation finished (stop, length).
    Done,
    /// The client went away; generation was stopped and its slot freed.
    ClientGone,
    /// Generation failed.
    Error,
    /// A word from a newer peer this build does not know (written back as
    /// `unknown`): the event is kept rather than dropped.
    #[serde(other)]
    Unknown,
}

/// The part of a load a `model_load_progress` event counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPhase {
    /// Files fetched from the Hugging Face Hub into the local cache.
    Download,
    /// Weights read from disk into memory.
    #[default]
    Read,
    /// A phase from a newer peer this build does not know (written back
    /// as `unknown`): the progress is still shown.
    #[serde(other)]
    Unknown,
}

open_enum! {
    /// Why generation finished (`request_finished.finish_reason`).
    pub enum FinishReason {
        /// The model ended its answer, or a stop sequence did.
        Stop = "stop",
        /// `max_tokens` (or the context) ran out.
        Length = "length",
        /// The answer is tool calls.
        ToolCalls = "tool_calls",
    }
}

impl From<openai::FinishReason> for FinishReason {
    fn from(r: openai::FinishReason) -> Self {
        match r {
            openai::FinishReason::Stop => FinishReason::Stop,
            openai::FinishReason::Length => FinishReason::Length,
            openai::FinishReason::ToolCalls => FinishReason::ToolCalls,
        }
    }
}

open_enum! {
    /// Why the gateway evicted a replica: the `evicted` event's `strategy`,
    /// and the `reason` label of `cortex_evictions_total`.
    pub enum EvictionCause {
        /// Placement needed the room; the least recently used replica went.
        Lru = "lru",
        /// Placement needed the room; the lowest priority class went.
        Priority = "priority",
        /// It idled past its model's `ttl`.
        Ttl = "ttl",
        /// An operator asked (`/admin/models/evict`).
        Operator = "operator",
    }
}

impl From<EvictionStrategy> for EvictionCause {
    /// Placement's eviction under the configured strategy.
    fn from(s: EvictionStrategy) -> Self {
        match s {
            EvictionStrategy::Lru => EvictionCause::Lru,
            EvictionStrategy::Priority => EvictionCause::Priority,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    // ---- neuron: model lifecycle ----
    ModelLoadStarted {
        model: String,
        source: String,
    },
    ModelLoadProgress {
        model: String,
        done: u64,
        total: u64,
        /// `bytes`.
        unit: String,
        /// What the bytes are: fetched from a hub, then read from disk.
        /// Absent from older neurons, which only ever read.
        #[serde(default)]
        phase: LoadPhase,
    },
    ModelLoaded {
        model: String,
        duration_ms: u64,
        memory_bytes: u64,
        /// In-situ quantization applied, and the bytes without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quant: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unquantized_bytes: Option<u64>,
    },
    ModelLoadFailed {
        model: String,
        /// The error, as text.
        reason: String,
    },
    ModelUnloaded {
        model: String,
        reason: UnloadReason,
    },
    // ---- neuron: requests ----
    RequestStarted {
        request_id: String,
        model: String,
        prompt_tokens: u32,
        /// Prompt tokens served from the prompt cache (not prefilled).
        #[serde(default)]
        cached_tokens: u32,
    },
    RequestFirstToken {
        request_id: String,
        model: String,
        ttft_ms: f64,
    },
    RequestFinished {
        request_id: String,
        model: String,
        prompt_tokens: u32,
        #[serde(default)]
        cached_tokens: u32,
        completion_tokens: u32,
        /// Completion tokens spent thinking (the thought itself, not its
        /// markers); included in `completion_tokens`.
        #[serde(default)]
        reasoning_tokens: u32,
        ttft_ms: Option<f64>,
        prefill_tok_s: Option<f64>,
        decode_tok_s: Option<f64>,
        duration_ms: f64,
        /// When generation finished (`ended` is `done`).
        finish_reason: Option<FinishReason>,
        ended: RequestEnd,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Periodic: devices and resident models, so a watcher's view is never
    /// stale for longer than the interval.
    DeviceStats {
        devices: Vec<DeviceInfo>,
        models: Vec<ModelInfo>,
    },
    // ---- gateway ----
    /// The full fleet state; first on every `/admin/events` connection and
    /// when a reconnecting client is too far behind for replay.
    Snapshot {
        status: Box<FleetStatus>,
    },
    NodeUp {
        endpoint: String,
    },
    NodeDown {
        endpoint: String,
        /// Free text: the stream error or timeout that ended it.
        reason: String,
    },
    PlacementDecided {
        model: String,
        /// Free text: why this node (room left, or what it evicts).
        reason: String,
    },
    ColdLoad {
        model: String,
    },
    Evicted {
        model: String,
        /// Which model needed the room (empty for `ttl` and `operator`).
        for_model: String,
        /// The strategy that chose it, or `ttl`, or `operator`.
        strategy: EvictionCause,
        /// Free text: why this replica (e.g. when it was last used).
        reason: String,
    },
    Pinned {
        model: String,
    },
    Unpinned {
        model: String,
    },
    RequestRouted {
        request_id: String,
        model: String,
    },
    /// How many requests for the model wait at the gateway because every
    /// replica is full; sent when the number changes (coalesced).
    ModelWaiting {
        model: String,
        waiting: u32,
    },
    RequestFailed {
        request_id: String,
        model: String,
        status: u16,
        /// The error message the client got.
        reason: String,
    },
    /// The gateway is done with a client request, however it ended:
    /// answered (`done`), abandoned by its client (`client_gone`), or failed
    /// (`error`, after its `request_failed`). One per client request,
    /// whatever its attempts: what a model's `requests_total` counts (and,
    /// when `error`, its `errors_total`).
    RequestDone {
        request_id: String,
        model: String,
        ended: RequestEnd,
    },
    /// The request's node (the event's `node`) failed before the request
    /// had sent its client anything; it is being sent again, to another
    /// replica or after a cold load.
    RequestRetried {
        request_id: String,
        model: String,
        /// Which attempt comes next (2 for the first retry).
        attempt: u32,
        /// The node failure, as text.
        reason: String,
    },
    /// The model wrote tool-call markup that did not parse (`count` times in
    /// the request); the client got it as text. Emitted by the neuron before
    /// the request's `request_finished`.
    ToolCallUnparsed {
        request_id: String,
        model: String,
        count: u32,
    },
    /// Periodic per model (and node) latency and speed distributions.
    Histograms {
        model: String,
        ttft_ms: HistogramSnapshot,
        tok_s: HistogramSnapshot,
    },
}

impl EventKind {
    /// The `type` tag, for logs and filters.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ModelLoadStarted { .. } => "model_load_started",
            EventKind::ModelLoadProgress { .. } => "model_load_progress",
            EventKind::ModelLoaded { .. } => "model_loaded",
            EventKind::ModelLoadFailed { .. } => "model_load_failed",
            EventKind::ModelUnloaded { .. } => "model_unloaded",
            EventKind::RequestStarted { .. } => "request_started",
            EventKind::RequestFirstToken { .. } => "request_first_token",
            EventKind::RequestFinished { .. } => "request_finished",
            EventKind::DeviceStats { .. } => "device_stats",
            EventKind::Snapshot { .. } => "snapshot",
            EventKind::NodeUp { .. } => "node_up",
            EventKind::NodeDown { .. } => "node_down",
            EventKind::PlacementDecided { .. } => "placement_decided",
            EventKind::ColdLoad { .. } => "cold_load",
            EventKind::Evicted { .. } => "evicted",
            EventKind::Pinned { .. } => "pinned",
            EventKind::Unpinned { .. } => "unpinned",
            EventKind::RequestRouted { .. } => "request_routed",
            EventKind::ModelWaiting { .. } => "model_waiting",
            EventKind::RequestFailed { .. } => "request_failed",
            EventKind::RequestDone { .. } => "request_done",
            EventKind::RequestRetried { .. } => "request_retried",
            EventKind::ToolCallUnparsed { .. } => "tool_call_unparsed",
            EventKind::Histograms { .. } => "histograms",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_flat_json_with_type_tag() {
        let ev = Event {
            v: EVENT_SCHEMA_VERSION,
            seq: 7,
            ts_ms: 1,
            node: Some("a".into()),
            kind: EventKind::RequestFirstToken {
                request_id: "r".into(),
                model: "m".into(),
                ttft_ms: 12.5,
            },
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["type"], "request_first_token");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["node"], "a");
        assert_eq!(json["ttft_ms"], 12.5);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.kind.name(), "request_first_token");
    }

    #[test]
    fn request_finished_from_an_older_neuron_reads_zero_reasoning_tokens() {
        let json = r#"{"v":1,"seq":1,"ts_ms":1,"type":"request_finished","request_id":"r",
            "model":"m","prompt_tokens":3,"completion_tokens":5,"ttft_ms":null,
            "prefill_tok_s":null,"decode_tok_s":null,"duration_ms":9.0,
            "finish_reason":"stop","ended":"done"}"#;
        let ev: Event = serde_json::from_str(json).unwrap();
        match ev.kind {
            EventKind::RequestFinished {
                reasoning_tokens,
                completion_tokens,
                ..
            } => assert_eq!((completion_tokens, reasoning_tokens), (5, 0)),
            other => panic!("{other:?}"),
        }
    }

    /// Lines as today's neurons and gateway send them: a reader of this
    /// build parses each and writes it back byte for byte.
    const TODAY: [&str; 4] = [
        r#"{"v":1,"seq":4,"ts_ms":9,"type":"request_finished","request_id":"r","model":"m","prompt_tokens":3,"cached_tokens":0,"completion_tokens":5,"reasoning_tokens":0,"ttft_ms":1.5,"prefill_tok_s":null,"decode_tok_s":20.0,"duration_ms":9.0,"finish_reason":"tool_calls","ended":"done"}"#,
        r#"{"v":1,"seq":5,"ts_ms":9,"node":"a","type":"evicted","model":"old","for_model":"new","strategy":"priority","reason":"lowest priority class (0), least recently used within it"}"#,
        r#"{"v":1,"seq":6,"ts_ms":9,"node":"a","type":"evicted","model":"old","for_model":"","strategy":"ttl","reason":"idle for 3.1 s, ttl 3.0 s"}"#,
        r#"{"v":1,"seq":7,"ts_ms":9,"type":"model_unloaded","model":"old","reason":"evicted"}"#,
    ];

    #[test]
    fn todays_lines_parse_as_enums_and_write_back_identically() {
        let kinds: Vec<EventKind> = TODAY
            .iter()
            .map(|line| {
                let ev: Event = serde_json::from_str(line).unwrap();
                assert_eq!(serde_json::to_string(&ev).unwrap(), *line);
                ev.kind
            })
            .collect();
        assert!(matches!(
            &kinds[0],
            EventKind::RequestFinished {
                finish_reason: Some(FinishReason::ToolCalls),
                ..
            }
        ));
        assert!(matches!(
            &kinds[1],
            EventKind::Evicted {
                strategy: EvictionCause::Priority,
                ..
            }
        ));
        assert!(matches!(
            &kinds[2],
            EventKind::Evicted {
                strategy: EvictionCause::Ttl,
                ..
            }
        ));
        assert!(matches!(
            &kinds[3],
            EventKind::ModelUnloaded {
                reason: UnloadReason::Evicted,
                ..
            }
        ));
    }

    #[test]
    fn a_newer_peers_words_parse_and_pass_on_unchanged() {
        let newer = [
            TODAY[0].replace(r#""tool_calls""#, r#""content_filter""#),
            TODAY[1].replace(r#""priority""#, r#""cost""#),
            TODAY[3].replace(r#""reason":"evicted""#, r#""reason":"drained""#),
        ];
        let words: Vec<String> = newer
            .iter()
            .map(|line| {
                let ev: Event = serde_json::from_str(line).unwrap();
                assert_eq!(&serde_json::to_string(&ev).unwrap(), line);
                match ev.kind {
                    EventKind::RequestFinished {
                        finish_reason: Some(r),
                        ..
                    } => r.to_string(),
                    EventKind::Evicted { strategy, .. } => strategy.to_string(),
                    EventKind::ModelUnloaded { reason, .. } => reason.to_string(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(words, ["content_filter", "cost", "drained"]);
    }

    /// How a request ended and a load's phase are read, not passed on: a
    /// newer peer's word there still yields the event, as `unknown`.
    #[test]
    fn a_newer_end_or_load_phase_keeps_the_event() {
        let ended = TODAY[0].replace(r#""ended":"done""#, r#""ended":"preempted""#);
        let ev: Event = serde_json::from_str(&ended).unwrap();
        assert!(
            matches!(
                ev.kind,
                EventKind::RequestFinished {
                    ended: RequestEnd::Unknown,
                    ..
                }
            ),
            "{ev:?}"
        );
        let progress = r#"{"v":1,"seq":8,"ts_ms":9,"type":"model_load_progress","model":"m","done":1,"total":2,"unit":"bytes","phase":"verify"}"#;
        let ev: Event = serde_json::from_str(progress).unwrap();
        assert!(
            matches!(
                ev.kind,
                EventKind::ModelLoadProgress {
                    phase: LoadPhase::Unknown,
                    done: 1,
                    ..
                }
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn eviction_causes_say_the_configured_strategys_word() {
        for s in [EvictionStrategy::Lru, EvictionStrategy::Priority] {
            assert_eq!(EvictionCause::from(s).as_str(), s.as_str());
        }
        for f in [
            openai::FinishReason::Stop,
            openai::FinishReason::Length,
            openai::FinishReason::ToolCalls,
        ] {
            assert_eq!(
                serde_json::to_value(FinishReason::from(f)).unwrap(),
                serde_json::to_value(f).unwrap()
            );
        }
    }

    #[test]
    fn load_progress_without_a_phase_is_reading() {
        let old = r#"{"v":1,"seq":3,"ts_ms":1,"type":"model_load_progress","model":"m","done":1,"total":2,"unit":"bytes"}"#;
        let ev: Event = serde_json::from_str(old).unwrap();
        assert!(matches!(
            ev.kind,
            EventKind::ModelLoadProgress {
                phase: LoadPhase::Read,
                ..
            }
        ));
        let new = EventKind::ModelLoadProgress {
            model: "m".into(),
            done: 1,
            total: 2,
            unit: "bytes".into(),
            phase: LoadPhase::Download,
        };
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["phase"], "download");
    }
}
