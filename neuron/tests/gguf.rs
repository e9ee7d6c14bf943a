//! The GGUF path beyond llama: a tiny qwen3 model with random weights,
//! written as a real GGUF file (metadata, byte-level BPE tokenizer, chat
//! template, tensors) and served by the real neuron.

mod support;

use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file::Value};
use candle_core::{Device, Tensor};
use serde_json::json;
use support::Neuron;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 16;
const FFN: usize = 128;
const LAYERS: usize = 2;

fn qtensor(shape: &[usize], ones: bool) -> QTensor {
    let t = if ones {
        Tensor::ones(shape, candle_core::DType::F32, &Device::Cpu).unwrap()
    } else {
        (Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap() * 0.1).unwrap()
    };
    QTensor::quantize(&t, GgmlDType::F32).unwrap()
}

fn write_qwen3_gguf(path: &Path) {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    let mut tokens: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    tokens.push("<|im_start|>".into());
    tokens.push("<|im_end|>".into());
    let vocab = tokens.len();
    let mut types = vec![Value::I32(1); vocab - 2];
    types.extend([Value::I32(3), Value::I32(3)]);
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("qwen3".into())),
        ("qwen3.attention.head_count", Value::U32(HEADS as u32)),
        ("qwen3.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("qwen3.attention.key_length", Value::U32(HEAD_DIM as u32)),
        ("qwen3.block_count", Value::U32(LAYERS as u32)),
        ("qwen3.embedding_length", Value::U32(HIDDEN as u32)),
        ("qwen3.context_length", Value::U32(128)),
        ("qwen3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("qwen3.rope.freq_base", Value::F32(1_000_000.0)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().cloned().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.merges", Value::Array(vec![])),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.eos_token_id", Value::U32(vocab as u32 - 1)),
        ("tokenizer.chat_template", Value::String(template.into())),
        // Sampling defaults as llama.cpp's converter writes them from a
        // model's generation_config.json.
        ("general.sampling.temp", Value::F32(0.6)),
        ("general.sampling.top_k", Value::I32(20)),
        ("general.sampling.top_p", Value::F32(0.95)),
    ];
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), qtensor(&[vocab, HIDDEN], false)),
        ("output_norm.weight".into(), qtensor(&[HIDDEN], true)),
    ];
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        tensors.extend([
            (
                format!("{p}.attn_q.weight"),
                qtensor(&[HEADS * HEAD_DIM, HIDDEN], false),
            ),
            (
                format!("{p}.attn_k.weight"),
                qtensor(&[KV_HEADS * HEAD_DIM, HIDDEN], false),
            ),
            (
                format!("{p}.attn_v.weight"),
                qtensor(&[KV_HEADS * HEAD_DIM, HIDDEN], false),
            ),
            (
                format!("{p}.attn_output.weight"),
                qtensor(&[HIDDEN, HEADS * HEAD_DIM], false),
            ),
            (
                format!("{p}.attn_q_norm.weight"),
                qtensor(&[HEAD_DIM], true),
            ),
            (
                format!("{p}.attn_k_norm.weight"),
                qtensor(&[HEAD_DIM], true),
            ),
            (format!("{p}.attn_norm.weight"), qtensor(&[HIDDEN], true)),
            (format!("{p}.ffn_norm.weight"), qtensor(&[HIDDEN], true)),
            (
                format!("{p}.ffn_gate.weight"),
                qtensor(&[FFN, HIDDEN], false),
            ),
            (format!("{p}.ffn_up.weight"), qtensor(&[FFN, HIDDEN], false)),
            (
                format!("{p}.ffn_down.weight"),
                qtensor(&[HIDDEN, FFN], false),
            ),
        ]);
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    candle_core::quantized::gguf_file::write(&mut file, &md_refs, &t_refs).unwrap();
}

#[tokio::test]
async fn qwen3_gguf_loads_with_its_metadata_tokenizer_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen3.gguf");
    write_qwen3_gguf(&path);
    let n = Neuron::start(&["--model-root", dir.path().to_str().unwrap()]);
    n.load("tiny", path.to_str().unwrap()).await;
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["architecture"], "qwen3");
    assert_eq!(models["models"][0]["context_length"], 128);
    // The defaults the file publishes are the ones in force.
    let sampling = &models["models"][0]["sampling"];
    assert_eq!(sampling["top_k"], 20, "{models}");
    assert_eq!(sampling["temperature"], 0.6, "{models}");
    assert_eq!(sampling["top_p"], 0.95, "{models}");
    let body = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "héllo"}],
        "temperature": 0, "max_tokens": 5,
    });
    let (status, a) = n.chat(body.clone()).await;
    assert_eq!(status, 200, "{a}");
    // "héllo" is 6 bytes (é is two), one token each, inside the template.
    let (_, counted) = n.post("/v1/chat/count_tokens", body.clone()).await;
    assert_eq!(counted["prompt_tokens"], a["usage"]["prompt_tokens"]);
    // <|im_start|> "user\n" "héllo" <|im_end|> "\n" <|im_start|> "assistant\n":
    // special tokens count one each, every other byte one token.
    let expected = 1 + "user\n".len() + "héllo".len() + 1 + 1 + 1 + "assistant\n".len();
    assert_eq!(
        a["usage"]["prompt_tokens"].as_u64().unwrap(),
        expected as u64
    );
    let (_, b) = n.chat(body).await;
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
}
