//! A models.toml entry whose source is on the Hugging Face Hub: the gateway
//! passes `hf:…` to the neuron, which fetches it (here from the neuron
//! tests' fake Hub) and serves it; the fleet event stream carries the
//! download phase of the load, for the console's gauge.

#[path = "../../neuron/tests/support/chain.rs"]
mod chain;
#[path = "../../neuron/tests/support/hub.rs"]
mod fake_hub;
mod support;

use cortex_common::event::{EventKind, LoadPhase};
use support::FleetAdmin;

const PIECES: [&str; 3] = ["Served", " through", " cortex"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_source_in_models_toml_is_fetched_and_served() {
    let hub = fake_hub::FakeHub::start().await;
    let model = tempfile::tempdir().unwrap();
    chain::write_chain(model.path(), chain::CHATML, &PIECES);
    hub.add_dir("test/chain", model.path());
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap();
    // Empty values: the Hub settings of whoever runs the tests stay out.
    let n = support::neuron_env(
        "a",
        200,
        "127.0.0.1:0",
        &["--max-queue", "64"],
        &[
            ("HF_ENDPOINT", hub.url.as_str()),
            ("HF_HOME", home_s),
            ("HF_TOKEN", ""),
            ("HF_TOKEN_PATH", ""),
            ("HF_HUB_OFFLINE", ""),
            ("HF_HUB_CACHE", ""),
            ("HUGGINGFACE_HUB_CACHE", ""),
        ],
    );
    let models = "[[models]]\nid = \"chain\"\nsource = \"hf:test/chain\"\nmemory_mb = 10\n";
    let gw = support::gateway(&[&n], "lru", models, "").await;
    let mut events = gw.events(None).await;

    let (status, node, body) = gw.chat("chain", 16).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(node.as_deref(), Some("a"));
    assert_eq!(
        body["choices"][0]["message"]["content"],
        PIECES.concat(),
        "{body}"
    );
    let seen = events
        .until(|e| matches!(&e.kind, EventKind::ModelLoaded { model, .. } if model == "chain"))
        .await;
    let download = seen.iter().find_map(|e| match &e.kind {
        EventKind::ModelLoadProgress {
            model,
            phase: LoadPhase::Download,
            done,
            total,
            ..
        } if model == "chain" && done == total => Some(e.node.clone()),
        _ => None,
    });
    assert_eq!(
        download,
        Some(Some("a".to_string())),
        "a finished download phase on node a"
    );
    assert_eq!(hub.requests_to("/blobs/").len(), 1);
    let s = gw.status().await;
    let m = s.models.iter().find(|m| m.id == "chain").unwrap();
    assert_eq!(m.source, "hf:test/chain");
}
