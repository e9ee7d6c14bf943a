//! Loading a Hugging Face model directory (`config.json`, `tokenizer.json`,
//! `tokenizer_config.json`, `*.safetensors`) into the neuron's runtime:
//! dense llama, qwen2 and qwen3, optionally quantized in situ (`quant`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::{LoadError, LoadedModel, ProgressFn};
use crate::engine::chat_template::ChatTemplate;
use crate::engine::sampling;
use crate::runtime::embedding::Embedding;
use crate::runtime::linear::{Linear, dense_dtype};
use crate::runtime::weights::{self, Names, TensorSource};
use crate::runtime::{ModelConfig, QuantType};

/// Tokens that end a turn in the common chat formats.
const END_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "</s>",
];

/// The weight dtype used on a device: f32 on CPU (fast kernels everywhere),
/// half precision on GPUs.
pub fn dtype_for(device: &Device) -> DType {
    dense_dtype(device)
}

/// Tensors read from safetensors shards, handed out by name.
struct DenseSource {
    tensors: HashMap<String, Tensor>,
    device: Device,
}

impl DenseSource {
    fn take(&mut self, name: &str) -> candle_core::Result<Tensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("tensor `{name}` is missing")))
    }
}

impl TensorSource for DenseSource {
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn linear(&mut self, name: &str, bias: Option<&str>) -> candle_core::Result<Linear> {
        let w = self.take(name)?.to_dtype(dense_dtype(&self.device))?;
        let b = match bias {
            Some(b) => Some(self.take(b)?.to_dtype(DType::F32)?),
            None => None,
        };
        Linear::dense(w, b)
    }

    fn vector(&mut self, name: &str) -> candle_core::Result<Tensor> {
        self.take(name)?.to_dtype(DType::F32)
    }

    fn embedding(
        &mut self,
        name: &str,
        tied: bool,
    ) -> candle_core::Result<(Embedding, Option<Linear>)> {
        let t = self.take(name)?.to_dtype(dense_dtype(&self.device))?;
        weights::dense_embedding(t, tied)
    }
}

/// The index of a sharded checkpoint: which shard holds each tensor.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The shard files `index` names, sorted, each once. A name that is not a
/// plain relative path (`..`, absolute) is refused: it could lead out of the
/// model's directory.
pub fn index_shards(index: &Path) -> Result<Vec<String>, LoadError> {
    let unsupported = |detail: String| LoadError::Unsupported {
        path: index.display().to_string(),
        detail,
    };
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| unsupported("no `weight_map` object".into()))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(unsupported("`weight_map` names no shard".into()));
    }
    if let Some(bad) = files.iter().find(|f| {
        !Path::new(f)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    }) {
        return Err(unsupported(format!(
            "shard `{bad}` is not a relative path inside the model directory"
        )));
    }
    Ok(files)
}

/// The weight files: the shards the index names when there is one, else
/// every `*.safetensors` in the directory.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let files: Vec<PathBuf> = index_shards(&index)?.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(LoadError::NotFound {
                source_spec: dir.display().to_string(),
                detail: format!(
                    "{} names {}, which is missing",
                    INDEX_FILE,
                    missing.display()
                ),
            });
        }
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| LoadError::Io {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NotFound {
            source_spec: dir.display().to_string(),
            detail: "no *.safetensors files in the directory".into(),
        });
    }
    Ok(files)
}

/// Bytes the weights will take once converted to the device's dtype.
pub fn estimate_bytes(dir: &Path, device: &Device) -> Result<u64, LoadError> {
    let on_disk: u64 = weight_files(dir)?
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let disk_dtype = read_json(&dir.join("config.json")).ok().and_then(|c| {
        c.get("torch_dtype")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let factor = match (disk_dtype.as_deref(), dtype_for(device)) {
        (Some("bfloat16" | "float16"), DType::F32) => 2,
        _ => 1,
    };
    Ok(on_disk * factor)
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::Unsupported {
        path: path.display().to_string(),
        detail: format!("invalid JSON: {e}"),
    })
}

/// `"x"` or `{"content": "x"}` (tokenizer_config.json special tokens).
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// `1` or `[1, 2]`.
fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// End-of-generation ids: the declared eos, extra ids, and the well-known
/// end-of-turn tokens the vocabulary has.
pub fn end_token_ids(tokenizer: &Tokenizer, eos: Option<u32>, extra: &[u32]) -> Vec<u32> {
    let mut ids: Vec<u32> = eos.into_iter().chain(extra.iter().copied()).collect();
    ids.extend(END_TOKENS.iter().filter_map(|t| tokenizer.token_to_id(t)));
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub fn load(
    dir: &Path,
    device: &Device,
    quant: Option<QuantType>,
    progress: ProgressFn,
) -> Result<LoadedModel, LoadError> {
    let shown = dir.display().to_string();
    let config_json = read_json(&dir.join("config.json"))?;
    let arch = config_json
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let config = ModelConfig::from_hf_json(&config_json).map_err(|e| LoadError::Unsupported {
        path: shown.clone(),
        detail: e.0,
    })?;

    // Tokenizer and template first: they fail fast and cheaply.
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| LoadError::Tokenizer {
        path: tok_path.display().to_string(),
        detail: e.to_string(),
    })?;
    let tok_config = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
    let template_src = match tok_config.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| named.first())
            .and_then(|t| t.get("template").and_then(Value::as_str))
            .map(str::to_string),
        _ => None,
    };
    let bos = token_text(tok_config.get("bos_token")).unwrap_or_default();
    let eos = token_text(tok_config.get("eos_token")).unwrap_or_default();
    let template = ChatTemplate::new(template_src.as_deref(), &bos, &eos).map_err(|detail| {
        LoadError::Template {
            path: shown.clone(),
            detail,
        }
    })?;
    let generation = read_json(&dir.join("generation_config.json")).unwrap_or(Value::Null);
    let mut extra = token_ids(config_json.get("eos_token_id"));
    extra.extend(token_ids(generation.get("eos_token_id")));
    let eos_id = tokenizer.token_to_id(&eos);
    let eos_token_ids = end_token_ids(&tokenizer, eos_id, &extra);

    // Weights: read every shard with progress, then build the model.
    let files = weight_files(dir)?;
    let total: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let dtype = dtype_for(device);
    let candle = |source| LoadError::Candle {
        path: shown.clone(),
        source,
    };
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut done = 0u64;
    for file in &files {
        let bytes = read_with_progress(file, done, total, progress)?;
        done += bytes.len() as u64;
        let loaded = candle_core::safetensors::load_buffer(&bytes, device).map_err(candle)?;
        tensors.extend(loaded);
    }
    progress(total, total);
    let dense_bytes: u64 = tensors
        .values()
        .map(|t| (t.elem_count() * dtype.size_in_bytes()) as u64)
        .sum();
    let mut src = DenseSource {
        tensors,
        device: device.clone(),
    };
    let model = weights::build(
        config,
        &mut src,
        Names::HuggingFace,
        quant,
        device,
        &|_, _| {},
    )
    .map_err(|e| match e {
        candle_core::Error::Msg(m) if m.starts_with("tensor `") => LoadError::Unsupported {
            path: shown.clone(),
            detail: format!("not a {arch} checkpoint: {m}"),
        },
        other => candle(other),
    })?;
    Ok(LoadedModel::new(
        arch,
        model,
        tokenizer,
        template,
        eos_token_ids,
        quant,
        quant.map(|_| dense_bytes),
    )
    .with_sampling(sampling::from_generation_config(&generation)))
}

fn read_with_progress(
    path: &Path,
    offset: u64,
    total: u64,
    progress: ProgressFn,
) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let io = |source| LoadError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::with_capacity(file.metadata().map(|m| m.len() as usize).unwrap_or(0));
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        progress(offset + out.len() as u64, total);
    }
    Ok(out)
}
