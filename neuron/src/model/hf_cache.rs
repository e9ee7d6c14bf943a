//! Where the Hugging Face cache is, as the `huggingface_hub` tools decide
//! it: shared by model resolution, hub downloads and the default
//! `model_roots`.

use std::path::PathBuf;

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
/// `~/.cache/huggingface`: where the Hub tools keep their token and cache.
pub fn hf_home_with(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(home) = env("HF_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(xdg) = env("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("huggingface"));
    }
    env("HOME").map(|h| PathBuf::from(h).join(".cache").join("huggingface"))
}

/// `$HF_HUB_CACHE` (or its old name `$HUGGINGFACE_HUB_CACHE`), else
/// `<HF home>/hub`.
pub fn hf_cache_dir_with(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        return Some(PathBuf::from(dir));
    }
    hf_home_with(env).map(|home| home.join("hub"))
}

/// The cache directory from this process's environment.
pub fn hf_cache_dir() -> Option<PathBuf> {
    hf_cache_dir_with(&process_env)
}

/// A variable of this process's environment, when set and not empty.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_cache_follows_the_hub_tools_order() {
        let cache = |pairs: &[(&str, &str)]| hf_cache_dir_with(&env_of(pairs));
        assert_eq!(
            cache(&[("HOME", "/h")]),
            Some(PathBuf::from("/h/.cache/huggingface/hub"))
        );
        assert_eq!(
            cache(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]),
            Some(PathBuf::from("/x/huggingface/hub"))
        );
        assert_eq!(
            cache(&[("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/hf")]),
            Some(PathBuf::from("/hf/hub"))
        );
        assert_eq!(
            cache(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(cache(&[]), None);
    }
}
