//! The loads under way, one shared future per model (or `model@node`), so
//! concurrent requests for a cold model join one load: the single-flight
//! map `load.rs` drives and `state.rs` holds.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::{BoxFuture, Shared};

use crate::error::LoadError;

type LoadFuture = Shared<BoxFuture<'static, Result<String, LoadError>>>;

/// Loads under way, by model (or `model@node` for a load on a named node).
#[derive(Default)]
pub struct Loads {
    inflight: Mutex<HashMap<String, LoadFuture>>,
}

impl Loads {
    pub fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, LoadFuture>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }
}
