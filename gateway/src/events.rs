//! The fleet event bus: every event the gateway serves on `/admin/events`
//! gets its sequence number here, is kept in a replay buffer bounded in
//! events and in bytes (an event's size is its JSON's), and is broadcast to
//! live subscribers. A subscriber that reconnects with
//! `Last-Event-ID` is replayed what it missed, or told to take a fresh
//! snapshot when the buffer no longer reaches back that far.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cortex_common::event::{EVENT_SCHEMA_VERSION, Event, EventKind};
use tokio::sync::broadcast;

pub struct EventBus {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Event>>,
}

struct Ring {
    /// Seq of the last published event (0: none yet).
    last_seq: u64,
    /// Consecutive events ending with the last one, with their sizes.
    buf: VecDeque<(Arc<Event>, usize)>,
    /// Sum of the sizes in `buf`.
    bytes: usize,
    cap: usize,
    cap_bytes: usize,
}

/// What a new subscriber gets: the events to replay (or `None`: take a
/// snapshot at `last_seq`), and the live feed from `last_seq + 1` on.
pub struct Subscription {
    pub replay: Option<Vec<Arc<Event>>>,
    pub last_seq: u64,
    pub rx: broadcast::Receiver<Arc<Event>>,
}

impl EventBus {
    /// A bus replaying up to `capacity` events taking up to `capacity_bytes`.
    pub fn new(capacity: usize, capacity_bytes: usize) -> Self {
        let (tx, _) = broadcast::channel(1024);
        EventBus {
            ring: Mutex::new(Ring {
                last_seq: 0,
                buf: VecDeque::with_capacity(capacity.min(1 << 16)),
                bytes: 0,
                cap: capacity.max(1),
                cap_bytes: capacity_bytes,
            }),
            tx,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers, stores and broadcasts one event; returns its seq.
    pub fn publish(&self, node: Option<String>, kind: EventKind) -> u64 {
        let mut ring = self.ring();
        ring.last_seq += 1;
        let event = Arc::new(Event {
            v: EVENT_SCHEMA_VERSION,
            seq: ring.last_seq,
            ts_ms: cortex_common::now_ms(),
            node,
            kind,
        });
        ring.push(event.clone(), json_len(&event));
        // Sent under the lock so subscribers see seq order; no receiver is fine.
        let _ = self.tx.send(event);
        ring.last_seq
    }

    #[cfg(test)]
    pub fn last_seq(&self) -> u64 {
        self.ring().last_seq
    }

    /// Subscribes; `last_seen` is the client's `Last-Event-ID`.
    pub fn subscribe(&self, last_seen: Option<u64>) -> Subscription {
        let ring = self.ring();
        let rx = self.tx.subscribe();
        Subscription {
            replay: last_seen.and_then(|seen| ring.since(seen)),
            last_seq: ring.last_seq,
            rx,
        }
    }

    /// Events after `seen`, or `None` when the buffer no longer holds them
    /// all (or `seen` is from the future, i.e. another gateway run).
    pub fn since(&self, seen: u64) -> Option<Vec<Arc<Event>>> {
        self.ring().since(seen)
    }
}

impl Ring {
    /// Keeps `event`, dropping the oldest past either bound. An event
    /// larger than the byte bound is not kept at all — nor anything before
    /// it, since replay must be gapless.
    fn push(&mut self, event: Arc<Event>, size: usize) {
        if size > self.cap_bytes {
            self.buf.clear();
            self.bytes = 0;
            return;
        }
        self.buf.push_back((event, size));
        self.bytes += size;
        while self.buf.len() > self.cap || self.bytes > self.cap_bytes {
            match self.buf.pop_front() {
                Some((_, n)) => self.bytes -= n,
                None => break,
            }
        }
    }

    fn since(&self, seen: u64) -> Option<Vec<Arc<Event>>> {
        if seen > self.last_seq {
            return None;
        }
        if seen == self.last_seq {
            return Some(Vec::new());
        }
        let oldest = self.buf.front()?.0.seq;
        if seen + 1 < oldest {
            return None;
        }
        Some(
            self.buf
                .iter()
                .filter(|(e, _)| e.seq > seen)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

/// The length of `event` as JSON, counted without building it.
fn json_len(event: &Event) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serializing an `Event` cannot fail; if it did, count it as empty.
    let _ = serde_json::to_writer(&mut c, event);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(bus: &EventBus, m: &str) -> u64 {
        bus.publish(None, EventKind::Pinned { model: m.into() })
    }

    #[test]
    fn seqs_are_consecutive_from_one() {
        let bus = EventBus::new(8, 1 << 20);
        assert_eq!(pin(&bus, "a"), 1);
        assert_eq!(pin(&bus, "b"), 2);
        assert_eq!(bus.last_seq(), 2);
    }

    #[test]
    fn replay_returns_exactly_what_was_missed() {
        let bus = EventBus::new(8, 1 << 20);
        for i in 0..5 {
            pin(&bus, &format!("m{i}"));
        }
        let sub = bus.subscribe(Some(2));
        let seqs: Vec<u64> = sub.replay.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(sub.last_seq, 5);
        assert_eq!(bus.since(5).unwrap().len(), 0);
    }

    #[test]
    fn too_far_behind_or_from_the_future_means_snapshot() {
        let bus = EventBus::new(3, 1 << 20);
        for i in 0..10 {
            pin(&bus, &format!("m{i}"));
        }
        // Buffer holds 8, 9, 10: seen=7 can still be served, 6 cannot.
        assert_eq!(bus.since(7).unwrap().len(), 3);
        assert!(bus.since(6).is_none());
        assert!(bus.since(11).is_none());
        assert!(bus.subscribe(None).replay.is_none());
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes_and_a_huge_event_is_not_kept() {
        let one = json_len(&Event {
            v: EVENT_SCHEMA_VERSION,
            seq: 1,
            ts_ms: cortex_common::now_ms(),
            node: None,
            kind: EventKind::Pinned { model: "m0".into() },
        });
        // Room for three small events.
        let bus = EventBus::new(100, one * 3 + one / 2);
        for i in 0..10 {
            pin(&bus, &format!("m{i}"));
        }
        assert_eq!(bus.since(7).unwrap().len(), 3);
        assert!(bus.since(6).is_none());
        assert!(bus.ring().bytes <= one * 3 + one / 2);
        // An event bigger than the whole budget empties the buffer: no
        // replay can cross it, and it is not kept.
        pin(&bus, &"x".repeat(one * 4));
        assert!(bus.ring().buf.is_empty());
        assert!(bus.since(10).is_none());
        pin(&bus, "after");
        assert_eq!(bus.since(11).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn live_events_follow_the_subscription_point() {
        let bus = EventBus::new(8, 1 << 20);
        pin(&bus, "a");
        let mut sub = bus.subscribe(Some(1));
        assert!(sub.replay.as_ref().unwrap().is_empty());
        pin(&bus, "b");
        let ev = sub.rx.recv().await.unwrap();
        assert_eq!(ev.seq, 2);
        assert_eq!(ev.kind, EventKind::Pinned { model: "b".into() });
    }
}
