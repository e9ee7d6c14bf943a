//! A tiny model whose greedy output is fixed by its weights: written in the
//! real Hugging Face format (config.json, tokenizer.json,
//! tokenizer_config.json with a chat template, model.safetensors), so the
//! neuron loads, templates, tokenizes and decodes it as any other model.
//!
//! How: a byte-level BPE tokenizer whose chosen output pieces are added
//! tokens; one-hot embeddings (hidden size = vocabulary size); one llama
//! block whose output projections are zero, so the residual stream carries
//! the one-hot vector through unchanged; an lm_head that maps each token of
//! a chain to the next one. So the answer depends on the prompt's last
//! token only: a chain starts at a token a prompt ends with (ChatML's and
//! Llama 3's generation prompts end in `\n`; Mistral's prompts in `[/INST]`
//! after a user turn, `[/TOOL_RESULTS]` after a tool's result), and its
//! last piece leads to the end-of-generation token.
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

/// Qwen3's handling of past thinking: an assistant turn's
/// `reasoning_content` is written back (in `<think>`) only after the last
/// user query, i.e. within the current tool loop; earlier turns lose it.
/// Tool calls and results as Qwen3 writes them.
pub const QWEN3_HISTORY: &str = "{% set ns = namespace(last_query=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.last_query = loop.index0 %}{% endif %}{% endfor %}{% for m in messages %}{% if m.role == 'assistant' %}<|im_start|>assistant\n{% if m.reasoning_content is string and loop.index0 > ns.last_query %}<think>\n{{ m.reasoning_content.strip('\\n') }}\n</think>\n\n{% endif %}{{ m.content or '' }}{% for c in m.tool_calls or [] %}<tool_call>\n{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A template that opens the thought itself (DeepSeek-R1, Qwen3 thinking
/// 2507): the output starts mid-thought.
pub const OPENS_THINK: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}";

/// Llama 3.2-style: header tokens, tools described in a system turn, calls
/// written back as `{"name", "parameters"}` JSON, results in `ipython`
/// turns.
pub const LLAMA3: &str = "{{ bos_token }}{% if tools %}<|start_header_id|>system<|end_header_id|>\n\nYou can call these functions:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}Respond with {\"name\": function name, \"parameters\": dictionary of arguments}.<|eot_id|>{% endif %}{% for m in messages %}{% if m.role == 'assistant' and m.tool_calls %}<|start_header_id|>assistant<|end_header_id|>\n\n{% for c in m.tool_calls %}{\"name\": \"{{ c.function.name }}\", \"parameters\": {{ c.function.arguments | tojson }}}{% endfor %}<|eot_id|>{% elif m.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% else %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endif %}{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// Llama 3's special tokens; `<|eot_id|>` ends a turn.
pub const LLAMA3_SPECIALS: [&str; 6] = [
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
];

/// Mistral v3-style (Mistral 7B Instruct v0.3): no generation prompt, tools
/// before the last user turn, calls as a `[TOOL_CALLS]` JSON array, results
/// in `[TOOL_RESULTS]`; like the real one it refuses call ids that are not
/// nine characters.
pub const MISTRAL: &str = "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}{% if loop.last and tools %}[AVAILABLE_TOOLS] {{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}[INST] {{ m.content }}[/INST]{% elif m.role == 'assistant' %}{% if m.tool_calls %}[TOOL_CALLS] [{% for c in m.tool_calls %}{% if c.id is not string or c.id | length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}, \"id\": \"{{ c.id }}\"}{% if not loop.last %}, {% endif %}{% endfor %}]{{ eos_token }}{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% elif m.role == 'tool' %}{% if m.tool_call_id is not string or m.tool_call_id | length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}[TOOL_RESULTS] {\"content\": {{ m.content | tojson }}, \"call_id\": \"{{ m.tool_call_id }}\"}[/TOOL_RESULTS]{% else %}{{ raise_exception('Only user, assistant and tool roles are supported!') }}{% endif %}{% endfor %}";

/// Mistral's special tokens (v3); `</s>` ends generation.
pub const MISTRAL_SPECIALS: [&str; 9] = [
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
];

/// Markers Qwen's vocabulary has as tokens of their own (not special).
pub const QWEN_MARKERS: [&str; 4] = ["<think>", "</think>", "<tool_call>", "</tool_call>"];

/// A chain model: its template, vocabulary and chains.
#[derive(Clone, Copy)]
pub struct ChainModel<'a> {
    pub template: &'a str,
    /// Special tokens (never decoded into text), among them `bos` and `eos`.
    pub specials: &'a [&'a str],
    /// Tokens of their own that are not special.
    pub markers: &'a [&'a str],
    pub bos: Option<&'a str>,
    /// Ends generation; every chain's last piece leads to it.
    pub eos: &'a str,
    /// Each chain: the token a prompt ends with (one byte, or a token
    /// above), then the pieces answered after it, each one token.
    pub chains: &'a [(&'a str, &'a [&'a str])],
    /// lm_head's weight from a token to the next. The final norm scales
    /// the one-hot vector to √vocab, so 1.0 makes the next token's logit
    /// about 16 against 0: even sampling at temperature 1 follows the
    /// chain. 0.1 leaves sampling nearly uniform, greedy still exact.
    pub weight: f32,
}

/// The weight that makes a chain model's answer its chain, sampled or not.
pub const SHARP: f32 = 1.0;

impl<'a> ChainModel<'a> {
    /// A ChatML model with Qwen's markers, answering its `chains` sharply;
    /// `template` is its chat template.
    pub fn chatml(template: &'a str, chains: &'a [(&'a str, &'a [&'a str])]) -> Self {
        ChainModel {
            template,
            specials: &[IM_START, IM_END],
            markers: &QWEN_MARKERS,
            bos: None,
            eos: IM_END,
            chains,
            weight: SHARP,
        }
    }
}

/// Writes a ChatML model with Qwen's markers into `dir` that answers
/// `pieces` (each one token), then ends, whatever it is asked; `template`
/// is its chat template.
pub fn write_chain(dir: &Path, template: &str, pieces: &[&str]) {
    write_model(dir, &ChainModel::chatml(template, &[("\n", pieces)]));
}

/// Writes `model` into `dir`.
pub fn write_model(dir: &Path, model: &ChainModel) {
    let byte_chars = byte_chars();
    // Ids: 0..256 bytes, then the special tokens, markers and pieces.
    let mut added: Vec<(String, bool)> = Vec::new();
    let mut add = |text: &str, special: bool| {
        if !added.iter().any(|(c, _)| c == text) {
            added.push((text.to_string(), special));
        }
    };
    for s in model.specials {
        add(s, true);
    }
    for m in model.markers {
        add(m, false);
    }
    for (start, pieces) in model.chains {
        // Single bytes are tokens already.
        for t in std::iter::once(start).chain(pieces.iter()) {
            if t.len() > 1 {
                add(t, false);
            }
        }
    }
    let id_of = |text: &str| -> usize {
        if let [byte] = text.as_bytes() {
            return usize::from(*byte);
        }
        256 + added
            .iter()
            .position(|(c, _)| c == text)
            .unwrap_or_else(|| panic!("{text:?} is not a token"))
    };
    let vocab_size = 256 + added.len();
    let mut next: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (start, pieces) in model.chains {
        let mut chain = vec![id_of(start)];
        chain.extend(pieces.iter().map(|p| id_of(p)));
        chain.push(id_of(model.eos));
        for pair in chain.windows(2) {
            let before = next.insert(pair[0], pair[1]);
            assert!(
                before.is_none_or(|b| b == pair[1]),
                "token {} leads to two tokens: a chain visits each token once",
                pair[0]
            );
        }
    }

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
        &json!({"bos_token": model.bos, "eos_token": model.eos, "chat_template": model.template}),
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
    for (from, to) in next {
        head[to * v + from] = model.weight;
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
