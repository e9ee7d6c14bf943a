//! The Hub's HTTP API, the part the Hub tools use to fetch a model:
//!
//! - `GET  /api/models/ORG/NAME/revision/REV` → `sha` (the commit) and
//!   `siblings` (the repo's files);
//! - `HEAD /ORG/NAME/resolve/REV/FILE` → `x-repo-commit`, the file's etag
//!   (`x-linked-etag` for large files, else `etag`) and size
//!   (`x-linked-size`, else `content-length`), read before any redirect to
//!   a CDN;
//! - `GET  /ORG/NAME/resolve/COMMIT/FILE` (with `Range: bytes=N-` to
//!   resume) → the contents, through redirects.
//!
//! Refusals carry `x-error-code` (`RepoNotFound`, `RevisionNotFound`,
//! `EntryNotFound`, `GatedRepo`); this module reports them as they came and
//! the caller, who knows the context, says what they mean.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::redirect::Policy;
use serde::Deserialize;

use super::HubConfig;
use super::cache::is_name;
use super::error::{Failure, HubError};
use cortex_common::hub_source::check_file_path;

/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading an answer: a stalled transfer fails (and
/// is resumed) instead of hanging the load. Never a total timeout: a large
/// file takes as long as it takes.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a metadata answer, whole.
const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 10;

/// What `GET /api/models/…/revision/…` says.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    /// The commit the revision is at.
    pub sha: String,
    /// Every file of the repo at that commit.
    pub files: Vec<String>,
}

/// What `HEAD …/resolve/…` says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub commit: String,
    /// Names the blob in the cache; for large files, the sha256 of the
    /// contents.
    pub etag: String,
    pub size: u64,
}

pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    /// Follows redirects on the Hub's own host only (a renamed repo), so a
    /// file's metadata is read from the Hub's answer, not the CDN's.
    api: reqwest::Client,
    /// Follows every redirect to the contents; reqwest drops the token when
    /// a redirect leaves the Hub's host.
    download: reqwest::Client,
}

impl HubClient {
    pub fn new(config: &HubConfig) -> Result<Self, HubError> {
        let build = |policy: Policy| {
            reqwest::Client::builder()
                .user_agent(concat!("cortex-neuron/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .redirect(policy)
                .build()
                .map_err(|e| HubError::Client(e.to_string()))
        };
        let same_host = Policy::custom(|attempt| {
            let origin = attempt.previous().first().map(|u| {
                (
                    u.scheme().to_string(),
                    u.host_str().map(str::to_string),
                    u.port_or_known_default(),
                )
            });
            let next = (
                attempt.url().scheme().to_string(),
                attempt.url().host_str().map(str::to_string),
                attempt.url().port_or_known_default(),
            );
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if origin.as_ref() == Some(&next) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        Ok(HubClient {
            endpoint: config.endpoint.clone(),
            token: config.token.as_ref().map(|t| t.expose().to_string()),
            api: build(same_host)?,
            download: build(Policy::limited(MAX_REDIRECTS))?,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        let file: Vec<String> = file.split('/').map(encode).collect();
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode(revision),
            file.join("/")
        )
    }

    /// The commit `revision` is at and the repo's files.
    pub async fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo, Failure> {
        #[derive(Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        #[derive(Deserialize)]
        struct Info {
            sha: Option<String>,
            #[serde(default)]
            siblings: Vec<Sibling>,
        }
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode(revision)
        );
        let resp = self
            .authorize(self.api.get(&url))
            .timeout(METADATA_TIMEOUT)
            .send()
            .await
            .map_err(transport)?;
        let resp = check(resp)?;
        let info: Info = resp
            .json()
            .await
            .map_err(|e| Failure::Bad(format!("GET {url}: {e}")))?;
        let sha = info
            .sha
            .filter(|s| is_name(s))
            .ok_or_else(|| Failure::Bad(format!("GET {url}: no valid `sha`")))?;
        let mut files = Vec::with_capacity(info.siblings.len());
        for s in info.siblings {
            check_file_path(&s.rfilename)
                .map_err(|why| Failure::Bad(format!("GET {url}: {why}")))?;
            files.push(s.rfilename);
        }
        Ok(RepoInfo { sha, files })
    }

    /// The commit, etag and size of one file.
    pub async fn file_meta(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<FileMeta, Failure> {
        let url = self.resolve_url(repo, revision, file);
        let resp = self
            .authorize(self.api.head(&url))
            // The size of the file, not of a compressed transfer.
            .header(header::ACCEPT_ENCODING, "identity")
            .timeout(METADATA_TIMEOUT)
            .send()
            .await
            .map_err(transport)?;
        let resp = if resp.status().is_redirection() {
            resp // a CDN redirect: the metadata is on it
        } else {
            check(resp)?
        };
        let h = resp.headers();
        let bad = |what: &str| Failure::Bad(format!("HEAD {url}: {what}"));
        let commit = text(h, "x-repo-commit")
            .filter(|c| is_name(c))
            .ok_or_else(|| bad("no valid x-repo-commit header"))?;
        let etag = text(h, "x-linked-etag")
            .or_else(|| text(h, header::ETAG.as_str()))
            .map(|e| normalize_etag(&e))
            .filter(|e| is_name(e))
            .ok_or_else(|| bad("no valid etag"))?;
        let size = text(h, "x-linked-size")
            .or_else(|| text(h, header::CONTENT_LENGTH.as_str()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("no file size (x-linked-size or content-length)"))?;
        Ok(FileMeta { commit, etag, size })
    }

    /// Starts fetching a file's contents from `offset` on. The answer is
    /// 206 (from `offset`) or 200 (whole: the server ignored the range).
    pub async fn get(
        &self,
        repo: &str,
        commit: &str,
        file: &str,
        offset: u64,
    ) -> Result<reqwest::Response, Failure> {
        let url = self.resolve_url(repo, commit, file);
        let mut req = self
            .authorize(self.download.get(&url))
            .header(header::ACCEPT_ENCODING, "identity");
        if offset > 0 {
            req = req.header(header::RANGE, format!("bytes={offset}-"));
        }
        check(req.send().await.map_err(transport)?)
    }
}

/// A transport error: nothing useful came back.
fn transport(e: reqwest::Error) -> Failure {
    Failure::Unreachable(error_chain(&e))
}

/// The error and its causes, `: `-separated: reqwest's own message alone
/// ("error decoding response body") hides what happened.
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A success passes; a refusal or a failure of the Hub becomes a [`Failure`].
fn check(resp: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let h = resp.headers();
    let code = text(h, "x-error-code");
    let message = text(h, "x-error-message").unwrap_or_else(|| status.to_string());
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(Failure::Unreachable(format!(
            "the Hub answered {status}: {message}"
        )));
    }
    Err(Failure::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

fn text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)?
        .to_str()
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `W/"abc"` → `abc`.
fn normalize_etag(etag: &str) -> String {
    etag.trim_start_matches("W/").trim_matches('"').to_string()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_revisions_and_file_names() {
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode("a b+c.gguf"), "a%20b%2Bc.gguf");
        assert_eq!(normalize_etag("W/\"0abc\""), "0abc");
        assert_eq!(normalize_etag("\"0abc\""), "0abc");
    }
}
