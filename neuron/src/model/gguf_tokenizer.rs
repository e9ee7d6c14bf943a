//! Building a Hugging Face tokenizer from GGUF metadata
//! (`tokenizer.ggml.*`), for byte-level BPE vocabularies (`gpt2` model:
//! SmolLM, Qwen2/3, Llama 3).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Qwen2 / Qwen3 pre-tokenizer split.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3 pre-tokenizer split.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What the tokenizer knows about special tokens.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub eos_token_id: Option<u32>,
}

fn string_array(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let arr = md
        .get(key)
        .ok_or_else(|| format!("`{key}` missing from metadata"))?
        .to_vec()
        .map_err(|e| format!("`{key}`: {e}"))?;
    arr.iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| format!("`{key}` entry: {e}"))
        })
        .collect()
}

fn u32_value(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

pub fn from_metadata(md: &HashMap<String, Value>) -> Result<GgufTokenizer, String> {
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(format!(
            "tokenizer model `{model}` is not supported from GGUF metadata (only byte-level BPE, `gpt2`); \
             put the model's tokenizer.json next to the GGUF file"
        ));
    }
    let tokens = string_array(md, "tokenizer.ggml.tokens")?;
    let merges = string_array(md, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = md
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|arr| arr.iter().map(|v| v.to_i32().unwrap_or(1)).collect())
        .unwrap_or_default();

    let mut vocab = Vocab::default();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), id as u32);
    }
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| m.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| format!("building BPE: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(&pre)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter())
        .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
        .map(|(tok, _)| AddedToken::from(tok.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);

    let token_at = |key: &str| u32_value(md, key).and_then(|id| tokens.get(id as usize).cloned());
    Ok(GgufTokenizer {
        bos_token: token_at("tokenizer.ggml.bos_token_id"),
        eos_token: token_at("tokenizer.ggml.eos_token_id"),
        eos_token_id: u32_value(md, "tokenizer.ggml.eos_token_id"),
        tokenizer,
    })
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, String> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
        let split = Split::new(
            SplitPattern::Regex(pattern.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| format!("pre-tokenizer regex: {e}"))?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])))
    };
    match pre {
        "qwen2" | "qwen3" => split(QWEN2_PATTERN),
        "llama-bpe" | "llama3" => split(LLAMA3_PATTERN),
        "smollm" | "starcoder" => Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ]))),
        _ => Ok(ByteLevel::new(false, true, true).into()),
    }
}
