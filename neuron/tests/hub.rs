//! Models from the Hugging Face Hub (`hf:` sources) against a fake Hub on
//! loopback (support/hub.rs), with the real neuron binary: a fetched model
//! loads and answers exactly what its weights say (the chain model); the
//! cache has the layout the Hub tools share; a cut download is resumed
//! with `Range` and never loaded half-made; unknown repos, files and
//! revisions, offline mode, an unreachable Hub, gated repos and a full disk
//! answer clearly; `neuron pull` fetches without loading.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use cortex_common::event::{EventKind, LoadPhase};
use serde_json::{Value, json};
use support::chain::{CHATML, write_chain};
use support::hub::{FakeHub, sha256, shard};
use support::{HUB_ENV, Neuron, france, neuron_bin};

/// What every chain model here answers, one token per piece.
const PIECES: [&str; 4] = ["Fetched", " from", " the", " hub"];

struct Setup {
    hub: FakeHub,
    /// `HF_HOME` of every neuron and pull of the test.
    home: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        Setup {
            hub: FakeHub::start().await,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HF_ENDPOINT", self.hub.url.clone()),
            ("HF_HOME", self.home.path().display().to_string()),
        ]
    }

    /// A neuron that reaches the fake hub (unless `extra` says otherwise).
    fn neuron(&self, extra: &[(&str, &str)]) -> Neuron {
        let mut env: Vec<(&str, String)> = self.env();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v.to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Neuron::start_with_env(&[], &env)
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.home
            .path()
            .join("hub")
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// `neuron pull SOURCE` as a process: (success, stdout, stderr).
    async fn pull(&self, source: &str, extra: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(neuron_bin());
        for k in HUB_ENV {
            cmd.env_remove(k);
        }
        cmd.envs(self.env()).envs(extra.iter().copied());
        let out = cmd
            .args(["pull", source])
            .output()
            .await
            .expect("neuron pull runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A chain model in a fresh directory, sharded or not.
fn chain_model(sharded: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_chain(dir.path(), CHATML, &PIECES);
    if sharded {
        shard(dir.path());
    }
    dir
}

async fn load(n: &Neuron, model: &str, source: &str) -> (u16, Value) {
    n.post("/models/load", json!({"model": model, "source": source}))
        .await
}

/// The greedy answer of `model` (a chain model answers [`PIECES`]).
async fn answer(n: &Neuron, model: &str) -> String {
    let (status, body) = n
        .chat(json!({"model": model, "temperature": 0, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Where from?"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["message"].as_str().unwrap_or_default(),
    )
}

fn incomplete_files(repo: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(repo.join("blobs"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "incomplete"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_repo_is_fetched_into_the_shared_cache_loaded_and_answers() {
    let s = Setup::new().await;
    let model = chain_model(true);
    let commit = s.hub.add_dir("test/chain", model.path());
    let n = s.neuron(&[]);
    let mut events = n.events().await;

    let (status, body) = load(&n, "chain", "hf:test/chain").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&n, "chain").await, PIECES.concat());

    // The layout the Hub tools share: refs, snapshot links into blobs.
    let repo = s.repo_dir("test/chain");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        commit
    );
    let shards = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"]
        .iter()
        .chain(&["model.safetensors.index.json"])
        .chain(&shards)
    {
        let link = repo.join("snapshots").join(&commit).join(file);
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_symlink(), "{file} is a link");
        assert!(
            std::fs::read_link(&link)
                .unwrap()
                .starts_with("../../blobs")
        );
        assert_eq!(
            std::fs::read(&link).unwrap(),
            std::fs::read(model.path().join(file)).unwrap(),
            "{file}"
        );
    }
    assert!(incomplete_files(&repo).is_empty());
    // The weights came from the CDN, the small files from the Hub.
    assert_eq!(s.hub.requests_to("/blobs/").len(), 2);

    // Progress: the download (the shards' bytes, to the end), then the read.
    let weights: u64 = shards
        .iter()
        .map(|f| std::fs::metadata(model.path().join(f)).unwrap().len())
        .sum();
    let mut phases = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, events.recv())
            .await
            .expect("events before the deadline")
            .expect("the event stream stays open");
        match ev.kind {
            EventKind::ModelLoadProgress {
                model,
                done,
                total,
                phase,
                ..
            } if model == "chain" => phases.push((phase, done, total)),
            EventKind::ModelLoaded { model, .. } if model == "chain" => break,
            _ => {}
        }
    }
    let first_read = phases
        .iter()
        .position(|p| p.0 == LoadPhase::Read)
        .expect("read progress");
    assert!(first_read > 0, "download progress first: {phases:?}");
    assert!(
        phases[..first_read]
            .iter()
            .all(|p| p.0 == LoadPhase::Download && p.2 == weights),
        "{phases:?}"
    );
    assert_eq!(phases[first_read - 1].1, weights, "{phases:?}");
    assert!(phases[first_read..].iter().all(|p| p.0 == LoadPhase::Read));

    // Another id from the same source fetches nothing again.
    let (status, body) = load(&n, "chain-again", "hf:test/chain").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.hub.requests_to("/blobs/").len(), 2);
    assert_eq!(answer(&n, "chain-again").await, PIECES.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gguf_file_at_a_tag_is_fetched_checked_and_answers() {
    let s = Setup::new().await;
    let gguf = std::fs::read(neuron::model::embedded::ensure_model().unwrap()).unwrap();
    let mut files = BTreeMap::new();
    files.insert("smol-q4_1.gguf".to_string(), Bytes::from(gguf));
    files.insert("README.md".to_string(), Bytes::from_static(b"# smol\n"));
    let commit = s.hub.add_files("test/smol", files);
    s.hub.tag("test/smol", "v1");
    let n = s.neuron(&[]);

    let (status, body) = load(&n, "smol", "hf:test/smol/smol-q4_1.gguf@v1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = n.chat(france(24)).await;
    assert_eq!(status, 200, "{body}");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Paris"), "{text}");

    let repo = s.repo_dir("test/smol");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/v1")).unwrap(),
        commit
    );
    assert!(!repo.join("refs/main").exists());
    // Stored under its sha256, the embedded model's.
    assert!(
        repo.join("blobs")
            .join(neuron::model::embedded::EMBEDDED_SHA256)
            .is_file()
    );
    // Only the file asked for was fetched.
    assert!(s.hub.requests_to("README.md").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_is_resumed_with_a_range_request() {
    let s = Setup::new().await;
    let model = chain_model(false);
    s.hub.add_dir("test/chain", model.path());
    let weights = std::fs::read(model.path().join("model.safetensors")).unwrap();
    s.hub.cut(&weights, 1);
    let n = s.neuron(&[]);

    let (status, body) = load(&n, "chain", "hf:test/chain").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&n, "chain").await, PIECES.concat());

    let gets = s.hub.requests_to(&format!("/blobs/{}", sha256(&weights)));
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    let from: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a resuming range, got {:?}", gets[1].range));
    assert!(from > 0 && from <= weights.len() as u64 / 2, "{from}");
    let repo = s.repo_dir("test/chain");
    assert_eq!(
        std::fs::read(repo.join("blobs").join(sha256(&weights))).unwrap(),
        weights,
        "the resumed file is the file"
    );
    assert!(incomplete_files(&repo).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_download_is_never_loaded_and_the_next_load_resumes_it() {
    let s = Setup::new().await;
    let model = chain_model(false);
    let commit = s.hub.add_dir("test/chain", model.path());
    let weights = std::fs::read(model.path().join("model.safetensors")).unwrap();
    s.hub.cut(&weights, u32::MAX);
    let n = s.neuron(&[]);

    let (status, body) = load(&n, "chain", "hf:test/chain").await;
    assert_eq!(status, 503, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "hub_download_interrupted", "{body}");
    assert!(
        message.contains("model.safetensors") && message.contains("resumes"),
        "{message}"
    );
    let repo = s.repo_dir("test/chain");
    let snapshot = repo.join("snapshots").join(&commit);
    assert!(!snapshot.join("model.safetensors").exists());
    assert!(!repo.join("refs/main").exists());
    let partial = incomplete_files(&repo);
    assert_eq!(partial.len(), 1, "{partial:?}");
    let kept = std::fs::metadata(&partial[0]).unwrap().len();
    assert!(kept > 0 && kept < weights.len() as u64, "{kept}");
    let listed = n
        .wait_model("chain", "failed", |m| m["state"] == "failed")
        .await;
    assert!(
        listed["error"]
            .as_str()
            .is_some_and(|e| e.contains("model.safetensors")),
        "{listed}"
    );

    s.hub.cut(&weights, 0);
    let (status, body) = load(&n, "chain", "hf:test/chain").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&n, "chain").await, PIECES.concat());
    let last = s.hub.requests_to("/blobs/").pop().unwrap();
    assert_eq!(last.range, Some(format!("bytes={kept}-")));
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        weights
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_repos_files_and_revisions_are_404s_that_name_them() {
    let s = Setup::new().await;
    let model = chain_model(false);
    s.hub.add_dir("test/chain", model.path());
    let n = s.neuron(&[]);
    for (source, code, named) in [
        ("hf:test/nope", "hub_repo_not_found", "`test/nope`"),
        (
            "hf:test/chain/missing.gguf",
            "hub_file_not_found",
            "`missing.gguf`",
        ),
        (
            "hf:test/chain@no-such-branch",
            "hub_revision_not_found",
            "`no-such-branch`",
        ),
    ] {
        let (status, body) = load(&n, "m", source).await;
        assert_eq!(status, 404, "{source}: {body}");
        let (got, message) = error_of(&body);
        assert_eq!(got, code, "{source}: {body}");
        assert!(message.contains(named), "{source}: {message}");
    }
    for bad in ["hf:test", "hf:test/chain/weights.safetensors", "hf:../x/y"] {
        let (status, body) = load(&n, "m", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(error_of(&body).0, "invalid_source", "{bad}: {body}");
    }
    assert!(!s.repo_dir("test/nope").exists());
    drop(n);

    // Roots that leave the Hugging Face cache out: hf: sources are refused,
    // and nothing is fetched.
    let root = tempfile::tempdir().unwrap();
    let env = s.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let confined = Neuron::start_with_env(&["--model-root", root.path().to_str().unwrap()], &env);
    let before = s.hub.requests().len();
    let (status, body) = load(&confined, "m", "hf:test/chain").await;
    assert_eq!(status, 403, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "model_source_forbidden", "{body}");
    assert!(
        message.contains("model_roots") && message.contains("HF_HUB_CACHE"),
        "{message}"
    );
    assert_eq!(s.hub.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_or_unreachable_the_cache_serves_and_what_is_missing_is_named() {
    let s = Setup::new().await;
    let model = chain_model(true);
    let commit = s.hub.add_dir("test/chain", model.path());
    let (ok, _, stderr) = s.pull("hf:test/chain", &[]).await;
    assert!(ok, "{stderr}");
    let seen = s.hub.requests().len();

    let offline = s.neuron(&[("HF_HUB_OFFLINE", "1")]);
    let (status, body) = load(&offline, "chain", "hf:test/chain").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&offline, "chain").await, PIECES.concat());
    let (status, body) = load(&offline, "other", "hf:test/other").await;
    assert_eq!(status, 503, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "hub_offline", "{body}");
    assert!(
        message.contains("HF_HUB_OFFLINE")
            && message.contains("hf:test/other")
            && message.contains("revision `main`"),
        "{message}"
    );
    // A snapshot missing a shard is not loaded; the shard is named.
    let shard2 = "model-00002-of-00002.safetensors";
    let link = s
        .repo_dir("test/chain")
        .join("snapshots")
        .join(&commit)
        .join(shard2);
    let target = std::fs::read_link(&link).unwrap();
    std::fs::remove_file(&link).unwrap();
    let (status, body) = load(&offline, "chain-b", "hf:test/chain").await;
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&body).1.contains(shard2), "{body}");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // Offline means no request at all.
    assert_eq!(s.hub.requests().len(), seen);

    // A Hub that cannot be reached: the cache serves what it holds.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cut_off = s.neuron(&[("HF_ENDPOINT", &closed)]);
    let (status, body) = load(&cut_off, "chain", "hf:test/chain").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = load(&cut_off, "other", "hf:test/other").await;
    assert_eq!(status, 503, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "hub_unreachable", "{body}");
    assert!(
        message.contains(&closed) && message.contains("revision `main`"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_repo_needs_a_token_which_never_reaches_the_cdn() {
    let s = Setup::new().await;
    let model = chain_model(false);
    s.hub.add_dir("test/gated", model.path());
    s.hub.gate("test/gated", "hf_secret");

    let anonymous = s.neuron(&[]);
    let (status, body) = load(&anonymous, "g", "hf:test/gated").await;
    assert_eq!(status, 401, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "hub_token_required", "{body}");
    assert!(
        message.contains("HF_TOKEN") && message.contains("test/gated"),
        "{message}"
    );
    drop(anonymous);

    let wrong = s.neuron(&[("HF_TOKEN", "hf_wrong")]);
    let (status, body) = load(&wrong, "g", "hf:test/gated").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_of(&body).0, "hub_access_denied", "{body}");
    drop(wrong);

    let granted = s.neuron(&[("HF_TOKEN", "hf_secret")]);
    let (status, body) = load(&granted, "g", "hf:test/gated").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&granted, "g").await, PIECES.concat());
    let cdn = s.hub.requests_to("/blobs/");
    assert!(!cdn.is_empty());
    assert!(
        cdn.iter().all(|r| r.authorization.is_none()),
        "the token went to the CDN: {cdn:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neuron_pull_fetches_without_loading_and_fails_clearly() {
    let s = Setup::new().await;
    let model = chain_model(false);
    let commit = s.hub.add_dir("test/gated", model.path());
    s.hub.gate("test/gated", "hf_from_file");
    // The token file the Hub tools write.
    std::fs::write(s.home.path().join("token"), "hf_from_file\n").unwrap();

    let (ok, stdout, stderr) = s.pull("hf:test/gated", &[]).await;
    assert!(ok, "{stderr}");
    let snapshot = s.repo_dir("test/gated").join("snapshots").join(&commit);
    assert_eq!(
        PathBuf::from(stdout.trim()),
        std::fs::canonicalize(&snapshot).unwrap()
    );
    assert!(
        stderr.contains("hf:test/gated: downloaded") && stderr.contains("(100%)"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        std::fs::read(model.path().join("model.safetensors")).unwrap()
    );
    // Pulled again: nothing to download.
    let before = s.hub.requests_to("/blobs/").len();
    let (ok, _, stderr) = s.pull("hf:test/gated", &[]).await;
    assert!(ok, "{stderr}");
    assert_eq!(s.hub.requests_to("/blobs/").len(), before);

    let (ok, stdout, stderr) = s.pull("hf:test/nope", &[]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("cannot pull hf:test/nope") && stderr.contains("no model repo `test/nope`"),
        "{stderr}"
    );
    let (ok, _, stderr) = s.pull("hf:test/nope", &[("HF_HUB_OFFLINE", "1")]).await;
    assert!(!ok);
    assert!(stderr.contains("HF_HUB_OFFLINE"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_503_that_says_so_and_leaves_nothing_linked() {
    let s = Setup::new().await;
    let model = chain_model(false);
    let commit = s.hub.add_dir("test/chain", model.path());
    let weights = std::fs::read(model.path().join("model.safetensors")).unwrap();
    // The download of the weights writes where every write fails for want
    // of space.
    let blobs = s.repo_dir("test/chain").join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::os::unix::fs::symlink(
        "/dev/full",
        blobs.join(format!("{}.incomplete", sha256(&weights))),
    )
    .unwrap();
    let n = s.neuron(&[]);
    let (status, body) = load(&n, "chain", "hf:test/chain").await;
    assert_eq!(status, 503, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "insufficient_storage", "{body}");
    assert!(message.contains("No space left"), "{message}");
    assert!(
        !s.repo_dir("test/chain")
            .join("snapshots")
            .join(&commit)
            .join("model.safetensors")
            .exists()
    );
}
