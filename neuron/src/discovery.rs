//! What this host is and has: host name, OS, CPU, memory, devices, and the
//! candle features compiled in. Read once at start; free memory is
//! refreshed by the stats task, so `/discovery` answers from cache.

use std::sync::Mutex;

use cortex_common::neuron_api::{DeviceInfo, Discovery};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

pub struct Host {
    pub host: String,
    pub os: String,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub memory_total_bytes: u64,
    memory_free_bytes: Mutex<u64>,
    system: Mutex<System>,
}

impl Host {
    pub fn probe() -> Self {
        let mut system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_memory(MemoryRefreshKind::everything())
                .with_cpu(CpuRefreshKind::everything()),
        );
        system.refresh_memory();
        let cpu_model = system
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cpu_cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Host {
            host: System::host_name().unwrap_or_else(|| "localhost".into()),
            os: System::long_os_version().unwrap_or_else(|| std::env::consts::OS.to_string()),
            cpu_model,
            cpu_cores,
            memory_total_bytes: system.total_memory(),
            memory_free_bytes: Mutex::new(system.available_memory()),
            system: Mutex::new(system),
        }
    }

    /// Re-reads free memory (cheap; called by the stats task).
    pub fn refresh(&self) {
        let mut system = self.system.lock().unwrap_or_else(|p| p.into_inner());
        system.refresh_memory();
        *self
            .memory_free_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = system.available_memory();
    }

    pub fn memory_free_bytes(&self) -> u64 {
        *self
            .memory_free_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn discovery(&self, name: &str, devices: Vec<DeviceInfo>) -> Discovery {
        Discovery {
            name: name.to_string(),
            host: self.host.clone(),
            os: self.os.clone(),
            cpu_model: self.cpu_model.clone(),
            cpu_cores: self.cpu_cores,
            memory_total_bytes: self.memory_total_bytes,
            memory_free_bytes: self.memory_free_bytes(),
            devices,
            candle_features: candle_features(),
        }
    }
}

/// The candle features this binary was built with.
pub fn candle_features() -> Vec<String> {
    use candle_core::utils;
    let mut out = vec!["cpu".to_string()];
    for (on, name) in [
        (utils::cuda_is_available(), "cuda"),
        (utils::metal_is_available(), "metal"),
        (utils::with_avx(), "avx"),
        (utils::with_neon(), "neon"),
        (utils::with_simd128(), "simd128"),
        (utils::with_f16c(), "f16c"),
        (utils::has_mkl(), "mkl"),
        (utils::has_accelerate(), "accelerate"),
    ] {
        if on {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sees_memory_and_cores() {
        let host = Host::probe();
        assert!(host.memory_total_bytes > 0);
        assert!(host.cpu_cores >= 1);
        host.refresh();
        assert!(host.memory_free_bytes() <= host.memory_total_bytes);
        assert_eq!(candle_features()[0], "cpu");
    }
}
