//! Drawing: a pure function of the [`App`] state onto a ratatui frame, one
//! file per pane or overlay. Nothing here changes state: what the layout
//! measured that keys need (the rows a page holds) is returned as a
//! [`Drawn`], which the runtime hands back to `update`.

mod detail;
mod dialog;
mod header;
mod help;
mod log;
mod models;
mod nodes;
mod requests;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, HighlightSpacing, Row, Table};

use crate::app::{App, Drawn, Mode, Pane, Screen};

/// Draws the whole console; returns what the layout measured.
pub fn draw(frame: &mut Frame, app: &App) -> Drawn {
    let area = frame.area();
    let banner =
        u16::from(app.is_stale() || matches!(app.conn, crate::app::Conn::Disconnected { .. }));
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1 + banner),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(frame, head, app);
    if app.screen == Screen::Requests {
        let page_rows = requests::draw(frame, body, app);
        footer(frame, foot, app);
        draw_overlay(frame, area, app);
        return Drawn { page_rows };
    }

    let node_rows = nodes::row_count(app) as u16;
    let third = (body.height / 3).max(4);
    let nodes_h = (node_rows + 3).clamp(4, third);
    let bottom_h = if app.focus == Pane::Detail {
        (body.height * 11 / 20).max(8)
    } else {
        (body.height * 7 / 20).max(7)
    };
    // The models pane takes what its rows need; the detail gets the rest.
    let model_rows = app.visible_models().len() as u16;
    let models_room = body.height.saturating_sub(nodes_h + bottom_h).max(4);
    let models_h = (model_rows + 3).clamp(4, models_room);
    let [nodes_area, models_area, bottom] = Layout::vertical([
        Constraint::Length(nodes_h),
        Constraint::Length(models_h),
        Constraint::Fill(1),
    ])
    .areas(body);
    let [detail_area, log_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);

    nodes::draw(frame, nodes_area, app);
    models::draw(frame, models_area, app);
    detail::draw(frame, detail_area, app);
    log::draw(frame, log_area, app);
    footer(frame, foot, app);
    draw_overlay(frame, area, app);
    Drawn {
        page_rows: page_rows(models_area),
    }
}

/// Rows a table drawn in `area` shows (borders and header aside).
fn page_rows(area: Rect) -> usize {
    area.height.saturating_sub(3).max(1) as usize
}

/// Help or a dialog over whichever screen is showing.
fn draw_overlay(frame: &mut Frame, area: Rect, app: &App) {
    match &app.mode {
        Mode::Help => help::draw(frame, area, app),
        Mode::Dialog(d) => dialog::draw(frame, area, app, d),
        _ => {}
    }
}

/// A pane's frame: numbered title, focus colour, optional right-hand title.
fn pane_block<'a>(app: &App, pane: Pane, title: String, right: Option<String>) -> Block<'a> {
    let focused = app.focus == pane;
    let t = &app.theme;
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(t.border(focused))
        .title(Line::from(vec![
            Span::styled(format!("{}", pane.index() + 1), t.accent()),
            Span::raw(" "),
            Span::styled(title, t.title(focused)),
        ]));
    if app.is_stale() {
        block = block.title(Line::from(Span::styled(" stale ", t.warn())).right_aligned());
    } else if let Some(r) = right {
        block = block.title(Line::from(Span::styled(r, t.muted())).right_aligned());
    }
    block
}

/// A pane's table of `rows`: the `header` muted, the pane's frame, and the
/// selected row marked ▶ and highlighted — only in bold while another pane
/// has the focus.
fn pane_table<'a>(
    app: &App,
    pane: Pane,
    table: Table<'a>,
    header: Vec<&'a str>,
    title: String,
    right: Option<String>,
) -> Table<'a> {
    let t = &app.theme;
    let bold = Modifier::BOLD;
    table
        .header(Row::new(header).style(t.muted().add_modifier(bold)))
        .block(pane_block(app, pane, title, right))
        .column_spacing(1)
        .highlight_symbol("▶")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(if app.focus == pane {
            t.selected()
        } else {
            t.text().add_modifier(bold)
        })
}

/// The bottom line: what is being typed, the latest notice, or key hints.
fn footer(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let mut spans: Vec<Span> = Vec::new();
    match &app.mode {
        Mode::Filter => {
            spans.push(Span::styled("/", t.accent()));
            spans.push(Span::styled(app.filter.clone(), t.text()));
            spans.push(Span::styled("█", t.accent()));
            spans.push(Span::styled("  Enter keep · Esc clear", t.muted()));
        }
        Mode::Command => {
            spans.push(Span::styled(":", t.accent()));
            spans.push(Span::styled(app.input.clone(), t.text()));
            spans.push(Span::styled("█", t.accent()));
            spans.push(Span::styled(
                "  Tab complete · Enter run · Esc cancel",
                t.muted(),
            ));
        }
        _ => {
            if let Some(n) = app.live_notice() {
                let style = match n.level {
                    crate::fleet::Level::Error => t.error(),
                    crate::fleet::Level::Warn => t.warn(),
                    crate::fleet::Level::Info => t.ok(),
                };
                spans.push(Span::styled(n.text.clone(), style));
            } else {
                if !app.filter.is_empty() {
                    spans.push(Span::styled(format!("/{} ", app.filter), t.accent()));
                }
                let hints: &[(&str, &str, bool)] = &[
                    ("?", "help", false),
                    ("/", "filter", false),
                    (":", "cmd", false),
                    ("r", "requests", false),
                    ("l", "load", true),
                    ("p", "pin", true),
                    ("u", "unload", true),
                    ("e", "evict", true),
                    ("q", "quit", false),
                ];
                for (k, what, action) in hints {
                    if *action && app.readonly {
                        continue;
                    }
                    spans.push(Span::styled(*k, t.accent()));
                    spans.push(Span::styled(format!(" {what}  "), t.muted()));
                }
                if app.readonly {
                    spans.push(Span::styled("read-only", t.warn()));
                }
            }
        }
    }
    let mut line = Line::from(spans);
    if !app.pending.is_empty() {
        let busy = app
            .pending
            .iter()
            .map(|p| p.describe())
            .collect::<Vec<_>>()
            .join(", ");
        let right = format!(" ⋯ {busy}");
        let used: usize = line.width();
        let room = (area.width as usize).saturating_sub(used);
        if room > 4 {
            let right: String = right.chars().take(room).collect();
            let pad = room.saturating_sub(right.chars().count());
            line.push_span(Span::raw(" ".repeat(pad)));
            line.push_span(Span::styled(right, t.warn()));
        }
    }
    frame.render_widget(line, area);
}

/// `▕████░░░░▏` with `used/total` of `width` cells (edges excluded).
pub(crate) fn bar_spans<'a>(frac: f64, width: usize, used: Style, free: Style) -> Vec<Span<'a>> {
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (frac * width as f64 * 8.0).round() as usize;
    let full = eighths / 8;
    let part = eighths % 8;
    let mut filled = "█".repeat(full.min(width));
    let mut cells = full.min(width);
    if part > 0 && cells < width {
        filled.push_str(PARTS[part]);
        cells += 1;
    }
    vec![
        Span::styled(filled, used),
        Span::styled("·".repeat(width - cells), free),
    ]
}

/// A one-line sparkline of `values` (oldest first), the last `width` of
/// them, scaled to the largest shown.
pub(crate) fn spark_text(
    values: impl DoubleEndedIterator<Item = u64> + Clone,
    width: usize,
) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail: Vec<u64> = values.rev().take(width).collect();
    let max = tail.iter().copied().max().unwrap_or(0);
    let mut out = String::with_capacity(width * 3);
    for _ in tail.len()..width {
        out.push(' ');
    }
    for v in tail.iter().rev() {
        let c = if max == 0 || *v == 0 {
            '▁'
        } else {
            LEVELS[((*v as f64 / max as f64) * 7.0).round() as usize]
        };
        out.push(c);
    }
    out
}

/// `42`, `4.2`, `0.42`, `-` for none.
pub(crate) fn num(v: Option<f64>) -> String {
    // -0.0 (a rate that rounds to nothing) prints as 0.
    match v.map(|v| if v.abs() < 1e-9 { 0.0 } else { v }) {
        None => "-".to_string(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// `12:00:05` (UTC) of a Unix-epoch millisecond.
pub(crate) fn clock(ts_ms: u64) -> String {
    let s = (ts_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// `5s`, `3m`, `2h` of a duration in ms.
pub(crate) fn ago(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// A rectangle of at most `w`×`h` centred in `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_proportionally() {
        let s = Style::new();
        let text = |f: f64| -> String {
            bar_spans(f, 8, s, s)
                .iter()
                .map(|sp| sp.content.to_string())
                .collect()
        };
        assert_eq!(text(0.0), "········");
        assert_eq!(text(0.5), "████····");
        assert_eq!(text(1.0), "████████");
        assert_eq!(text(2.0), "████████");
        assert_eq!(text(f64::NAN), "········");
        assert_eq!(text(0.0625), "▌·······");
    }

    #[test]
    fn sparklines_scale_to_the_max() {
        assert_eq!(spark_text([0u64, 7, 14].into_iter(), 3), "▁▅█");
        assert_eq!(spark_text([5u64].into_iter(), 3), "  █");
        assert_eq!(spark_text([1u64, 2, 3, 4].into_iter(), 2), "▆█");
        assert_eq!(spark_text(std::iter::empty(), 2), "  ");
    }

    #[test]
    fn formats() {
        assert_eq!(num(None), "-");
        assert_eq!(num(Some(-0.0)), "0.0");
        assert_eq!(num(Some(3.04)), "3.0");
        assert_eq!(num(Some(42.4)), "42");
        assert_eq!(clock(crate::fixtures::T0 + 65_000), "12:01:05");
        assert_eq!(ago(5_000), "5s");
        assert_eq!(ago(120_000), "2m");
    }
}
