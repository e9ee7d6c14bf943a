//! Rotary position embeddings: cos/sin tables sized to the model's own
//! context length (not a fixed 4096), with the frequency scaling the
//! model declares.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor};
use serde_json::Value;

/// How the two halves of each rotated pair sit in a head: adjacent
/// (GGUF llama, whose q/k rows were permuted by the converter) or split
/// into halves (Hugging Face layout, and GGUF qwen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    Halves,
}

/// How the rotary frequencies are stretched for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (every frequency divided by it).
    Linear {
        factor: f64,
    },
    /// Llama 3.x: low frequencies divided by `factor`, high ones kept,
    /// a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_context: usize,
    },
    /// A scheme this runtime does not implement (yarn, dynamic, …): the
    /// model is served unscaled, within the context it was trained for.
    Unsupported {
        kind: String,
        original_context: usize,
    },
}

impl RopeScaling {
    pub fn from_hf_json(v: Option<&Value>) -> std::result::Result<Self, String> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Self::None);
        };
        let kind = v
            .get("rope_type")
            .or_else(|| v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let f = |name: &str| v.get(name).and_then(Value::as_f64);
        let factor = f("factor").unwrap_or(1.0);
        let original = v
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        match kind.as_str() {
            "default" | "" => Ok(Self::None),
            "linear" => Ok(Self::Linear { factor }),
            "llama3" => Ok(Self::Llama3 {
                factor,
                low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
                high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
                original_context: original.ok_or_else(|| {
                    "config.json: rope_scaling.original_max_position_embeddings is missing"
                        .to_string()
                })?,
            }),
            other => Ok(Self::Unsupported {
                kind: other.to_string(),
                original_context: original.unwrap_or(usize::MAX),
            }),
        }
    }

    pub fn from_gguf(
        kind: Option<&str>,
        factor: Option<f64>,
        original_context: Option<usize>,
    ) -> std::result::Result<Self, String> {
        match kind {
            None | Some("none") | Some("") => Ok(Self::None),
            Some("linear") => Ok(Self::Linear {
                factor: factor.unwrap_or(1.0),
            }),
            Some(other) => Ok(Self::Unsupported {
                kind: other.to_string(),
                original_context: original_context.unwrap_or(usize::MAX),
            }),
        }
    }

    /// The context the model can really use under this scaling.
    pub fn usable_context(&self, declared: usize) -> usize {
        match self {
            Self::Unsupported {
                kind,
                original_context,
            } => {
                let usable = declared.min(*original_context);
                tracing::warn!(
                    rope_scaling = %kind,
                    declared,
                    usable,
                    "rope scaling is not implemented; serving the unscaled context"
                );
                usable
            }
            _ => declared,
        }
    }

    fn apply(&self, inv_freq: &mut [f32]) {
        match self {
            Self::None | Self::Unsupported { .. } => {}
            Self::Linear { factor } => {
                for f in inv_freq.iter_mut() {
                    *f /= *factor as f32;
                }
            }
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => {
                let old = *original_context as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let freq = *f as f64;
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    let scaled = if wavelen < high_wavelen {
                        freq
                    } else if wavelen > low_wavelen {
                        freq / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * freq / factor + smooth * freq
                    };
                    *f = scaled as f32;
                }
            }
        }
    }
}

/// cos and sin for every position the model accepts, `(positions, head_dim / 2)`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// The same tables in host memory on the CPU, for the fused decode
    /// path ([`Rope::rotate`]).
    host: Option<Arc<HostTables>>,
    style: RopeStyle,
    positions: usize,
    half: usize,
}

#[derive(Debug)]
struct HostTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// `freq_factors`: per-frequency divisors some GGUF files carry as a
    /// `rope_freqs` tensor (llama 3.x long context).
    pub fn new(
        head_dim: usize,
        theta: f64,
        positions: usize,
        style: RopeStyle,
        scaling: &RopeScaling,
        freq_factors: Option<&[f32]>,
        device: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        // f32 throughout, as llama.cpp and candle-transformers compute it,
        // so greedy output matches theirs token for token.
        let mut inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1f32 / (theta as f32).powf(i as f32 / head_dim as f32))
            .collect();
        scaling.apply(&mut inv_freq);
        if let Some(factors) = freq_factors {
            if factors.len() != half {
                candle_core::bail!(
                    "rope_freqs has {} entries, the head needs {half}",
                    factors.len()
                );
            }
            for (f, d) in inv_freq.iter_mut().zip(factors) {
                *f /= *d;
            }
        }
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let host = device.is_cpu().then(|| {
            Arc::new(HostTables {
                cos: cos.clone(),
                sin: sin.clone(),
            })
        });
        Ok(Rope {
            cos: Tensor::from_vec(cos, (positions, half), device)?,
            sin: Tensor::from_vec(sin, (positions, half), device)?,
            host,
            style,
            positions,
            half,
        })
    }

    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Whether [`Rope::rotate`] is available (the tables are on the CPU).
    pub fn on_host(&self) -> bool {
        self.host.is_some()
    }

    /// Rotates one head's vector `x` (`head_dim` values) at position `pos`
    /// in place, with exactly the arithmetic of candle's `rope_i` / `rope`
    /// ops, so both paths give the same bits.
    pub fn rotate(&self, x: &mut [f32], pos: usize) -> Result<()> {
        let Some(t) = &self.host else {
            candle_core::bail!("rope tables are not in host memory");
        };
        let half = self.half;
        if pos >= self.positions || x.len() != 2 * half {
            candle_core::bail!(
                "rotate: position {pos} of {}, head of {} values (want {})",
                self.positions,
                x.len(),
                2 * half
            );
        }
        let cos = &t.cos[pos * half..(pos + 1) * half];
        let sin = &t.sin[pos * half..(pos + 1) * half];
        match self.style {
            RopeStyle::Interleaved => {
                for i in 0..half {
                    let (a, b) = (x[2 * i], x[2 * i + 1]);
                    x[2 * i] = a * cos[i] - b * sin[i];
                    x[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
            RopeStyle::Halves => {
                for i in 0..half {
                    let (a, b) = (x[i], x[i + half]);
                    x[i] = a * cos[i] - b * sin[i];
                    x[i + half] = a * sin[i] + b * cos[i];
                }
            }
        }
        Ok(())
    }

    /// Rotates `x` of shape `(1, heads, seq, head_dim)` whose first row is
    /// at position `start`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let (_, _, seq, _) = x.dims4()?;
        if start + seq > self.positions {
            candle_core::bail!(
                "position {} is past the model's context of {}",
                start + seq,
                self.positions
            );
        }
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let x = x.contiguous()?;
        match self.style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin),
            RopeStyle::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_gives_the_bits_of_the_candle_ops() {
        for style in [RopeStyle::Interleaved, RopeStyle::Halves] {
            let r = Rope::new(
                8,
                10_000.0,
                64,
                style,
                &RopeScaling::None,
                None,
                &Device::Cpu,
            )
            .unwrap();
            let x = Tensor::randn(0f32, 1.0, (1, 3, 1, 8), &Device::Cpu).unwrap();
            let want: Vec<f32> = r
                .apply(&x, 37)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut got: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            for head in got.chunks_mut(8) {
                r.rotate(head, 37).unwrap();
            }
            assert_eq!(got, want, "{style:?}");
            assert!(r.rotate(&mut got[..8], 64).is_err(), "past the tables");
        }
    }

    #[test]
    fn tables_cover_the_whole_context() {
        let r = Rope::new(
            8,
            10_000.0,
            9000,
            RopeStyle::Halves,
            &RopeScaling::None,
            None,
            &Device::Cpu,
        )
        .unwrap();
        let x = Tensor::ones((1, 2, 1, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(r.apply(&x, 8999).is_ok());
        let err = r.apply(&x, 9000).unwrap_err().to_string();
        assert!(err.contains("context of 9000"), "{err}");
    }

    #[test]
    fn linear_scaling_divides_positions() {
        let dev = Device::Cpu;
        let plain = Rope::new(
            4,
            100.0,
            16,
            RopeStyle::Halves,
            &RopeScaling::None,
            None,
            &dev,
        )
        .unwrap();
        let scaled = Rope::new(
            4,
            100.0,
            16,
            RopeStyle::Halves,
            &RopeScaling::Linear { factor: 2.0 },
            None,
            &dev,
        )
        .unwrap();
        let a = plain.cos.get(3).unwrap().to_vec1::<f32>().unwrap();
        let b = scaled.cos.get(6).unwrap().to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6);
        }
    }

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let mut f = vec![1.0f32, 1e-4];
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 8192,
        }
        .apply(&mut f);
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 1e-4 / 8.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_scaling_caps_the_context() {
        let s = RopeScaling::from_hf_json(Some(&serde_json::json!({
            "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768
        })))
        .unwrap();
        assert_eq!(s.usable_context(131072), 32768);
    }
}
