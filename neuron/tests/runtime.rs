//! The runtime's numerics against references, through the real loading
//! code: candle-transformers' implementations on the same weights (same
//! greedy tokens), token-by-token against batched prefill, one batch of
//! several sequences against each alone, and in-situ quantization against
//! the dense weights.

mod support;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, qwen2, qwen3};
use neuron::model::{LoadedModel, gguf, safetensors};
use neuron::runtime::{QuantType, Step, StepKind};
use support::tiny;

fn no_progress(_: u64, _: u64) {}

fn embedded() -> LoadedModel {
    let path = neuron::model::embedded::ensure_model().expect("embedded model");
    gguf::load(&path, &Device::Cpu, None, &no_progress).expect("loads")
}

fn tokens(m: &LoadedModel, text: &str) -> Vec<u32> {
    m.tokenizer
        .encode(text, false)
        .expect("tokenizes")
        .get_ids()
        .to_vec()
}

fn argmax(t: &Tensor) -> u32 {
    t.flatten_all()
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Greedy tokens from the runtime.
fn runtime_greedy(m: &LoadedModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = m.model.new_cache();
    let mut next = argmax(&m.model.forward(prompt, &mut cache).unwrap());
    let mut out = vec![next];
    while out.len() < n {
        next = argmax(&m.model.forward(&[next], &mut cache).unwrap());
        out.push(next);
    }
    out
}

const PROMPTS: [&str; 3] = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
];

/// The runtime against candle-transformers' `quantized_llama` on the
/// embedded GGUF, 32 greedy tokens per prompt, teacher-forced along the
/// reference's greedy path. Both quantize activations the same way but sum
/// in different orders, so logits differ in the last bits; at every step
/// where the reference's choice is clear (top-2 margin ≥ 0.5) the runtime
/// must pick the same token, and most steps must be clear (22-32 of 32
/// here). On the
/// France prompt the greedy texts must be equal outright.
#[test]
fn gguf_greedy_tokens_match_candle_transformers_quantized_llama() {
    let m = embedded();
    let path = neuron::model::embedded::ensure_model().unwrap();
    for (p, prompt) in PROMPTS.iter().enumerate() {
        let ids = tokens(&m, prompt);
        let mut reference = gguf::load_reference(&path, &Device::Cpu).unwrap();
        let mut cache = m.model.new_cache();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut r = to_vec(&reference.forward(&input, 0).unwrap());
        let mut o = to_vec(&m.model.forward(&ids, &mut cache).unwrap());
        let (mut clear, mut agreed, mut path_tokens) = (0, 0, Vec::new());
        for step in 0..32 {
            let mut sorted = r.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let want = argmax(&Tensor::new(r.as_slice(), &Device::Cpu).unwrap());
            let got = argmax(&Tensor::new(o.as_slice(), &Device::Cpu).unwrap());
            if sorted[0] - sorted[1] >= 0.5 {
                clear += 1;
                assert_eq!(got, want, "prompt {p}, step {step}: a clear choice differs");
                agreed += 1;
            }
            path_tokens.push(want);
            let x = Tensor::new(&[want], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            r = to_vec(&reference.forward(&x, ids.len() + step).unwrap());
            o = to_vec(&m.model.forward(&[want], &mut cache).unwrap());
        }
        assert!(
            clear >= 16,
            "prompt {p}: only {clear} of 32 steps were clear"
        );
        assert_eq!(agreed, clear);
        if p == 0 {
            let got = runtime_greedy(&m, &ids, 32);
            assert_eq!(got, path_tokens, "the France answer, free-running");
            assert!(
                m.tokenizer
                    .decode(&got, true)
                    .unwrap()
                    .starts_with("The capital of France is Paris."),
            );
        }
    }
}

/// Batched prefill (one GEMM-like pass) against token-by-token decoding
/// of the same prompt. The two quantize activations differently, so
/// logits agree to a tolerance, not bit for bit: every logit within 2% of
/// the logit range, and the same next token.
#[test]
fn batched_prefill_matches_token_by_token() {
    let m = embedded();
    let ids = tokens(&m, PROMPTS[1]);
    assert!(ids.len() > 8);
    let mut batched = m.model.new_cache();
    let a = to_vec(&m.model.forward(&ids, &mut batched).unwrap());
    let mut stepwise = m.model.new_cache();
    let mut last = None;
    for &t in &ids {
        last = Some(m.model.forward(&[t], &mut stepwise).unwrap());
    }
    let b = to_vec(&last.unwrap());
    let range =
        a.iter().cloned().fold(f32::MIN, f32::max) - a.iter().cloned().fold(f32::MAX, f32::min);
    let diff = max_abs_diff(&a, &b);
    assert!(
        diff <= 0.02 * range,
        "max |Δlogit| {diff} over a range of {range}"
    );
    assert_eq!(
        argmax(&Tensor::new(a.as_slice(), &Device::Cpu).unwrap()),
        argmax(&Tensor::new(b.as_slice(), &Device::Cpu).unwrap())
    );
    assert_eq!(batched.len(), ids.len());
    assert_eq!(stepwise.len(), ids.len());
}

/// Several sequences in one pass give each bit for bit the logits it gets
/// alone: prompts prefilled together, then their last tokens decoded
/// together, as the scheduler batches them.
#[test]
fn one_batch_of_sequences_matches_each_alone() {
    let m = embedded();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| tokens(&m, p)).collect();
    let alone: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| {
            let mut c = m.model.new_cache();
            to_vec(&m.model.forward(p, &mut c).unwrap())
        })
        .collect();
    let mut caches: Vec<_> = prompts.iter().map(|_| m.model.new_cache()).collect();
    let mut steps: Vec<Step> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(p, cache)| Step {
            tokens: &p[..p.len() - 1],
            cache,
            kind: StepKind::Prefill,
        })
        .collect();
    m.model.forward_batch(&mut steps).unwrap();
    let mut steps: Vec<Step> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(p, cache)| Step {
            tokens: &p[p.len() - 1..],
            cache,
            kind: StepKind::Decode,
        })
        .collect();
    let together = m.model.forward_batch(&mut steps).unwrap();
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        let b = to_vec(b);
        assert!(
            *a == b,
            "sequence {i}: max |Δlogit| {}",
            max_abs_diff(a, &b)
        );
    }
    for (c, p) in caches.iter().zip(&prompts) {
        assert_eq!(c.len(), p.len());
    }
}

/// `ids` as the `(1, len)` input candle-transformers' models take.
fn batch_of_one(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

/// One reference forward pass: tokens at a position → logits.
type Forward = dyn FnMut(&[u32], usize) -> Tensor;

enum Family {
    Llama,
    Qwen2,
    Qwen3,
}

/// Greedy tokens of candle-transformers' dense implementation of `family`
/// on the weights in `dir`.
fn dense_reference(family: Family, dir: &Path, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let config = tiny::read_config(dir);
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    let mut step: Box<Forward> = match family {
        Family::Llama => {
            let cfg: llama::LlamaConfig = serde_json::from_value(config).unwrap();
            let cfg = cfg.into_config(false);
            let model = llama::Llama::load(vb, &cfg).unwrap();
            let mut cache = llama::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
            Box::new(move |ids, pos| model.forward(&batch_of_one(ids), pos, &mut cache).unwrap())
        }
        Family::Qwen2 => {
            let cfg: qwen2::Config = serde_json::from_value(config).unwrap();
            let mut model = qwen2::ModelForCausalLM::new(&cfg, vb).unwrap();
            Box::new(move |ids, pos| model.forward(&batch_of_one(ids), pos).unwrap())
        }
        Family::Qwen3 => {
            let cfg: qwen3::Config = serde_json::from_value(config).unwrap();
            let mut model = qwen3::ModelForCausalLM::new(&cfg, vb).unwrap();
            Box::new(move |ids, pos| model.forward(&batch_of_one(ids), pos).unwrap())
        }
    };
    let first = step(prompt, 0);
    let first_logits = to_vec(&first);
    let first_logits =
        first_logits[first_logits.len() - first.dims().last().copied().unwrap()..].to_vec();
    let mut next = argmax(&Tensor::new(first_logits.as_slice(), &Device::Cpu).unwrap());
    let mut out = vec![next];
    while out.len() < n {
        let l = to_vec(&step(&[next], prompt.len() + out.len() - 1));
        let l = &l[l.len() - first_logits.len()..];
        next = argmax(&Tensor::new(l, &Device::Cpu).unwrap());
        out.push(next);
    }
    (out, first_logits)
}

fn check_dense_family(family: Family, write: fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path());
    let m = safetensors::load(dir.path(), &Device::Cpu, None, &no_progress).unwrap();
    let prompt = tokens(&m, "hello there, tiny model");
    let (expected, ref_logits) = dense_reference(family, dir.path(), &prompt, 16);
    let mut cache = m.model.new_cache();
    let logits = to_vec(&m.model.forward(&prompt, &mut cache).unwrap());
    let diff = max_abs_diff(&logits, &ref_logits);
    assert!(diff < 1e-3, "max |Δlogit| {diff}");
    assert_eq!(runtime_greedy(&m, &prompt, 16), expected);
}

#[test]
fn dense_llama_matches_candle_transformers() {
    check_dense_family(Family::Llama, tiny::write_llama);
}

#[test]
fn dense_qwen2_matches_candle_transformers() {
    check_dense_family(Family::Qwen2, tiny::write_qwen2);
}

#[test]
fn dense_qwen3_matches_candle_transformers() {
    check_dense_family(Family::Qwen3, tiny::write_qwen3);
}

fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f32 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-12)).sqrt()
}

/// In-situ quantization of a dense model written by the test: each type's
/// logits stay within a stated relative L2 distance of the dense ones, the
/// weights shrink, and
/// lm_head is quantized only when it is not tied to the embedding.
#[test]
fn in_situ_quantization_is_close_to_dense_and_smaller() {
    for tied in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        tiny::write_llama_sized(dir.path(), 256, 512, tied);
        let dense = safetensors::load(dir.path(), &Device::Cpu, None, &no_progress).unwrap();
        let prompt = tokens(&dense, "quantize me, please");
        let mut c = dense.model.new_cache();
        let reference = to_vec(&dense.model.forward(&prompt, &mut c).unwrap());
        // Relative L2 error of the logits against dense, for weights *and*
        // activations quantized (as llama.cpp does), on random weights that
        // amplify it: q8_0 measured 0.025-0.037 here, the 4-bit types about
        // 0.25-0.37. The bounds leave 2x room.
        for (q, tolerance) in [
            (QuantType::Q8_0, 0.08),
            (QuantType::Q6K, 0.2),
            (QuantType::Q5K, 0.35),
            (QuantType::Q4K, 0.75),
            (QuantType::Q4_0, 0.75),
        ] {
            let m = safetensors::load(dir.path(), &Device::Cpu, Some(q), &no_progress).unwrap();
            assert_eq!(m.quant, Some(q));
            assert!(
                m.memory_bytes < dense.memory_bytes,
                "{q:?}: {} bytes quantized vs {} dense",
                m.memory_bytes,
                dense.memory_bytes
            );
            assert_eq!(m.unquantized_bytes, Some(dense.memory_bytes));
            let mut c = m.model.new_cache();
            let got = to_vec(&m.model.forward(&prompt, &mut c).unwrap());
            let err = relative_error(&got, &reference);
            assert!(err < tolerance, "{q:?} tied={tied}: relative error {err}");
            if tied {
                assert_eq!(m.model.lm_head_quant(), None, "a tied lm_head stays dense");
            } else {
                assert_eq!(m.model.lm_head_quant(), Some(q), "lm_head is quantized");
            }
        }
    }
}

#[test]
fn quant_on_an_already_quantized_gguf_is_refused() {
    let path = neuron::model::embedded::ensure_model().unwrap();
    let err = match gguf::load(&path, &Device::Cpu, Some(QuantType::Q8_0), &no_progress) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("quant on a quantized GGUF loaded"),
    };
    assert!(err.contains("already quantized"), "{err}");
}

#[test]
fn the_embedded_model_gets_its_full_context() {
    let m = embedded();
    assert_eq!(m.context_length, 8192);
    assert_eq!(m.model.config().context_length, 8192);
}

/// A request resumed from a cached prompt prefix gets bit-for-bit the
/// logits of a cold run: the prompt cache keeps a sequence's KV up to its
/// prefill boundary (positions computed as prompt rows), and prompt rows
/// and decode rows each always run the same kernels.
#[test]
fn resuming_from_a_cached_prompt_prefix_is_bit_identical() {
    let m = embedded();
    let ids = tokens(&m, PROMPTS[0]);
    let mut cold = m.model.new_cache();
    let whole = to_vec(&m.model.forward(&ids, &mut cold).unwrap());
    for split in [2, ids.len() / 2, ids.len() - 1] {
        // An earlier request whose prompt was `ids[..split + 1]`, kept up
        // to its prefill boundary.
        let mut warm = m.model.new_cache();
        m.model.forward(&ids[..split + 1], &mut warm).unwrap();
        warm.truncate(split);
        let resumed = to_vec(&m.model.forward(&ids[split..], &mut warm).unwrap());
        assert!(
            whole == resumed,
            "split at {split}: max |Δ| {}",
            max_abs_diff(&whole, &resumed)
        );
    }
}
