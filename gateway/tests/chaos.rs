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

use cortex_common::status::NodeState;
use cortex_process::Child;
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
        let began = Instant::now();
        let mut printed = 0;
        println!("soak: {:>6} {:>10}", "secs", "rss_kib");
        loop {
            let rss = rss_kib(pid);
            peak = peak.max(rss);
            // One table row every 10 s (scripts/soak collects them).
            let secs = began.elapsed().as_secs();
            if secs >= printed {
                println!("soak: {secs:>6} {rss:>10}");
                printed = secs + 10;
            }
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
        gw.load("smol", Some(n)).await;
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
        gw.load("smol", Some(&n.name)).await;
        let resp = post_chat(&gw.http, &n.url, &chat_body("smol", 4, false)).await;
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
        gw.load("smol", Some(n)).await;
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

/// Opens `n` connections to `addr` that send part of a request's headers,
/// half of them then trickling a byte every 200 ms; each task reports how
/// long after opening the server closed it (EOF, a reset, or a 408).
async fn slow_lorises(addr: &str, n: usize) -> Vec<tokio::task::JoinHandle<Duration>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut conn = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connecting a slow loris");
        tasks.push(tokio::spawn(async move {
            let opened = Instant::now();
            let _ = conn
                .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await;
            let mut buf = [0u8; 256];
            loop {
                let trickle = tokio::time::sleep(Duration::from_millis(200));
                tokio::select! {
                    r = conn.read(&mut buf) => {
                        if let Ok(n) = r
                            && n > 0
                        {
                            assert!(
                                buf.starts_with(b"HTTP/1.1 408"),
                                "{:?}",
                                String::from_utf8_lossy(&buf[..n])
                            );
                        }
                        return opened.elapsed();
                    }
                    () = trickle, if i % 2 == 0 => {
                        if conn.write_all(b"a").await.is_err() {
                            return opened.elapsed();
                        }
                    }
                }
            }
        }));
    }
    tasks
}

/// 200 slow-loris connections to the gateway and 200 to a neuron (header
/// timeouts of 1 s): normal requests keep a modest latency meanwhile, and
/// every slow connection is closed after the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_loris_connections_are_closed_and_others_served() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let a = neuron_conf(
        dir.path(),
        "a",
        250,
        "127.0.0.1:0",
        "header_read_timeout = \"1s\"\n",
    );
    let gw = gateway(
        &[&a],
        "lru",
        &models_toml(&[("smol", "")]),
        "header_read_timeout = \"1s\"",
    )
    .await;
    gw.warm("smol").await;

    let mut lorises = slow_lorises(gw.url.trim_start_matches("http://"), 200).await;
    lorises.extend(slow_lorises(a.url.trim_start_matches("http://"), 200).await);

    // Each on a new connection: a pooled one idles past the 1 s timeout.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        for url in [&gw.url, &a.url] {
            let asked = Instant::now();
            let resp = fresh.get(format!("{url}/health")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            slowest = slowest.max(asked.elapsed());
        }
    }
    let asked = Instant::now();
    let resp = post_chat(&fresh, &gw.url, &chat_body("smol", 2, false)).await;
    assert_eq!(resp.status(), 200);
    let chat = asked.elapsed();
    // A health check takes about a millisecond; 500 ms leaves room for a
    // loaded 2-core machine while still catching a server that queues
    // normal clients behind the slow ones.
    assert!(
        slowest < Duration::from_millis(500),
        "health checks slowed to {slowest:?} by the slow lorises"
    );
    assert!(
        chat < Duration::from_secs(5),
        "a 2-token chat took {chat:?}"
    );
    let mut closed = Vec::new();
    for l in lorises {
        closed.push(
            tokio::time::timeout(Duration::from_secs(15), l)
                .await
                .expect("every slow connection is closed")
                .expect("a loris task"),
        );
    }
    let first = closed.iter().min().copied().unwrap_or_default();
    let last = closed.iter().max().copied().unwrap_or_default();
    println!(
        "400 slow lorises closed after {first:?}..{last:?}; slowest health check {slowest:?}, chat {chat:?}"
    );
    // Not before the timeout (minus timer slack), and within a few of them.
    assert!(
        first >= Duration::from_millis(900),
        "closed early: {first:?}"
    );
    assert!(last < Duration::from_secs(6), "closed late: {last:?}");
}

/// An `/admin/events` subscriber that never reads does not make the
/// gateway buffer for it: memory stays bounded while 50 000 events flow
/// (pins and unpins), and another subscriber receives them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_subscriber_that_never_reads_costs_bounded_memory() {
    use tokio::io::AsyncWriteExt;
    let _serial = SERIAL.lock().await;
    const WRITERS: usize = 8;
    const EVENTS: usize = 50_000;
    let ids: Vec<String> = (0..WRITERS).map(|i| format!("m{i}")).collect();
    let entries: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), "")).collect();
    let gw = gateway(&[], "lru", &models_toml(&entries), "").await;
    let pid = gw.child.pid();

    let mut stuck = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    stuck
        .write_all(
            format!(
                "GET /admin/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut live = gw.events(None).await;
    let start_seq = live.next().await.seq;
    let rss_before = rss_kib(pid);

    let mut writers = Vec::new();
    for id in ids.clone() {
        let http = gw.http.clone();
        let url = gw.url.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EVENTS / WRITERS {
                let path = if i % 2 == 0 { "pin" } else { "unpin" };
                let resp = http
                    .post(format!("{url}/admin/models/{path}"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"model": id}))
                    .send()
                    .await
                    .expect("a pin call");
                assert_eq!(resp.status(), 200);
            }
        }));
    }
    let reader = tokio::spawn(async move {
        let mut n = 0usize;
        let mut last = start_seq;
        while last < start_seq + EVENTS as u64 {
            let e = live.next().await;
            last = e.seq;
            n += 1;
        }
        n
    });
    let mut peak = rss_before;
    for w in writers {
        while !w.is_finished() {
            peak = peak.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.await.expect("a writer");
    }
    let received = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the live subscriber catches up")
        .expect("the reader");
    peak = peak.max(rss_kib(pid));
    println!(
        "{EVENTS} events: live subscriber got {received}; gateway RSS {rss_before} KiB before, peak {peak} KiB"
    );
    // The live reader may skip only what the replay buffer no longer holds
    // (it then gets a snapshot); reading as fast as it can, it misses little.
    assert!(received >= EVENTS / 2, "the live subscriber got {received}");
    // The replay buffer holds 4096 small events (about 1 MiB); 48 MiB of
    // growth would mean the stuck subscriber's backlog is kept.
    assert!(
        peak < rss_before + 48 * 1024,
        "the gateway grew from {rss_before} to {peak} KiB"
    );
    // Still answering (no nodes here, so /health would say 503).
    let asked = Instant::now();
    let s = gw.status().await;
    assert!(s.nodes.is_empty());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    drop(stuck);
}

/// Every route of the client and admin APIs, with a valid body to mutate.
fn routes() -> Vec<(&'static str, &'static str, Value)> {
    let messages = json!([{"role": "user", "content": "hi"}]);
    vec![
        (
            "POST",
            "/v1/chat/completions",
            json!({"model": "smol", "messages": messages, "max_tokens": 2}),
        ),
        (
            "POST",
            "/v1/messages",
            json!({"model": "smol", "messages": messages, "max_tokens": 2}),
        ),
        (
            "POST",
            "/v1/messages/count_tokens",
            json!({"model": "smol", "messages": messages}),
        ),
        (
            "POST",
            "/v1/responses",
            json!({"model": "smol", "input": "hi", "max_output_tokens": 2}),
        ),
        (
            "POST",
            "/v1/completions",
            json!({"model": "smol", "prompt": "hi", "max_tokens": 2}),
        ),
        (
            "POST",
            "/admin/models/load",
            json!({"model": "smol", "node": "a"}),
        ),
        (
            "POST",
            "/admin/models/unload",
            json!({"model": "smol", "node": "a"}),
        ),
        ("POST", "/admin/models/evict", json!({"model": "smol"})),
        ("POST", "/admin/models/pin", json!({"model": "smol"})),
        ("POST", "/admin/models/unpin", json!({"model": "smol"})),
        ("GET", "/v1/models", json!({})),
        ("GET", "/health", json!({})),
        ("GET", "/admin/status", json!({})),
        ("POST", "/no/such/route", json!({})),
    ]
}

/// Keys the routes read, for mutations that set one to a wrong value.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "n",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "input",
    "prompt",
    "system",
    "node",
    "max_output_tokens",
    "max_completion_tokens",
    "stream_options",
    "seed",
    "logprobs",
    "top_k",
    "content",
    "role",
];

fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        Just(Value::from("<|im_start|>system")),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                proptest::sample::select(KEYS).prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A bad body: raw bytes, any JSON, or the route's valid body with one
/// key removed or set to anything (also inside its first message).
#[derive(Debug, Clone)]
enum BadBody {
    Bytes(Vec<u8>),
    Json(Value),
    Remove(usize),
    Set(&'static str, Value),
    SetInMessage(&'static str, Value),
}

fn bad_body() -> impl proptest::strategy::Strategy<Value = (BadBody, bool)> {
    use proptest::prelude::*;
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(BadBody::Bytes),
        any_json().prop_map(BadBody::Json),
        (0usize..4).prop_map(BadBody::Remove),
        (proptest::sample::select(KEYS), any_json()).prop_map(|(k, v)| BadBody::Set(k, v)),
        (proptest::sample::select(KEYS), any_json()).prop_map(|(k, v)| BadBody::SetInMessage(k, v)),
    ];
    (body, any::<bool>())
}

fn render(base: &Value, bad: &BadBody) -> Vec<u8> {
    let mut v = base.clone();
    match bad {
        BadBody::Bytes(b) => return b.clone(),
        BadBody::Json(j) => v = j.clone(),
        BadBody::Remove(i) => {
            if let Some(o) = v.as_object_mut()
                && let Some(k) = o.keys().nth(i % o.len().max(1)).cloned()
            {
                o.remove(&k);
            }
        }
        BadBody::Set(k, x) => v[*k] = x.clone(),
        BadBody::SetInMessage(k, x) => {
            if let Some(m) = v.get_mut("messages").and_then(|m| m.get_mut(0)) {
                m[*k] = x.clone();
            }
        }
    }
    serde_json::to_vec(&v).unwrap()
}

/// Generated bad bodies on every route of a live gateway: never a 5xx,
/// never a crash, and every refusal is a JSON error envelope. (The neuron
/// caps answers at 4 tokens, so a mutation that stays valid is cheap.)
#[test]
fn bad_bodies_on_every_route_get_an_envelope() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let _serial = SERIAL.blocking_lock();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = neuron_conf(
        dir.path(),
        "a",
        250,
        "127.0.0.1:0",
        "max_tokens_limit = 4\n",
    );
    let mut gw = rt.block_on(gateway(&[&a], "lru", &models_toml(&[("smol", "")]), ""));
    let cases = std::env::var("CHAOS_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let total = std::sync::atomic::AtomicUsize::new(0);
    for (method, path, base) in routes() {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&bad_body(), |(bad, typed)| {
            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = render(&base, &bad);
            let (status, text) = rt.block_on(async {
                let mut req = gw
                    .http
                    .request(method.parse().unwrap(), format!("{}{path}", gw.url))
                    .bearer_auth(TOKEN)
                    .body(body);
                if typed {
                    req = req.header("content-type", "application/json");
                }
                let resp = tokio::time::timeout(Duration::from_secs(60), req.send())
                    .await
                    .map_err(|_| TestCaseError::fail("no answer within 60 s"))?
                    .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
                let status = resp.status().as_u16();
                let text = tokio::time::timeout(Duration::from_secs(60), resp.text())
                    .await
                    .map_err(|_| TestCaseError::fail("the body did not end within 60 s"))?
                    .map_err(|e| TestCaseError::fail(format!("the body broke: {e}")))?;
                Ok::<_, TestCaseError>((status, text))
            })?;
            proptest::prop_assert!(status < 500, "{method} {path}: {status} {text}");
            if status >= 400 {
                let v: Value = serde_json::from_str(&text).map_err(|e| {
                    TestCaseError::fail(format!("{method} {path}: {status} not JSON ({e}): {text}"))
                })?;
                proptest::prop_assert!(
                    v["error"]["message"].is_string(),
                    "{method} {path}: {status} without an envelope: {text}"
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{method} {path}: {e}");
        }
    }
    println!(
        "{} generated bodies answered without a 5xx",
        total.into_inner()
    );
    assert!(
        gw.child.process.try_wait().unwrap().is_none(),
        "the gateway is still running"
    );
    let health = rt.block_on(async {
        gw.http
            .get(format!("{}/health", gw.url))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(health, 200);
}
