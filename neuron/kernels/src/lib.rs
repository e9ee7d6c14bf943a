//! Fast quantized matrix multiplication for CPU inference, on weights in
//! ggml's block layouts (Q4_0, Q4_1, Q8_0, Q4K, Q5K, Q6K).
//!
//! Activations are quantized once per call to 8 bits (Q8_0/Q8_1 style or Q8K
//! style, as ggml does) and multiplied with integer dot products. The SIMD
//! level (scalar, AVX2, AVX-512 VNNI) is detected at run time, never at
//! compile time, so one binary runs fast on any x86-64. Decode-sized calls
//! (few activation rows) run a GEMV straight from the ggml blocks; larger
//! ones unpack 16 weight rows at a time into a panel and run a GEMM
//! micro-kernel over all activation rows. Work is split over a persistent
//! thread pool (`set_threads`, `threads`).

mod blocks;
mod dequant;
mod dot;
mod error;
mod matmul;
mod pool;
mod qmatrix;
mod qtype;
mod quantize;
mod quantize_act;
mod simd;

pub use error::KernelError;
pub use matmul::Mode;
pub use pool::{set_threads, threads};
pub use qmatrix::{QMatrix, quantize};
pub use qtype::QuantType;
pub use simd::{SimdLevel, detected as detected_simd_level, simd_level};
