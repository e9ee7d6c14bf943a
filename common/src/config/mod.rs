//! Config files: TOML, unknown keys rejected, every error naming the file,
//! the line and the field so the operator knows exactly what to fix.

pub mod gateway;
pub mod models;
pub mod neuron;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} cannot be read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

impl ConfigError {
    /// A value that parsed but is not acceptable, located in `source`.
    pub fn invalid_value(
        path: &Path,
        source: &str,
        table: Option<(&str, usize)>,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line: find_key_line(source, table, field).unwrap_or(1),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Reads and parses a TOML file into `T`.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value = parse_toml(path, &source)?;
    Ok((value, source))
}

/// Parses TOML text that came from `path` (used in messages only).
pub fn parse_toml<T: DeserializeOwned>(path: &Path, source: &str) -> Result<T, ConfigError> {
    toml::from_str(source).map_err(|err| {
        let (line, snippet) = match err.span() {
            Some(span) => line_of(source, span.start),
            None => (1, String::new()),
        };
        let message = err.message().trim().to_string();
        let field = field_name(&message, &snippet);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            field,
            message,
        }
    })
}

/// 1-based line number of byte `offset`, and that line's text.
fn line_of(source: &str, offset: usize) -> (usize, String) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = source[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(source.len());
    (line, source[start..end].to_string())
}

/// The field an error is about: named in the message (`unknown field `x``,
/// `missing field `x``), else the key on the offending line.
fn field_name(message: &str, line: &str) -> String {
    for marker in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
        {
            return name.to_string();
        }
    }
    let trimmed = line.trim();
    if let Some((key, _)) = trimmed.split_once('=') {
        return key.trim().trim_matches('"').to_string();
    }
    trimmed
        .trim_matches(|c| c == '[' || c == ']')
        .trim()
        .to_string()
}

/// Line of `key = ...`, optionally inside the `index`-th `[[table]]` (or the
/// `[table]` when index is 0).
pub fn find_key_line(source: &str, table: Option<(&str, usize)>, key: &str) -> Option<usize> {
    let mut in_scope = table.is_none();
    let mut seen = 0usize;
    for (i, raw) in source.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            in_scope = match table {
                None => false,
                Some((name, index)) => {
                    let header = line.trim_matches(|c| c == '[' || c == ']').trim();
                    if header == name {
                        seen += 1;
                        seen - 1 == index
                    } else {
                        false
                    }
                }
            };
            continue;
        }
        if in_scope
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some(i + 1);
        }
    }
    None
}

/// Longest duration a setting may have (100 years).
const MAX_DURATION_SECS: f64 = 36500.0 * 86400.0;

/// Parses durations like `90s`, `10m`, `2h`, `1d`, `500ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{t}` has no unit; write e.g. `90s`, `10m`, `2h`"))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` does not start with a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{t}`; use ms, s, m, h or d"
            ));
        }
    };
    if secs <= 0.0 || !secs.is_finite() {
        return Err(format!("`{t}` must be a positive duration"));
    }
    // At most a century: larger values overflow the timers they feed.
    if secs > MAX_DURATION_SECS {
        return Err(format!("`{t}` is too long; at most 36500d"));
    }
    let d = std::time::Duration::from_secs_f64(secs);
    if d < std::time::Duration::from_millis(1) {
        return Err(format!("`{t}` is shorter than 1ms"));
    }
    Ok(d)
}

/// `deserialize_with` for optional duration fields written as `"10m"`; a
/// bad value is reported on its own line like any other type error.
pub fn deserialize_opt_duration<'de, D>(de: D) -> Result<Option<std::time::Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text: Option<String> = serde::Deserialize::deserialize(de)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        size: u32,
    }

    #[test]
    fn unknown_key_names_file_line_and_field() {
        let src = "name = \"a\"\n\nsiez = 3\n";
        let err = parse_toml::<Sample>(Path::new("x.toml"), src).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("x.toml:3: field `siez`"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_line_and_field() {
        let src = "name = \"a\"\nsize = \"big\"\n";
        let err = parse_toml::<Sample>(Path::new("x.toml"), src).unwrap_err();
        match err {
            ConfigError::Invalid { line, field, .. } => {
                assert_eq!(line, 2);
                assert_eq!(field, "size");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn key_lines_inside_array_tables() {
        let src = "[[m]]\nid = 1\n[[m]]\nid = 2\nttl = 3\n";
        assert_eq!(find_key_line(src, Some(("m", 1)), "ttl"), Some(5));
        assert_eq!(find_key_line(src, Some(("m", 0)), "ttl"), None);
        assert_eq!(find_key_line(src, Some(("m", 1)), "id"), Some(4));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0.0000001ms").is_err());
        assert!(parse_duration("99999999999999999999999d").is_err());
        assert!(parse_duration("1e999s").is_err());
        assert_eq!(parse_duration("36500d").unwrap().as_secs(), 36500 * 86400);
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = load_toml::<Sample>(Path::new("/nonexistent/cortex.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cortex.toml"));
    }
}
