//! A headless `cortex demo` for the tests: started with `--port 0`, learned
//! from its `listening on` line, and its child processes found through
//! /proc so a test can check that none outlives it.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use cortex_process::{Child, spawn_server};

use crate::support::FleetAdmin;

pub const TOKEN: &str = "demo-test-token";

pub struct Demo {
    pub child: Child,
    pub url: String,
    pub metrics_url: String,
    /// The demo's own children (gateway, neurons); SIGKILLed on drop if
    /// still there, so a failing test leaves nothing behind.
    pub fleet_pids: Vec<u32>,
    pub http: reqwest::Client,
}

/// `cortex demo --headless --port 0`, ready (both nodes up, pinned model in).
pub fn start() -> Demo {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cortex"));
    cmd.args(["demo", "--headless", "--port", "0"])
        .env("CORTEX_ADMIN_TOKEN", TOKEN)
        .env("CORTEX_NEURON_BIN", crate::support::neuron_bin())
        .env("RUST_LOG", "warn");
    let child = spawn_server("demo", cmd, Duration::from_secs(180), false)
        .unwrap_or_else(|e| panic!("starting cortex demo: {e}"));
    let fleet_pids = children_of(child.pid());
    Demo {
        url: child.url.clone(),
        metrics_url: child
            .metrics_url
            .clone()
            .expect("the demo announces the metrics listener"),
        child,
        fleet_pids,
        http: reqwest::Client::new(),
    }
}

impl FleetAdmin for Demo {
    fn admin(&self) -> (&reqwest::Client, &str, &str) {
        (&self.http, &self.url, TOKEN)
    }
}

impl Demo {
    /// SIGTERMs the demo and waits for it to exit; returns whether it
    /// exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.pid().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.process.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                panic!("cortex demo did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for pid in &self.fleet_pids {
            if alive(*pid) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

/// Pids whose parent is `pid` (Linux /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, _)) = stat(child)
            && ppid == pid
        {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

/// A process that exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z' && state != 'X')
}

/// (parent pid, state) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Waits until none of `pids` is alive; returns the ones still alive.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
