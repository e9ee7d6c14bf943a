//! The neuron's event bus: every event gets the next sequence number and a
//! timestamp, and goes to every `/events` subscriber.

use std::sync::Mutex;

use cortex_common::event::{EVENT_SCHEMA_VERSION, Event, EventKind};
use tokio::sync::broadcast;

/// Events buffered per subscriber before a slow one starts missing some.
const CAPACITY: usize = 4096;

pub struct EventBus {
    node: String,
    tx: broadcast::Sender<Event>,
    seq: Mutex<u64>,
}

impl EventBus {
    pub fn new(node: &str) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus {
            node: node.to_string(),
            tx,
            seq: Mutex::new(0),
        }
    }

    /// Publishes an event; callable from any thread, never blocks on
    /// subscribers.
    pub fn emit(&self, kind: EventKind) {
        // Holding the lock across send keeps sequence numbers in send order.
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        let event = Event {
            v: EVENT_SCHEMA_VERSION,
            seq: *seq,
            ts_ms: cortex_common::now_ms(),
            node: Some(self.node.clone()),
            kind,
        };
        // No subscribers is fine.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_increase_from_one() {
        let bus = EventBus::new("n");
        let mut rx = bus.subscribe();
        for _ in 0..3 {
            bus.emit(EventKind::ModelUnloaded {
                model: "m".into(),
                reason: cortex_common::neuron_api::UnloadReason::Requested,
            });
        }
        let seqs: Vec<u64> = (0..3).map(|_| rx.try_recv().unwrap().seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
    }
}
