//! `neuron bench`: decode speed and time to first token of the neuron's
//! HTTP path against a bare candle loop on the same weights, in one run,
//! plus peak memory. The ratio is the figure that matters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use cortex_common::openai::ChatMessage;
use futures::StreamExt;
use serde_json::json;

use crate::model::resolve::{Resolved, resolve};
use crate::model::{LoadedModel, gguf, safetensors};
use crate::node::Neuron;
use crate::settings::Settings;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model source (same forms as /models/load).
    #[arg(long, default_value = "embedded")]
    pub source: String,
    /// Tokens to decode per run.
    #[arg(long, default_value_t = 128)]
    pub tokens: usize,
    /// Runs of each path (interleaved); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The user message.
    #[arg(
        long,
        default_value = "Tell me a long story about a lighthouse keeper."
    )]
    pub prompt: String,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    ttft_ms: f64,
    decode_tok_s: f64,
    tokens: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Bare loop: prefill, then greedy argmax decoding, nothing else.
fn bare_run(m: &mut LoadedModel, prompt_ids: &[u32], tokens: usize) -> Result<Sample> {
    m.model.clear_cache();
    let start = Instant::now();
    let input = Tensor::new(prompt_ids, &m.device)?.unsqueeze(0)?;
    let logits = m.model.forward(&input, 0)?;
    let mut next = logits.argmax(0)?.to_scalar::<u32>()?;
    let first = Instant::now();
    let mut produced = 1;
    let mut pos = prompt_ids.len();
    while produced < tokens {
        let input = Tensor::new(&[next], &m.device)?.unsqueeze(0)?;
        let logits = m.model.forward(&input, pos)?;
        next = logits.argmax(0)?.to_scalar::<u32>()?;
        pos += 1;
        produced += 1;
    }
    let end = Instant::now();
    Ok(Sample {
        ttft_ms: first.duration_since(start).as_secs_f64() * 1000.0,
        decode_tok_s: (produced - 1) as f64 / end.duration_since(first).as_secs_f64(),
        tokens: produced,
    })
}

/// HTTP path: a streamed, greedy chat completion against the neuron,
/// timed by the client.
async fn http_run(
    client: &reqwest::Client,
    url: &str,
    prompt: &str,
    tokens: usize,
) -> Result<Sample> {
    let body = json!({
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0, "max_tokens": tokens, "stream": true,
        "stream_options": {"include_usage": true},
    });
    let start = Instant::now();
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "HTTP {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let mut first = None;
    let mut last = start;
    let mut completion = 0usize;
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(at) = buf.find("\n\n") {
            let event: String = buf.drain(..at + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if data == "[DONE]" {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(data)?;
            if v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
            {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                completion = n as usize;
            }
        }
    }
    let first = first.context("no tokens streamed")?;
    Ok(Sample {
        ttft_ms: first.duration_since(start).as_secs_f64() * 1000.0,
        decode_tok_s: (completion.saturating_sub(1)) as f64
            / last.duration_since(first).as_secs_f64().max(1e-9),
        tokens: completion,
    })
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn run(args: BenchArgs, settings: Settings) -> Result<()> {
    let resolved = resolve(&args.source).context("resolving the model")?;
    let device = candle_core::Device::Cpu;
    let progress = |_: u64, _: u64| {};
    let source = args.source.clone();
    let mut bare: LoadedModel = tokio::task::spawn_blocking(move || match &resolved {
        Resolved::Gguf(p) => gguf::load(p, &device, &progress),
        Resolved::HfDir(p) => safetensors::load(p, &device, &progress),
    })
    .await??;
    let loaded_rss = peak_rss_mb();
    let prompt = bare
        .template
        .render(&[ChatMessage::text("user", &args.prompt)], None)?;
    let prompt_ids = bare
        .tokenizer
        .encode(prompt.as_str(), false)
        .map_err(|e| anyhow::anyhow!("tokenize: {e}"))?
        .get_ids()
        .to_vec();

    // The neuron, in this process, on loopback.
    let neuron = Neuron::start(Settings {
        listen: "127.0.0.1:0".into(),
        ..settings
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = crate::api::router(neuron.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let r = client
        .post(format!("{url}/models/load"))
        .json(&json!({"model": "bench", "source": source}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("load failed: {}", r.text().await.unwrap_or_default());
    }

    println!(
        "model {} · prompt {} tokens · {} tokens per run · {} runs each · {} threads",
        args.source,
        prompt_ids.len(),
        args.tokens,
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    // Warm-up of both paths.
    let ids = Arc::new(prompt_ids);
    let mut model = bare;
    let warm = ids.clone();
    model = tokio::task::spawn_blocking(move || -> Result<LoadedModel> {
        bare_run(&mut model, &warm, 8)?;
        Ok(model)
    })
    .await??;
    http_run(&client, &url, &args.prompt, 8).await?;

    let (mut bare_s, mut http_s) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let run_ids = ids.clone();
        let tokens = args.tokens;
        let (m, s) = tokio::task::spawn_blocking(move || -> Result<(LoadedModel, Sample)> {
            let s = bare_run(&mut model, &run_ids, tokens)?;
            Ok((model, s))
        })
        .await??;
        model = m;
        bare_s.push(s);
        http_s.push(http_run(&client, &url, &args.prompt, args.tokens).await?);
    }
    bare = model;
    drop(bare);
    let report = |name: &str, s: &[Sample]| {
        let ttft = median(s.iter().map(|x| x.ttft_ms).collect());
        let tps = median(s.iter().map(|x| x.decode_tok_s).collect());
        let tokens = s.iter().map(|x| x.tokens).min().unwrap_or(0);
        println!("{name:<10} TTFT {ttft:8.1} ms   decode {tps:7.1} tok/s   ({tokens} tokens)");
        (ttft, tps)
    };
    let (bare_ttft, bare_tps) = report("bare loop", &bare_s);
    let (http_ttft, http_tps) = report("HTTP", &http_s);
    println!(
        "ratio HTTP/bare: decode {:.3}  TTFT {:.3} (TTFT includes HTTP, template and tokenization)",
        http_tps / bare_tps,
        http_ttft / bare_ttft
    );
    if let Some(mb) = loaded_rss {
        println!(
            "peak RSS with the model loaded (bare loop, before the neuron starts): {mb:.0} MiB"
        );
    }
    Ok(())
}
