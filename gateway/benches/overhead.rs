//! Gateway overhead: the same fixed-rate load straight to an upstream and
//! through `cortex serve`, in one run, so the gateway — not inference — is
//! what the difference measures.
//!
//!     cargo bench -p cortex-gateway --bench overhead
//!
//! The upstream is a fake neuron inside this harness: it answers
//! `/v1/chat/completions` at once with a fixed completion and serves
//! `/health`, `/discovery`, `/models` and `/events` (device stats every
//! second) like a neuron, so the gateway takes it as a node with the model
//! loaded. The gateway is the real `cortex` binary, a separate process.
//!
//! Phases: warm-up, then at a fixed rate (open loop: requests are sent on
//! schedule whether or not earlier ones finished) direct and via the gateway,
//! then closed-loop saturation with a fixed concurrency for the throughput
//! ceiling. Knobs (environment): CORTEX_BENCH_RATE (req/s, default 2000),
//! CORTEX_BENCH_SECS (per fixed-rate phase, default 3),
//! CORTEX_BENCH_CONCURRENCY (saturation, default 32).

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use cortex_common::event::{EVENT_SCHEMA_VERSION, Event, EventKind};
use cortex_common::neuron_api::{
    DeviceInfo, Discovery, Health, ModelInfo, ModelState, ModelsResponse,
};
use cortex_common::status::FleetStatus;
use cortex_process::{Child, spawn_server};
use hdrhistogram::Histogram;

const MODEL: &str = "bench-echo";
const TOKEN: &str = "bench-admin-token";
const MIB: u64 = 1 << 20;

/// What the fake neuron answers to every chat completion.
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench-echo","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
const REQUEST: &str =
    r#"{"model":"bench-echo","messages":[{"role":"user","content":"ping"}],"max_tokens":1}"#;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument means "not me".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"overhead".contains(a.as_str()))
    {
        return Ok(());
    }
    let rate = env_num("CORTEX_BENCH_RATE", 2000).max(1);
    let secs = env_num("CORTEX_BENCH_SECS", 3).max(1);
    let concurrency = env_num("CORTEX_BENCH_CONCURRENCY", 32).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(rate, secs, concurrency))
}

async fn run(rate: u64, secs: u64, concurrency: usize) -> anyhow::Result<()> {
    let upstream = start_upstream().await?;
    let dir = tempfile::tempdir().context("temp dir")?;
    let gateway = start_gateway(&upstream, dir.path()).await?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .build()?;
    let direct = format!("{upstream}/v1/chat/completions");
    let via = format!("{}/v1/chat/completions", gateway.url);

    println!(
        "gateway overhead: {rate} req/s for {secs} s per path, loopback, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Warm-up: connections, caches, the gateway's lazy state.
    fixed_rate(&client, &direct, rate, 1).await?;
    fixed_rate(&client, &via, rate, 1).await?;

    let d = fixed_rate(&client, &direct, rate, secs).await?;
    let g = fixed_rate(&client, &via, rate, secs).await?;
    let ds = saturate(&client, &direct, concurrency, Duration::from_secs(2)).await?;
    let gs = saturate(&client, &via, concurrency, Duration::from_secs(2)).await?;

    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}",
        "path", "p50 ms", "p90 ms", "p99 ms", "max ms", "achieved/s", "errors"
    );
    for (name, r) in [("direct", &d), ("gateway", &g)] {
        println!(
            "{:<10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>11.0} {:>7}",
            name,
            ms(r.hist.value_at_quantile(0.50)),
            ms(r.hist.value_at_quantile(0.90)),
            ms(r.hist.value_at_quantile(0.99)),
            ms(r.hist.max()),
            r.throughput,
            r.errors
        );
    }
    println!();
    println!(
        "added latency at {rate} req/s: p50 {:+.3} ms, p99 {:+.3} ms",
        ms(g.hist.value_at_quantile(0.50)) - ms(d.hist.value_at_quantile(0.50)),
        ms(g.hist.value_at_quantile(0.99)) - ms(d.hist.value_at_quantile(0.99)),
    );
    println!(
        "throughput ratio at {rate} req/s (gateway / direct): {:.3}",
        g.throughput / d.throughput
    );
    println!(
        "saturation, {concurrency} concurrent: direct {:.0} req/s, gateway {:.0} req/s, ratio {:.3}",
        ds,
        gs,
        gs / ds
    );
    let mut gw = gateway;
    tokio::task::spawn_blocking(move || gw.stop(Duration::from_secs(7))).await?;
    if d.errors + g.errors > 0 {
        bail!("{} requests failed", d.errors + g.errors);
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

struct Phase {
    /// Latency, microseconds, from the moment a request was sent.
    hist: Histogram<u64>,
    /// Completed requests per second, first send to last answer.
    throughput: f64,
    errors: u64,
}

/// Open loop: request i is sent at start + i/rate, each on its own task.
async fn fixed_rate(
    client: &reqwest::Client,
    url: &str,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Phase> {
    let n = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let client = client.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = one(&client, &url).await;
            (sent.elapsed(), ok)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (took, ok) = t.await?;
        if ok {
            hist.record(took.as_micros().max(1) as u64)?;
        } else {
            errors += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Phase {
        throughput: hist.len() as f64 / elapsed,
        hist,
        errors,
    })
}

/// Closed loop: `concurrency` workers each send the next request as soon as
/// the last is answered; completed requests per second.
async fn saturate(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    length: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, done, stop) =
            (client.clone(), url.to_string(), done.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if one(&client, &url).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn one(client: &reqwest::Client, url: &str) -> bool {
    match client
        .post(url)
        .header("content-type", "application/json")
        .body(REQUEST)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

// ---- the fake neuron ----

fn device() -> DeviceInfo {
    DeviceInfo {
        id: "cpu".into(),
        kind: "cpu".into(),
        name: "bench".into(),
        memory_total_bytes: 1024 * MIB,
        memory_used_bytes: MIB,
    }
}

fn model() -> ModelInfo {
    ModelInfo {
        memory_bytes: MIB,
        ..ModelInfo::bare(MODEL, MODEL, ModelState::Loaded, "cpu")
    }
}

async fn start_upstream() -> anyhow::Result<String> {
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|| async { ([("content-type", "application/json")], COMPLETION) }),
        )
        .route(
            "/health",
            get(|| async {
                axum::Json(Health {
                    status: "ok".into(),
                    name: "bench".into(),
                    version: "0".into(),
                    uptime_secs: 0,
                })
            }),
        )
        .route(
            "/discovery",
            get(|| async {
                axum::Json(Discovery {
                    name: "bench".into(),
                    host: "localhost".into(),
                    os: std::env::consts::OS.into(),
                    cpu_model: "bench".into(),
                    cpu_cores: 1,
                    memory_total_bytes: 1024 * MIB,
                    memory_free_bytes: 1023 * MIB,
                    devices: vec![device()],
                    candle_features: vec!["cpu".into()],
                })
            }),
        )
        .route(
            "/models",
            get(|| async {
                axum::Json(ModelsResponse {
                    models: vec![model()],
                })
            }),
        )
        .route("/events", get(events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// Device stats at once and every second, as a neuron sends them (the
/// gateway takes a silent stream for a hung node).
async fn events() -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = async_stream::stream! {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut seq = 0;
        loop {
            tick.tick().await;
            seq += 1;
            let ev = Event {
                v: EVENT_SCHEMA_VERSION,
                seq,
                ts_ms: cortex_common::now_ms(),
                node: None,
                kind: EventKind::DeviceStats { devices: vec![device()], models: vec![model()] },
            };
            let data = serde_json::to_string(&ev).unwrap_or_default();
            yield Ok(SseEvent::default().id(seq.to_string()).data(data));
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ---- the gateway ----

async fn start_gateway(upstream: &str, dir: &std::path::Path) -> anyhow::Result<Child> {
    std::fs::write(
        dir.join("cortex.toml"),
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [auth]\nadmin_token = \"{TOKEN}\"\n\
             [[neurons]]\nname = \"bench\"\nendpoint = \"{upstream}\"\n"
        ),
    )?;
    std::fs::write(
        dir.join("models.toml"),
        format!("[[models]]\nid = \"{MODEL}\"\nsource = \"{MODEL}\"\nmemory_mb = 1\n"),
    )?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cortex"));
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("cortex.toml"))
        .env("RUST_LOG", "warn")
        .env_remove("CORTEX_ADMIN_TOKEN")
        .env_remove("CORTEX_API_KEYS")
        .env_remove("CORTEX_LISTEN")
        .env_remove("CORTEX_METRICS_LISTEN")
        .stderr(Stdio::null());
    let child = tokio::task::spawn_blocking(move || {
        spawn_server("cortex", cmd, Duration::from_secs(30), false)
    })
    .await??;
    // Ready when the gateway sees the fake node with the model loaded.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: Option<FleetStatus> = match http
            .get(format!("{}/admin/status", child.url))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let ready = status.is_some_and(|s| {
            s.nodes_up == 1
                && s.models
                    .iter()
                    .any(|m| m.id == MODEL && !m.placements.is_empty())
        });
        if ready {
            return Ok(child);
        }
        if Instant::now() > deadline {
            bail!("the gateway did not take the fake neuron as a node within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
