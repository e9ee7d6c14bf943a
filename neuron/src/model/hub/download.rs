//! One file from the Hub into the cache: under the blob's lock, into
//! `blobs/<etag>.incomplete`, resumed with `Range` from what is already
//! there (after a cut connection, a crash or a failed load), retried a few
//! times, checked (size; sha256 when the etag is one), then renamed to
//! `blobs/<etag>` and linked into the snapshot. Nothing partial is ever
//! linked, so nothing partial is ever loaded.
//!
//! Runs on the load's own thread (a runtime of its own drives the
//! transfer), so the plain file writes here block nobody else.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::cache::RepoCache;
use super::client::{FileMeta, HubClient, error_chain};
use super::error::{Context, Failure, HubError};
use crate::model::progress::ProgressFn;

/// Tries per file; each resumes where the last one stopped.
const ATTEMPTS: u32 = 4;

/// Bytes between two progress reports within a file: a report per network
/// chunk would be thousands a second.
const REPORT_EVERY: u64 = 1 << 20;

/// Progress over every file one fetch downloads.
pub struct Tally<'a> {
    /// Bytes of the files already complete.
    base: u64,
    total: u64,
    /// What the last report said.
    reported: u64,
    report: ProgressFn<'a>,
}

impl<'a> Tally<'a> {
    pub fn new(total: u64, report: ProgressFn<'a>) -> Self {
        Tally {
            base: 0,
            total,
            reported: 0,
            report,
        }
    }

    /// The current file has `done` of its bytes.
    fn file(&mut self, done: u64) {
        let now = (self.base + done).min(self.total);
        if now.abs_diff(self.reported) >= REPORT_EVERY || self.reported == 0 {
            self.reported = now;
            (self.report)(now, self.total);
        }
    }

    fn finish_file(&mut self, size: u64) {
        self.base += size;
        self.reported = self.base.min(self.total);
        (self.report)(self.reported, self.total);
    }
}

/// How one attempt ended, when not with the whole file.
enum Stop {
    /// Worth another attempt (the connection broke, the Hub failed).
    Retry(String),
    Fail(HubError),
}

/// Bytes of `file` already in the cache's partial download.
pub fn partial_len(cache: &RepoCache, meta: &FileMeta) -> u64 {
    std::fs::metadata(cache.incomplete(&meta.etag))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Makes `file` of `commit` whole in the snapshot.
pub async fn download(
    ctx: &Context<'_>,
    client: &HubClient,
    cache: &RepoCache,
    file: &str,
    meta: &FileMeta,
    tally: &mut Tally<'_>,
) -> Result<(), HubError> {
    let blob = cache.blob(&meta.etag);
    std::fs::create_dir_all(cache.blobs()).map_err(|e| disk(&cache.blobs(), e))?;
    // Another load or process may be fetching the same blob: wait for it.
    let _lock = cache.lock(&meta.etag).map_err(|e| disk(&blob, e))?;
    if !blob.is_file() {
        let part = cache.incomplete(&meta.etag);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match fetch_part(ctx, client, file, meta, &part, tally).await {
                Ok(()) => break,
                Err(Stop::Fail(e)) => return Err(e),
                Err(Stop::Retry(detail)) if attempt < ATTEMPTS => {
                    tracing::warn!(
                        repo = ctx.repo,
                        file,
                        attempt,
                        error = %detail,
                        "download interrupted; resuming"
                    );
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
                Err(Stop::Retry(detail)) => {
                    return Err(HubError::Interrupted {
                        repo: ctx.repo.to_string(),
                        file: file.to_string(),
                        done: std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0),
                        total: meta.size,
                        detail,
                    });
                }
            }
        }
        verify(ctx, file, meta, &part)?;
        std::fs::rename(&part, &blob).map_err(|e| disk(&blob, e))?;
    }
    cache
        .link(&meta.commit, file, &meta.etag)
        .map_err(|e| disk(&cache.snapshot(&meta.commit).join(file), e))?;
    tally.finish_file(meta.size);
    Ok(())
}

/// One attempt: from the partial file's end to the file's end.
async fn fetch_part(
    ctx: &Context<'_>,
    client: &HubClient,
    file: &str,
    meta: &FileMeta,
    part: &Path,
    tally: &mut Tally<'_>,
) -> Result<(), Stop> {
    let mut offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if offset > meta.size {
        // Not a prefix of this file: start over.
        remove(part).map_err(Stop::Fail)?;
        offset = 0;
    }
    if offset == meta.size && offset > 0 {
        return Ok(());
    }
    let resp = match client.get(ctx.repo, &meta.commit, file, offset).await {
        Ok(resp) => resp,
        Err(Failure::Unreachable(why)) => return Err(Stop::Retry(why)),
        Err(Failure::Refused { status: 416, .. }) => {
            remove(part).map_err(Stop::Fail)?;
            return Err(Stop::Retry("the Hub refused to resume (416)".into()));
        }
        Err(other) => return Err(Stop::Fail(ctx.failure(other, Some(file)))),
    };
    let start = match resp.status().as_u16() {
        206 => {
            let from = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(range_start);
            if from != Some(offset) {
                remove(part).map_err(Stop::Fail)?;
                return Err(Stop::Retry(format!(
                    "asked for bytes from {offset}, got a range starting at {from:?}"
                )));
            }
            offset
        }
        // The whole file, from its start.
        _ => 0,
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(part)
        .map_err(|e| Stop::Fail(disk(part, e)))?;
    let len = out.metadata().map(|m| m.len()).unwrap_or(0);
    if len != start {
        out.set_len(start).map_err(|e| Stop::Fail(disk(part, e)))?;
    }
    out.seek(SeekFrom::Start(start))
        .map_err(|e| Stop::Fail(disk(part, e)))?;
    let mut done = start;
    tally.file(done);
    let mut resp = resp;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // What arrived is written: the next attempt resumes after it.
            Err(e) => return Err(Stop::Retry(error_chain(&e))),
        };
        done += chunk.len() as u64;
        if done > meta.size {
            drop(out);
            remove(part).map_err(Stop::Fail)?;
            return Err(Stop::Fail(HubError::Corrupt {
                repo: ctx.repo.to_string(),
                file: file.to_string(),
                detail: format!("more than the {} bytes announced", meta.size),
            }));
        }
        out.write_all(&chunk)
            .map_err(|e| Stop::Fail(disk(part, e)))?;
        tally.file(done);
    }
    out.flush().map_err(|e| Stop::Fail(disk(part, e)))?;
    if done < meta.size {
        return Err(Stop::Retry(format!(
            "the answer ended at {done} of {} bytes",
            meta.size
        )));
    }
    Ok(())
}

/// The whole file is there: its size, and its sha256 when the etag is one
/// (large files on the Hub). A mismatch discards it.
fn verify(ctx: &Context<'_>, file: &str, meta: &FileMeta, part: &Path) -> Result<(), HubError> {
    let corrupt = |detail: String| {
        let _ = std::fs::remove_file(part);
        HubError::Corrupt {
            repo: ctx.repo.to_string(),
            file: file.to_string(),
            detail,
        }
    };
    let len = std::fs::metadata(part).map_err(|e| disk(part, e))?.len();
    if len != meta.size {
        return Err(corrupt(format!("{len} bytes, {} announced", meta.size)));
    }
    if meta.etag.len() == 64 && meta.etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        let actual = crate::model::embedded::sha256_file(part).map_err(|e| match e {
            crate::model::embedded::EmbeddedError::Io { source, .. } => disk(part, source),
            other => HubError::Client(other.to_string()),
        })?;
        if !actual.eq_ignore_ascii_case(&meta.etag) {
            return Err(corrupt(format!("sha256 {actual}, expected {}", meta.etag)));
        }
    }
    Ok(())
}

/// `bytes 100-199/200` → 100.
fn range_start(content_range: &str) -> Option<u64> {
    let range = content_range.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

fn remove(path: &Path) -> Result<(), HubError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(disk(path, e)),
    }
}

pub fn disk(path: &Path, source: std::io::Error) -> HubError {
    HubError::Disk {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes */200"), None);
    }
}
