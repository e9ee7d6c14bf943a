//! The device worker: one OS thread per device runs the forward passes, one
//! request at a time in arrival order, so the async runtime never waits on
//! candle.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use cortex_common::error::ApiError;
use tokio::sync::mpsc::UnboundedSender;

use super::admission::Permit;
use super::generate::{self, GenEvent, GenRequest};
use super::registry::ModelEntry;
use crate::events::EventBus;

/// One admitted request on its way to the device.
pub struct Job {
    pub entry: Arc<ModelEntry>,
    pub request: GenRequest,
    pub tx: UnboundedSender<GenEvent>,
    pub received: Instant,
    /// Frees the request's queue place when the job is done or dropped.
    pub permit: Permit,
}

#[derive(Clone)]
pub struct Worker {
    tx: mpsc::Sender<Job>,
}

impl Worker {
    pub fn spawn(device_id: &str, bus: Arc<EventBus>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("neuron-worker-{device_id}"))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    generate::run(job, &bus);
                }
                tracing::info!("device worker stopped");
            })?;
        Ok(Worker { tx })
    }

    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.tx
            .send(job)
            .map_err(|_| ApiError::internal("the device worker has stopped"))
    }
}
