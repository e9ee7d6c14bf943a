//! What the event log says about an event: one line (level, node, text)
//! per notable event, or nothing (progress, requests that went well,
//! periodic stats). A pure function of the event, apart from the fold in
//! [`super::Fleet::apply`].

use cortex_common::event::{Event, EventKind, RequestEnd};

use super::{Level, human_bytes};

/// One line of the event log, before it gets its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub node: Option<String>,
    pub text: String,
}

/// The log line for `ev`, if it deserves one.
pub fn describe(ev: &Event) -> Option<LogLine> {
    let node = ev.node.clone();
    let on = match &node {
        Some(n) => format!(" on {n}"),
        None => String::new(),
    };
    let line = |level: Level, text: String| {
        Some(LogLine {
            level,
            node: node.clone(),
            text,
        })
    };
    match &ev.kind {
        EventKind::Snapshot { status } => Some(LogLine {
            level: Level::Info,
            node: None,
            text: format!(
                "snapshot: {} nodes, {} models",
                status.nodes.len(),
                status.models.len()
            ),
        }),
        EventKind::NodeUp { endpoint } => {
            let name = node.clone().unwrap_or_else(|| endpoint.clone());
            Some(LogLine {
                level: Level::Info,
                node: Some(name.clone()),
                text: format!("{name} up ({endpoint})"),
            })
        }
        EventKind::NodeDown { endpoint, reason } => {
            let name = node.clone().unwrap_or_else(|| endpoint.clone());
            Some(LogLine {
                level: Level::Error,
                node: Some(name.clone()),
                text: format!("{name} down: {reason}"),
            })
        }
        EventKind::ModelLoadStarted { model, source } => {
            line(Level::Info, format!("loading {model}{on} from {source}"))
        }
        EventKind::ModelLoaded {
            model,
            duration_ms,
            memory_bytes,
            quant,
            unquantized_bytes,
        } => line(
            Level::Info,
            format!(
                "loaded {model}{on} in {:.1}s ({}{})",
                *duration_ms as f64 / 1000.0,
                human_bytes(*memory_bytes),
                match (quant, unquantized_bytes) {
                    (Some(q), Some(before)) => format!(", {q} from {}", human_bytes(*before)),
                    (Some(q), None) => format!(", {q}"),
                    _ => String::new(),
                }
            ),
        ),
        EventKind::ModelLoadFailed { model, reason } => line(
            Level::Error,
            format!("load of {model}{on} failed: {reason}"),
        ),
        EventKind::ModelUnloaded { model, reason } => {
            line(Level::Info, format!("unloaded {model}{on} ({reason})"))
        }
        EventKind::RequestFinished {
            model,
            ended: RequestEnd::Error,
            error,
            ..
        } => {
            let why = error.as_deref().unwrap_or("generation failed");
            line(
                Level::Error,
                format!("request on {model}{on} failed: {why}"),
            )
        }
        EventKind::PlacementDecided { model, reason } => {
            line(Level::Info, format!("placed {model}{on}: {reason}"))
        }
        EventKind::ColdLoad { model } => line(Level::Info, format!("cold load of {model}{on}")),
        EventKind::Evicted {
            model,
            for_model,
            strategy,
            reason,
        } => {
            let for_whom = if for_model.is_empty() {
                String::new()
            } else {
                format!(" for {for_model}")
            };
            line(
                Level::Warn,
                format!("evicted {model}{on}{for_whom} ({strategy}: {reason})"),
            )
        }
        EventKind::Pinned { model } => Some(LogLine {
            level: Level::Info,
            node: None,
            text: format!("pinned {model}"),
        }),
        EventKind::Unpinned { model } => Some(LogLine {
            level: Level::Info,
            node: None,
            text: format!("unpinned {model}"),
        }),
        EventKind::RequestFailed {
            model,
            status,
            reason,
            ..
        } => line(
            Level::Error,
            format!("request for {model}{on} failed ({status}): {reason}"),
        ),
        EventKind::RequestRetried {
            model,
            attempt,
            reason,
            ..
        } => line(
            Level::Warn,
            format!("request for {model}{on} retried (attempt {attempt}): {reason}"),
        ),
        EventKind::ToolCallUnparsed { model, count, .. } => line(
            Level::Warn,
            format!(
                "{model}{on} wrote {count} tool call(s) that did not parse; the client got them as text"
            ),
        ),
        EventKind::ModelLoadProgress { .. }
        | EventKind::RequestStarted { .. }
        | EventKind::RequestFirstToken { .. }
        | EventKind::RequestFinished { .. }
        | EventKind::DeviceStats { .. }
        | EventKind::RequestRouted { .. }
        | EventKind::RequestDone { .. }
        | EventKind::ModelWaiting { .. }
        | EventKind::Histograms { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{T0, event};
    use cortex_common::event::{EvictionCause, UnloadReason};

    #[test]
    fn notable_events_get_a_line_and_routine_ones_none() {
        let evicted = event(
            1,
            T0,
            Some("alpha"),
            EventKind::Evicted {
                model: "m".into(),
                for_model: String::new(),
                strategy: EvictionCause::Operator,
                reason: "evicted by an operator".into(),
            },
        );
        let l = describe(&evicted).expect("a line");
        assert_eq!(l.level, Level::Warn);
        assert_eq!(l.node.as_deref(), Some("alpha"));
        assert_eq!(
            l.text,
            "evicted m on alpha (operator: evicted by an operator)"
        );
        let routed = event(
            2,
            T0,
            Some("alpha"),
            EventKind::RequestRouted {
                request_id: "r".into(),
                model: "m".into(),
            },
        );
        assert_eq!(describe(&routed), None);
    }

    #[test]
    fn words_from_a_newer_peer_are_shown_as_sent() {
        let unloaded = event(
            1,
            T0,
            Some("alpha"),
            EventKind::ModelUnloaded {
                model: "m".into(),
                reason: UnloadReason::Other("drained".into()),
            },
        );
        let l = describe(&unloaded).expect("a line");
        assert_eq!(l.text, "unloaded m on alpha (drained)");
        let evicted = event(
            2,
            T0,
            None,
            EventKind::Evicted {
                model: "m".into(),
                for_model: "n".into(),
                strategy: EvictionCause::Other("cost".into()),
                reason: "cheapest".into(),
            },
        );
        let l = describe(&evicted).expect("a line");
        assert_eq!(l.text, "evicted m for n (cost: cheapest)");
    }
}
