//! `model_roots`: a load reads only inside the configured directories. A
//! path outside, by `..` or a symlink included, is a 403 that says the same
//! whether or not the path exists; `embedded` is always allowed.

mod support;

use serde_json::{Value, json};
use support::Neuron;
use support::tiny::write_llama;

async fn load(n: &Neuron, model: &str, source: &str) -> (u16, Value) {
    n.post("/models/load", json!({"model": model, "source": source}))
        .await
}

#[tokio::test]
async fn loads_read_only_inside_the_model_roots() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    for dir in [root.path(), outside.path()] {
        std::fs::create_dir(dir.join("llama")).unwrap();
        write_llama(&dir.join("llama"));
    }
    let n = Neuron::start(&["--model-root", root.path().to_str().unwrap()]);

    let inside = root.path().join("llama");
    let (status, body) = load(&n, "in", inside.to_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");

    let there = outside.path().join("llama");
    let absent = outside.path().join("nothing-here");
    let dotdot = root
        .path()
        .join("..")
        .join(outside.path().file_name().unwrap())
        .join("llama");
    #[cfg(unix)]
    let link = {
        let link = root.path().join("link");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        link.join("llama")
    };
    #[cfg(not(unix))]
    let link = there.clone();
    let mut answers = Vec::new();
    for (i, source) in [&there, &absent, &dotdot, &link].iter().enumerate() {
        let source = source.to_str().unwrap();
        let (status, body) = load(&n, &format!("out{i}"), source).await;
        assert_eq!(status, 403, "{source}: {body}");
        assert_eq!(body["error"]["code"], "model_source_forbidden", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("model_roots"), "{message}");
        // The answer is the same whether the path exists or not.
        answers.push(message.replace(source, "SOURCE"));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // A path inside that does not exist is simply not found.
    let (status, body) = load(&n, "missing", root.path().join("nope").to_str().unwrap()).await;
    assert_eq!(status, 404, "{body}");

    // The embedded model needs no root.
    let (status, body) = load(&n, "smol", "embedded").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn model_roots_from_the_settings_file_are_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models").join("llama")).unwrap();
    write_llama(&dir.path().join("models").join("llama"));
    let config = dir.path().join("neuron.toml");
    std::fs::write(&config, "model_roots = [\"models\"]\n").unwrap();
    let n = Neuron::start(&["--config", config.to_str().unwrap()]);
    let inside = dir.path().join("models").join("llama");
    let (status, body) = load(&n, "in", inside.to_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = load(&n, "cfg", config.to_str().unwrap()).await;
    assert_eq!(status, 403, "{body}");
}
