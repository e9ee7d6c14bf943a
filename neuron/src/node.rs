//! The neuron itself: settings, host facts, models, the device worker and
//! the event bus, in one typed struct the API handlers share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use cortex_common::event::EventKind;
use cortex_common::neuron_api::DeviceInfo;

use crate::discovery::Host;
use crate::engine::registry::Registry;
use crate::engine::worker::Worker;
use crate::events::EventBus;
use crate::settings::Settings;
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("device `{0}` is not valid: use cpu, cuda:N or metal:N")]
    BadDevice(String),
    #[error("device `{device}` is not available: {source}")]
    Device {
        device: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("cannot start the device worker thread: {0}")]
    Worker(#[from] std::io::Error),
}

pub struct Neuron {
    pub settings: Settings,
    pub host: Host,
    pub registry: Arc<Registry>,
    pub worker: Worker,
    pub bus: Arc<EventBus>,
    /// Fires when the neuron stops: ends `/events` streams, drains the server.
    pub shutdown: Shutdown,
    pub started: Instant,
    device_id: String,
    device_name: String,
    device_kind: String,
}

fn open_device(spec: &str) -> Result<(Device, String, String), StartError> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => (
            k,
            i.parse::<usize>()
                .map_err(|_| StartError::BadDevice(spec.to_string()))?,
        ),
        None => (spec, 0),
    };
    let wrap = |source| StartError::Device {
        device: spec.to_string(),
        source,
    };
    match kind {
        "cpu" => Ok((Device::Cpu, "cpu".into(), "cpu".into())),
        "cuda" => Ok((
            Device::new_cuda(index).map_err(wrap)?,
            format!("cuda:{index}"),
            "cuda".into(),
        )),
        "metal" => Ok((
            Device::new_metal(index).map_err(wrap)?,
            format!("metal:{index}"),
            "metal".into(),
        )),
        _ => Err(StartError::BadDevice(spec.to_string())),
    }
}

impl Neuron {
    pub fn start(settings: Settings) -> Result<Arc<Self>, StartError> {
        let host = Host::probe();
        let (device, device_id, device_kind) = open_device(&settings.device)?;
        let bus = Arc::new(EventBus::new(&settings.name));
        let limit = settings
            .memory_limit_bytes
            .unwrap_or(host.memory_total_bytes);
        neuron_kernels::set_threads(settings.threads);
        let registry = Arc::new(Registry::new(
            device,
            &device_id,
            limit,
            bus.clone(),
            settings.runtime,
            crate::model::resolve::Sources {
                roots: settings.model_roots.clone(),
                hub: settings.hub.clone(),
            },
        ));
        let worker = Worker::spawn(&device_id, bus.clone(), registry.clone(), settings.batch)?;
        let device_name = if device_kind == "cpu" {
            host.cpu_model.clone()
        } else {
            device_id.clone()
        };
        Ok(Arc::new(Neuron {
            settings,
            host,
            registry,
            worker,
            bus,
            shutdown: Shutdown::new(),
            started: Instant::now(),
            device_id,
            device_name,
            device_kind,
        }))
    }

    pub fn devices(&self) -> Vec<DeviceInfo> {
        vec![DeviceInfo {
            id: self.device_id.clone(),
            kind: self.device_kind.clone(),
            name: self.device_name.clone(),
            memory_total_bytes: self.registry.memory_limit(),
            memory_used_bytes: self.registry.memory_used(),
        }]
    }

    /// Emits `device_stats` every interval, until the neuron stops.
    pub fn spawn_stats(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        let every = Duration::from_millis(self.settings.stats_interval_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(n) = this.upgrade() else { break };
                n.host.refresh();
                n.emit_stats();
            }
        });
    }

    pub fn emit_stats(&self) {
        self.bus.emit(EventKind::DeviceStats {
            devices: self.devices(),
            models: self.registry.list(),
        });
    }
}
