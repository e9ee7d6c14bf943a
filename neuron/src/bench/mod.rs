//! `neuron bench`: the runtime's speed beside its references, in one run,
//! on the same file and thread count:
//! - the neuron's runtime, called directly: prefill tok/s of a ~512-token
//!   prompt, greedy decode tok/s over 128 tokens;
//! - candle-transformers' `quantized_llama` on the same GGUF (the
//!   reference the runtime replaced), same measures;
//! - the neuron over HTTP: time to first token of a chat's first turn and
//!   of its follow-up (which the prompt cache should make cheap);
//! - llama.cpp (llama-cpp-python, when a Python with it is given);
//! - with `--concurrency`, continuous batching: aggregate decode tok/s of
//!   1/2/4/8 streams, and running streams' token gaps while a long prompt
//!   is prefilled.
//!
//! Figures are reported as ratios against llama.cpp when it ran.

mod llama_cpp;
mod measure;

use anyhow::{Context, Result};

pub use crate::settings::BenchArgs;
use crate::settings::Settings;

/// One engine's figures; `None` where the engine was not measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    pub first_ttft_ms: Option<f64>,
    pub followup_ttft_ms: Option<f64>,
    pub peak_rss_mb: Option<f64>,
}

pub async fn run(args: BenchArgs, settings: Settings) -> Result<()> {
    let threads = args.threads.unwrap_or(settings.threads);
    neuron_kernels::set_threads(threads);
    let sources = crate::model::resolve::Sources::anywhere().map_err(anyhow::Error::msg)?;
    let source = args.source.clone();
    // Off the runtime: a Hub source may download first.
    let model_path = tokio::task::spawn_blocking(move || {
        crate::model::resolve::resolve(&source, &sources, &|_, _| {})
    })
    .await
    .context("the thread resolving the model stopped")?
    .context("resolving the model")?
    .path()
    .to_path_buf();
    println!(
        "model {} · {} threads · kernels {} · prompt {} tokens · decode {} tokens · {} runs",
        args.source,
        threads,
        neuron_kernels::simd_level(),
        args.prompt_tokens,
        args.tokens,
        args.runs
    );

    let runtime = measure::runtime(&args, &model_path).await?;
    let http = measure::http(&args, settings.clone(), threads).await?;
    let runtime = Figures {
        first_ttft_ms: http.first_ttft_ms,
        followup_ttft_ms: http.followup_ttft_ms,
        ..runtime
    };
    let reference = if args.no_reference {
        None
    } else {
        match measure::reference(&args, &model_path).await {
            Ok(f) => Some(f),
            Err(e) => {
                println!("reference: skipped ({e:#})");
                None
            }
        }
    };
    let llama = match &args.llama_cpp_python {
        Some(python) => match llama_cpp::run(python, &model_path, threads, &args).await {
            Ok(f) => Some(f),
            Err(e) => {
                println!("llama.cpp: skipped ({e:#})");
                None
            }
        },
        None => {
            println!("llama.cpp: not measured (pass --llama-cpp-python PATH)");
            None
        }
    };
    report(&runtime, reference.as_ref(), llama.as_ref());
    if args.concurrency {
        measure::concurrency(&args, settings, threads).await?;
    }
    Ok(())
}

fn cell(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.1} {unit}"))
        .unwrap_or_else(|| "—".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

fn report(runtime: &Figures, reference: Option<&Figures>, llama: Option<&Figures>) {
    let none = Figures::default();
    let reference = reference.unwrap_or(&none);
    let llama = llama.unwrap_or(&none);
    println!();
    println!("| | neuron runtime | candle-transformers | llama.cpp | runtime / llama.cpp |");
    println!("|---|---|---|---|---|");
    type Get = fn(&Figures) -> Option<f64>;
    let rows: [(&str, Get, &str); 5] = [
        ("prefill", |f| f.prefill_tok_s, "tok/s"),
        ("decode", |f| f.decode_tok_s, "tok/s"),
        ("first-turn TTFT", |f| f.first_ttft_ms, "ms"),
        ("follow-up TTFT", |f| f.followup_ttft_ms, "ms"),
        ("peak RSS", |f| f.peak_rss_mb, "MiB"),
    ];
    for (name, get, unit) in rows {
        println!(
            "| {name} | {} | {} | {} | {} |",
            cell(get(runtime), unit),
            cell(get(reference), unit),
            cell(get(llama), unit),
            ratio(get(runtime), get(llama)),
        );
    }
    if let (Some(first), Some(follow)) = (runtime.first_ttft_ms, runtime.followup_ttft_ms) {
        println!(
            "follow-up / first-turn TTFT (neuron): {:.3}",
            follow / first.max(1e-9)
        );
    }
}
