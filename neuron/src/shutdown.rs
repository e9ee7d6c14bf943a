//! The neuron's stop signal, as a value every long-lived task can wait on:
//! the accept loop stops accepting, each connection finishes its request,
//! and `/events` streams end. It remembers that it fired, so a task that
//! starts waiting afterwards stops at once.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    /// `true` once the neuron is stopping; a watch so late subscribers see it.
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Asks everything waiting on this to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Shutdown::trigger`] has been called.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so this only ends by the flag.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_before_and_after_the_trigger_both_stop() {
        let s = Shutdown::new();
        let early = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        assert!(!s.is_triggered());
        s.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(1), early)
            .await
            .expect("early waiter stops")
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), s.wait())
            .await
            .expect("late waiter stops at once");
    }
}
