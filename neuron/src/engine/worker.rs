//! The device worker: one OS thread per device runs the [`Scheduler`], so
//! the async runtime never waits on candle. [`Worker::submit`] is the only
//! way in; dropping the last handle stops the thread once its work is done.

use std::sync::Arc;
use std::sync::mpsc;

use cortex_common::error::ApiError;

use super::registry::Registry;
use super::scheduler::{BatchLimits, Scheduler};
use super::sequence::Job;
use crate::events::EventBus;

#[derive(Clone)]
pub struct Worker {
    tx: mpsc::Sender<Job>,
}

impl Worker {
    pub fn spawn(
        device_id: &str,
        bus: Arc<EventBus>,
        registry: Arc<Registry>,
        limits: BatchLimits,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("neuron-worker-{device_id}"))
            .spawn(move || Scheduler::new(rx, bus, registry, limits).run())?;
        Ok(Worker { tx })
    }

    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.tx
            .send(job)
            .map_err(|_| ApiError::internal("the device worker has stopped"))
    }
}
