//! The models pane: each model with its placements and state (a gauge while
//! loading), pinned marker, its requests (running / queued at a neuron /
//! waiting at the gateway), a tok/s sparkline and TTFT p50/p99.

use cortex_common::event::LoadPhase;
use cortex_common::status::{Placement, PlacementState};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table, TableState};

use crate::app::{App, Pane};
use crate::fleet::ModelView;
use crate::theme::Theme;

const STATE_W: u16 = 13;
/// Width of the RUN/Q/W column.
const LOAD_W: u16 = 8;
/// Narrowest pane that takes the wide layout: its fixed columns (116), the
/// gaps between its 12 columns (11), the border (3) and a MODEL column of
/// at least 16. Any narrower and MODEL would be squeezed to nothing.
const WIDE_MIN_WIDTH: u16 = 116 + 11 + 3 + 16;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let models = app.visible_models();
    let wide = area.width >= WIDE_MIN_WIDTH;
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(STATE_W),
        Constraint::Length(if wide { 24 } else { 12 }),
        Constraint::Length(LOAD_W),
        Constraint::Length(if wide { 30 } else { 10 }),
        Constraint::Length(11),
    ];
    let mut header = vec![
        "",
        "MODEL",
        "STATE",
        "NODES",
        "RUN/Q/W",
        "TOK/S",
        "TTFT p50/99",
    ];
    if wide {
        widths.extend([
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(4),
        ]);
        header.extend(["TOK/S", "REQS", "ERR", "MEMORY", "PRIO"]);
    }
    let inner = Rect {
        width: area.width.saturating_sub(2 + 1),
        ..area
    };
    let cols = Layout::horizontal(widths.clone()).spacing(1).split(inner);
    let spark_w = cols[5].width as usize;

    // Only the rows on screen are built: a fleet of hundreds stays cheap.
    let sel = app.model_index(&models);
    let visible_rows = (area.height.saturating_sub(3) as usize).max(1);
    let offset = match sel {
        Some(s) if s >= visible_rows => s + 1 - visible_rows,
        _ => 0,
    };
    let rows: Vec<Row> = models
        .iter()
        .skip(offset)
        .take(visible_rows.max(1))
        .map(|m| model_row(m, t, spark_w, wide))
        .collect();

    let right = if app.filter.is_empty() {
        format!(" {} ", app.fleet.models.len())
    } else {
        format!(
            " /{} {}/{} ",
            app.filter,
            models.len(),
            app.fleet.models.len()
        )
    };
    let table = Table::new(rows, widths);
    let table = super::pane_table(
        app,
        Pane::Models,
        table,
        header,
        "models".into(),
        Some(right),
    );
    let mut state = TableState::default().with_selected(sel.map(|s| s - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

fn model_row<'a>(m: &'a ModelView, t: &Theme, spark_w: usize, wide: bool) -> Row<'a> {
    let s = &m.status;
    let pin = if s.pinned {
        Span::styled("⚑", t.pinned())
    } else {
        Span::raw(" ")
    };
    let mut cells = vec![
        Cell::from(pin),
        Cell::from(s.id.as_str()).style(t.text()),
        Cell::from(state_line(&s.placements, m.load_phase(), t)),
        Cell::from(nodes_line(&s.placements, t)),
        Cell::from(load_line(m, t)),
        Cell::from(super::spark_text(m.spark.iter().copied(), spark_w)).style(t.sparkline()),
        Cell::from(
            Line::from(format!(
                "{}/{}ms",
                super::num(s.ttft_ms.p50),
                super::num(s.ttft_ms.p99)
            ))
            .right_aligned(),
        )
        .style(t.text()),
    ];
    if wide {
        cells.push(Cell::from(Line::from(super::num(s.tok_s.p50)).right_aligned()).style(t.text()));
        cells.push(
            Cell::from(Line::from(s.requests_total.to_string()).right_aligned()).style(t.text()),
        );
        cells.push(
            Cell::from(Line::from(s.errors_total.to_string()).right_aligned()).style(
                if s.errors_total > 0 {
                    t.error()
                } else {
                    t.muted()
                },
            ),
        );
        cells.push(
            Cell::from(Line::from(format!("{} MiB", s.memory_mb)).right_aligned()).style(t.muted()),
        );
        cells.push(
            Cell::from(Line::from(s.residency_priority.to_string()).right_aligned())
                .style(t.muted()),
        );
    }
    Row::new(cells)
}

/// `running/queued/waiting`: generating on a neuron, queued at a neuron
/// for a batch slot, waiting at the gateway for room on any replica. The
/// waiting count stands out: those requests have no replica yet.
fn load_line<'a>(m: &ModelView, t: &Theme) -> Line<'a> {
    let (running, queued, waiting) = m.load();
    let idle = running + queued + waiting == 0;
    let busy = if idle { t.muted() } else { t.accent() };
    Line::from(vec![
        Span::styled(format!("{running}/{queued}/"), busy),
        Span::styled(
            waiting.to_string(),
            if waiting > 0 { t.warn() } else { busy },
        ),
    ])
    .right_aligned()
}

/// `loaded`, `loaded ×2`, a progress gauge while loading (marked `↓`
/// while the files download from the Hub), `unloading`, `cold` when
/// resident nowhere.
fn state_line<'a>(placements: &[Placement], phase: Option<LoadPhase>, t: &Theme) -> Line<'a> {
    if let Some(p) = placements
        .iter()
        .find(|p| p.state == PlacementState::Loading)
    {
        return match p.progress {
            Some(pr) if pr.total > 0 => {
                let frac = pr.done as f64 / pr.total as f64;
                let download = phase == Some(LoadPhase::Download);
                let mut spans = Vec::new();
                if download {
                    spans.push(Span::styled("↓", t.gauge()));
                }
                spans.extend(super::bar_spans(
                    frac,
                    STATE_W as usize - 5 - usize::from(download),
                    t.gauge(),
                    t.bar_free(),
                ));
                spans.push(Span::styled(format!("{:>4.0}%", frac * 100.0), t.gauge()));
                Line::from(spans)
            }
            _ => Line::from(Span::styled("loading…", t.gauge())),
        };
    }
    let loaded = placements
        .iter()
        .filter(|p| p.state == PlacementState::Loaded)
        .count();
    if loaded > 1 {
        Line::from(Span::styled(format!("loaded ×{loaded}"), t.ok()))
    } else if loaded == 1 {
        Line::from(Span::styled("loaded", t.ok()))
    } else if placements.is_empty() {
        Line::from(Span::styled("cold", t.muted()))
    } else {
        Line::from(Span::styled("unloading", t.warn()))
    }
}

/// The nodes a model is on, each coloured by its state there.
fn nodes_line<'a>(placements: &'a [Placement], t: &Theme) -> Line<'a> {
    if placements.is_empty() {
        return Line::from(Span::styled("-", t.muted()));
    }
    let mut spans = Vec::new();
    for (i, p) in placements.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        let (text, style) = match p.state {
            PlacementState::Loaded => (p.node.clone(), t.text()),
            PlacementState::Loading => (format!("{}…", p.node), t.gauge()),
            PlacementState::Unloading => (format!("{}↓", p.node), t.warn()),
        };
        spans.push(Span::styled(text, style));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_common::neuron_api::Progress;

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn a_download_is_marked_in_the_gauge() {
        let mut p = crate::fixtures::placement("a", PlacementState::Loading, 0);
        p.progress = Some(Progress { done: 1, total: 4 });
        let t = Theme::dark();
        let download = text(&state_line(
            std::slice::from_ref(&p),
            Some(LoadPhase::Download),
            &t,
        ));
        let read = text(&state_line(
            std::slice::from_ref(&p),
            Some(LoadPhase::Read),
            &t,
        ));
        assert!(
            download.starts_with('↓') && download.ends_with("25%"),
            "{download}"
        );
        assert!(!read.contains('↓') && read.ends_with("25%"), "{read}");
        assert_eq!(download.chars().count(), read.chars().count());
        assert_eq!(read.chars().count(), STATE_W as usize);
    }
}
