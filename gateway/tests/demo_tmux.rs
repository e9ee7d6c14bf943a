//! The console in a real terminal: `cortex-console` runs in a tmux pane
//! against a headless demo fleet; the test reads the screen with
//! `capture-pane`, presses keys with `send-keys` (filter, load, pin, unload
//! with confirmation, the requests screen, quit) and checks each outcome on
//! the screen and in `/admin/status` — and that a streaming request sent
//! meanwhile appears on the requests screen, moves on and finishes — then
//! that the terminal is given back (alternate screen left, shell prompt
//! back).
//!
//! Needs tmux (scripts/test-deps installs it) and the cortex-console binary
//! next to the test binary or named by CORTEX_CONSOLE_BIN.

mod demo_fleet;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cortex_common::status::{FleetStatus, PlacementState};
use cortex_process::sibling_binary;
use futures::StreamExt;
use serde_json::json;
use support::FleetAdmin;

const MODEL: &str = "smollm2-scratch";
const PROMPT: &str = "tmux-test$";

struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// A private tmux server with one 160x48 pane running a plain shell.
    fn start() -> Tmux {
        let dir = tempfile::tempdir().expect("temp dir");
        let t = Tmux {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        };
        let ok = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "48",
                "-s",
                "console",
            ])
            .arg(format!("env PS1='{PROMPT} ' sh"))
            .status()
            .unwrap_or_else(|e| {
                panic!("tmux is not available ({e}); install it (scripts/test-deps)")
            });
        assert!(ok.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        c
    }

    fn output(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("tmux runs");
        assert!(out.status.success(), "tmux {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.output(&["capture-pane", "-p", "-t", "console"])
    }

    fn display(&self, format: &str) -> String {
        self.output(&["display-message", "-p", "-t", "console", format])
            .trim()
            .to_string()
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        self.output(&["send-keys", "-t", "console", "-l", text]);
    }

    /// Presses named keys (`Enter`, `Escape`, `q`…).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        self.output(&args);
    }

    /// Polls the screen until `pred` holds; panics with the screen.
    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for the screen to show {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The models pane's row of `id` (exact id match), if on screen.
fn model_row(screen: &str, id: &str) -> Option<String> {
    let mut in_models = false;
    for line in screen.lines() {
        if line.contains("2 models") {
            in_models = true;
            continue;
        }
        if in_models {
            if line.starts_with('┗') || line.starts_with('└') {
                return None;
            }
            if line.split_whitespace().any(|w| w == id) {
                return Some(line.to_string());
            }
        }
    }
    None
}

fn row_has(screen: &str, id: &str, what: &str) -> bool {
    model_row(screen, id).is_some_and(|r| r.contains(what))
}

/// The state the requests screen shows for the one request on `model`.
fn request_state(screen: &str, model: &str) -> Option<&'static str> {
    let row = screen
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == model))?;
    [
        "routed",
        "prefill",
        "generating",
        "done",
        "client gone",
        "failed",
    ]
    .into_iter()
    .find(|state| row.contains(state))
}

fn placements(s: &FleetStatus, id: &str) -> Vec<PlacementState> {
    s.models
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.placements.iter().map(|p| p.state).collect())
        .unwrap_or_default()
}

fn pinned(s: &FleetStatus, id: &str) -> bool {
    s.models.iter().any(|m| m.id == id && m.pinned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_tmux_loads_pins_unloads_follows_a_request_and_quits() {
    let console = sibling_binary("cortex-console", "CORTEX_CONSOLE_BIN").unwrap_or_else(|| {
        panic!("cortex-console was not found next to the test binary; build it (cargo build -p cortex-console) or set CORTEX_CONSOLE_BIN")
    });
    let demo = demo_fleet::start();
    let tmux = Tmux::start();
    tmux.wait_screen("the shell prompt", |s| s.contains(PROMPT));
    tmux.type_text(&format!(
        "CORTEX_ADMIN_TOKEN={} {} --gateway {}",
        demo_fleet::TOKEN,
        console.display(),
        demo.url
    ));
    tmux.keys(&["Enter"]);

    // Connected, the fleet drawn: every model listed, smollm2 pinned.
    let screen = tmux.wait_screen("the connected fleet", |s| {
        s.contains("connected") && model_row(s, MODEL).is_some() && row_has(s, "smollm2", "⚑")
    });
    assert!(
        row_has(&screen, MODEL, "cold"),
        "{MODEL} starts cold:\n{screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "the console draws on the alternate screen"
    );

    // Models pane, filter down to the one model, load it (auto placement).
    tmux.keys(&["2", "/"]);
    tmux.type_text("scratch");
    tmux.keys(&["Enter", "l"]);
    tmux.wait_screen("the load dialog", |s| {
        s.contains(&format!("load {MODEL} on"))
    });
    tmux.keys(&["Enter"]);
    demo.wait_status("the model loaded", Duration::from_secs(30), |s| {
        placements(s, MODEL).contains(&PlacementState::Loaded)
    })
    .await;
    tmux.wait_screen("the model loaded", |s| row_has(s, MODEL, "loaded"));

    // Pin it.
    tmux.keys(&["p"]);
    demo.wait_status("the model pinned", Duration::from_secs(10), |s| {
        pinned(s, MODEL)
    })
    .await;
    tmux.wait_screen("the pin marker", |s| row_has(s, MODEL, "⚑"));

    // Unload asks first; `n` cancels and nothing changes.
    tmux.keys(&["u"]);
    tmux.wait_screen("the confirmation", |s| {
        s.contains(&format!("Unload {MODEL}"))
    });
    tmux.keys(&["n"]);
    tmux.wait_screen("the dialog gone", |s| {
        !s.contains(&format!("Unload {MODEL}"))
    });
    assert!(
        placements(&demo.status().await, MODEL).contains(&PlacementState::Loaded),
        "a cancelled unload changes nothing"
    );
    // `y` confirms.
    tmux.keys(&["u"]);
    tmux.wait_screen("the confirmation", |s| {
        s.contains(&format!("Unload {MODEL}"))
    });
    tmux.keys(&["y"]);
    demo.wait_status("the model unloaded", Duration::from_secs(20), |s| {
        placements(s, MODEL).is_empty()
    })
    .await;
    tmux.wait_screen("the model cold again", |s| row_has(s, MODEL, "cold"));

    // The requests screen follows a streaming request live: it appears,
    // starts generating, and finishes.
    tmux.keys(&["r"]);
    tmux.wait_screen("the requests screen", |s| {
        s.contains("REQUEST") && s.contains("in flight")
    });
    let resp = demo
        .http
        .post(format!("{}/v1/chat/completions", demo.url))
        .json(&json!({
            "model": "smollm2", "stream": true, "max_tokens": 400,
            "temperature": 0.8, "seed": 5,
            "messages": [{"role": "user", "content": "Tell me a very long story about a dragon."}],
        }))
        .send()
        .await
        .expect("a streaming request");
    assert_eq!(resp.status(), 200);
    let drained = tokio::spawn(async move {
        let mut body = String::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        body
    });
    let first = tmux.wait_screen("the request listed", |s| {
        request_state(s, "smollm2").is_some()
    });
    let state = request_state(&first, "smollm2");
    assert!(
        matches!(state, Some("routed" | "prefill" | "generating")),
        "the request first shows in flight, not {state:?}:\n{first}"
    );
    tmux.wait_screen("the request generating", |s| {
        request_state(s, "smollm2") == Some("generating")
    });
    let done = tmux.wait_screen("the request done", |s| {
        request_state(s, "smollm2") == Some("done")
    });
    let row = done
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "smollm2"))
        .unwrap_or_default();
    assert!(
        row.contains("length") || row.contains("stop"),
        "the finish reason is shown: {row}"
    );
    let body = drained.await.expect("the stream was read");
    assert!(body.contains("data: [DONE]"), "the stream ended: {body}");
    tmux.keys(&["Escape"]);

    // Quit: the terminal is given back to the shell.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.display("#{pane_current_command}") != "sh" {
        assert!(
            Instant::now() < deadline,
            "the console did not exit on q:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "the alternate screen is left"
    );
    assert_eq!(
        tmux.display("#{cursor_flag}"),
        "1",
        "the cursor is shown again"
    );
    let screen = tmux.screen();
    let last = screen
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with(PROMPT),
        "the shell prompt is back:\n{screen}"
    );
    // The shell still echoes what is typed (not left in raw mode).
    tmux.type_text("echo restored-$((40+2))");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the shell answering", |s| s.contains("restored-42"));
    drop(tmux);
    let mut demo = demo;
    let pids = demo.fleet_pids.clone();
    assert!(
        demo.terminate(Duration::from_secs(20)),
        "the demo stops cleanly"
    );
    assert!(demo_fleet::wait_gone(&pids, Duration::from_secs(5)).is_empty());
}
