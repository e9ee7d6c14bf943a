//! The `hf:` source syntax: `hf:ORG/NAME` (a safetensors repo) or
//! `hf:ORG/NAME/PATH.gguf` (one GGUF file in it), optionally `@REVISION` (a
//! branch, tag or commit; default `main`). Every part is checked here, once:
//! they become URL paths and file names in the cache.

/// What marks a source as one on the Hugging Face Hub.
pub const HUB_PREFIX: &str = "hf:";

/// The revision a source without `@` names.
pub const DEFAULT_REVISION: &str = "main";

/// A model on the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// `ORG/NAME`.
    pub repo: String,
    /// A GGUF file inside the repo (`dir/x.gguf` allowed); `None`: the
    /// repo's safetensors model.
    pub file: Option<String>,
    /// Branch, tag or commit.
    pub revision: String,
}

/// True when `source` names a model on the Hub.
pub fn is_hub(source: &str) -> bool {
    source.starts_with(HUB_PREFIX)
}

impl HubSource {
    /// Parses `hf:ORG/NAME[/PATH.gguf][@REVISION]`; the error says what is
    /// wrong and what to write instead.
    pub fn parse(source: &str) -> Result<HubSource, String> {
        let usage = "write hf:ORG/NAME (a safetensors model) or hf:ORG/NAME/FILE.gguf, \
                     optionally followed by @REVISION";
        let rest = source
            .strip_prefix(HUB_PREFIX)
            .ok_or_else(|| format!("`{source}` does not start with `{HUB_PREFIX}`"))?;
        let (path, revision) = match rest.split_once('@') {
            Some((path, revision)) => (path, revision),
            None => (rest, DEFAULT_REVISION),
        };
        check_revision(revision)?;
        let parts: Vec<&str> = path.split('/').collect();
        let (org, name, file) = match parts.as_slice() {
            [org, name] => (*org, *name, None),
            [org, name, file @ ..] => (*org, *name, Some(file.join("/"))),
            _ => return Err(format!("`{source}` names no repo: {usage}")),
        };
        for (what, part) in [("organisation", org), ("repo name", name)] {
            check_repo_part(part)
                .map_err(|why| format!("`{source}`: the {what} {why}; {usage}"))?;
        }
        if let Some(file) = &file {
            check_file_path(file).map_err(|why| format!("`{source}`: {why}"))?;
            if !is_gguf(file) {
                return Err(format!(
                    "`{source}`: a file named in an hf: source must be a GGUF (.gguf); for a \
                     safetensors model name the repo only (hf:{org}/{name})"
                ));
            }
        }
        Ok(HubSource {
            repo: format!("{org}/{name}"),
            file,
            revision: revision.to_string(),
        })
    }

    /// How the source reads, for messages.
    pub fn display(&self) -> String {
        let mut out = format!("{HUB_PREFIX}{}", self.repo);
        if let Some(file) = &self.file {
            out.push('/');
            out.push_str(file);
        }
        if self.revision != DEFAULT_REVISION {
            out.push('@');
            out.push_str(&self.revision);
        }
        out
    }
}

pub fn is_gguf(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("gguf"))
}

/// An organisation or repo name as the Hub allows them: letters, digits,
/// `-`, `_`, `.`, at most 96 characters, no `--` or `..`.
fn check_repo_part(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("is empty".into());
    }
    if part.len() > 96 {
        return Err("is longer than 96 characters".into());
    }
    if !part
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{part}` may hold only letters, digits, `-`, `_` and `.`"
        ));
    }
    if part.contains("--") || part.contains("..") || part.starts_with(['-', '.']) {
        return Err(format!(
            "`{part}` may not start with `-` or `.`, nor hold `--` or `..`"
        ));
    }
    Ok(())
}

/// A file path inside a repo (from a source, the Hub's file list or a
/// shard index): relative, no empty, `.` or `..` segment, no backslash or
/// control character. It becomes a path under the cache's snapshot.
pub fn check_file_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > 1024 {
        return Err("a file path must have 1 to 1024 characters".into());
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "file path `{path}` holds a control character or `\\`"
        ));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "file path `{path}` must be relative, without empty, `.` or `..` parts"
        ));
    }
    Ok(())
}

/// A branch, tag or commit: letters, digits, `-`, `_`, `.`, `/` (as in
/// `refs/pr/1`), no `..`, no leading or trailing `/`.
fn check_revision(revision: &str) -> Result<(), String> {
    let ok = !revision.is_empty()
        && revision.len() <= 255
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !revision.contains("..")
        && !revision.contains("//")
        && !revision.starts_with('/')
        && !revision.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "revision `{revision}` is not a branch, tag or commit (letters, digits, `-`, `_`, \
             `.`, `/`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_files_and_revisions_parse() {
        let s = HubSource::parse("hf:Qwen/Qwen3-0.6B").unwrap();
        assert_eq!(
            s,
            HubSource {
                repo: "Qwen/Qwen3-0.6B".into(),
                file: None,
                revision: "main".into()
            }
        );
        let s = HubSource::parse("hf:org/name/q4/model-Q4_K_M.gguf@v1.0").unwrap();
        assert_eq!(s.repo, "org/name");
        assert_eq!(s.file.as_deref(), Some("q4/model-Q4_K_M.gguf"));
        assert_eq!(s.revision, "v1.0");
        assert_eq!(s.display(), "hf:org/name/q4/model-Q4_K_M.gguf@v1.0");
        let s = HubSource::parse("hf:org/name@refs/pr/1").unwrap();
        assert_eq!(s.revision, "refs/pr/1");
    }

    #[test]
    fn bad_sources_say_what_to_write() {
        for bad in [
            "hf:",
            "hf:onlyname",
            "hf:org/",
            "hf:/name",
            "hf:org/na me",
            "hf:org/../etc",
            "hf:org/name/../../x.gguf",
            "hf:org/name/weights.safetensors",
            "hf:org/name@",
            "hf:org/name@../../x",
            "hf:org/name@/abs",
            "hf:org--x/name",
        ] {
            let err = HubSource::parse(bad).unwrap_err();
            assert!(err.contains('`'), "{bad}: {err}");
        }
        let err = HubSource::parse("hf:org/name/weights.safetensors").unwrap_err();
        assert!(err.contains("hf:org/name)"), "{err}");
    }
}
