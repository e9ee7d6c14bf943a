//! A linear layer whose weights are dense or quantized. On the CPU a
//! quantized layer runs the neuron's own kernels (`neuron-kernels`: SIMD
//! chosen at run time, batched prefill); on CUDA and Metal it is candle's
//! `QMatMul`. Architectures are written once against [`Linear`].

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, DType, Device, Layout, Module, Result, Shape, Tensor};
use neuron_kernels::{Mode, QMatrix, QuantType};

/// Where a layer's weight matrix `(out_features, in_features)` lives.
#[derive(Clone)]
pub enum Weight {
    /// Dense, in the device's dtype.
    Dense(Tensor),
    /// Quantized blocks run by the neuron's CPU kernels.
    QuantCpu(Arc<QMatrix>),
    /// Quantized blocks on a GPU, run by candle.
    QuantDevice(Arc<QMatMul>, QuantType),
}

#[derive(Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out_features: usize,
    in_features: usize,
}

/// Maps between our quant names and candle's ggml dtypes.
pub fn ggml_of(q: QuantType) -> GgmlDType {
    match q {
        QuantType::Q4_0 => GgmlDType::Q4_0,
        QuantType::Q4_1 => GgmlDType::Q4_1,
        QuantType::Q8_0 => GgmlDType::Q8_0,
        QuantType::Q4K => GgmlDType::Q4K,
        QuantType::Q5K => GgmlDType::Q5K,
        QuantType::Q6K => GgmlDType::Q6K,
    }
}

pub fn quant_of(d: GgmlDType) -> Option<QuantType> {
    match d {
        GgmlDType::Q4_0 => Some(QuantType::Q4_0),
        GgmlDType::Q4_1 => Some(QuantType::Q4_1),
        GgmlDType::Q8_0 => Some(QuantType::Q8_0),
        GgmlDType::Q4K => Some(QuantType::Q4K),
        GgmlDType::Q5K => Some(QuantType::Q5K),
        GgmlDType::Q6K => Some(QuantType::Q6K),
        _ => None,
    }
}

fn kernel_err(e: neuron_kernels::KernelError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl Linear {
    pub fn dense(w: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = w.dims2()?;
        Ok(Linear {
            weight: Weight::Dense(w),
            bias,
            out_features,
            in_features,
        })
    }

    pub fn quant_cpu(q: Arc<QMatrix>, bias: Option<Tensor>) -> Self {
        Linear {
            out_features: q.rows(),
            in_features: q.cols(),
            weight: Weight::QuantCpu(q),
            bias,
        }
    }

    /// A quantized tensor read from a file, placed for `device`.
    pub fn from_qtensor(q: QTensor, bias: Option<Tensor>, device: &Device) -> Result<Self> {
        let (out_features, in_features) = q.shape().dims2()?;
        match (quant_of(q.dtype()), device) {
            (Some(qt), Device::Cpu) => {
                let m = QMatrix::new(qt, out_features, in_features, q.data()?.into_owned())
                    .map_err(kernel_err)?;
                Ok(Self::quant_cpu(Arc::new(m), bias))
            }
            (Some(qt), _) => Ok(Linear {
                weight: Weight::QuantDevice(Arc::new(QMatMul::from_qtensor(q)?), qt),
                bias,
                out_features,
                in_features,
            }),
            // A float tensor in a GGUF: dense.
            (None, _) => {
                let w = q.dequantize(device)?;
                Self::dense(w.to_dtype(dense_dtype(device))?, bias)
            }
        }
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    pub fn weight(&self) -> &Weight {
        &self.weight
    }

    /// The quantization of the weights, when they are quantized.
    pub fn quant(&self) -> Option<QuantType> {
        match &self.weight {
            Weight::Dense(_) => None,
            Weight::QuantCpu(q) => Some(q.qtype()),
            Weight::QuantDevice(_, q) => Some(*q),
        }
    }

    /// Bytes the weights (and bias) occupy.
    pub fn bytes(&self) -> u64 {
        let w = match &self.weight {
            Weight::Dense(t) => (t.elem_count() * t.dtype().size_in_bytes()) as u64,
            Weight::QuantCpu(q) => q.storage_bytes() as u64,
            Weight::QuantDevice(_, q) => {
                (self.out_features * self.in_features / q.block_elems() * q.block_bytes()) as u64
            }
        };
        w + self
            .bias
            .as_ref()
            .map(|b| (b.elem_count() * b.dtype().size_in_bytes()) as u64)
            .unwrap_or(0)
    }

    /// In-situ quantization of a dense layer. A row length the type's
    /// blocks do not divide falls back to q8_0 (32-element blocks), as
    /// llama.cpp does, and stays dense when even that does not fit.
    pub fn quantize(self, q: QuantType) -> Result<Self> {
        let Weight::Dense(w) = &self.weight else {
            return Ok(self);
        };
        let q = if self.in_features.is_multiple_of(q.block_elems()) {
            q
        } else if self
            .in_features
            .is_multiple_of(QuantType::Q8_0.block_elems())
        {
            QuantType::Q8_0
        } else {
            return Ok(self);
        };
        let device = w.device().clone();
        let weight = match &device {
            Device::Cpu => {
                let data: Vec<f32> = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                let m = neuron_kernels::quantize(q, &data, self.out_features, self.in_features)
                    .map_err(kernel_err)?;
                Weight::QuantCpu(Arc::new(m))
            }
            _ => {
                let qt = QTensor::quantize_onto(&w.to_dtype(DType::F32)?, ggml_of(q), &device)?;
                Weight::QuantDevice(Arc::new(QMatMul::from_qtensor(qt)?), q)
            }
        };
        Ok(Linear { weight, ..self })
    }

    /// One layer computing several: their outputs side by side, so a
    /// single matmul replaces `parts.len()` (q/k/v, gate/up). Only CPU
    /// quantized layers of one type, or dense ones, are fused; otherwise
    /// `None`.
    pub fn fuse(parts: &[&Linear]) -> Result<Option<Self>> {
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        if parts.iter().any(|p| p.in_features != first.in_features) {
            return Ok(None);
        }
        let out_features = parts.iter().map(|p| p.out_features).sum();
        let weight = match &first.weight {
            Weight::QuantCpu(q0) => {
                let mut data = Vec::new();
                for p in parts {
                    match &p.weight {
                        Weight::QuantCpu(q) if q.qtype() == q0.qtype() => {
                            data.extend_from_slice(q.data());
                        }
                        _ => return Ok(None),
                    }
                }
                let m = QMatrix::new(q0.qtype(), out_features, first.in_features, data)
                    .map_err(kernel_err)?;
                Weight::QuantCpu(Arc::new(m))
            }
            Weight::Dense(_) => {
                let mut ws = Vec::new();
                for p in parts {
                    match &p.weight {
                        Weight::Dense(w) => ws.push(w.clone()),
                        _ => return Ok(None),
                    }
                }
                Weight::Dense(Tensor::cat(&ws, 0)?)
            }
            Weight::QuantDevice(..) => return Ok(None),
        };
        let bias = if parts.iter().all(|p| p.bias.is_none()) {
            None
        } else {
            let mut bs = Vec::new();
            for p in parts {
                bs.push(match &p.bias {
                    Some(b) => b.clone(),
                    None => Tensor::zeros(p.out_features, DType::F32, first_device(first))?,
                });
            }
            Some(Tensor::cat(&bs, 0)?)
        };
        Ok(Some(Linear {
            weight,
            bias,
            out_features,
            in_features: first.in_features,
        }))
    }

    /// `x`: `(rows, in_features)` f32 → `(rows, out_features)` f32; every
    /// row a decode row (see [`Linear::forward_split`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_split(x, usize::MAX)
    }

    /// Like [`Linear::forward`], where the first `decode_rows` rows are
    /// single tokens (decode, a prompt's last token) and the rest prompt
    /// chunks. On the CPU each kind always runs the same kernel (row-wise
    /// GEMV, tiled GEMM), so a row's result never depends on what else is
    /// in the pass: batching and prompt-cache reuse change no answer.
    pub fn forward_split(&self, x: &Tensor, decode_rows: usize) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::QuantCpu(q) => x.apply_op1_no_bwd(&QuantMatMul {
                weight: q.clone(),
                decode_rows,
            })?,
            Weight::QuantDevice(q, _) => q.forward(x)?,
            Weight::Dense(w) => {
                let xd = if x.dtype() == w.dtype() {
                    x.clone()
                } else {
                    x.to_dtype(w.dtype())?
                };
                xd.matmul(&w.t()?)?.to_dtype(DType::F32)?
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

fn first_device(l: &Linear) -> &Device {
    match &l.weight {
        Weight::Dense(w) => w.device(),
        _ => &Device::Cpu,
    }
}

/// The dtype dense weights are kept in on a device: f32 on CPU (exact and
/// fast there), half precision on GPUs.
pub fn dense_dtype(device: &Device) -> DType {
    match device {
        Device::Cpu => DType::F32,
        Device::Cuda(_) => DType::BF16,
        Device::Metal(_) => DType::F16,
    }
}

/// candle op: `x (m, k) · Wᵀ` with the neuron's quantized CPU kernels; the
/// first `decode_rows` rows row-wise, the rest tiled.
struct QuantMatMul {
    weight: Arc<QMatrix>,
    decode_rows: usize,
}

impl candle_core::CustomOp1 for QuantMatMul {
    fn name(&self) -> &'static str {
        "neuron-quant-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("quantized matmul takes f32 activations");
        };
        let w = &self.weight;
        let (m, k) = layout.shape().dims2()?;
        if k != w.cols() {
            candle_core::bail!(
                "quantized matmul: activations have {k} columns, weights {}",
                w.cols()
            );
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("quantized matmul needs contiguous activations");
        };
        let x = &data[start..end];
        let n = w.rows();
        let mut out = vec![0f32; m * n];
        let d = self.decode_rows.min(m);
        let (x_dec, x_pre) = x.split_at(d * k);
        let (o_dec, o_pre) = out.split_at_mut(d * n);
        if d > 0 {
            w.matmul_mode(Mode::Rowwise, x_dec, d, o_dec)
                .map_err(kernel_err)?;
        }
        if m > d {
            w.matmul_mode(Mode::Tiled, x_pre, m - d, o_pre)
                .map_err(kernel_err)?;
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}
