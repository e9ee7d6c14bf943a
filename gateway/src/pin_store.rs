//! Runtime pins that outlive the gateway: every pin or unpin an operator
//! makes (which overrides models.toml's `pinned`) is kept in
//! `<state_dir>/pins.json`, written whole to a temporary file and renamed
//! over the old one, so a crash never leaves half a file. Read once at
//! start; a file that cannot be read is a warning, never a failed start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

const FILE: &str = "pins.json";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PinStoreError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a pins file ({source}); it is ignored and rewritten on the next pin")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has version {found}, this gateway reads {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct PinsFile {
    version: u32,
    /// Model id → pinned, for every model an operator pinned or unpinned.
    pins: BTreeMap<String, bool>,
}

pub struct PinStore {
    path: PathBuf,
    overrides: Mutex<BTreeMap<String, bool>>,
}

/// The default state directory: `$XDG_STATE_HOME/cortex`, else
/// `~/.local/state/cortex`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("cortex"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/cortex"))
}

impl PinStore {
    /// Opens the store in `dir` (created when first written) and reads what
    /// it holds. A missing file is an empty store; an unreadable one comes
    /// back as the error beside an empty store.
    pub fn open(dir: &Path) -> (Arc<Self>, Option<PinStoreError>) {
        let path = dir.join(FILE);
        let (pins, err) = match read(&path) {
            Ok(p) => (p, None),
            Err(e) => (BTreeMap::new(), Some(e)),
        };
        let store = PinStore {
            path,
            overrides: Mutex::new(pins),
        };
        (Arc::new(store), err)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pins to apply at start.
    pub fn overrides(&self) -> BTreeMap<String, bool> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        self.overrides.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an operator's pin or unpin and writes the file, off the
    /// async threads.
    pub fn record(self: &Arc<Self>, model: &str, pinned: bool) {
        self.lock().insert(model.to_string(), pinned);
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.flush() {
                tracing::warn!("runtime pins not saved: {e}");
            }
        });
    }

    /// Writes the current pins (under the lock, so the last write holds the
    /// latest state whatever order writes run in).
    pub fn flush(&self) -> Result<(), PinStoreError> {
        let pins = self.lock();
        let write_err = |source| PinStoreError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let body = serde_json::to_vec_pretty(&PinsFile {
            version: VERSION,
            pins: pins.clone(),
        })
        .map_err(|e| write_err(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, body).map_err(write_err)?;
        std::fs::rename(&tmp, &self.path).map_err(write_err)?;
        Ok(())
    }
}

fn read(path: &Path) -> Result<BTreeMap<String, bool>, PinStoreError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(PinStoreError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let file: PinsFile = serde_json::from_slice(&text).map_err(|source| PinStoreError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if file.version != VERSION {
        return Err(PinStoreError::Version {
            path: path.to_path_buf(),
            found: file.version,
        });
    }
    Ok(file.pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_and_a_corrupt_file_is_an_empty_store_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (store, err) = PinStore::open(&dir.path().join("state"));
        assert!(err.is_none(), "a missing file is no error");
        assert!(store.overrides().is_empty());
        store.lock().insert("a".into(), true);
        store.lock().insert("b".into(), false);
        store.flush().unwrap();
        let (again, err) = PinStore::open(&dir.path().join("state"));
        assert!(err.is_none());
        let want: BTreeMap<String, bool> = [("a".into(), true), ("b".into(), false)].into();
        assert_eq!(again.overrides(), want);

        std::fs::write(again.path(), b"{ not json").unwrap();
        let (broken, err) = PinStore::open(&dir.path().join("state"));
        let msg = err.expect("a reason").to_string();
        assert!(
            msg.contains("pins.json") && msg.contains("ignored"),
            "{msg}"
        );
        assert!(broken.overrides().is_empty());
    }
}
