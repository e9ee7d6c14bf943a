//! The measures themselves: the runtime and the reference called
//! directly (prefill and decode), and the neuron over HTTP (first-turn and
//! follow-up time to first token).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{BenchArgs, Figures};
use crate::model::resolve::{Resolved, Sources, resolve};
use crate::model::roots::ModelRoots;
use crate::model::{LoadedModel, gguf, safetensors};
use crate::node::Neuron;
use crate::settings::Settings;

/// English text repeated to build prompts of a given length.
const PARAGRAPH: &str = "The lighthouse keeper climbed the spiral stairs every evening, \
    counting the steps as his father had taught him, and lit the great lamp that warned \
    the fishing boats away from the rocks. Storms came often in the autumn, and he kept \
    a log of every ship that passed, the direction of the wind, and the height of the waves. ";

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Exactly `n` tokens of English text.
fn prompt_ids(tokenizer: &tokenizers::Tokenizer, n: usize) -> Result<Vec<u32>> {
    let mut text = String::new();
    loop {
        text.push_str(PARAGRAPH);
        let ids = tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| anyhow::anyhow!("tokenize: {e}"))?
            .get_ids()
            .to_vec();
        if ids.len() >= n {
            return Ok(ids[..n].to_vec());
        }
    }
}

fn load(source: &str) -> Result<LoadedModel> {
    let progress = |_: u64, _: u64| {};
    let sources = Sources::anywhere().map_err(anyhow::Error::msg)?;
    Ok(match resolve(source, &sources, &progress)? {
        Resolved::Gguf(p) => gguf::load(&p, &Device::Cpu, None, &progress)?,
        Resolved::HfDir(p) => safetensors::load(&p, &Device::Cpu, None, &progress)?,
    })
}

fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?)
}

/// The runtime, called directly: prefill from an empty cache, then greedy
/// decode.
pub async fn runtime(args: &BenchArgs, _path: &std::path::Path) -> Result<Figures> {
    let args = args.clone();
    tokio::task::spawn_blocking(move || -> Result<Figures> {
        let m = load(&args.source)?;
        let ids = prompt_ids(&m.tokenizer, args.prompt_tokens)?;
        let model = &m.model;
        // Warm-up: page the weights in, start the threads.
        let mut cache = model.new_cache();
        model.forward(&ids[..16.min(ids.len())], &mut cache)?;
        let (mut prefill, mut decode) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let mut cache = model.new_cache();
            let t = Instant::now();
            let logits = model.forward(&ids, &mut cache)?;
            prefill.push(ids.len() as f64 / t.elapsed().as_secs_f64());
            let mut next = argmax(&logits)?;
            let t = Instant::now();
            for _ in 0..args.tokens {
                next = argmax(&model.forward(&[next], &mut cache)?)?;
            }
            decode.push(args.tokens as f64 / t.elapsed().as_secs_f64());
        }
        let f = Figures {
            prefill_tok_s: median(prefill),
            decode_tok_s: median(decode),
            peak_rss_mb: peak_rss_mb(),
            ..Figures::default()
        };
        println!(
            "runtime:   prefill {:.1} tok/s, decode {:.1} tok/s",
            f.prefill_tok_s.unwrap_or(0.0),
            f.decode_tok_s.unwrap_or(0.0)
        );
        Ok(f)
    })
    .await?
}

/// candle-transformers' `quantized_llama` on the same GGUF.
pub async fn reference(args: &BenchArgs, path: &std::path::Path) -> Result<Figures> {
    if path.extension().is_none_or(|e| e != "gguf") {
        bail!("the reference runs GGUF llama models only");
    }
    let args = args.clone();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<Figures> {
        let tokenizer = load(&args.source)?.tokenizer;
        let mut model = gguf::load_reference(&path, &Device::Cpu)?;
        let ids = prompt_ids(&tokenizer, args.prompt_tokens)?;
        let (mut prefill, mut decode) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let t = Instant::now();
            let input = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let logits = model.forward(&input, 0)?;
            prefill.push(ids.len() as f64 / t.elapsed().as_secs_f64());
            let mut next = argmax(&logits)?;
            let t = Instant::now();
            for i in 0..args.tokens {
                let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
                next = argmax(&model.forward(&input, ids.len() + i)?)?;
            }
            decode.push(args.tokens as f64 / t.elapsed().as_secs_f64());
        }
        let f = Figures {
            prefill_tok_s: median(prefill),
            decode_tok_s: median(decode),
            ..Figures::default()
        };
        println!(
            "reference: prefill {:.1} tok/s, decode {:.1} tok/s",
            f.prefill_tok_s.unwrap_or(0.0),
            f.decode_tok_s.unwrap_or(0.0)
        );
        Ok(f)
    })
    .await?
}

/// Streams one chat completion; returns (TTFT ms, answer text).
async fn chat(client: &reqwest::Client, url: &str, messages: &Value) -> Result<(f64, String)> {
    let (ttft, text, _) = chat_timed(client, url, messages, 32).await?;
    Ok((ttft, text))
}

/// Streams one chat completion of up to `max_tokens`; returns TTFT ms, the
/// answer, and the arrival time of every content delta.
async fn chat_timed(
    client: &reqwest::Client,
    url: &str,
    messages: &Value,
    max_tokens: u32,
) -> Result<(f64, String, Vec<Instant>)> {
    let body = json!({
        "model": "bench", "messages": messages, "temperature": 0,
        "max_tokens": max_tokens, "stream": true,
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
    let mut times = Vec::new();
    let mut text = String::new();
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
            let v: Value = serde_json::from_str(data)?;
            if let Some(piece) = v["choices"][0]["delta"]["content"].as_str()
                && !piece.is_empty()
            {
                let now = Instant::now();
                first.get_or_insert(now);
                times.push(now);
                text.push_str(piece);
            }
        }
    }
    let first = first.context("no tokens streamed")?;
    Ok((
        first.duration_since(start).as_secs_f64() * 1000.0,
        text,
        times,
    ))
}

/// A neuron in this process on loopback, with the bench model loaded.
async fn serve(
    args: &BenchArgs,
    settings: Settings,
    threads: usize,
) -> Result<(reqwest::Client, String)> {
    // In this process, on loopback: no token needed; the operator's own
    // command reads the model wherever it is.
    let neuron = Neuron::start(Settings {
        listen: "127.0.0.1:0".into(),
        threads,
        token: None,
        model_roots: ModelRoots::anywhere(),
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
        .json(&json!({"model": "bench", "source": args.source}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("load failed: {}", r.text().await.unwrap_or_default());
    }
    Ok((client, url))
}

/// The neuron over HTTP, in this process: a ~500-token first turn from a
/// cold cache, then its follow-up turn.
pub async fn http(args: &BenchArgs, settings: Settings, threads: usize) -> Result<Figures> {
    let (client, url) = serve(args, settings, threads).await?;
    let long = PARAGRAPH.repeat(8);
    let (mut first, mut follow) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        // A different opening each run, so the first turn is never cached.
        let user = format!("Story {run}. {long} What did the keeper count?");
        let turn1 = json!([{"role": "user", "content": user}]);
        let (ttft1, answer) = chat(&client, &url, &turn1).await?;
        let turn2 = json!([
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "And what did he log?"}
        ]);
        let (ttft2, _) = chat(&client, &url, &turn2).await?;
        first.push(ttft1);
        follow.push(ttft2);
    }
    let f = Figures {
        first_ttft_ms: median(first),
        followup_ttft_ms: median(follow),
        ..Figures::default()
    };
    println!(
        "HTTP:      first-turn TTFT {:.1} ms, follow-up TTFT {:.1} ms",
        f.first_ttft_ms.unwrap_or(0.0),
        f.followup_ttft_ms.unwrap_or(0.0)
    );
    Ok(f)
}

/// Continuous batching: aggregate decode tok/s of 1, 2, 4 and 8 concurrent
/// greedy streams, each relative to one stream; then the inter-token gaps
/// of 3 running streams while a ~1500-token prompt arrives.
///
/// Decode rate: tokens over the span in which every stream is decoding
/// (from the last stream's first token to the first stream's last), so the
/// other streams' prompts are not counted as decode time. The end-to-end
/// rate (first token of any stream to the last of all, their prefills and
/// the ragged end included) is printed beside it.
pub async fn concurrency(args: &BenchArgs, settings: Settings, threads: usize) -> Result<()> {
    let (client, url) = serve(args, settings, threads).await?;
    let tokens = args.tokens as u32;
    let question = |i: usize| json!([{"role": "user", "content": format!("Tell me story number {i} about a lighthouse keeper.")}]);
    println!();
    println!(
        "| concurrent streams | aggregate decode tok/s | vs 1 stream | end to end tok/s | vs 1 stream |"
    );
    println!("|---|---|---|---|---|");
    let mut single = None;
    let mut single_e2e = None;
    for n in [1usize, 2, 4, 8] {
        let prompts: Vec<Value> = (0..n).map(question).collect();
        let runs =
            futures::future::join_all(prompts.iter().map(|q| chat_timed(&client, &url, q, tokens)))
                .await;
        let mut all: Vec<Vec<Instant>> = Vec::with_capacity(n);
        for r in runs {
            let (_, _, times) = r?;
            if times.len() < 2 {
                bail!("a stream produced fewer than 2 tokens");
            }
            all.push(times);
        }
        // End to end: first token of any stream to the last of all.
        let produced: usize = all.iter().map(|t| t.len() - 1).sum();
        let first = all.iter().filter_map(|t| t.first()).min();
        let last = all.iter().filter_map(|t| t.last()).max();
        let e2e = match (first, last) {
            (Some(a), Some(b)) => produced as f64 / b.duration_since(*a).as_secs_f64().max(1e-9),
            _ => 0.0,
        };
        // Steady state: while every stream decodes.
        let start = all.iter().filter_map(|t| t.first()).max();
        let end = all.iter().filter_map(|t| t.last()).min();
        let rate = match (start, end) {
            (Some(a), Some(b)) if b > a => {
                let inside: usize = all
                    .iter()
                    .map(|t| t.iter().filter(|x| **x > *a && **x <= *b).count())
                    .sum();
                inside as f64 / b.duration_since(*a).as_secs_f64()
            }
            _ => e2e,
        };
        let base = *single.get_or_insert(rate);
        let base_e2e = *single_e2e.get_or_insert(e2e);
        println!(
            "| {n} | {rate:.1} | {:.2}x | {e2e:.1} | {:.2}x |",
            rate / base,
            e2e / base_e2e
        );
    }
    // Three streams decode; a long prompt arrives after 300 ms.
    let prompts: Vec<Value> = (100..103).map(question).collect();
    let streams =
        futures::future::join_all(prompts.iter().map(|q| chat_timed(&client, &url, q, tokens)));
    let intruder = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let long = json!([{"role": "user", "content": PARAGRAPH.repeat(24)}]);
        chat_timed(&client, &url, &long, 1).await
    };
    let (runs, long) = tokio::join!(streams, intruder);
    let (long_ttft, _, _) = long?;
    let mut gaps: Vec<f64> = Vec::new();
    for r in runs {
        let (_, _, times) = r?;
        gaps.extend(
            times
                .windows(2)
                .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0),
        );
    }
    gaps.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!();
    println!(
        "3 streams + a ~1500-token prompt arriving: inter-token p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (the long prompt's TTFT {:.0} ms)",
        pct(0.5),
        pct(0.99),
        gaps.last().copied().unwrap_or(0.0),
        long_ttft
    );
    Ok(())
}
