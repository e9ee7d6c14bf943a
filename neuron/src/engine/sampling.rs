//! Choosing the next token: greedy, or temperature with top-k / top-p, a
//! seeded RNG, and a repetition penalty; and the defaults a model publishes
//! for them (`generation_config.json`, GGUF `general.sampling.*`).

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use cortex_common::neuron_api::SamplingDefaults;
use serde_json::Value;

/// The temperature of a request that gives none, on a model that
/// publishes none: OpenAI's.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;

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

impl SamplingParams {
    /// A request's settings: its own values, else `defaults` (the model's),
    /// else the neuron's.
    pub fn resolve(
        temperature: Option<f64>,
        top_p: Option<f64>,
        top_k: Option<u32>,
        repetition_penalty: Option<f64>,
        seed: u64,
        defaults: &SamplingDefaults,
    ) -> Self {
        SamplingParams {
            temperature: temperature
                .or(defaults.temperature)
                .unwrap_or(DEFAULT_TEMPERATURE),
            top_p: top_p.or(defaults.top_p),
            top_k: top_k.or(defaults.top_k).map(|k| k as usize),
            seed,
            repetition_penalty: repetition_penalty
                .or(defaults.repetition_penalty)
                .unwrap_or(1.0) as f32,
            ..SamplingParams::default()
        }
    }
}

/// What a request leaves out is sampled with: `published` (the model's
/// own), the neuron's temperature where it has none.
pub fn in_force(published: &SamplingDefaults) -> SamplingDefaults {
    SamplingDefaults {
        temperature: Some(published.temperature.unwrap_or(DEFAULT_TEMPERATURE)),
        ..*published
    }
}

/// The defaults a Hugging Face `generation_config.json` publishes
/// (`temperature`, `top_p`, `top_k`, `repetition_penalty`; `do_sample` is
/// not read, as vLLM does not). Values a request could not ask for are
/// dropped with a warning; `top_k: 0`, `top_p: 1` and a penalty of 1 mean
/// "off" and are dropped silently.
pub fn from_generation_config(config: &Value) -> SamplingDefaults {
    let float = |key: &str| config.get(key).and_then(Value::as_f64);
    let int = |key: &str| config.get(key).and_then(Value::as_u64);
    published(&float, &int, "generation_config.json", |k| k)
}

/// The defaults a GGUF file publishes in `general.sampling.temp`, `.top_p`,
/// `.top_k` and `.penalty_repeat` (llama.cpp's keys), read with the
/// loader's metadata accessors.
pub fn from_gguf(
    float: &dyn Fn(&str) -> Option<f64>,
    int: &dyn Fn(&str) -> Option<u64>,
) -> SamplingDefaults {
    // GGUF stores these as f32: read back as the decimal written (0.6,
    // not 0.6000000238418579).
    let f = |name: &str| float(gguf_key(name)).map(|v| (v as f32).to_string().parse().unwrap_or(v));
    let i = |name: &str| int(gguf_key(name));
    published(&f, &i, "GGUF metadata", gguf_key)
}

/// The GGUF key of a setting cortex calls `name`.
fn gguf_key(name: &str) -> &'static str {
    match name {
        "temperature" => "general.sampling.temp",
        "top_p" => "general.sampling.top_p",
        "top_k" => "general.sampling.top_k",
        _ => "general.sampling.penalty_repeat",
    }
}

/// Reads the four settings by the names cortex gives them; `key` says what
/// the source calls each, for the warning about a value out of range.
fn published<'k>(
    float: &dyn Fn(&str) -> Option<f64>,
    int: &dyn Fn(&str) -> Option<u64>,
    source: &str,
    key: impl Fn(&'k str) -> &'k str,
) -> SamplingDefaults {
    let checked = |name: &'k str, ok: &dyn Fn(f64) -> bool| {
        let v = float(name)?;
        if ok(v) {
            return Some(v);
        }
        tracing::warn!(
            value = v,
            "{source}: `{}` is out of range; not used",
            key(name)
        );
        None
    };
    SamplingDefaults {
        temperature: checked("temperature", &|t| (0.0..=2.0).contains(&t)),
        top_p: checked("top_p", &|p| p > 0.0 && p <= 1.0).filter(|&p| p < 1.0),
        top_k: int("top_k")
            .filter(|&k| k > 0)
            .map(|k| u32::try_from(k).unwrap_or(u32::MAX)),
        repetition_penalty: checked("repetition_penalty", &|r| r > 0.0 && r <= 10.0)
            .filter(|&r| r != 1.0),
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
    use serde_json::json;

    #[test]
    fn generation_config_defaults_are_read_and_off_values_dropped() {
        // Qwen3's.
        let qwen3 = json!({"do_sample": true, "temperature": 0.6, "top_k": 20, "top_p": 0.95,
                           "eos_token_id": [151645, 151643]});
        assert_eq!(
            from_generation_config(&qwen3),
            SamplingDefaults {
                temperature: Some(0.6),
                top_p: Some(0.95),
                top_k: Some(20),
                repetition_penalty: None,
            }
        );
        let off = json!({"top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0});
        assert!(from_generation_config(&off).is_empty());
        let bad = json!({"temperature": 7.0, "repetition_penalty": -1.0, "top_p": "x"});
        assert!(from_generation_config(&bad).is_empty());
        assert!(from_generation_config(&Value::Null).is_empty());
    }

    #[test]
    fn gguf_keys_are_llama_cpps() {
        let md = |k: &str| match k {
            "general.sampling.temp" => Some(f64::from(0.7f32)),
            "general.sampling.top_p" => Some(0.8),
            "general.sampling.penalty_repeat" => Some(1.05),
            _ => None,
        };
        let int = |k: &str| (k == "general.sampling.top_k").then_some(40);
        let d = from_gguf(&md, &int);
        assert_eq!(d.temperature, Some(0.7));
        assert_eq!(d.top_p, Some(0.8));
        assert_eq!(d.top_k, Some(40));
        assert_eq!(d.repetition_penalty, Some(1.05));
    }

    #[test]
    fn a_request_wins_over_the_model_which_wins_over_the_neuron() {
        let model = SamplingDefaults {
            temperature: Some(0.6),
            top_k: Some(20),
            ..Default::default()
        };
        let p = SamplingParams::resolve(None, Some(0.5), None, None, 1, &model);
        assert_eq!(
            (p.temperature, p.top_p, p.top_k),
            (0.6, Some(0.5), Some(20))
        );
        let p = SamplingParams::resolve(Some(0.0), None, Some(3), None, 1, &model);
        assert_eq!((p.temperature, p.top_k), (0.0, Some(3)));
        let p = SamplingParams::resolve(None, None, None, None, 1, &SamplingDefaults::default());
        assert_eq!(p.temperature, DEFAULT_TEMPERATURE);
        assert_eq!(in_force(&model).temperature, Some(0.6));
        assert_eq!(
            in_force(&SamplingDefaults::default()).temperature,
            Some(DEFAULT_TEMPERATURE)
        );
    }

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
