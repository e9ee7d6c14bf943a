//! The directories a load may read (`model_roots`). A source path is made
//! absolute and canonicalised as far as it exists, so neither `..` nor a
//! symlink can leave them; a path outside every root is refused the same way
//! whether or not it exists, so the answer reveals nothing about the host.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where model files may come from.
#[derive(Debug, Clone)]
pub struct ModelRoots {
    /// `None`: anywhere (the local `neuron bench` command, which reads files
    /// as the user who runs it).
    dirs: Option<Arc<[PathBuf]>>,
}

/// A path that lies outside every model root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outside;

impl ModelRoots {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        ModelRoots {
            dirs: Some(dirs.into()),
        }
    }

    /// The defaults: the cortex model cache and the Hugging Face cache.
    pub fn defaults() -> Self {
        let dirs = [
            crate::model::embedded::cache_dir().ok(),
            super::hf_cache::hf_cache_dir(),
        ];
        Self::new(dirs.into_iter().flatten().collect())
    }

    /// No restriction: only for commands run locally by the operator.
    pub fn anywhere() -> Self {
        ModelRoots { dirs: None }
    }

    /// The configured directories (`None`: anywhere).
    pub fn dirs(&self) -> Option<&[PathBuf]> {
        self.dirs.as_deref()
    }

    /// `path` made absolute, with symlinks and `..` resolved, when it lies
    /// under a root. A root that does not exist yet (a cache before its
    /// first download) holds what would lie under it.
    pub fn confine(&self, path: &Path) -> Result<PathBuf, Outside> {
        let resolved = resolve_path(path).ok_or(Outside)?;
        let Some(dirs) = &self.dirs else {
            return Ok(resolved);
        };
        dirs.iter()
            .filter_map(|d| resolve_path(d))
            .any(|root| resolved.starts_with(&root))
            .then_some(resolved)
            .ok_or(Outside)
    }
}

/// Absolute, canonical as far as the path exists, the rest normalised
/// lexically (components that do not exist cannot be symlinks).
fn resolve_path(path: &Path) -> Option<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let (mut base, rest) = absolute.ancestors().find_map(|a| {
        let canonical = std::fs::canonicalize(a).ok()?;
        let rest = absolute.strip_prefix(a).ok()?.to_path_buf();
        Some((canonical, rest))
    })?;
    for component in rest.components() {
        match component {
            Component::Normal(c) => base.push(c),
            Component::ParentDir => {
                base.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_are_allowed_and_escapes_are_not() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("m.gguf"), "x").unwrap();
        std::fs::write(other.path().join("secret.gguf"), "x").unwrap();
        let roots = ModelRoots::new(vec![root.path().to_path_buf()]);
        assert!(roots.confine(&root.path().join("m.gguf")).is_ok());
        // Not there yet, but inside: allowed (and then not found).
        assert!(roots.confine(&root.path().join("later/x.gguf")).is_ok());
        assert_eq!(
            roots.confine(&other.path().join("secret.gguf")),
            Err(Outside)
        );
        assert_eq!(
            roots.confine(&other.path().join("missing.gguf")),
            Err(Outside)
        );
        // `..` out of the root, existing or not.
        let up = root
            .path()
            .join("..")
            .join(other.path().file_name().unwrap());
        assert_eq!(roots.confine(&up.join("secret.gguf")), Err(Outside));
        assert_eq!(
            roots.confine(&root.path().join("nope/../../x.gguf")),
            Err(Outside)
        );
        // A root not made yet holds what will be under it, and only that.
        let later = ModelRoots::new(vec![root.path().join("cache/hub")]);
        assert!(
            later
                .confine(&root.path().join("cache/hub/models--a--b"))
                .is_ok()
        );
        assert_eq!(
            later.confine(&root.path().join("cache/other")),
            Err(Outside)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_cannot_lead_out() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("secret.gguf"), "x").unwrap();
        std::os::unix::fs::symlink(other.path(), root.path().join("link")).unwrap();
        let roots = ModelRoots::new(vec![root.path().to_path_buf()]);
        assert_eq!(
            roots.confine(&root.path().join("link/secret.gguf")),
            Err(Outside)
        );
        assert_eq!(roots.confine(&root.path().join("link/none")), Err(Outside));
        assert!(
            ModelRoots::anywhere()
                .confine(&root.path().join("link/secret.gguf"))
                .is_ok()
        );
    }
}
