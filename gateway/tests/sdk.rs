//! Conformance with the official Python SDKs (`openai`, `anthropic`, pinned
//! in `scripts/test-deps`): a real neuron and gateway on loopback, driven by
//! `tests/sdk/conformance.py` from the virtualenv `target/sdk-venv`. A
//! missing virtualenv fails the test (run `scripts/test-deps`); it is never
//! skipped.

mod support;

#[path = "../../neuron/tests/support/chain.rs"]
mod chain;

use std::path::PathBuf;
use std::process::Command;

use support::*;

const KEY: &str = "sdk-client-key";

/// The virtualenv's interpreter: `CORTEX_SDK_PYTHON`, else
/// `target/sdk-venv/bin/python3` at the workspace root.
fn sdk_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CORTEX_SDK_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/sdk-venv/bin/python3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_sdks_conform() {
    let python = sdk_python();
    assert!(
        python.exists(),
        "the SDK virtualenv is missing ({} not found): run `scripts/test-deps` to create \
         target/sdk-venv with the pinned openai and anthropic packages",
        python.display()
    );
    // Models whose greedy output is fixed by their weights: a Hermes tool
    // call; a thought and an answer; text then a call (cut where a required
    // call's primed start ends); a Mistral-format call whose prompt after
    // the tool's result ends differently, so the answer to that turn shows
    // the result arrived.
    let models = tempfile::tempdir().expect("temp dir");
    let mut toml = models_toml(&[("smol", "")]);
    let chatml = chain::ChainModel::chatml;
    const TOOLS: &[&str] = &[
        "<tool_call>",
        "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n",
        "</tool_call>",
    ];
    const THINK: &[&str] = &[
        "<think>",
        "\nThe user says hello.\n",
        "</think>",
        "\n\nHello there!",
    ];
    const CHATTY: &[&str] = &[
        "Let me check.",
        "<tool_call>",
        "\n{\"name\": \"get_weather\", \"arguments\": ",
        "{\"city\": \"Paris\"}}\n",
        "</tool_call>",
    ];
    const MISTRAL_CALL: &[&str] = &[
        "[TOOL_CALLS]",
        " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
    ];
    const SUNNY: &[&str] = &["It is sunny in Paris."];
    for (id, model) in [
        ("tools", chatml(chain::HERMES, &[("\n", TOOLS)])),
        ("think", chatml(chain::QWEN3, &[("\n", THINK)])),
        ("chatty", chatml(chain::HERMES, &[("\n", CHATTY)])),
        (
            "mistral",
            chain::ChainModel {
                template: chain::MISTRAL,
                specials: &chain::MISTRAL_SPECIALS,
                markers: &[],
                bos: Some("<s>"),
                eos: "</s>",
                chains: &[("[/INST]", MISTRAL_CALL), ("[/TOOL_RESULTS]", SUNNY)],
                weight: chain::SHARP,
            },
        ),
    ] {
        let dir = models.path().join(id);
        std::fs::create_dir_all(&dir).expect("model dir");
        chain::write_model(&dir, &model);
        let source = dir.to_str().expect("utf-8 temp path");
        toml.push_str(&format!(
            "[[models]]\nid = \"{id}\"\nsource = {source:?}\nmemory_mb = 10\n"
        ));
    }
    let root = models.path().to_str().expect("utf-8 temp path").to_string();
    let a = neuron_with(
        "a",
        250,
        "127.0.0.1:0",
        &["--max-queue", "64", "--model-root", &root],
    );
    let gw = gateway_with(&[&a], "lru", &toml, "", &format!("api_keys = [\"{KEY}\"]")).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/conformance.py");
    let url = gw.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .env("CORTEX_URL", url)
            .env("CORTEX_KEY", KEY)
            .env("CORTEX_MODEL", "smol")
            .env("CORTEX_TOOLS_MODEL", "tools")
            .env("CORTEX_THINK_MODEL", "think")
            .env("CORTEX_CHATTY_MODEL", "chatty")
            .env("CORTEX_MISTRAL_MODEL", "mistral")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_BASE_URL")
            .output()
    })
    .await
    .expect("the SDK run")
    .unwrap_or_else(|e| panic!("running the SDK conformance script: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SDK conformance failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("0 failed"), "{stdout}");
    drop(gw);
}
