//! RMSNorm over the last dimension, with candle's fused kernel.

use candle_core::{Result, Tensor};

#[derive(Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        RmsNorm {
            weight,
            eps: eps as f32,
        }
    }

    pub fn bytes(&self) -> u64 {
        (self.weight.elem_count() * self.weight.dtype().size_in_bytes()) as u64
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}
