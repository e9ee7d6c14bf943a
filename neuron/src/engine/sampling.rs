//! Choosing the next token: greedy, or temperature with top-k / top-p, a
//! seeded RNG, and a repetition penalty.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

/// Sampling settings of one request, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
    /// 1.0 means off.
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: None,
            top_k: None,
            seed: 0,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
        }
    }
}

pub struct Sampler {
    processor: LogitsProcessor,
    penalty: f32,
    last_n: usize,
}

impl Sampler {
    pub fn new(p: &SamplingParams) -> Self {
        let top_p = p.top_p.filter(|&v| v < 1.0);
        let sampling = if p.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = p.temperature;
            match (p.top_k, top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        Sampler {
            processor: LogitsProcessor::from_sampling(p.seed, sampling),
            penalty: p.repetition_penalty,
            last_n: p.repeat_last_n,
        }
    }

    /// Picks the next token from `logits` (shape `(vocab,)`), given the
    /// tokens so far (prompt and generated) for the repetition penalty.
    pub fn next(&mut self, logits: &Tensor, context: &[u32]) -> candle_core::Result<u32> {
        if (self.penalty - 1.0).abs() > f32::EPSILON {
            let start = context.len().saturating_sub(self.last_n);
            let penalised = candle_transformers::utils::apply_repeat_penalty(
                logits,
                self.penalty,
                &context[start..],
            )?;
            self.processor.sample(&penalised)
        } else {
            self.processor.sample(logits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn greedy_takes_the_largest() {
        let mut s = Sampler::new(&SamplingParams {
            temperature: 0.0,
            ..Default::default()
        });
        assert_eq!(s.next(&logits(&[0.1, 3.0, 0.2]), &[]).unwrap(), 1);
    }

    #[test]
    fn repetition_penalty_moves_greedy_off_a_repeated_token() {
        let mut s = Sampler::new(&SamplingParams {
            temperature: 0.0,
            repetition_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.next(&logits(&[2.0, 1.5, 0.0]), &[0]).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_choices() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: Some(3),
            seed: 42,
            ..Default::default()
        };
        let l = logits(&[1.0, 1.0, 1.0, 1.0]);
        let run = || {
            let mut s = Sampler::new(&params);
            (0..20)
                .map(|_| s.next(&l, &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert!(run().iter().all(|&t| t < 4));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(&SamplingParams {
            temperature: 5.0,
            top_k: Some(1),
            seed: 1,
            ..Default::default()
        });
        for _ in 0..10 {
            assert_eq!(s.next(&logits(&[0.0, 0.5, 4.0]), &[]).unwrap(), 2);
        }
    }
}
