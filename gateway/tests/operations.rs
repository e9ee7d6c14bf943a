//! What the repository ships for operating a fleet, checked against the
//! real programs: the Grafana dashboard and the Prometheus alert rules use
//! only metrics a live gateway exports (before any traffic, too), promtool
//! accepts the rules, the systemd units start the binaries with flags they
//! accept, and shell completions and man pages come out of every binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cortex_process::sibling_binary;
use support::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("reading deploy/{file}: {e}"))
}

/// Every `cortex_*` metric name in `text` (PromQL expressions).
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("cortex_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}

/// The PromQL expressions of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let dash: serde_json::Value =
        serde_json::from_str(&read("grafana/cortex-fleet.json")).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 10, "a dashboard worth the name");
    exprs
}

fn binary(unit_path: &str) -> PathBuf {
    match unit_path.rsplit('/').next() {
        Some("cortex") => PathBuf::from(env!("CARGO_BIN_EXE_cortex")),
        Some("neuron") => neuron_bin(),
        other => panic!("unit starts an unknown program {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_and_alert_rules_use_only_exported_metrics() {
    let a = neuron("a", 250);
    let models = models_toml(&[("smol", ""), ("broken", "")]).replace(
        "id = \"broken\"\nsource = \"embedded\"",
        "id = \"broken\"\nsource = \"no/such/model.gguf\"",
    );
    let gw = gateway(&[&a], "lru", &models, "").await;

    // Before any traffic, the counters are there at zero.
    let cold = gw.metrics().await;
    for line in [
        "cortex_requests_total{model=\"smol\",node=\"a\"} 0",
        "cortex_evictions_total{model=\"broken\",node=\"a\",reason=\"lru\"} 0",
        "cortex_gateway_waiting{model=\"smol\"} 0",
    ] {
        assert!(
            cold.contains(line),
            "{line} missing before traffic:\n{cold}"
        );
    }

    let (status, _, body) = gw.chat("smol", 2).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = gw.chat("broken", 2).await;
    assert!(status >= 400, "a model that cannot load fails: {body}");
    let text = gw.metrics().await;

    let rules = read("prometheus/cortex-alerts.yml");
    let mut used = metric_names(&rules);
    used.extend(dashboard_exprs().iter().flat_map(|e| metric_names(e)));
    used.sort();
    used.dedup();
    assert!(used.len() >= 10, "{used:?}");
    for name in &used {
        assert!(
            text.contains(&format!("\n{name}{{")),
            "the dashboard or the rules use {name}, which the gateway does not export:\n{text}"
        );
    }

    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/cortex-alerts.yml"))
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is not available ({e}); install the Debian package `prometheus`")
        });
    assert!(
        out.status.success(),
        "promtool rejected the rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_service_units_start_the_binaries_with_flags_they_accept() {
    for unit in ["systemd/neuron.service", "systemd/cortex.service"] {
        let text = read(unit);
        for key in [
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "Restart=on-failure",
            "EnvironmentFile=/etc/cortex/",
            "StateDirectory=",
        ] {
            assert!(text.contains(key), "{unit} lacks {key}");
        }
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit} has no ExecStart"));
        let mut words = exec.split_whitespace();
        let program = binary(words.next().expect("a program"));
        let args: Vec<&str> = words.collect();
        assert!(
            !args
                .iter()
                .any(|a| a.contains("token") && !a.contains("file")),
            "{unit}: tokens never go on the command line"
        );
        // clap rejects an unknown flag before it gets to --help.
        let out = Command::new(&program)
            .args(&args)
            .arg("--help")
            .output()
            .expect("run the binary");
        assert!(
            out.status.success(),
            "{unit}: `{exec}` is not accepted: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bogus = Command::new(&program)
            .args(&args)
            .args(["--no-such-flag", "--help"])
            .output()
            .expect("run the binary");
        assert!(!bogus.status.success(), "the check can fail");
    }
}

#[test]
fn every_binary_prints_completions_and_a_man_page() {
    let console =
        sibling_binary("cortex-console", "CORTEX_CONSOLE_BIN").expect("cortex-console is built");
    let cases: [(PathBuf, &str, Vec<&str>, Vec<&str>); 3] = [
        (
            PathBuf::from(env!("CARGO_BIN_EXE_cortex")),
            "serve",
            vec!["completions"],
            vec!["manpage"],
        ),
        (
            neuron_bin(),
            "max-batch",
            vec!["completions"],
            vec!["manpage"],
        ),
        (
            console,
            "readonly",
            vec!["--completions"],
            vec!["--manpage"],
        ),
    ];
    for (bin, marker, completions, manpage) in cases {
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(&bin)
                .args(&completions)
                .arg(shell)
                .output()
                .expect("run");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains(marker),
                "{bin:?} {shell}: {text}"
            );
        }
        let out = Command::new(&bin).args(&manpage).output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with(".ie"),
            "{bin:?} man: {text}"
        );
        assert!(text.contains(".TH"), "{bin:?} man page has a title");
        let out = Command::new(&bin)
            .args(&completions)
            .arg("tcsh")
            .output()
            .expect("run");
        assert!(
            !out.status.success(),
            "{bin:?}: an unknown shell is refused"
        );
    }
}
