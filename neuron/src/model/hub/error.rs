//! Why a model could not be fetched from the Hub, each case with the status
//! and code a load answers with and a message that says what to do.

use cortex_common::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{detail}")]
    BadSource { detail: String },
    #[error(
        "hf: sources are kept in the Hugging Face cache ({cache}), which is not among this \
         neuron's model_roots; add it (`--model-root`) or set HF_HUB_CACHE to a directory \
         inside one"
    )]
    CacheOutsideRoots { cache: String },
    #[error(
        "no model repo `{repo}` on {endpoint} (a private repo needs HF_TOKEN in the neuron's \
         environment)"
    )]
    RepoNotFound { repo: String, endpoint: String },
    #[error("repo `{repo}` has no revision `{revision}` on {endpoint}")]
    RevisionNotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },
    #[error("repo `{repo}` has no file `{file}` at revision `{revision}` on {endpoint}")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
        endpoint: String,
    },
    #[error(
        "repo `{repo}` is gated (or private) and this neuron has no Hub token: accept its terms \
         on the Hub, then set HF_TOKEN (or HF_TOKEN_PATH, or HF_HOME/token) in the neuron's \
         environment and restart it"
    )]
    TokenRequired { repo: String },
    #[error(
        "the Hub refused this neuron's token for `{repo}` ({detail}): check that HF_TOKEN is \
         valid and has been granted access to the repo"
    )]
    TokenRefused { repo: String, detail: String },
    #[error(
        "HF_HUB_OFFLINE is set and {what} of {source_spec} is not in the Hugging Face cache \
         ({cache}); fetch it where the Hub is reachable (`neuron pull {source_spec}`) or unset \
         HF_HUB_OFFLINE"
    )]
    Offline {
        source_spec: String,
        what: String,
        cache: String,
    },
    #[error(
        "cannot reach the Hub at {endpoint} ({detail}), and {what} of {source_spec} is not in \
         the Hugging Face cache ({cache})"
    )]
    Unreachable {
        source_spec: String,
        endpoint: String,
        detail: String,
        what: String,
        cache: String,
    },
    #[error(
        "downloading `{file}` of {repo} stopped at {done} of {total} bytes ({detail}); the part \
         is kept and the next load resumes it"
    )]
    Interrupted {
        repo: String,
        file: String,
        done: u64,
        total: u64,
        detail: String,
    },
    #[error("the Hub answered {what} unexpectedly: {detail}")]
    BadAnswer { what: String, detail: String },
    #[error(
        "`{file}` of {repo} arrived corrupt ({detail}); the download was discarded, load again \
         to fetch it anew"
    )]
    Corrupt {
        repo: String,
        file: String,
        detail: String,
    },
    #[error("{repo} cannot be served: {detail}")]
    Unsupported { repo: String, detail: String },
    #[error(
        "not enough disk space for {repo} in {dir}: needs {needed_mb} MiB more, {free_mb} MiB \
         free; free some space or point HF_HUB_CACHE at a larger disk"
    )]
    DiskSpace {
        repo: String,
        dir: String,
        needed_mb: u64,
        free_mb: u64,
    },
    #[error("cannot write {path}: {source}")]
    Disk {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no Hugging Face cache directory: set HF_HUB_CACHE or HF_HOME (or HOME) in the \
         neuron's environment"
    )]
    NoCacheDir,
    #[error("cannot start the Hub client: {0}")]
    Client(String),
}

impl HubError {
    /// The error code a load answers with.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::BadSource { .. } => "invalid_source",
            HubError::CacheOutsideRoots { .. } => "model_source_forbidden",
            HubError::RepoNotFound { .. } => "hub_repo_not_found",
            HubError::RevisionNotFound { .. } => "hub_revision_not_found",
            HubError::FileNotFound { .. } => "hub_file_not_found",
            HubError::TokenRequired { .. } => "hub_token_required",
            HubError::TokenRefused { .. } => "hub_access_denied",
            HubError::Offline { .. } => "hub_offline",
            HubError::Unreachable { .. } => "hub_unreachable",
            HubError::Interrupted { .. } => "hub_download_interrupted",
            HubError::BadAnswer { .. } => "hub_bad_answer",
            HubError::Corrupt { .. } => "hub_download_corrupt",
            HubError::Unsupported { .. } => "model_unsupported",
            HubError::DiskSpace { .. } => "insufficient_storage",
            HubError::Disk { source, .. } if is_disk_full(source) => "insufficient_storage",
            HubError::Disk { .. } | HubError::NoCacheDir | HubError::Client(_) => {
                "model_load_failed"
            }
        }
    }

    /// The kind (and so the HTTP status) a load answers with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HubError::BadSource { .. } | HubError::Unsupported { .. } => ErrorKind::InvalidRequest,
            HubError::RepoNotFound { .. }
            | HubError::RevisionNotFound { .. }
            | HubError::FileNotFound { .. } => ErrorKind::NotFound,
            HubError::TokenRequired { .. } => ErrorKind::Authentication,
            HubError::TokenRefused { .. } | HubError::CacheOutsideRoots { .. } => {
                ErrorKind::Forbidden
            }
            // Not this request's fault, and not for ever: 503.
            HubError::Offline { .. }
            | HubError::Unreachable { .. }
            | HubError::Interrupted { .. }
            | HubError::DiskSpace { .. } => ErrorKind::Overloaded,
            HubError::Disk { source, .. } if is_disk_full(source) => ErrorKind::Overloaded,
            HubError::BadAnswer { .. } | HubError::Corrupt { .. } => ErrorKind::Upstream,
            HubError::Disk { .. } | HubError::NoCacheDir | HubError::Client(_) => {
                ErrorKind::Internal
            }
        }
    }
}

/// How a request to the Hub failed, before the caller gives it a meaning.
#[derive(Debug)]
pub enum Failure {
    /// No answer (network, timeout) or the Hub failed (5xx, 429): the
    /// cache may still serve, and a later try may work.
    Unreachable(String),
    /// The Hub answered no.
    Refused {
        status: u16,
        /// `x-error-code`, e.g. `RepoNotFound`.
        code: Option<String>,
        /// `x-error-message`, or the status.
        message: String,
    },
    /// An answer that does not follow the protocol.
    Bad(String),
}

/// What a request to the Hub was about: turns the Hub's refusals into
/// errors that name the repo, revision or file.
pub struct Context<'a> {
    /// The source as written, for messages.
    pub source_spec: &'a str,
    pub repo: &'a str,
    pub revision: &'a str,
    pub endpoint: &'a str,
    pub has_token: bool,
    /// The cache directory, for messages.
    pub cache: &'a str,
}

impl Context<'_> {
    /// What a failed request means; `file` when it was about one file.
    pub fn failure(&self, failure: Failure, file: Option<&str>) -> HubError {
        let (status, code, message) = match failure {
            Failure::Unreachable(detail) => {
                return HubError::Unreachable {
                    source_spec: self.source_spec.to_string(),
                    endpoint: self.endpoint.to_string(),
                    detail,
                    what: file.map_or_else(|| "a file".into(), |f| format!("`{f}`")),
                    cache: self.cache.to_string(),
                };
            }
            Failure::Bad(detail) => {
                return HubError::BadAnswer {
                    what: file.map_or_else(|| "about the repo".into(), |f| format!("about `{f}`")),
                    detail,
                };
            }
            Failure::Refused {
                status,
                code,
                message,
            } => (status, code, message),
        };
        let repo = self.repo.to_string();
        let endpoint = self.endpoint.to_string();
        let needs_token = || {
            if self.has_token {
                HubError::TokenRefused {
                    repo: repo.clone(),
                    detail: message.clone(),
                }
            } else {
                HubError::TokenRequired { repo: repo.clone() }
            }
        };
        let file_not_found = |file: &str| HubError::FileNotFound {
            repo: repo.clone(),
            revision: self.revision.to_string(),
            file: file.to_string(),
            endpoint: endpoint.clone(),
        };
        match (code.as_deref(), status, file) {
            (Some("RepoNotFound"), ..) => HubError::RepoNotFound {
                repo: repo.clone(),
                endpoint: endpoint.clone(),
            },
            (Some("RevisionNotFound"), ..) => HubError::RevisionNotFound {
                repo: repo.clone(),
                revision: self.revision.to_string(),
                endpoint: endpoint.clone(),
            },
            (Some("EntryNotFound"), _, Some(file)) | (None, 404, Some(file)) => {
                file_not_found(file)
            }
            (Some("GatedRepo"), ..) | (_, 401 | 403, _) => needs_token(),
            (_, 404, None) => HubError::RepoNotFound {
                repo: repo.clone(),
                endpoint: endpoint.clone(),
            },
            _ => HubError::BadAnswer {
                what: format!("{status}"),
                detail: message,
            },
        }
    }
}

/// A write failed for want of space (or quota).
pub fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
