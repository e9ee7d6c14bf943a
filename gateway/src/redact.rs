//! What clients may not see: file paths of the servers. Model sources that
//! are local paths stay out of `/v1/models`, and paths inside error
//! messages (a neuron's failed load, say) are replaced by `<path>` before
//! the message reaches a client. The admin API still shows them.

/// `source` if it may be shown to clients: not a local path.
pub fn public_source(source: &str) -> Option<&str> {
    let path = source.starts_with('/')
        || source.starts_with('~')
        || source.starts_with("./")
        || source.starts_with("../")
        || source.contains('\\')
        || source.as_bytes().get(1) == Some(&b':');
    (!path).then_some(source)
}

/// `message` with every absolute, home or relative path replaced by
/// `<path>`. A path starts after a space, a quote, a backtick or an opening
/// bracket (so the `//` of a URL is left alone) and runs to the next space,
/// quote, backtick, closing bracket or comma (less trailing `:`, `;`, `.`).
pub fn redact_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at_start = prev.is_none_or(|p| p.is_whitespace() || "'\"`([{=".contains(p));
        let starts_path = at_start
            && (rest.starts_with('/')
                && rest[1..]
                    .chars()
                    .next()
                    .is_some_and(|n| !n.is_whitespace() && !"'\"`)]},".contains(n))
                || rest.starts_with("~/")
                || rest.starts_with("./")
                || rest.starts_with("../"));
        if starts_path {
            let end = rest
                .find(|ch: char| ch.is_whitespace() || "'\"`)]},".contains(ch))
                .unwrap_or(rest.len());
            // Sentence punctuation after a path is not part of it.
            let end = rest[..end].trim_end_matches([':', ';', '.']).len().max(1);
            out.push_str("<path>");
            prev = rest[..end].chars().last();
            rest = &rest[end..];
            continue;
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_sources_are_not_public() {
        assert_eq!(public_source("embedded"), Some("embedded"));
        assert_eq!(public_source("Qwen/Qwen3-1.7B"), Some("Qwen/Qwen3-1.7B"));
        for p in ["/models/x.gguf", "~/m.gguf", "./m", "../m", "C:\\m.gguf"] {
            assert_eq!(public_source(p), None, "{p}");
        }
    }

    #[test]
    fn paths_in_messages_are_replaced_and_urls_kept() {
        assert_eq!(
            redact_paths("loading `m` failed: cannot open /srv/models/m.gguf: no such file"),
            "loading `m` failed: cannot open <path>: no such file"
        );
        assert_eq!(
            redact_paths("reading '~/x/y' and (./a/b), then ../c"),
            "reading '<path>' and (<path>), then <path>"
        );
        let url = "sending to http://10.0.0.2:13131/v1/chat/completions: reset";
        assert_eq!(redact_paths(url), url);
        assert_eq!(redact_paths("a / b"), "a / b", "a lone slash is no path");
        assert_eq!(redact_paths("ünïcode /p é"), "ünïcode <path> é");
    }
}
