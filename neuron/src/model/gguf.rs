//! Loading a GGUF file into the neuron's runtime: llama, qwen2 and qwen3,
//! hyperparameters from the metadata (full context length), quantized
//! weights kept quantized, the tokenizer and chat template from the
//! metadata (or a `tokenizer.json` beside the file).

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use neuron_kernels::{QMatrix, QuantType};
use tokenizers::Tokenizer;

use super::progress::ProgressReader;
use super::{LoadError, LoadedModel, ProgressFn, gguf_tokenizer};
use crate::engine::chat_template::ChatTemplate;
use crate::engine::sampling;
use crate::runtime::ModelConfig;
use crate::runtime::embedding::Embedding;
use crate::runtime::linear::{Linear, quant_of};
use crate::runtime::weights::{self, Names, TensorSource};

/// Bytes the model will occupy: the tensor data of the file.
pub fn estimate_bytes(path: &Path) -> Result<u64, LoadError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })
}

struct GgufSource<'r, R> {
    content: gguf_file::Content,
    reader: &'r mut R,
    device: Device,
}

impl<R: Read + Seek> GgufSource<'_, R> {
    fn qtensor(&mut self, name: &str) -> candle_core::Result<candle_core::quantized::QTensor> {
        // Quantized weights are read to the CPU first; the runtime places
        // them (our kernels on CPU, candle's QMatMul on a GPU).
        self.content.tensor(self.reader, name, &Device::Cpu)
    }
}

impl<R: Read + Seek> TensorSource for GgufSource<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn linear(&mut self, name: &str, bias: Option<&str>) -> candle_core::Result<Linear> {
        let bias = match bias {
            Some(b) => Some(self.vector(b)?),
            None => None,
        };
        let device = self.device.clone();
        let q = match device {
            Device::Cpu => self.qtensor(name)?,
            _ => self.content.tensor(self.reader, name, &device)?,
        };
        Linear::from_qtensor(q, bias, &device)
    }

    fn vector(&mut self, name: &str) -> candle_core::Result<Tensor> {
        let q = self.qtensor(name)?;
        q.dequantize(&Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?
            .to_device(&self.device)
    }

    fn embedding(
        &mut self,
        name: &str,
        tied: bool,
    ) -> candle_core::Result<(Embedding, Option<Linear>)> {
        let q = self.qtensor(name)?;
        match (quant_of(q.dtype()), &self.device) {
            (Some(qt), Device::Cpu) => {
                let (rows, cols) = q.shape().dims2()?;
                let m = QMatrix::new(qt, rows, cols, q.data()?.into_owned())
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                Ok(weights::quant_embedding(Arc::new(m), tied))
            }
            _ => {
                let dense = q
                    .dequantize(&Device::Cpu)?
                    .to_dtype(candle_core::DType::F32)?
                    .to_device(&self.device)?;
                let head = if tied {
                    let device = self.device.clone();
                    let on_device = match device {
                        Device::Cpu => q,
                        _ => self.content.tensor(self.reader, name, &device)?,
                    };
                    Some(Linear::from_qtensor(on_device, None, &device)?)
                } else {
                    None
                };
                Ok((Embedding::Dense(dense), head))
            }
        }
    }
}

/// The first linear-layer weight that is already quantized, if any: `quant`
/// cannot apply to such a file.
fn already_quantized(content: &gguf_file::Content) -> Option<(String, QuantType)> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let info = &content.tensor_infos[name];
        let linear =
            name.starts_with("blk.") && name.ends_with(".weight") && info.shape.rank() == 2;
        quant_of(info.ggml_dtype)
            .filter(|_| linear)
            .map(|q| (name.clone(), q))
    })
}

pub fn load(
    path: &Path,
    device: &Device,
    quant: Option<QuantType>,
    progress: ProgressFn,
) -> Result<LoadedModel, LoadError> {
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
    if let Some(q) = quant
        && let Some((tensor, have)) = already_quantized(&content)
    {
        return Err(LoadError::QuantNotApplicable {
            path: shown,
            detail: format!(
                "`quant = {}` applies to dense weights, but this GGUF is already quantized \
                 ({tensor} is {}); load it without `quant`",
                q.name(),
                have.name()
            ),
        });
    }
    let md = &content.metadata;
    let text = |key: &str| md.get(key).and_then(|v| v.to_string().ok()).cloned();
    let get_u = |key: &str| {
        md.get(key).and_then(|v| {
            v.to_u64()
                .ok()
                .or_else(|| v.to_u32().ok().map(u64::from))
                .or_else(|| v.to_i32().ok().and_then(|n| u64::try_from(n).ok()))
        })
    };
    let get_f = |key: &str| {
        md.get(key)
            .and_then(|v| v.to_f32().ok().map(f64::from).or_else(|| v.to_f64().ok()))
    };
    let architecture = text("general.architecture").unwrap_or_default();
    let has = |n: &str| content.tensor_infos.contains_key(n);
    let vocab_from_embedding = content
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|i| i.shape.dims().first().copied())
        .unwrap_or(0);
    let config = ModelConfig::from_gguf(
        &get_u,
        &get_f,
        &text,
        has("output.weight"),
        has("blk.0.attn_q.bias"),
        has("blk.0.attn_q_norm.weight"),
        vocab_from_embedding,
        content
            .tensor_infos
            .get("blk.0.ffn_gate.weight")
            .and_then(|i| i.shape.dims().first().copied()),
    )
    .map_err(|e| LoadError::Unsupported {
        path: shown.clone(),
        detail: e.0,
    })?;
    let template_src = text("tokenizer.chat_template");
    let published = sampling::from_gguf(&get_f, &get_u);

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
    let bos = tok.bos_token.clone().unwrap_or_default();
    let eos = tok.eos_token.clone().unwrap_or_default();
    let template = ChatTemplate::new(template_src.as_deref(), &bos, &eos).map_err(|detail| {
        LoadError::Template {
            path: shown.clone(),
            detail,
        }
    })?;
    let eos_token_ids = super::safetensors::end_token_ids(&tok.tokenizer, tok.eos_token_id, &[]);

    let model = {
        let mut src = GgufSource {
            content,
            reader: &mut reader,
            device: device.clone(),
        };
        weights::build(config, &mut src, Names::Gguf, quant, device, &|_, _| {}).map_err(candle)?
    };
    reader.finish();
    Ok(LoadedModel::new(
        architecture,
        model,
        tok.tokenizer,
        template,
        eos_token_ids,
        quant,
        None,
    )
    .with_sampling(published))
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

/// Reads a GGUF into candle-transformers' `quantized_llama`: the reference
/// the runtime's greedy output is checked against (tests and `neuron bench`).
pub fn load_reference(
    path: &Path,
    device: &Device,
) -> Result<candle_transformers::models::quantized_llama::ModelWeights, LoadError> {
    let shown = path.display().to_string();
    let mut file = File::open(path).map_err(|source| LoadError::Io {
        path: shown.clone(),
        source,
    })?;
    let candle = |source| LoadError::Candle {
        path: shown.clone(),
        source,
    };
    let content = gguf_file::Content::read(&mut file).map_err(candle)?;
    candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content, &mut file, device,
    )
    .map_err(candle)
}
