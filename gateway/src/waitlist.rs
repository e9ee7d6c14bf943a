//! The gateway's wait queue per model: a request that every replica
//! refused for lack of room (the neuron's `queue_full`) waits here, in
//! arrival order, instead of passing the 503 to its client. Only the head
//! of the line retries; it is woken when a request for the model ends (or
//! every [`RECHECK`] at worst). Bounded per model by `max_waiting`, across
//! models by `max_waiting_total` (each waiting request holds its parsed
//! body), and in time by the request's `queue_timeout`; past any of them,
//! the client gets a 503 with `Retry-After`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// The head of the line retries at least this often even without a wake-up.
pub const RECHECK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Waitlist {
    /// FIFO: tokio's mutex hands itself to waiters in arrival order.
    line: tokio::sync::Mutex<()>,
    waiting: AtomicU32,
    freed: Notify,
}

/// A place in a model's line; leaving (drop) frees it.
pub struct Place {
    list: Arc<Waitlist>,
    total: Arc<AtomicU32>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.list.waiting.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request found no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The model's line holds `max_waiting` requests.
    Model(u32),
    /// `max_waiting_total` requests wait across all models.
    Gateway(u32),
}

impl Place {
    /// Waits until this request is at the head of the line.
    pub async fn head(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.list.line.lock().await
    }

    /// Waits for a request of the model to end, or [`RECHECK`].
    pub async fn capacity_freed(&self) {
        let _ = tokio::time::timeout(RECHECK, self.list.freed.notified()).await;
    }
}

pub struct Waitlists {
    lists: Mutex<HashMap<String, Arc<Waitlist>>>,
    max_waiting: u32,
    /// Requests waiting across all models.
    total: Arc<AtomicU32>,
    max_total: u32,
}

impl Waitlists {
    pub fn new(max_waiting: u32, max_total: u32) -> Self {
        Waitlists {
            lists: Mutex::new(HashMap::new()),
            max_waiting,
            total: Arc::new(AtomicU32::new(0)),
            max_total,
        }
    }

    fn list(&self, model: &str) -> Arc<Waitlist> {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.entry(model.to_string()).or_default().clone()
    }

    /// A place in `model`'s line, unless that line or the gateway is full.
    pub fn enter(&self, model: &str) -> Result<Place, Full> {
        let take = |n: &AtomicU32, max: u32| {
            n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
        };
        if !take(&self.total, self.max_total) {
            return Err(Full::Gateway(self.max_total));
        }
        let list = self.list(model);
        if !take(&list.waiting, self.max_waiting) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Model(self.max_waiting));
        }
        Ok(Place {
            list,
            total: self.total.clone(),
        })
    }

    /// Requests waiting for `model` now.
    pub fn waiting(&self, model: &str) -> u32 {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists
            .get(model)
            .map(|l| l.waiting.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Requests waiting now, per model with a line.
    pub fn counts(&self) -> Vec<(String, u32)> {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists
            .iter()
            .map(|(m, l)| (m.clone(), l.waiting.load(Ordering::Acquire)))
            .collect()
    }

    /// A request for `model` ended: the head of its line may retry.
    pub fn freed(&self, model: &str) {
        let list = {
            let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
            lists.get(model).cloned()
        };
        if let Some(l) = list {
            l.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_line_is_bounded_and_places_free_on_drop() {
        let w = Waitlists::new(2, 100);
        let a = w.enter("m").unwrap();
        let b = w.enter("m").unwrap();
        assert_eq!(
            w.enter("m").err(),
            Some(Full::Model(2)),
            "the third waits nowhere"
        );
        assert!(w.enter("other").is_ok(), "lines are per model");
        assert_eq!(w.waiting("m"), 2);
        drop(a);
        assert_eq!(w.waiting("m"), 1);
        let _c = w.enter("m").unwrap();
        drop(b);
    }

    #[tokio::test]
    async fn the_gateway_wide_bound_spans_models() {
        let w = Waitlists::new(10, 3);
        let places: Vec<Place> = ["a", "b", "c"]
            .iter()
            .map(|m| w.enter(m).unwrap())
            .collect();
        assert_eq!(w.enter("d").err(), Some(Full::Gateway(3)));
        assert_eq!(w.enter("a").err(), Some(Full::Gateway(3)));
        drop(places);
        let _again = w.enter("d").unwrap();
        assert_eq!(w.waiting("a"), 0, "a refused entry leaves no count behind");
    }

    #[tokio::test]
    async fn the_head_is_served_in_arrival_order() {
        let w = Arc::new(Waitlists::new(10, 100));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = w.enter("m").unwrap();
        let guard = first.head().await;
        let mut tasks = Vec::new();
        for i in 0..5 {
            let place = w.enter("m").unwrap();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _g = place.head().await;
                order.lock().unwrap().push(i);
            }));
            // Let each task queue on the lock before the next one.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(guard);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
