//! A fake Hugging Face Hub on loopback, port 0: the endpoints the neuron's
//! Hub client uses, answering as the Hub does, over files the test puts in.
//!
//! - `GET /api/models/ORG/NAME/revision/REV` → `{sha, siblings}`.
//! - `HEAD|GET /ORG/NAME/resolve/REV/FILE` → small files directly (`etag`,
//!   `content-length`, `x-repo-commit`); large ones (`*.safetensors`,
//!   `*.gguf`) as the Hub's redirect to its CDN, carrying `x-linked-etag`
//!   (the sha256) and `x-linked-size`.
//! - The "CDN" is a second listener (another origin, so a client must not
//!   send it the token): `GET /blobs/SHA256`, with `Range` support.
//! - Refusals carry `x-error-code` (`RepoNotFound`, `RevisionNotFound`,
//!   `EntryNotFound`, `GatedRepo`).
//!
//! It logs every request, can cut the next downloads of a file mid-body,
//! and can gate a repo behind a token.
//!
//! Only axum, sha2, futures, tokio, serde_json and std, so the gateway's
//! tests include this file too.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

/// One request the hub or its CDN saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

struct Repo {
    commit: String,
    /// Branches and tags besides the commit itself.
    refs: Vec<String>,
    files: BTreeMap<String, Bytes>,
    /// Gated: only this token may download.
    token: Option<String>,
}

#[derive(Default)]
struct Shared {
    repos: Mutex<HashMap<String, Repo>>,
    /// Contents by sha256, as the CDN serves them.
    blobs: Mutex<HashMap<String, Bytes>>,
    log: Mutex<Vec<Seen>>,
    /// How many more downloads of a blob (by sha256) are cut mid-body.
    cuts: Mutex<HashMap<String, u32>>,
    cdn_url: Mutex<String>,
}

pub struct FakeHub {
    pub url: String,
    pub cdn_url: String,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_large(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".gguf")
}

impl FakeHub {
    pub async fn start() -> FakeHub {
        let shared = Arc::new(Shared::default());
        let hub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cdn = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", hub.local_addr().unwrap());
        let cdn_url = format!("http://{}", cdn.local_addr().unwrap());
        *shared.cdn_url.lock().unwrap() = cdn_url.clone();
        let hub_app = Router::new()
            .route("/api/models/{org}/{name}/revision/{rev}", get(repo_info))
            .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
            .with_state(shared.clone());
        let cdn_app = Router::new()
            .route("/blobs/{sha}", get(blob))
            .with_state(shared.clone());
        let tasks = vec![
            tokio::spawn(async move {
                let _ = axum::serve(hub, hub_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(cdn, cdn_app).await;
            }),
        ];
        FakeHub {
            url,
            cdn_url,
            shared,
            tasks,
        }
    }

    /// Publishes every file of `dir` (top level) as `repo` (`ORG/NAME`) at a
    /// new commit on `main`; returns the commit.
    pub fn add_dir(&self, repo: &str, dir: &Path) -> String {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path.file_name().unwrap().to_str().unwrap().to_string();
                files.insert(name, Bytes::from(std::fs::read(&path).unwrap()));
            }
        }
        self.add_files(repo, files)
    }

    pub fn add_files(&self, repo: &str, files: BTreeMap<String, Bytes>) -> String {
        let commit = sha256(format!("{repo}{}", files.len()).as_bytes())[..40].to_string();
        let mut blobs = self.shared.blobs.lock().unwrap();
        for data in files.values() {
            blobs.insert(sha256(data), data.clone());
        }
        self.shared.repos.lock().unwrap().insert(
            repo.to_string(),
            Repo {
                commit: commit.clone(),
                refs: vec!["main".into()],
                files,
                token: None,
            },
        );
        commit
    }

    /// Makes `name` (a tag) point at the repo's commit too.
    pub fn tag(&self, repo: &str, name: &str) {
        if let Some(r) = self.shared.repos.lock().unwrap().get_mut(repo) {
            r.refs.push(name.to_string());
        }
    }

    /// Only `token` may download the repo's files.
    pub fn gate(&self, repo: &str, token: &str) {
        if let Some(r) = self.shared.repos.lock().unwrap().get_mut(repo) {
            r.token = Some(token.to_string());
        }
    }

    /// The next `times` downloads of `data` stop halfway through.
    pub fn cut(&self, data: &[u8], times: u32) {
        self.shared.cuts.lock().unwrap().insert(sha256(data), times);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Requests whose path contains `part`.
    pub fn requests_to(&self, part: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.path.contains(part))
            .collect()
    }
}

fn log(shared: &Shared, method: &Method, path: String, headers: &HeaderMap) {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    shared.log.lock().unwrap().push(Seen {
        method: method.to_string(),
        path,
        range: text(header::RANGE),
        authorization: text(header::AUTHORIZATION),
    });
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("x-error-code", code), ("x-error-message", message)],
        message.to_string(),
    )
        .into_response()
}

/// A refusal as the Hub words it: status, `x-error-code`, message.
struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refuse(self.0, self.1, &self.2)
    }
}

/// The repo, if it exists and `rev` names its commit; else the Hub's
/// refusal. Runs under the repos' lock.
fn find<'a>(
    repos: &'a HashMap<String, Repo>,
    repo: &str,
    rev: &str,
    headers: &HeaderMap,
) -> Result<&'a Repo, Refusal> {
    let Some(r) = repos.get(repo) else {
        // The Hub does not say whether a repo exists to the anonymous.
        let status = if headers.contains_key(header::AUTHORIZATION) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::UNAUTHORIZED
        };
        return Err(Refusal(
            status,
            "RepoNotFound",
            "Repository not found".into(),
        ));
    };
    if rev != r.commit && !r.refs.iter().any(|x| x == rev) {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "RevisionNotFound",
            format!("Invalid rev id: {rev}"),
        ));
    }
    Ok(r)
}

async fn repo_info(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
) -> Response {
    log(
        &shared,
        &method,
        format!("/api/models/{org}/{name}/revision/{rev}"),
        &headers,
    );
    let repos = shared.repos.lock().unwrap();
    let r = match find(&repos, &format!("{org}/{name}"), &rev, &headers) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let siblings: Vec<_> = r.files.keys().map(|f| json!({"rfilename": f})).collect();
    axum::Json(json!({
        "id": format!("{org}/{name}"),
        "sha": r.commit,
        "gated": if r.token.is_some() { json!("manual") } else { json!(false) },
        "siblings": siblings,
    }))
    .into_response()
}

async fn resolve(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name, rev, file)): UrlPath<(String, String, String, String)>,
) -> Response {
    log(
        &shared,
        &method,
        format!("/{org}/{name}/resolve/{rev}/{file}"),
        &headers,
    );
    let (commit, data) = {
        let repos = shared.repos.lock().unwrap();
        let r = match find(&repos, &format!("{org}/{name}"), &rev, &headers) {
            Ok(r) => r,
            Err(refusal) => return refusal.into_response(),
        };
        if let Some(token) = &r.token {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if sent != Some(&format!("Bearer {token}")) {
                let status = if sent.is_some() {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::UNAUTHORIZED
                };
                return refuse(status, "GatedRepo", "Access to this repo is restricted");
            }
        }
        let Some(data) = r.files.get(&file) else {
            return refuse(StatusCode::NOT_FOUND, "EntryNotFound", "Entry not found");
        };
        (r.commit.clone(), data.clone())
    };
    let sha = sha256(&data);
    if is_large(&file) {
        // The Hub's answer for a large file: a redirect to the CDN, with
        // the file's metadata on it.
        let cdn = shared.cdn_url.lock().unwrap().clone();
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("{cdn}/blobs/{sha}"))
            .header("x-repo-commit", commit)
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", data.len().to_string())
            .header(header::ETAG, format!("\"{sha}\""))
            .body(Body::empty())
            .unwrap();
    }
    let mut resp = serve(&shared, &method, &headers, &data, &sha);
    let h = resp.headers_mut();
    h.insert("x-repo-commit", commit.parse().unwrap());
    // Small files' etags are git blob ids (40 hex), not sha256.
    h.insert(header::ETAG, format!("\"{}\"", &sha[..40]).parse().unwrap());
    resp
}

async fn blob(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
) -> Response {
    log(&shared, &method, format!("/blobs/{sha}"), &headers);
    let data = shared.blobs.lock().unwrap().get(&sha).cloned();
    match data {
        Some(data) => serve(&shared, &method, &headers, &data, &sha),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The bytes, whole or from `Range: bytes=N-`, cut halfway when asked.
fn serve(
    shared: &Shared,
    method: &Method,
    headers: &HeaderMap,
    data: &Bytes,
    sha: &str,
) -> Response {
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<usize>().ok());
    let len = data.len();
    let (status, body) = match start {
        Some(n) if n >= len => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
        Some(n) => (StatusCode::PARTIAL_CONTENT, data.slice(n..)),
        None => (StatusCode::OK, data.clone()),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, body.len().to_string())
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(n) = start {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {n}-{}/{len}", len - 1),
        );
    }
    if *method == Method::HEAD {
        return builder.body(Body::empty()).unwrap();
    }
    let cut = {
        let mut cuts = shared.cuts.lock().unwrap();
        match cuts.get_mut(sha) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    if cut {
        // Half the body, then (once it is surely on the wire) the
        // connection breaks.
        let half = body.slice(..body.len() / 2);
        let stream = futures::stream::iter([Ok::<Bytes, std::io::Error>(half)]).chain(
            futures::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Err(std::io::Error::other("cut by the fake hub"))
            }),
        );
        return builder.body(Body::from_stream(stream)).unwrap();
    }
    builder.body(Body::from(body)).unwrap()
}

/// Splits a chain model's `model.safetensors` in `dir` into two shards and
/// an index, as large checkpoints are published.
pub fn shard(dir: &Path) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, group) in [first, second].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let mut out_header = serde_json::Map::new();
        let mut out_data = Vec::new();
        for name in group.iter() {
            let info = &header[name.as_str()];
            let offsets = info["data_offsets"].as_array().unwrap();
            let (a, b) = (
                offsets[0].as_u64().unwrap() as usize,
                offsets[1].as_u64().unwrap() as usize,
            );
            let start = out_data.len();
            out_data.extend_from_slice(&data[a..b]);
            let mut info = info.clone();
            info["data_offsets"] = json!([start, out_data.len()]);
            out_header.insert(name.to_string(), info);
            weight_map.insert(name.to_string(), json!(file));
        }
        let mut h = serde_json::Value::Object(out_header)
            .to_string()
            .into_bytes();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&out_data);
        std::fs::write(dir.join(&file), out).unwrap();
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        json!({"metadata": {"total_size": data.len()}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    std::fs::remove_file(path).unwrap();
}
