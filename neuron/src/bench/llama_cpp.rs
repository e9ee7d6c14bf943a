//! The llama.cpp column: runs `neuron/benches/llama_cpp_bench.py` with a
//! Python that has llama-cpp-python, on the same file and threads, and
//! reads its one JSON line.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{BenchArgs, Figures};

pub async fn run(python: &Path, model: &Path, threads: usize, args: &BenchArgs) -> Result<Figures> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("llama_cpp_bench.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .arg("--model")
        .arg(model)
        .args(["--threads", &threads.to_string()])
        .args(["--prompt-tokens", &args.prompt_tokens.to_string()])
        .args(["--decode-tokens", &args.tokens.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .output()
        .await
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} exited with {}: {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the llama.cpp script printed no JSON")?;
    let v: Value = serde_json::from_str(line).context("parsing the llama.cpp JSON")?;
    if let Some(version) = v.get("llama_cpp_version").and_then(Value::as_str) {
        println!("llama.cpp: llama-cpp-python {version}");
    }
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    Ok(Figures {
        prefill_tok_s: f("prefill_tok_s"),
        decode_tok_s: f("decode_tok_s"),
        first_ttft_ms: f("first_turn_ttft_ms"),
        followup_ttft_ms: f("followup_ttft_ms"),
        peak_rss_mb: f("peak_rss_mb"),
    })
}
