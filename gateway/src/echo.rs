//! Bounds on what the gateway keeps of what neurons tell it. Strings a
//! neuron echoes (a failed load's `source`, error messages, device names)
//! and the lists it reports are capped here, where they arrive, before the
//! fleet view stores them or the event bus replays them: one neuron's 4 MiB
//! string would otherwise be repeated in every `device_stats` event the
//! gateway keeps.

use cortex_common::event::{EventKind, EvictionCause, FinishReason, UnloadReason};
use cortex_common::neuron_api::{DeviceInfo, ModelInfo};

/// Longest string kept from a neuron, in bytes.
pub const MAX_ECHO: usize = 1024;
/// Most models kept from one report.
pub const MAX_MODELS: usize = 1024;
/// Most devices kept from one report.
pub const MAX_DEVICES: usize = 256;

/// Cuts `s` to [`MAX_ECHO`] bytes (on a character boundary), marking the cut.
pub fn cap(s: &mut String) {
    if s.len() <= MAX_ECHO {
        return;
    }
    let mut end = MAX_ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

fn cap_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        cap(s);
    }
}

pub fn cap_device(d: &mut DeviceInfo) {
    cap(&mut d.id);
    cap(&mut d.kind);
    cap(&mut d.name);
}

pub fn cap_model(m: &mut ModelInfo) {
    cap(&mut m.id);
    cap(&mut m.source);
    cap(&mut m.device);
    cap_opt(&mut m.architecture);
    cap_opt(&mut m.error);
    cap_opt(&mut m.quant);
}

pub fn cap_devices(devices: &mut Vec<DeviceInfo>) {
    devices.truncate(MAX_DEVICES);
    devices.iter_mut().for_each(cap_device);
}

pub fn cap_models(models: &mut Vec<ModelInfo>) {
    models.truncate(MAX_MODELS);
    models.iter_mut().for_each(cap_model);
}

/// Caps every string and list of an event from a neuron.
pub fn cap_event(kind: &mut EventKind) {
    match kind {
        EventKind::ModelLoadStarted { model, source } => {
            cap(model);
            cap(source);
        }
        EventKind::ModelLoadProgress { model, unit, .. } => {
            cap(model);
            cap(unit);
        }
        EventKind::ModelLoaded { model, quant, .. } => {
            cap(model);
            cap_opt(quant);
        }
        EventKind::ModelLoadFailed { model, reason } => {
            cap(model);
            cap(reason);
        }
        EventKind::ModelUnloaded { model, reason } => {
            cap(model);
            if let UnloadReason::Other(word) = reason {
                cap(word);
            }
        }
        EventKind::RequestStarted {
            request_id, model, ..
        }
        | EventKind::RequestFirstToken {
            request_id, model, ..
        }
        | EventKind::ToolCallUnparsed {
            request_id, model, ..
        } => {
            cap(request_id);
            cap(model);
        }
        EventKind::RequestFinished {
            request_id,
            model,
            finish_reason,
            error,
            ..
        } => {
            cap(request_id);
            cap(model);
            if let Some(FinishReason::Other(word)) = finish_reason {
                cap(word);
            }
            cap_opt(error);
        }
        EventKind::DeviceStats { devices, models } => {
            cap_devices(devices);
            cap_models(models);
        }
        // The gateway's own kinds; a neuron has no business sending them,
        // and what it sends is capped all the same where it is a string.
        EventKind::NodeUp { endpoint } => cap(endpoint),
        EventKind::NodeDown { endpoint, reason } => {
            cap(endpoint);
            cap(reason);
        }
        EventKind::PlacementDecided { model, reason } => {
            cap(model);
            cap(reason);
        }
        EventKind::ColdLoad { model }
        | EventKind::Pinned { model }
        | EventKind::Unpinned { model }
        | EventKind::ModelWaiting { model, .. } => cap(model),
        EventKind::Evicted {
            model,
            for_model,
            strategy,
            reason,
        } => {
            cap(model);
            cap(for_model);
            if let EvictionCause::Other(word) = strategy {
                cap(word);
            }
            cap(reason);
        }
        EventKind::RequestRouted { request_id, model }
        | EventKind::RequestDone {
            request_id, model, ..
        } => {
            cap(request_id);
            cap(model);
        }
        EventKind::RequestFailed {
            request_id,
            model,
            reason,
            ..
        }
        | EventKind::RequestRetried {
            request_id,
            model,
            reason,
            ..
        } => {
            cap(request_id);
            cap(model);
            cap(reason);
        }
        EventKind::Snapshot { .. } | EventKind::Histograms { .. } => {}
    }
}

/// Whether an event from a neuron is one a neuron may send; the gateway's
/// own kinds (snapshots, node and placement events...) are not relabelled
/// and republished from a neuron's stream.
pub fn from_neuron(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::ModelLoadStarted { .. }
            | EventKind::ModelLoadProgress { .. }
            | EventKind::ModelLoaded { .. }
            | EventKind::ModelLoadFailed { .. }
            | EventKind::ModelUnloaded { .. }
            | EventKind::RequestStarted { .. }
            | EventKind::RequestFirstToken { .. }
            | EventKind::RequestFinished { .. }
            | EventKind::ToolCallUnparsed { .. }
            | EventKind::DeviceStats { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_cut_on_a_character_boundary() {
        let mut s = "é".repeat(MAX_ECHO);
        cap(&mut s);
        assert!(s.len() <= MAX_ECHO + '…'.len_utf8(), "{}", s.len());
        assert!(s.ends_with('…'));
        let mut short = "ok".to_string();
        cap(&mut short);
        assert_eq!(short, "ok");
    }

    #[test]
    fn a_huge_unknown_unload_reason_is_capped() {
        let mut kind = EventKind::ModelUnloaded {
            model: "m".into(),
            reason: UnloadReason::Other("x".repeat(4 << 20)),
        };
        cap_event(&mut kind);
        match kind {
            EventKind::ModelUnloaded {
                reason: UnloadReason::Other(word),
                ..
            } => assert!(word.len() <= MAX_ECHO + 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_loads_huge_source_is_capped_in_events() {
        let mut kind = EventKind::ModelLoadFailed {
            model: "m".into(),
            reason: "x".repeat(4 << 20),
        };
        cap_event(&mut kind);
        match kind {
            EventKind::ModelLoadFailed { reason, .. } => assert!(reason.len() <= MAX_ECHO + 3),
            other => panic!("{other:?}"),
        }
        let model = ModelInfo {
            id: "m".into(),
            source: "s".repeat(1 << 20),
            state: cortex_common::neuron_api::ModelState::Failed,
            architecture: None,
            device: "cpu".into(),
            memory_bytes: 0,
            in_flight: 0,
            queue_depth: 0,
            decode_tok_s: None,
            progress: None,
            error: Some("e".repeat(1 << 20)),
            context_length: None,
            quant: None,
            unquantized_bytes: None,
            kv_cache_bytes: 0,
            prompt_cache_entries: 0,
            sampling: None,
        };
        let mut kind = EventKind::DeviceStats {
            devices: Vec::new(),
            models: vec![model; MAX_MODELS + 5],
        };
        cap_event(&mut kind);
        let json = serde_json::to_string(&kind).unwrap();
        assert!(json.len() < MAX_MODELS * 4 * MAX_ECHO, "{}", json.len());
        assert!(from_neuron(&kind));
        assert!(!from_neuron(&EventKind::ColdLoad { model: "m".into() }));
    }
}
