//! The `:` command line: `load MODEL [NODE]`, `unload MODEL [NODE]`,
//! `evict MODEL NODE`, `pin MODEL`, `unpin MODEL`, `theme NAME`, `help`,
//! `quit`.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Load { model: String, node: Option<String> },
    Unload { model: String, node: Option<String> },
    Evict { model: String, node: String },
    Pin { model: String },
    Unpin { model: String },
    Theme { name: String },
    Help,
    Quit,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("empty command")]
    Empty,
    #[error("unknown command '{0}' (try :help)")]
    Unknown(String),
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// What `:help` and errors show.
pub const USAGE: &[(&str, &str)] = &[
    (
        "load MODEL [NODE]",
        "on NODE, or where the gateway places it",
    ),
    ("unload MODEL [NODE]", "everywhere, or from NODE only"),
    ("evict MODEL NODE", "unload from one node"),
    ("pin MODEL", "never evict it"),
    ("unpin MODEL", "let it be evicted again"),
    ("theme NAME", "dark, light, high-contrast, mono"),
    ("quit", "leave the console"),
];

impl Command {
    /// Whether the command changes the fleet (hidden by `--readonly`).
    pub fn is_action(&self) -> bool {
        matches!(
            self,
            Command::Load { .. }
                | Command::Unload { .. }
                | Command::Evict { .. }
                | Command::Pin { .. }
                | Command::Unpin { .. }
        )
    }
}

pub fn parse(line: &str) -> Result<Command, ParseError> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Err(ParseError::Empty);
    };
    let args: Vec<String> = words.map(str::to_string).collect();
    let mut args = args.into_iter();
    let (a, b, extra) = (args.next(), args.next(), args.next());
    let cmd = match (verb, a, b, extra) {
        ("load", Some(model), node, None) => Command::Load { model, node },
        ("load", ..) => return Err(ParseError::Usage("load MODEL [NODE]")),
        ("unload", Some(model), node, None) => Command::Unload { model, node },
        ("unload", ..) => return Err(ParseError::Usage("unload MODEL [NODE]")),
        ("evict", Some(model), Some(node), None) => Command::Evict { model, node },
        ("evict", ..) => return Err(ParseError::Usage("evict MODEL NODE")),
        ("pin", Some(model), None, None) => Command::Pin { model },
        ("pin", ..) => return Err(ParseError::Usage("pin MODEL")),
        ("unpin", Some(model), None, None) => Command::Unpin { model },
        ("unpin", ..) => return Err(ParseError::Usage("unpin MODEL")),
        ("theme", Some(name), None, None) => Command::Theme { name },
        ("theme", ..) => return Err(ParseError::Usage("theme NAME")),
        ("help" | "h" | "?", None, None, None) => Command::Help,
        ("quit" | "q" | "q!" | "exit", None, None, None) => Command::Quit,
        (other, ..) => return Err(ParseError::Unknown(other.to_string())),
    };
    Ok(cmd)
}

/// Completes the verb being typed, for Tab in the command line.
pub fn complete(line: &str) -> Option<&'static str> {
    const VERBS: &[&str] = &[
        "load", "unload", "evict", "pin", "unpin", "theme", "help", "quit",
    ];
    let word = line.trim_start();
    if word.is_empty() || word.contains(' ') {
        return None;
    }
    let mut hits = VERBS.iter().filter(|v| v.starts_with(word));
    match (hits.next(), hits.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_verb() {
        assert_eq!(
            parse("load m"),
            Ok(Command::Load {
                model: "m".into(),
                node: None
            })
        );
        assert_eq!(
            parse("  load   m   n1 "),
            Ok(Command::Load {
                model: "m".into(),
                node: Some("n1".into())
            })
        );
        assert_eq!(
            parse("unload m"),
            Ok(Command::Unload {
                model: "m".into(),
                node: None
            })
        );
        assert_eq!(
            parse("evict m n"),
            Ok(Command::Evict {
                model: "m".into(),
                node: "n".into()
            })
        );
        assert_eq!(parse("pin m"), Ok(Command::Pin { model: "m".into() }));
        assert_eq!(parse("unpin m"), Ok(Command::Unpin { model: "m".into() }));
        assert_eq!(
            parse("theme light"),
            Ok(Command::Theme {
                name: "light".into()
            })
        );
        assert_eq!(parse("q"), Ok(Command::Quit));
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("help"), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_lines_with_usage() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("   "), Err(ParseError::Empty));
        assert_eq!(parse("load"), Err(ParseError::Usage("load MODEL [NODE]")));
        assert_eq!(
            parse("load a b c"),
            Err(ParseError::Usage("load MODEL [NODE]"))
        );
        assert_eq!(parse("evict m"), Err(ParseError::Usage("evict MODEL NODE")));
        assert_eq!(parse("pin a b"), Err(ParseError::Usage("pin MODEL")));
        assert_eq!(parse("quit now"), Err(ParseError::Unknown("quit".into())));
        assert_eq!(
            parse("frobnicate"),
            Err(ParseError::Unknown("frobnicate".into()))
        );
        assert_eq!(
            parse("frobnicate").unwrap_err().to_string(),
            "unknown command 'frobnicate' (try :help)"
        );
    }

    #[test]
    fn actions_are_marked() {
        assert!(parse("pin m").unwrap().is_action());
        assert!(!parse("theme dark").unwrap().is_action());
        assert!(!parse("quit").unwrap().is_action());
    }

    #[test]
    fn completes_unique_prefixes() {
        assert_eq!(complete("unp"), Some("unpin"));
        assert_eq!(complete("th"), Some("theme"));
        assert_eq!(complete("un"), None); // unload or unpin
        assert_eq!(complete("load m"), None);
    }
}
