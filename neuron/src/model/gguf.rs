//! Loading a GGUF file: llama, qwen2 and qwen3 architectures through
//! candle-transformers' quantized models, with the tokenizer and chat
//! template taken from the file's metadata (or a `tokenizer.json` beside it).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use candle_core::quantized::gguf_file;
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use tokenizers::Tokenizer;

use super::arch::{QuantizedLlama, QuantizedQwen2, QuantizedQwen3};
use super::progress::ProgressReader;
use super::{CausalLm, LoadError, LoadedModel, ProgressFn, gguf_tokenizer};
use crate::engine::chat_template::ChatTemplate;

/// Bytes the model will occupy: the tensor data of the file.
pub fn estimate_bytes(path: &Path) -> Result<u64, LoadError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })
}

pub fn load(path: &Path, device: &Device, progress: ProgressFn) -> Result<LoadedModel, LoadError> {
    let shown = path.display().to_string();
    let io = |source| LoadError::Io {
        path: shown.clone(),
        source,
    };
    let candle = |source| LoadError::Candle {
        path: shown.clone(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut reader = ProgressReader::new(BufReader::with_capacity(1 << 20, file), total, progress);
    let content = gguf_file::Content::read(&mut reader).map_err(candle)?;
    let md = &content.metadata;
    let text = |key: &str| md.get(key).and_then(|v| v.to_string().ok()).cloned();
    let architecture = text("general.architecture").unwrap_or_default();
    let context_length = md
        .get(&format!("{architecture}.context_length"))
        .and_then(|v| v.to_u32().ok())
        .unwrap_or(2048) as usize;
    let template_src = text("tokenizer.chat_template");
    let memory_bytes = total.saturating_sub(content.tensor_data_offset);

    let tok = match sidecar_tokenizer(path) {
        Some(t) => t.map_err(|detail| LoadError::Tokenizer {
            path: shown.clone(),
            detail,
        })?,
        None => gguf_tokenizer::from_metadata(md).map_err(|detail| LoadError::Tokenizer {
            path: shown.clone(),
            detail,
        })?,
    };

    let model: Box<dyn CausalLm> = match architecture.as_str() {
        "llama" => Box::new(QuantizedLlama(
            quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)
                .map_err(candle)?,
        )),
        "qwen2" => Box::new(QuantizedQwen2(
            quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, device)
                .map_err(candle)?,
        )),
        "qwen3" => Box::new(QuantizedQwen3(
            quantized_qwen3::ModelWeights::from_gguf(content, &mut reader, device)
                .map_err(candle)?,
        )),
        other => {
            return Err(LoadError::Unsupported {
                path: shown,
                detail: format!(
                    "architecture `{other}` is not supported (supported: llama, qwen2, qwen3)"
                ),
            });
        }
    };
    reader.finish();

    let bos = tok.bos_token.clone().unwrap_or_default();
    let eos = tok.eos_token.clone().unwrap_or_default();
    let template = ChatTemplate::new(template_src.as_deref(), &bos, &eos).map_err(|detail| {
        LoadError::Template {
            path: shown.clone(),
            detail,
        }
    })?;
    let eos_token_ids = super::safetensors::end_token_ids(&tok.tokenizer, tok.eos_token_id, &[]);
    Ok(LoadedModel {
        architecture,
        model,
        tokenizer: Arc::new(tok.tokenizer),
        template: Arc::new(template),
        eos_token_ids,
        context_length,
        memory_bytes,
        device: device.clone(),
    })
}

/// A `tokenizer.json` next to the GGUF file wins over the metadata.
fn sidecar_tokenizer(path: &Path) -> Option<Result<gguf_tokenizer::GgufTokenizer, String>> {
    let candidate = path.parent()?.join("tokenizer.json");
    if !candidate.is_file() {
        return None;
    }
    Some(
        Tokenizer::from_file(&candidate)
            .map(|tokenizer| gguf_tokenizer::GgufTokenizer {
                tokenizer,
                bos_token: None,
                eos_token: None,
                eos_token_id: None,
            })
            .map_err(|e| format!("{}: {e}", candidate.display())),
    )
}
