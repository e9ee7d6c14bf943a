//! Making a Hub source whole in the cache, online or not.
//!
//! - Offline (`HF_HUB_OFFLINE`): the cache alone; what is missing is named.
//! - Online: the revision is resolved to a commit, the files the model
//!   needs are chosen (a GGUF: that file; a safetensors repo: config,
//!   tokenizer, generation config, and the weights — the shards its index
//!   names, else `model.safetensors`, else every top-level
//!   `*.safetensors`), whatever the snapshot lacks is downloaded (weights
//!   with progress), and the revision's ref is written last.
//! - The Hub unreachable: the cache, if it holds the revision whole (as the
//!   Hub tools do); else an error naming what is missing.

use std::path::{Path, PathBuf};

use super::HubConfig;
use super::cache::RepoCache;
use super::client::{FileMeta, HubClient};
use super::download::{Tally, disk, download, partial_len};
use super::error::{Context, Failure, HubError};
use crate::model::progress::ProgressFn;
use crate::model::safetensors::{INDEX_FILE, index_shards};
use cortex_common::hub_source::{HubSource, is_gguf};

/// Files a safetensors model cannot do without.
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
/// Files it reads when they are there.
const OPTIONAL: [&str; 2] = ["tokenizer_config.json", "generation_config.json"];
const SINGLE_WEIGHTS: &str = "model.safetensors";

/// How an online fetch ended, when not with the files.
enum Online {
    /// The Hub could not be asked: the cache may serve.
    Unreachable(String),
    Failed(HubError),
}

impl From<HubError> for Online {
    fn from(e: HubError) -> Self {
        Online::Failed(e)
    }
}

/// The source's path in the cache once whole: the GGUF file, or the
/// snapshot directory of a safetensors repo. `progress` counts the bytes
/// downloaded (weights only; the small files are not counted).
pub async fn fetch(
    source: &HubSource,
    config: &HubConfig,
    cache_dir: &Path,
    progress: ProgressFn<'_>,
) -> Result<PathBuf, HubError> {
    let spec = source.display();
    let cache_shown = cache_dir.display().to_string();
    let ctx = Context {
        source_spec: &spec,
        repo: &source.repo,
        revision: &source.revision,
        endpoint: &config.endpoint,
        has_token: config.token.is_some(),
        cache: &cache_shown,
    };
    let cache = RepoCache::new(cache_dir, &source.repo);
    if config.offline {
        return cached(&cache, source).map_err(|what| HubError::Offline {
            source_spec: spec.clone(),
            what,
            cache: cache_shown.clone(),
        });
    }
    let client = HubClient::new(config)?;
    match online(&ctx, &client, &cache, source, progress).await {
        Ok(path) => Ok(path),
        Err(Online::Failed(e)) => Err(e),
        Err(Online::Unreachable(detail)) => match cached(&cache, source) {
            Ok(path) => {
                tracing::warn!(
                    source = %spec,
                    endpoint = %config.endpoint,
                    error = %detail,
                    "the Hub is unreachable; using the cached copy"
                );
                Ok(path)
            }
            Err(what) => Err(HubError::Unreachable {
                source_spec: spec.clone(),
                endpoint: config.endpoint.clone(),
                detail,
                what,
                cache: cache_shown.clone(),
            }),
        },
    }
}

async fn online(
    ctx: &Context<'_>,
    client: &HubClient,
    cache: &RepoCache,
    source: &HubSource,
    progress: ProgressFn<'_>,
) -> Result<PathBuf, Online> {
    let refused = |f: Failure, file: Option<&str>| match f {
        Failure::Unreachable(detail) => Online::Unreachable(detail),
        other => Online::Failed(ctx.failure(other, file)),
    };
    if let Some(file) = &source.file {
        let meta = client
            .file_meta(&source.repo, &source.revision, file)
            .await
            .map_err(|f| refused(f, Some(file)))?;
        let commit = meta.commit.clone();
        fetch_files(
            ctx,
            client,
            cache,
            &commit,
            vec![(file.clone(), meta)],
            progress,
        )
        .await?;
        write_ref(cache, &source.revision, &commit)?;
        return Ok(cache.snapshot(&commit).join(file));
    }

    let info = client
        .repo_info(&source.repo, &source.revision)
        .await
        .map_err(|f| refused(f, None))?;
    let commit = info.sha.clone();
    let has = |f: &str| info.files.iter().any(|x| x == f);
    let unsupported = |detail: String| {
        Online::Failed(HubError::Unsupported {
            repo: source.repo.clone(),
            detail,
        })
    };
    if !has("config.json") {
        let ggufs: Vec<&str> = info
            .files
            .iter()
            .filter(|f| is_gguf(f))
            .map(String::as_str)
            .collect();
        return Err(unsupported(if ggufs.is_empty() {
            "it has no config.json (not a transformers model)".into()
        } else {
            format!(
                "it has no config.json but GGUF files; name one: {}",
                ggufs
                    .iter()
                    .take(8)
                    .map(|f| format!("hf:{}/{f}", source.repo))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }));
    }
    if !has("tokenizer.json") {
        return Err(unsupported(
            "it has no tokenizer.json (only slow tokenizer files, which the neuron cannot read)"
                .into(),
        ));
    }
    let mut small: Vec<&str> = REQUIRED.to_vec();
    small.extend(OPTIONAL.iter().copied().filter(|f| has(f)));
    let sharded = has(INDEX_FILE);
    if sharded {
        small.push(INDEX_FILE);
    }
    let small = metadata(ctx, client, cache, &commit, &small).await?;
    fetch_files(ctx, client, cache, &commit, small, &|_, _| {}).await?;

    let weights: Vec<String> = if sharded {
        let shards = index_shards(&cache.snapshot(&commit).join(INDEX_FILE)).map_err(|e| {
            Online::Failed(HubError::Unsupported {
                repo: source.repo.clone(),
                detail: e.to_string(),
            })
        })?;
        if let Some(missing) = shards.iter().find(|s| !has(s)) {
            return Err(unsupported(format!(
                "{INDEX_FILE} names `{missing}`, which the repo does not have"
            )));
        }
        shards
    } else if has(SINGLE_WEIGHTS) {
        vec![SINGLE_WEIGHTS.to_string()]
    } else {
        let top: Vec<String> = info
            .files
            .iter()
            .filter(|f| !f.contains('/') && f.ends_with(".safetensors"))
            .cloned()
            .collect();
        if top.is_empty() {
            return Err(unsupported(
                "it has no *.safetensors weights (.bin checkpoints are not supported)".into(),
            ));
        }
        top
    };
    let names: Vec<&str> = weights.iter().map(String::as_str).collect();
    let weights = metadata(ctx, client, cache, &commit, &names).await?;
    fetch_files(ctx, client, cache, &commit, weights, progress).await?;
    write_ref(cache, &source.revision, &commit)?;
    Ok(cache.snapshot(&commit))
}

/// The metadata of each of `files` the snapshot does not hold yet.
async fn metadata(
    ctx: &Context<'_>,
    client: &HubClient,
    cache: &RepoCache,
    commit: &str,
    files: &[&str],
) -> Result<Vec<(String, FileMeta)>, Online> {
    let mut out = Vec::new();
    for file in files {
        if cache.has_file(commit, file) {
            continue;
        }
        let meta = client
            .file_meta(ctx.repo, commit, file)
            .await
            .map_err(|f| match f {
                Failure::Unreachable(detail) => Online::Unreachable(detail),
                other => Online::Failed(ctx.failure(other, Some(file))),
            })?;
        if meta.commit != commit {
            return Err(Online::Failed(HubError::BadAnswer {
                what: format!("about `{file}`"),
                detail: format!("asked for commit {commit}, got {}", meta.commit),
            }));
        }
        out.push((file.to_string(), meta));
    }
    Ok(out)
}

/// Downloads what the snapshot lacks of `files`, after checking the disk
/// has room for it.
async fn fetch_files(
    ctx: &Context<'_>,
    client: &HubClient,
    cache: &RepoCache,
    commit: &str,
    files: Vec<(String, FileMeta)>,
    progress: ProgressFn<'_>,
) -> Result<(), HubError> {
    let files: Vec<(String, FileMeta)> = files
        .into_iter()
        .filter(|(f, _)| !cache.has_file(commit, f))
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let total: u64 = files.iter().map(|(_, m)| m.size).sum();
    let have: u64 = files.iter().map(|(_, m)| partial_len(cache, m)).sum();
    let blobs = cache.blobs();
    std::fs::create_dir_all(&blobs).map_err(|e| disk(&blobs, e))?;
    let needed = total.saturating_sub(have);
    if let Some(free) = super::free_space(&blobs)
        && free < needed
    {
        return Err(HubError::DiskSpace {
            repo: ctx.repo.to_string(),
            dir: blobs.display().to_string(),
            needed_mb: needed.div_ceil(1 << 20),
            free_mb: free >> 20,
        });
    }
    let mut tally = Tally::new(total, progress);
    for (file, meta) in &files {
        download(ctx, client, cache, file, meta, &mut tally).await?;
    }
    Ok(())
}

fn write_ref(cache: &RepoCache, revision: &str, commit: &str) -> Result<(), HubError> {
    cache
        .write_ref(revision, commit)
        .map_err(|e| disk(&cache.snapshot(commit), e))
}

/// The source's path when the cache holds it whole, else what is missing.
fn cached(cache: &RepoCache, source: &HubSource) -> Result<PathBuf, String> {
    let commit = cache
        .commit_of(&source.revision)
        .ok_or_else(|| format!("revision `{}`", source.revision))?;
    if let Some(file) = &source.file {
        return if cache.has_file(&commit, file) {
            Ok(cache.snapshot(&commit).join(file))
        } else {
            Err(format!("`{file}`"))
        };
    }
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|f| !cache.has_file(&commit, f))
        .map(|f| format!("`{f}`"))
        .collect();
    let snapshot = cache.snapshot(&commit);
    if cache.has_file(&commit, INDEX_FILE) {
        match index_shards(&snapshot.join(INDEX_FILE)) {
            Ok(shards) => missing.extend(
                shards
                    .iter()
                    .filter(|s| !cache.has_file(&commit, s))
                    .map(|s| format!("`{s}`")),
            ),
            Err(e) => missing.push(format!("a readable {INDEX_FILE} ({e})")),
        }
    } else {
        let any_weights = std::fs::read_dir(&snapshot).is_ok_and(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                e.path().extension().is_some_and(|x| x == "safetensors") && e.path().is_file()
            })
        });
        if !any_weights {
            missing.push("the weights (*.safetensors)".into());
        }
    }
    if missing.is_empty() {
        Ok(snapshot)
    } else {
        Err(missing.join(", "))
    }
}
