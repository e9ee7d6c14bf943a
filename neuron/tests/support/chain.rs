//! A tiny model whose greedy output is fixed by its weights: written in the
//! real Hugging Face format (config.json, tokenizer.json,
//! tokenizer_config.json with a chat template, model.safetensors), so the
//! neuron loads, templates, tokenizes and decodes it as any other model.
//!
//! How: a byte-level BPE tokenizer whose chosen output pieces are added
//! tokens; one-hot embeddings (hidden size = vocabulary size); one llama
//! block whose output projections are zero, so the residual stream carries
//! the one-hot vector through unchanged; an lm_head that maps each token of
//! the chain to the next one. The prompt always ends with the template's
//! `\n`, which starts the chain; the last piece leads to `<|im_end|>`.
//!
//! Only `serde_json` and `std`, so the gateway's tests include this file too.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};

pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// A plain ChatML template with a generation prompt.
pub const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Qwen2.5-style Hermes tools: the tool list in a system turn, calls in
/// `<tool_call>` tags.
pub const HERMES: &str = "{% if tools %}<|im_start|>system\n# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools>\nFor each function call, return a json object within <tool_call></tool_call> XML tags.<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Qwen3-style thinking: `enable_thinking: false` writes an empty thought
/// into the prompt.
pub const QWEN3: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}";

/// A template that opens the thought itself (DeepSeek-R1, Qwen3 thinking
/// 2507): the output starts mid-thought.
pub const OPENS_THINK: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}";

/// Markers every chain model knows as tokens of their own, as Qwen's
/// vocabulary does.
const MARKERS: [&str; 4] = ["<think>", "</think>", "<tool_call>", "</tool_call>"];

/// Writes a model into `dir` that answers `pieces` (each one token),
/// then ends, whatever it is asked; `template` is its chat template.
pub fn write_chain(dir: &Path, template: &str, pieces: &[&str]) {
    let byte_chars = byte_chars();
    // Ids: 0..256 bytes, then the special tokens, markers and pieces.
    let mut added: Vec<(String, bool)> = vec![(IM_START.into(), true), (IM_END.into(), true)];
    for m in MARKERS {
        added.push((m.into(), false));
    }
    for p in pieces {
        if !added.iter().any(|(c, _)| c == p) {
            added.push((p.to_string(), false));
        }
    }
    let id_of = |text: &str| -> usize {
        256 + added
            .iter()
            .position(|(c, _)| c == text)
            .unwrap_or_else(|| panic!("{text:?} is not a token"))
    };
    let vocab_size = 256 + added.len();
    let mut chain: Vec<usize> = vec![usize::from(b'\n')];
    chain.extend(pieces.iter().map(|p| id_of(p)));
    chain.push(id_of(IM_END));
    let mut seen = std::collections::HashSet::new();
    assert!(
        chain[..chain.len() - 1].iter().all(|id| seen.insert(*id)),
        "a chain visits each token once"
    );

    let vocab: serde_json::Map<String, Value> = byte_chars
        .iter()
        .enumerate()
        .map(|(b, c)| (c.to_string(), json!(b)))
        .collect();
    let added_tokens: Vec<Value> = added
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            json!({"id": 256 + i, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []},
    });
    write(dir, "tokenizer.json", &tokenizer);
    write(
        dir,
        "tokenizer_config.json",
        &json!({"bos_token": null, "eos_token": IM_END, "chat_template": template}),
    );
    write(
        dir,
        "config.json",
        &json!({
            "model_type": "llama", "architectures": ["LlamaForCausalLM"],
            "hidden_size": vocab_size, "intermediate_size": 2, "vocab_size": vocab_size,
            "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1,
            "head_dim": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "max_position_embeddings": 1024, "tie_word_embeddings": false,
            "torch_dtype": "float32",
        }),
    );

    let v = vocab_size;
    let zeros = |rows: usize, cols: usize| vec![0f32; rows * cols];
    let ones = vec![1f32; v];
    let mut embed = zeros(v, v);
    for i in 0..v {
        embed[i * v + i] = 1.0;
    }
    let mut head = zeros(v, v);
    for pair in chain.windows(2) {
        head[pair[1] * v + pair[0]] = 1.0;
    }
    let l = "model.layers.0";
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, v], embed),
        (format!("{l}.input_layernorm.weight"), vec![v], ones.clone()),
        (
            format!("{l}.self_attn.q_proj.weight"),
            vec![2, v],
            zeros(2, v),
        ),
        (
            format!("{l}.self_attn.k_proj.weight"),
            vec![2, v],
            zeros(2, v),
        ),
        (
            format!("{l}.self_attn.v_proj.weight"),
            vec![2, v],
            zeros(2, v),
        ),
        (
            format!("{l}.self_attn.o_proj.weight"),
            vec![v, 2],
            zeros(v, 2),
        ),
        (
            format!("{l}.post_attention_layernorm.weight"),
            vec![v],
            ones.clone(),
        ),
        (format!("{l}.mlp.gate_proj.weight"), vec![2, v], zeros(2, v)),
        (format!("{l}.mlp.up_proj.weight"), vec![2, v], zeros(2, v)),
        (format!("{l}.mlp.down_proj.weight"), vec![v, 2], zeros(v, 2)),
        ("model.norm.weight".into(), vec![v], ones),
        ("lm_head.weight".into(), vec![v, v], head),
    ];
    write_safetensors(&dir.join("model.safetensors"), &tensors);
}

fn write(dir: &Path, name: &str, value: &Value) {
    std::fs::write(dir.join(name), value.to_string())
        .unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

/// The safetensors format: a little-endian u64 header length, a JSON
/// header of names, dtypes, shapes and byte offsets, then the data.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for x in values {
            data.extend_from_slice(&x.to_le_bytes());
        }
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = Value::Object(header).to_string().into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// GPT-2's byte-level alphabet: the character standing for each byte.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                let c = char::from_u32(next).unwrap_or('?');
                next += 1;
                c
            }
        })
        .collect()
}
