//! One repo in the Hugging Face cache, in the layout every Hub tool shares:
//!
//! ```text
//! <cache>/models--ORG--NAME/blobs/<etag>              file contents, by etag
//!                          blobs/<etag>.incomplete   a download in progress
//!                          snapshots/<commit>/<file> symlink to ../../blobs/<etag>
//!                          refs/<revision>           the commit a branch or tag names
//! <cache>/.locks/models--ORG--NAME/<etag>.lock       held while fetching that blob
//! ```
//!
//! A snapshot link is made only to a complete blob, so a file that is in a
//! snapshot is whole; a partial download lives only in `.incomplete`.

use std::fs::File;
use std::path::{Path, PathBuf};

pub struct RepoCache {
    /// `<cache>/models--ORG--NAME`.
    dir: PathBuf,
    /// `<cache>/.locks/models--ORG--NAME`.
    locks: PathBuf,
}

impl RepoCache {
    /// `repo` is `ORG/NAME`, already checked.
    pub fn new(cache: &Path, repo: &str) -> Self {
        let folder = format!("models--{}", repo.replace('/', "--"));
        RepoCache {
            dir: cache.join(&folder),
            locks: cache.join(".locks").join(folder),
        }
    }

    /// The commit `revision` stands for here: itself when it is one (a
    /// snapshot of that name exists), else what `refs/<revision>` holds.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if self.snapshot(revision).is_dir() {
            return Some(revision.to_string());
        }
        let commit = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let commit = commit.trim();
        (!commit.is_empty() && is_name(commit)).then(|| commit.to_string())
    }

    /// Records that `revision` (a branch or tag) is at `commit`; written to
    /// a temporary file and renamed, so readers see the old or the new.
    pub fn write_ref(&self, revision: &str, commit: &str) -> std::io::Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, commit)?;
        std::fs::rename(&tmp, &path)
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// True when `file` is in the commit's snapshot, whole.
    pub fn has_file(&self, commit: &str, file: &str) -> bool {
        // `metadata` follows the link: a dangling one is not a file.
        std::fs::metadata(self.snapshot(commit).join(file)).is_ok_and(|m| m.is_file())
    }

    pub fn blobs(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.blobs().join(etag)
    }

    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.blobs().join(format!("{etag}.incomplete"))
    }

    /// Puts the complete blob `etag` in the commit's snapshot as `file`: a
    /// relative symlink, as the Hub tools make (a copy where there are no
    /// symlinks).
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> std::io::Result<()> {
        let path = self.snapshot(commit).join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // snapshots/<commit>/<dirs…>/<name> → ../../<dirs as ..>/blobs/<etag>
        let depth = file.split('/').count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => std::fs::remove_file(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&target, &path)
        }
        #[cfg(not(unix))]
        {
            std::fs::copy(self.blob(etag), &path).map(|_| ())
        }
    }

    /// Holds the blob's lock (shared with the Hub tools, which lock the same
    /// file) until the returned file is dropped; waits while another
    /// process or load fetches it.
    pub fn lock(&self, etag: &str) -> std::io::Result<File> {
        std::fs::create_dir_all(&self.locks)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.locks.join(format!("{etag}.lock")))?;
        file.lock()?;
        Ok(file)
    }
}

/// An etag or commit that may name a file: letters, digits, `-`, `_`, at
/// most 128 characters. What a Hub sends is checked with this before it
/// becomes a path.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_into_blobs_relatively() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(dir.path(), "org/name");
        std::fs::create_dir_all(repo.blobs()).unwrap();
        std::fs::write(repo.blob("abc"), "weights").unwrap();
        repo.link("c0ffee", "sub/dir/m.gguf", "abc").unwrap();
        assert!(repo.has_file("c0ffee", "sub/dir/m.gguf"));
        assert_eq!(
            std::fs::read_to_string(repo.snapshot("c0ffee").join("sub/dir/m.gguf")).unwrap(),
            "weights"
        );
        // Linking again replaces the link.
        repo.link("c0ffee", "sub/dir/m.gguf", "abc").unwrap();
        assert!(!repo.has_file("c0ffee", "missing.gguf"));
        assert_eq!(repo.commit_of("main"), None);
        repo.write_ref("main", "c0ffee").unwrap();
        assert_eq!(repo.commit_of("main").as_deref(), Some("c0ffee"));
        assert_eq!(repo.commit_of("c0ffee").as_deref(), Some("c0ffee"));
        assert!(dir.path().join("models--org--name/refs/main").is_file());
    }

    #[test]
    fn names_from_a_hub_cannot_leave_the_cache() {
        assert!(is_name("0a1b2c"));
        assert!(!is_name("../x"));
        assert!(!is_name("a/b"));
        assert!(!is_name(""));
    }
}
