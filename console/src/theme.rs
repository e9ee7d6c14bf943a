//! Colour themes: `themes/*.toml` files, with the three built-in themes
//! embedded as a fallback so the binary works from anywhere. `NO_COLOR`
//! (set and non-empty) or the theme `mono` gives a monochrome console that
//! marks things with bold, reverse and underline instead of colour.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use thiserror::Error;

/// Built-in themes, name and TOML text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

pub const DEFAULT_THEME: &str = "dark";
pub const MONO: &str = "mono";

#[derive(Debug, Error)]
pub enum ThemeError {
    #[error("unknown theme '{name}' (available: {available})")]
    Unknown { name: String, available: String },
    #[error("cannot read theme {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("theme {origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    pub text: Color,
    pub muted: Color,
    pub accent: Color,
    pub title: Color,
    pub border: Color,
    pub border_focused: Color,
    pub selected_fg: Color,
    pub selected_bg: Color,
    pub ok: Color,
    pub warn: Color,
    pub error: Color,
    pub pinned: Color,
    pub bar_used: Color,
    pub bar_free: Color,
    pub gauge: Color,
    pub sparkline: Color,
    pub chart: Color,
    pub header_fg: Color,
    pub header_bg: Color,
}

impl Palette {
    const DARK: Palette = Palette {
        text: Color::Gray,
        muted: Color::DarkGray,
        accent: Color::Cyan,
        title: Color::LightCyan,
        border: Color::DarkGray,
        border_focused: Color::Cyan,
        selected_fg: Color::Black,
        selected_bg: Color::Cyan,
        ok: Color::Green,
        warn: Color::Yellow,
        error: Color::LightRed,
        pinned: Color::Magenta,
        bar_used: Color::Cyan,
        bar_free: Color::DarkGray,
        gauge: Color::Yellow,
        sparkline: Color::LightGreen,
        chart: Color::Cyan,
        header_fg: Color::White,
        header_bg: Color::Reset,
    };

    const MONO: Palette = Palette {
        text: Color::Reset,
        muted: Color::Reset,
        accent: Color::Reset,
        title: Color::Reset,
        border: Color::Reset,
        border_focused: Color::Reset,
        selected_fg: Color::Reset,
        selected_bg: Color::Reset,
        ok: Color::Reset,
        warn: Color::Reset,
        error: Color::Reset,
        pinned: Color::Reset,
        bar_used: Color::Reset,
        bar_free: Color::Reset,
        gauge: Color::Reset,
        sparkline: Color::Reset,
        chart: Color::Reset,
        header_fg: Color::Reset,
        header_bg: Color::Reset,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub name: String,
    pub mono: bool,
    pub c: Palette,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    colors: ColorsFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ColorsFile {
    text: Option<String>,
    muted: Option<String>,
    accent: Option<String>,
    title: Option<String>,
    border: Option<String>,
    border_focused: Option<String>,
    selected_fg: Option<String>,
    selected_bg: Option<String>,
    ok: Option<String>,
    warn: Option<String>,
    error: Option<String>,
    pinned: Option<String>,
    bar_used: Option<String>,
    bar_free: Option<String>,
    gauge: Option<String>,
    sparkline: Option<String>,
    chart: Option<String>,
    header_fg: Option<String>,
    header_bg: Option<String>,
}

impl Theme {
    pub fn dark() -> Self {
        Theme {
            name: DEFAULT_THEME.to_string(),
            mono: false,
            c: Palette::DARK,
        }
    }

    pub fn mono() -> Self {
        Theme {
            name: MONO.to_string(),
            mono: true,
            c: Palette::MONO,
        }
    }

    /// Parses a theme file's text; `origin` names it in errors.
    pub fn parse(name: &str, text: &str, origin: &str) -> Result<Self, ThemeError> {
        let file: ThemeFile = toml::from_str(text).map_err(|e| ThemeError::Invalid {
            origin: origin.to_string(),
            message: e.to_string().trim().to_string(),
        })?;
        let mut c = Palette::DARK;
        let f = file.colors;
        let slots: [(&str, Option<String>, &mut Color); 19] = [
            ("text", f.text, &mut c.text),
            ("muted", f.muted, &mut c.muted),
            ("accent", f.accent, &mut c.accent),
            ("title", f.title, &mut c.title),
            ("border", f.border, &mut c.border),
            ("border_focused", f.border_focused, &mut c.border_focused),
            ("selected_fg", f.selected_fg, &mut c.selected_fg),
            ("selected_bg", f.selected_bg, &mut c.selected_bg),
            ("ok", f.ok, &mut c.ok),
            ("warn", f.warn, &mut c.warn),
            ("error", f.error, &mut c.error),
            ("pinned", f.pinned, &mut c.pinned),
            ("bar_used", f.bar_used, &mut c.bar_used),
            ("bar_free", f.bar_free, &mut c.bar_free),
            ("gauge", f.gauge, &mut c.gauge),
            ("sparkline", f.sparkline, &mut c.sparkline),
            ("chart", f.chart, &mut c.chart),
            ("header_fg", f.header_fg, &mut c.header_fg),
            ("header_bg", f.header_bg, &mut c.header_bg),
        ];
        for (key, value, slot) in slots {
            if let Some(v) = value {
                *slot = Color::from_str(&v).map_err(|_| ThemeError::Invalid {
                    origin: origin.to_string(),
                    message: format!("colors.{key}: '{v}' is not a colour name or #rrggbb"),
                })?;
            }
        }
        Ok(Theme {
            name: name.to_string(),
            mono: false,
            c,
        })
    }

    // ---- styles the widgets use ----

    pub fn text(&self) -> Style {
        Style::new().fg(self.c.text)
    }
    pub fn muted(&self) -> Style {
        if self.mono {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new().fg(self.c.muted)
        }
    }
    pub fn accent(&self) -> Style {
        Style::new().fg(self.c.accent)
    }
    pub fn title(&self, focused: bool) -> Style {
        let s = Style::new().fg(self.c.title).add_modifier(Modifier::BOLD);
        if focused && self.mono {
            s.add_modifier(Modifier::UNDERLINED)
        } else {
            s
        }
    }
    pub fn border(&self, focused: bool) -> Style {
        if focused {
            Style::new().fg(self.c.border_focused)
        } else {
            Style::new().fg(self.c.border)
        }
    }
    pub fn selected(&self) -> Style {
        if self.mono {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
                .fg(self.c.selected_fg)
                .bg(self.c.selected_bg)
                .add_modifier(Modifier::BOLD)
        }
    }
    pub fn ok(&self) -> Style {
        Style::new().fg(self.c.ok)
    }
    pub fn warn(&self) -> Style {
        let s = Style::new().fg(self.c.warn);
        if self.mono {
            s.add_modifier(Modifier::BOLD)
        } else {
            s
        }
    }
    pub fn error(&self) -> Style {
        let s = Style::new().fg(self.c.error).add_modifier(Modifier::BOLD);
        if self.mono {
            s.add_modifier(Modifier::REVERSED)
        } else {
            s
        }
    }
    pub fn pinned(&self) -> Style {
        Style::new().fg(self.c.pinned).add_modifier(Modifier::BOLD)
    }
    pub fn bar_used(&self) -> Style {
        Style::new().fg(self.c.bar_used)
    }
    pub fn bar_free(&self) -> Style {
        Style::new().fg(self.c.bar_free)
    }
    pub fn gauge(&self) -> Style {
        Style::new().fg(self.c.gauge)
    }
    pub fn sparkline(&self) -> Style {
        Style::new().fg(self.c.sparkline)
    }
    pub fn chart(&self) -> Style {
        Style::new().fg(self.c.chart)
    }
    pub fn header(&self) -> Style {
        Style::new().fg(self.c.header_fg).bg(self.c.header_bg)
    }
}

/// Whether `NO_COLOR` asks for a monochrome console (set and non-empty).
pub fn no_color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Where theme files are looked for, first match wins: `$CORTEX_THEMES_DIR`,
/// `themes/` beside the executable and in its parent folders (an installed
/// layout, or `target/debug/` inside the repository), `themes/` under the
/// current directory, and the source tree the binary was built from.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("CORTEX_THEMES_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            dirs.push(anc.join("themes"));
            dirs.push(anc.join("share/cortex/themes"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join("themes"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../themes"));
    dirs
}

/// Theme names available from `dirs` and the built-ins, sorted, plus `mono`.
pub fn available(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                names.push(stem.to_string());
            }
        }
    }
    names.push(MONO.to_string());
    names.sort();
    names.dedup();
    names
}

/// Loads the theme `name`: a path to a `.toml` file, `mono`, a file
/// `NAME.toml` in one of `dirs`, or a built-in theme.
pub fn load(name: &str, dirs: &[PathBuf]) -> Result<Theme, ThemeError> {
    if name == MONO {
        return Ok(Theme::mono());
    }
    let as_path = Path::new(name);
    if as_path.extension().is_some_and(|e| e == "toml") {
        let text = std::fs::read_to_string(as_path).map_err(|source| ThemeError::Read {
            path: as_path.to_path_buf(),
            source,
        })?;
        let stem = as_path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
        return Theme::parse(stem, &text, &as_path.display().to_string());
    }
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid_name {
        for dir in dirs {
            let path = dir.join(format!("{name}.toml"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Theme::parse(name, &text, &path.display().to_string());
            }
        }
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
            return Theme::parse(name, text, &format!("built-in {name}"));
        }
    }
    Err(ThemeError::Unknown {
        name: name.to_string(),
        available: available(dirs).join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_differ() {
        let themes: Vec<Theme> = BUILTIN
            .iter()
            .map(|(n, t)| Theme::parse(n, t, n).unwrap())
            .collect();
        assert_eq!(
            themes[0],
            Theme::dark(),
            "dark.toml matches the built-in palette"
        );
        assert_ne!(themes[0].c, themes[1].c);
        assert_ne!(themes[1].c, themes[2].c);
        assert_eq!(themes[1].c.selected_bg, Color::Blue);
        assert_eq!(themes[1].c.muted, Color::Rgb(0x6c, 0x6c, 0x6c));
    }

    #[test]
    fn loads_builtins_without_any_dir() {
        for name in ["dark", "light", "high-contrast"] {
            assert_eq!(load(name, &[]).unwrap().name, name);
        }
        assert!(load("mono", &[]).unwrap().mono);
    }

    #[test]
    fn a_file_in_a_dir_wins_over_the_builtin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dark.toml"),
            "[colors]\naccent = \"#010203\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("solar.toml"), "[colors]\nok = \"blue\"\n").unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        assert_eq!(load("dark", &dirs).unwrap().c.accent, Color::Rgb(1, 2, 3));
        assert_eq!(load("solar", &dirs).unwrap().c.ok, Color::Blue);
        let names = available(&dirs);
        assert!(names.contains(&"solar".to_string()));
        assert!(names.contains(&"mono".to_string()));
        let path = dir.path().join("solar.toml");
        assert_eq!(load(path.to_str().unwrap(), &[]).unwrap().name, "solar");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = load("nope", &[]).unwrap_err().to_string();
        assert!(err.contains("unknown theme 'nope'"), "{err}");
        assert!(err.contains("high-contrast"), "{err}");
        let err = Theme::parse("x", "[colors]\naccent = \"blurple\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colors.accent: 'blurple'"), "{err}");
        let err = Theme::parse("x", "[colors]\naccnet = \"red\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("accnet"), "{err}");
        assert!(load("../etc/passwd", &[]).is_err());
    }

    #[test]
    fn the_themes_folder_holds_the_builtins() {
        // The embedded copies are the files themselves; check the folder
        // the repository ships is found from the source tree.
        let dirs = search_dirs();
        let names = available(&dirs);
        for name in ["dark", "light", "high-contrast", "mono"] {
            assert!(names.contains(&name.to_string()), "{names:?}");
        }
    }
}
