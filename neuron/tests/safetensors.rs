//! The Hugging Face directory path: tiny llama and qwen3 models with random
//! weights in the real format (config.json, tokenizer.json,
//! tokenizer_config.json, model.safetensors), generated here by the model
//! code itself, loaded by the real neuron from a directory and from the
//! Hugging Face cache layout.

mod support;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::{llama, qwen3};
use serde_json::{Value, json};
use support::Neuron;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

const SPECIALS: [&str; 2] = ["<|im_start|>", "<|im_end|>"];

/// A byte-level BPE tokenizer over the 256 byte symbols (no merges).
fn write_tokenizer(dir: &Path) -> usize {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    let mut vocab = Vocab::default();
    for (i, c) in alphabet.iter().enumerate() {
        vocab.insert(c.to_string(), i as u32);
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::default()));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    tok.add_special_tokens(&SPECIALS.map(|s| AddedToken::from(s, true)));
    tok.save(dir.join("tokenizer.json"), false).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({
            "bos_token": null,
            "eos_token": {"content": "<|im_end|>"},
            "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        })
        .to_string(),
    )
    .unwrap();
    tok.get_vocab_size(true)
}

fn write_llama(dir: &Path) {
    let vocab = write_tokenizer(dir);
    let config = json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64, "intermediate_size": 128, "vocab_size": vocab,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": false, "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let cfg: llama::LlamaConfig = serde_json::from_value(config).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    llama::Llama::load(vb, &cfg.into_config(false)).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
}

fn write_qwen3(dir: &Path) {
    let vocab = write_tokenizer(dir);
    let config = json!({
        "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
        "vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 16,
        "attention_bias": false, "num_key_value_heads": 2, "max_position_embeddings": 256,
        "sliding_window": null, "max_window_layers": 2, "tie_word_embeddings": true,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "use_sliding_window": false,
        "hidden_act": "silu", "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let cfg: qwen3::Config = serde_json::from_value(config).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    qwen3::ModelForCausalLM::new(&cfg, vb).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
}

async fn generate_greedy(n: &Neuron, model: &str) -> Value {
    let (status, body) = n
        .chat(json!({
            "model": model,
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0, "max_tokens": 6,
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let usage = &body["usage"];
    // "hello" + chat template, one token per byte.
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 10, "{usage}");
    let completion = usage["completion_tokens"].as_u64().unwrap();
    match body["choices"][0]["finish_reason"].as_str() {
        Some("length") => assert_eq!(completion, 6),
        Some("stop") => assert!(completion < 6),
        other => panic!("finish_reason {other:?}"),
    }
    body
}

#[tokio::test]
async fn dense_llama_directory_loads_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path());
    let n = Neuron::start(&[]);
    let loaded = n.load("tiny-llama", dir.path().to_str().unwrap()).await;
    assert!(loaded["memory_bytes"].as_u64().unwrap() > 100_000);
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["architecture"], "llama");
    assert_eq!(models["models"][0]["context_length"], 256);
    let a = generate_greedy(&n, "tiny-llama").await;
    let b = generate_greedy(&n, "tiny-llama").await;
    // Greedy decoding is deterministic and the KV cache is reset between requests.
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
}

#[tokio::test]
async fn qwen3_from_the_hugging_face_cache_layout() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--test--tiny-qwen3");
    let snapshot = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    write_qwen3(&snapshot);
    let n = Neuron::start_with_env(&[], &[("HF_HUB_CACHE", cache.path().to_str().unwrap())]);
    n.load("tiny-qwen3", "test/tiny-qwen3").await;
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["architecture"], "qwen3");
    generate_greedy(&n, "tiny-qwen3").await;
    let chunks = n
        .chat_stream(json!({
            "model": "tiny-qwen3",
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0, "max_tokens": 6,
        }))
        .await;
    assert_eq!(chunks.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn a_broken_directory_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    write_llama(dir.path());
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let n = Neuron::start(&[]);
    let (status, body) = n
        .post(
            "/models/load",
            json!({"model": "broken", "source": dir.path().to_str().unwrap()}),
        )
        .await;
    assert!(status >= 400, "{body}");
    let (_, models) = n.get("/models").await;
    assert_eq!(models["models"][0]["state"], "failed");
    assert!(
        models["models"][0]["error"]
            .as_str()
            .unwrap()
            .contains("model.safetensors")
            || body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid"),
        "{body}"
    );
}
