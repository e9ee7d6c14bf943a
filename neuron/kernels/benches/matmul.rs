//! Quantized matmul throughput: the shapes of SmolLM2-135M (Q4_1 MLP
//! matrices 1536x576 and 576x1536, the Q8_0 49152x576 embedding used as
//! lm_head) at decode (m = 1), a decode batch of four (m = 4) and prefill (m = 512), per SIMD level, next to
//! candle 0.11's `QMatMul` on the same bytes.
//!
//! Note: each case reruns one matrix, so it is cache-resident (even the 30 MB
//! lm_head mostly fits a Zen 4 L3); in a model the weights stream from DRAM.
//! Both libraries run on their own persistent thread pools in one process.
//!
//! `cargo bench -p neuron-kernels --bench matmul [-- filter]`

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use neuron_kernels::{QMatrix, QuantType, SimdLevel, quantize};
use std::hint::black_box;
use std::time::Duration;

/// Deterministic pseudo-random floats (xorshift64*).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

fn candle_matmul(qm: &QMatrix) -> QMatMul {
    let dtype = match qm.qtype() {
        QuantType::Q4_0 => GgmlDType::Q4_0,
        QuantType::Q4_1 => GgmlDType::Q4_1,
        QuantType::Q8_0 => GgmlDType::Q8_0,
        QuantType::Q4K => GgmlDType::Q4K,
        QuantType::Q5K => GgmlDType::Q5K,
        QuantType::Q6K => GgmlDType::Q6K,
    };
    let storage = QStorage::from_data(std::borrow::Cow::Borrowed(qm.data()), &Device::Cpu, dtype)
        .expect("storage");
    let qt = QTensor::new(storage, (qm.rows(), qm.cols())).expect("qtensor");
    QMatMul::from_arc(std::sync::Arc::new(qt)).expect("qmatmul")
}

fn bench(c: &mut Criterion) {
    let shapes = [
        (QuantType::Q4_1, 1536, 576),
        (QuantType::Q4_1, 576, 1536),
        (QuantType::Q8_0, 49152, 576),
    ];
    for (qt, rows, cols) in shapes {
        let qm = quantize(qt, &data(rows * cols, 1), rows, cols).expect("quantize");
        let cm = candle_matmul(&qm);
        for m in [1usize, 4, 512] {
            let mut g = c.benchmark_group(format!("{qt}_{rows}x{cols}_m{m}"));
            g.throughput(Throughput::Elements((rows * cols * m) as u64));
            g.sample_size(if m * rows > 1 << 22 { 10 } else { 30 });
            g.measurement_time(Duration::from_secs(if m > 1 { 6 } else { 3 }));
            g.warm_up_time(Duration::from_millis(500));
            let x = data(m * cols, 2);
            let mut out = vec![0.0f32; m * rows];
            for level in SimdLevel::available() {
                if level == SimdLevel::Scalar && m > 1 {
                    continue; // minutes per iteration; not informative
                }
                g.bench_function(BenchmarkId::new("cortex", level), |b| {
                    b.iter(|| {
                        qm.matmul_with(level, black_box(&x), m, &mut out)
                            .expect("matmul")
                    })
                });
            }
            let xt = Tensor::from_slice(&x, (m, cols), &Device::Cpu).expect("tensor");
            g.bench_function("candle", |b| {
                b.iter(|| cm.forward(black_box(&xt)).expect("forward"))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
