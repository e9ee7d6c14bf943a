//! The bounded queue in front of each model: a request is admitted while
//! fewer than `max_batch + max_queue` are in flight (running plus waiting), and holds a [`Permit`] that
//! frees its place when dropped — whether the request finished, failed, or
//! its client went away.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cortex_common::error::ApiError;

use super::registry::ModelEntry;

pub struct Permit {
    entry: Arc<ModelEntry>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.entry.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Seconds a client is told to wait when the queue is full.
const RETRY_AFTER_SECS: u32 = 1;

pub fn admit(
    entry: &Arc<ModelEntry>,
    max_queue: u32,
    max_batch: usize,
) -> Result<Permit, ApiError> {
    let limit = max_batch as u32 + max_queue;
    let admitted = entry
        .in_flight
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        });
    match admitted {
        Ok(_) => Ok(Permit {
            entry: entry.clone(),
        }),
        Err(n) => Err(ApiError {
            code: "queue_full",
            ..ApiError::overloaded(
                format!(
                    "model `{}` is busy: {n} requests in flight, queue limit {max_queue}; retry shortly",
                    entry.id
                ),
                RETRY_AFTER_SECS,
            )
        }),
    }
}
