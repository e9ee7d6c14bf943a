//! Fault injection against real processes on loopback: neurons killed and
//! restarted under load, a neuron that accepts connections and never
//! answers, hundreds of slow-loris connections, an event subscriber that
//! never reads, and generated bad bodies on every route.
//!
//! The tests of this file run one at a time (they measure latency and
//! memory, which a neighbour's load would blur); the file takes about two
//! minutes on a 2-core machine. `CHAOS_SECS` lengthens the kill loop and
//! `CHAOS_SEED` replays one (see `scripts/soak`).

mod support;

use std::time::{Duration, Instant};

use cortex_common::launch::Child;
use cortex_common::status::NodeState;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use support::*;

/// One test at a time (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NODES: [&str; 3] = ["alpha", "bravo", "charlie"];
/// The gateway's queue timeout in these tests: the longest a request may
/// wait for a replica.
const QUEUE_TIMEOUT_S: u64 = 20;
/// A request of the kill loop that has not ended after this hangs: its
/// queue timeout, plus generous time for six tokens on a busy machine.
const REQUEST_DEADLINE: Duration = Duration::from_secs(QUEUE_TIMEOUT_S + 25);
/// The gateway's resident memory never exceeds this in these tests. It
/// idles at about 15 MiB; its buffers are bounded (4096 replayed events of
/// at most 16 MiB, 256 waiting requests per model), so 160 MiB means
/// something grows that should not.
const RSS_BOUND_KIB: u64 = 160 * 1024;

/// A tiny deterministic generator (xorshift64*), so a failing run can be
/// replayed with its seed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        println!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// How one client request ended.
#[derive(Debug)]
enum Outcome {
    /// A complete answer.
    Complete,
    /// A clean error: an envelope with this status, or (streams) an error
    /// event followed by `[DONE]`.
    Failed { status: u16, message: String },
    /// Anything else: a stream cut short, an answer that is not one.
    Dirty(String),
    /// Still not ended at [`REQUEST_DEADLINE`].
    Hung,
}

#[derive(Debug)]
struct Run {
    started: Instant,
    ended: Instant,
    stream: bool,
    outcome: Outcome,
}

/// One chat request, its whole answer read and judged.
async fn one_request(http: &reqwest::Client, url: &str, stream: bool, max_tokens: u32) -> Outcome {
    let sent = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body("smol", max_tokens, stream))
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Outcome::Dirty(format!("no response: {e}")),
    };
    let status = resp.status().as_u16();
    if status != 200 || !stream {
        let body: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => return Outcome::Dirty(format!("{status} with a body that is not JSON: {e}")),
        };
        if status != 200 {
            return match body["error"]["message"].as_str() {
                Some(m) => Outcome::Failed {
                    status,
                    message: m.to_string(),
                },
                None => Outcome::Dirty(format!("{status} without an error envelope: {body}")),
            };
        }
        let choice = &body["choices"][0];
        return if choice["message"]["content"].is_string() && choice["finish_reason"].is_string() {
            Outcome::Complete
        } else {
            Outcome::Dirty(format!("200 that is not a completion: {body}"))
        };
    }
    let mut events = resp.bytes_stream().eventsource();
    let mut data = Vec::new();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(ev) => data.push(ev.data),
            Err(e) => return Outcome::Dirty(format!("stream broke after {data:?}: {e}")),
        }
    }
    if data.last().map(String::as_str) != Some("[DONE]") {
        return Outcome::Dirty(format!("stream ended without [DONE]: {data:?}"));
    }
    let frames: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or(Value::Null))
        .collect();
    if let Some(pos) = frames.iter().position(|f| f.get("error").is_some()) {
        return if pos + 1 == frames.len() {
            match frames[pos]["error"]["message"].as_str() {
                Some(m) => Outcome::Failed {
                    status,
                    message: m.to_string(),
                },
                None => Outcome::Dirty(format!("an error event without a message: {data:?}")),
            }
        } else {
            Outcome::Dirty(format!("frames after the error event: {data:?}"))
        };
    }
    if frames.iter().any(Value::is_null) {
        return Outcome::Dirty(format!("a frame that is not JSON: {data:?}"));
    }
    if frames
        .iter()
        .any(|f| f["choices"][0]["finish_reason"].is_string())
    {
        Outcome::Complete
    } else {
        Outcome::Dirty(format!("stream without a finish_reason: {data:?}"))
    }
}

/// The chaos loop: `clients` clients sending requests back to back (three
/// of four streamed) for `secs`, while every `every` a random neuron is
/// killed (SIGKILL) and restarted at the same address. Returns the runs,
/// the kills (node, instant) and the gateway's peak RSS in KiB.
async fn chaos_loop(
    gw: &Gateway,
    nodes: &mut [Child],
    clients: usize,
    run_for: Duration,
    every: Duration,
    rng: &mut Rng,
) -> (Vec<Run>, Vec<(String, Instant)>, u64) {
    let end = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = gw.http.clone();
        let url = gw.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut runs = Vec::new();
            let mut i = 0usize;
            while Instant::now() < end {
                let stream = !(c + i).is_multiple_of(4);
                let max_tokens = 4 + (i % 5) as u32;
                i += 1;
                let started = Instant::now();
                let outcome = tokio::time::timeout(
                    REQUEST_DEADLINE,
                    one_request(&http, &url, stream, max_tokens),
                )
                .await
                .unwrap_or(Outcome::Hung);
                runs.push(Run {
                    started,
                    ended: Instant::now(),
                    stream,
                    outcome,
                });
            }
            runs
        }));
    }
    let pid = gw.child.pid();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            peak = peak.max(rss_kib(pid));
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_rx.changed() => return peak.max(rss_kib(pid)),
            }
        }
    });

    let mut kills = Vec::new();
    // Stop killing early enough that the last restart is over before the
    // clients stop: the end of the run is served by a whole fleet.
    while Instant::now() + every + Duration::from_secs(2) < end {
        tokio::time::sleep(every / 2 + Duration::from_millis(rng.below(every.as_millis() as u64)))
            .await;
        let i = rng.below(nodes.len() as u64) as usize;
        kills.push((nodes[i].name.clone(), Instant::now()));
        restart(nodes, i).await;
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.extend(t.await.expect("a client task"));
    }
    let _ = stop_tx.send(true);
    let peak = sampler.await.expect("the RSS sampler");
    (runs, kills, peak)
}

/// SIGKILLs node `i` and starts a new neuron at the same address.
async fn restart(nodes: &mut [Child], i: usize) {
    nodes[i].kill();
    let name = nodes[i].name.clone();
    let listen = nodes[i].url.trim_start_matches("http://").to_string();
    nodes[i] = tokio::task::spawn_blocking(move || {
        neuron_with(
            &name,
            250,
            &listen,
            &["--max-queue", "64", "--threads", "1"],
        )
    })
    .await
    .expect("restarting a neuron");
}

/// Checks the runs of a chaos loop; returns (complete, failed).
fn judge(runs: &[Run], kills: &[(String, Instant)]) -> (usize, usize) {
    let mut complete = 0;
    let mut failed = 0;
    for r in runs {
        match &r.outcome {
            Outcome::Complete => complete += 1,
            Outcome::Failed { status, message } => {
                failed += 1;
                // The node the request failed on is named in the message;
                // it must have been killed while the request ran.
                let killed_meanwhile = NODES.iter().any(|n| {
                    message.contains(n)
                        && kills
                            .iter()
                            .any(|(k, at)| k == n && *at >= r.started && *at <= r.ended)
                });
                assert!(
                    killed_meanwhile,
                    "a request failed ({status}: {message}) though no node it names was killed \
                     during its {:?} (stream: {})",
                    r.ended - r.started,
                    r.stream
                );
            }
            Outcome::Dirty(why) => panic!("a request did not end cleanly: {why}"),
            Outcome::Hung => panic!(
                "a request (stream: {}) was still running after {REQUEST_DEADLINE:?}",
                r.stream
            ),
        }
    }
    (complete, failed)
}

/// Starts three neurons and a gateway over them with `smol` loaded on
/// each. The neurons run one thread each: three share the machine's cores.
async fn chaos_fleet() -> (Vec<Child>, Gateway) {
    let flags = ["--max-queue", "64", "--threads", "1"];
    let nodes: Vec<Child> = NODES
        .iter()
        .map(|n| neuron_with(n, 250, "127.0.0.1:0", &flags))
        .collect();
    let refs: Vec<&Child> = nodes.iter().collect();
    let gw = gateway(
        &refs,
        "lru",
        &models_toml(&[("smol", "max_replicas = 3")]),
        &format!("queue_timeout = \"{QUEUE_TIMEOUT_S}s\""),
    )
    .await;
    for n in NODES {
        let (code, body) = gw
            .admin("/admin/models/load", json!({"model": "smol", "node": n}))
            .await;
        assert_eq!(code, 200, "loading smol on {n}: {body}");
    }
    (nodes, gw)
}

/// After the chaos: every node rejoins within 2 s of its restart and
/// serves (a load through the gateway, then a chat straight to it).
async fn every_node_rejoins_and_serves(gw: &Gateway, nodes: &mut [Child], rng: &mut Rng) {
    let i = rng.below(nodes.len() as u64) as usize;
    restart(nodes, i).await;
    let restarted = Instant::now();
    gw.wait_status("every node up again", Duration::from_secs(2), |s| {
        s.nodes_up == NODES.len() as u32
    })
    .await;
    println!(
        "{} rejoined {:?} after its restart",
        nodes[i].name,
        restarted.elapsed()
    );
    for n in nodes.iter() {
        let (code, body) = gw
            .admin(
                "/admin/models/load",
                json!({"model": "smol", "node": n.name}),
            )
            .await;
        assert_eq!(
            code, 200,
            "loading smol on {} after the chaos: {body}",
            n.name
        );
        let resp = gw
            .http
            .post(format!("{}/v1/chat/completions", n.url))
            .json(&chat_body("smol", 4, false))
            .send()
            .await
            .expect("a chat straight to the neuron");
        assert_eq!(resp.status(), 200, "{} serves after the chaos", n.name);
    }
}

/// Three neurons, 16 clients streaming back to back, a random neuron
/// SIGKILLed and restarted at its address every ~3 s: every request ends
/// complete or with a clean error, none hangs, only requests on a node
/// killed meanwhile fail, every node rejoins within 2 s and serves, and
/// the gateway's memory stays under [`RSS_BOUND_KIB`].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_neurons_under_load_fails_only_their_requests() {
    let _serial = SERIAL.lock().await;
    let secs: u64 = std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut rng = Rng::seeded();
    let (mut nodes, gw) = chaos_fleet().await;
    let rss_before = rss_kib(gw.child.pid());
    let (runs, kills, peak) = chaos_loop(
        &gw,
        &mut nodes,
        16,
        Duration::from_secs(secs),
        Duration::from_secs(3),
        &mut rng,
    )
    .await;
    let (complete, failed) = judge(&runs, &kills);
    println!(
        "{} requests over {secs} s with {} kills: {complete} complete, {failed} failed cleanly; \
         gateway RSS {} KiB before, peak {peak} KiB",
        runs.len(),
        kills.len(),
        rss_before
    );
    assert!(
        kills.len() >= 4,
        "too few kills to prove anything: {kills:?}"
    );
    assert!(
        complete >= 50,
        "only {complete} of {} requests completed",
        runs.len()
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "the gateway reached {peak} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    every_node_rejoins_and_serves(&gw, &mut nodes, &mut rng).await;
    let metrics = gw.metrics().await;
    let retries = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cortex_retries_total "))
        .unwrap_or("?");
    println!("retries counted: {retries}");
}

/// A TCP listener that accepts connections and never answers: a hung
/// host, as far as a client can tell. Connections are kept open.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the black hole");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    format!("http://{addr}")
}

/// Sends `n` chats at once (every other one streamed) and checks each is
/// answered in full within `deadline`; returns the slowest.
async fn all_answered(gw: &Gateway, n: usize, deadline: Duration) -> Duration {
    let mut tasks = Vec::new();
    for i in 0..n {
        let http = gw.http.clone();
        let url = gw.url.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(deadline, one_request(&http, &url, i % 2 == 0, 4))
                .await
                .unwrap_or(Outcome::Hung);
            (outcome, started.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    for t in tasks {
        let (outcome, took) = t.await.expect("a request task");
        assert!(
            matches!(outcome, Outcome::Complete),
            "every request is answered: {outcome:?} after {took:?}"
        );
        slowest = slowest.max(took);
    }
    slowest
}

/// A "neuron" that accepts TCP and never answers is shown down, with a
/// reason, and routed around; then a real neuron that stops answering
/// (SIGSTOP: its kernel still accepts connections) is marked down once its
/// event stream has been silent for 10 s, and the requests it held are
/// answered elsewhere instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_neuron_that_never_answers_is_routed_around() {
    let _serial = SERIAL.lock().await;
    let hole = black_hole().await;
    let a = neuron("a", 250);
    let b = neuron("b", 250);
    let entries = [
        NodeEntry {
            name: "hole",
            endpoint: &hole,
            extra: "",
        },
        NodeEntry {
            name: "a",
            endpoint: &a.url,
            extra: "",
        },
        NodeEntry {
            name: "b",
            endpoint: &b.url,
            extra: "",
        },
    ];
    let gw = gateway_entries(
        &entries,
        "lru",
        &models_toml(&[("smol", "max_replicas = 2")]),
        &format!("queue_timeout = \"{QUEUE_TIMEOUT_S}s\""),
        "",
    );
    gw.wait_status("a and b up", Duration::from_secs(20), |s| s.nodes_up == 2)
        .await;
    for n in ["a", "b"] {
        let (code, body) = gw
            .admin("/admin/models/load", json!({"model": "smol", "node": n}))
            .await;
        assert_eq!(code, 200, "{body}");
    }
    // The hole is down, and says why once its handshake has timed out.
    let s = gw
        .wait_status("the hole's reason", Duration::from_secs(15), |s| {
            s.nodes.iter().any(|n| {
                n.name == "hole" && n.reason.as_deref().is_some_and(|r| r.contains("no answer"))
            })
        })
        .await;
    assert_eq!(node_state(&s, "hole"), Some(NodeState::Down));
    // A load aimed at it is refused promptly, with an envelope.
    let asked = Instant::now();
    let (code, body) = gw
        .admin(
            "/admin/models/load",
            json!({"model": "smol", "node": "hole"}),
        )
        .await;
    assert!(code >= 400, "{code} {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // Requests go to a and b and are quick: the warm answer of 4 tokens
    // takes well under a second; 10 s allows for a loaded machine.
    let slowest = all_answered(&gw, 8, Duration::from_secs(10)).await;
    println!("with a black-hole node: slowest of 8 requests {slowest:?}");

    // Now b hangs with requests on it.
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &b.pid().to_string()])
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill {sig} b");
    };
    stop("-STOP");
    let stopped = Instant::now();
    // Its events go silent: down after 10 s of silence; each request waits
    // at most that, then is retried on a (deadline: 10 s + 2 s settling +
    // the answer, with slack for a loaded machine).
    let slowest = all_answered(&gw, 8, Duration::from_secs(30)).await;
    let s = gw
        .wait_status("b marked down", Duration::from_secs(15), |s| {
            node_state(s, "b") == Some(NodeState::Down)
        })
        .await;
    println!(
        "b stopped: slowest of 8 requests {slowest:?}, marked down after {:?}: {:?}",
        stopped.elapsed(),
        s.nodes.iter().find(|n| n.name == "b").map(|n| &n.reason)
    );
    stop("-CONT");
    gw.wait_status("b back", Duration::from_secs(20), |s| s.nodes_up == 2)
        .await;
}
