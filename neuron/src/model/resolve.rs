//! Where a model's weights are: `embedded`, a GGUF file, a Hugging Face
//! model directory, a model in the local Hugging Face cache (`org/name`,
//! optionally `org/name/file.gguf`), or a model on the Hugging Face Hub
//! (`hf:org/name…`, fetched into that cache first). The embedded model is
//! fetched from the package index once.

use std::path::{Path, PathBuf};

use crate::model::embedded;

use super::hf_cache::{hf_cache_dir, process_env};
use super::hub::{self, HubConfig, HubError, HubSource};
use super::roots::ModelRoots;
use super::{LoadError, ProgressFn};

/// Where loads may take models from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The local directories a load may read. `hf:` sources need the
    /// Hugging Face cache among them.
    pub roots: ModelRoots,
    /// How `hf:` sources reach the Hub.
    pub hub: HubConfig,
}

impl Sources {
    /// Anywhere on disk, and the Hub as this process's environment says:
    /// for commands the operator runs locally (`neuron bench`).
    pub fn anywhere() -> Result<Self, String> {
        Ok(Sources {
            roots: ModelRoots::anywhere(),
            hub: HubConfig::from_env(&process_env)?,
        })
    }
}

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

/// Where `source` is, read only inside the roots: a path outside them
/// (after `..` and symlinks are resolved) is [`LoadError::Forbidden`],
/// whether or not it exists. `embedded` and `hf:` sources are fetched when
/// missing; `progress` counts a Hub download's bytes. Blocking: a download
/// can take long, so call it from a thread of its own.
pub fn resolve(
    source: &str,
    sources: &Sources,
    progress: ProgressFn<'_>,
) -> Result<Resolved, LoadError> {
    if source == embedded::EMBEDDED_SOURCE {
        return Ok(Resolved::Gguf(embedded::ensure_model()?));
    }
    if hub::is_hub(source) {
        return resolve_hub(source, sources, progress);
    }
    let roots = &sources.roots;
    let forbidden = || LoadError::Forbidden {
        source_spec: source.to_string(),
    };
    let confined = roots.confine(Path::new(source));
    if let Ok(path) = &confined
        && path.exists()
    {
        return confine_resolved(classify(path, source)?, roots).ok_or_else(forbidden);
    }
    let cache_allowed = hf_cache_dir().is_some_and(|dir| roots.confine(&dir).is_ok());
    if cache_allowed && let Some(found) = hf_cache_lookup(source)? {
        return confine_resolved(found, roots).ok_or_else(forbidden);
    }
    if confined.is_err() {
        return Err(forbidden());
    }
    Err(LoadError::NotFound {
        source_spec: source.to_string(),
        detail: format!(
            "no such file or directory, and no `{}` in the Hugging Face cache; \
             give a GGUF file, a model directory, `org/name` of a cached model, or `embedded`",
            source,
        ),
    })
}

/// An `hf:` source: fetched into the Hugging Face cache, which must lie
/// inside the roots, then read from there like any cached model.
fn resolve_hub(
    source: &str,
    sources: &Sources,
    progress: ProgressFn<'_>,
) -> Result<Resolved, LoadError> {
    let spec = HubSource::parse(source).map_err(|detail| HubError::BadSource { detail })?;
    let cache = sources.hub.cache_dir()?;
    if sources.roots.confine(cache).is_err() {
        return Err(HubError::CacheOutsideRoots {
            cache: cache.display().to_string(),
        }
        .into());
    }
    let path = hub::fetch_blocking(&spec, &sources.hub, progress)?;
    confine_resolved(classify(&path, source)?, &sources.roots).ok_or_else(|| LoadError::Forbidden {
        source_spec: source.to_string(),
    })
}

/// The resolved file or directory, canonical, when it is inside `roots` (a
/// directory inside may hold a symlink that leads out).
fn confine_resolved(found: Resolved, roots: &ModelRoots) -> Option<Resolved> {
    let path = roots.confine(found.path()).ok()?;
    Some(match found {
        Resolved::Gguf(_) => Resolved::Gguf(path),
        Resolved::HfDir(_) => Resolved::HfDir(path),
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

    fn resolve(source: &str, roots: &ModelRoots) -> Result<Resolved, LoadError> {
        let sources = Sources {
            roots: roots.clone(),
            hub: HubConfig::from_env(&|_| None).unwrap(),
        };
        super::resolve(source, &sources, &|_, _| {})
    }

    #[test]
    fn directories_and_files_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let roots = ModelRoots::anywhere();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            resolve(dir.path().to_str().unwrap(), &roots).unwrap(),
            Resolved::HfDir(canonical)
        );
        let g = tempfile::tempdir().unwrap();
        std::fs::write(g.path().join("m.gguf"), "x").unwrap();
        let canonical = std::fs::canonicalize(g.path()).unwrap();
        assert_eq!(
            resolve(g.path().to_str().unwrap(), &roots).unwrap(),
            Resolved::Gguf(canonical.join("m.gguf"))
        );
        std::fs::write(g.path().join("n.gguf"), "x").unwrap();
        let err = resolve(g.path().to_str().unwrap(), &roots)
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.gguf") && err.contains("n.gguf"), "{err}");
    }

    #[test]
    fn unknown_source_says_what_to_give() {
        let err = resolve("no/such-model-anywhere", &ModelRoots::anywhere())
            .unwrap_err()
            .to_string();
        assert!(err.contains("embedded"), "{err}");
    }

    #[test]
    fn outside_the_roots_is_forbidden_whether_or_not_it_exists() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("m.gguf"), "x").unwrap();
        let roots = ModelRoots::new(vec![root.path().to_path_buf()]);
        let there = resolve(other.path().join("m.gguf").to_str().unwrap(), &roots);
        let absent = resolve(other.path().join("x.gguf").to_str().unwrap(), &roots);
        assert!(
            matches!(there, Err(LoadError::Forbidden { .. })),
            "{there:?}"
        );
        assert!(
            matches!(absent, Err(LoadError::Forbidden { .. })),
            "{absent:?}"
        );
        let inside = resolve(root.path().join("x.gguf").to_str().unwrap(), &roots);
        assert!(
            matches!(inside, Err(LoadError::NotFound { .. })),
            "{inside:?}"
        );
    }
}
