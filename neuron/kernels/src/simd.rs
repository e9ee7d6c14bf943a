//! Run-time SIMD level detection (done once, cached), with an environment
//! override `CORTEX_KERNELS_SIMD=scalar|avx2|avx512` that may only lower it.

use std::sync::OnceLock;

/// The instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// Portable Rust, no explicit SIMD.
    Scalar,
    /// AVX2 + FMA + F16C (`vpmaddubsw` integer dot products).
    Avx2,
    /// AVX-512 F/BW/VL + VNNI (`vpdpbusd`), on top of AVX2.
    Avx512Vnni,
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512Vnni => "avx512-vnni",
        })
    }
}

impl SimdLevel {
    /// Parses "scalar", "avx2", "avx512" / "avx512-vnni" (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(SimdLevel::Scalar),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" | "avx512-vnni" | "avx512vnni" => Some(SimdLevel::Avx512Vnni),
            _ => None,
        }
    }

    /// Every level this CPU supports, lowest first (for tests and benches).
    pub fn available() -> Vec<SimdLevel> {
        let best = detected();
        [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512Vnni]
            .into_iter()
            .filter(|l| *l <= best)
            .collect()
    }
}

/// What the CPU supports, ignoring the environment override.
pub fn detected() -> SimdLevel {
    static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
    *DETECTED.get_or_init(detect_cpu)
}

#[cfg(target_arch = "x86_64")]
fn detect_cpu() -> SimdLevel {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni");
    if avx512 {
        SimdLevel::Avx512Vnni
    } else if avx2 {
        SimdLevel::Avx2
    } else {
        SimdLevel::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_cpu() -> SimdLevel {
    SimdLevel::Scalar
}

/// The level kernels use by default: the best the CPU supports, lowered by
/// `CORTEX_KERNELS_SIMD` if set (a higher or unknown value is ignored).
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detected();
        match std::env::var("CORTEX_KERNELS_SIMD")
            .ok()
            .and_then(|s| SimdLevel::parse(&s))
        {
            Some(forced) if forced <= best => forced,
            _ => best,
        }
    })
}
