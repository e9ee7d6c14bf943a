//! The requests screen (`r`): a throughput chart over the last minutes
//! (tokens/s and requests/s, the fleet's and the selected request's model),
//! the requests in flight and recent (model, node, state, tokens with those
//! spent reasoning, TTFT, duration, finish), and with Enter the selected
//! request's events in order.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, BorderType, Cell, Chart, Dataset, GraphType, HighlightSpacing, Paragraph, Row,
    Table, TableState,
};

use crate::app::App;
use crate::requests::{RequestState, RequestView};
use crate::theme::Theme;

/// Seconds the chart spans at most (one column per second at best).
const CHART_SECONDS: u64 = 300;

/// Draws the screen; returns the rows a page of the table holds.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) -> usize {
    let chart_h = (area.height / 3).clamp(6, 12);
    let [chart_area, rest] =
        Layout::vertical([Constraint::Length(chart_h), Constraint::Fill(1)]).areas(area);
    let listed_model = app
        .request_index()
        .and_then(|i| app.requests.listed().get(i).map(|r| r.model.clone()));
    let [tokens_area, requests_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(chart_area);
    chart(frame, tokens_area, app, listed_model.as_deref(), true);
    chart(frame, requests_area, app, listed_model.as_deref(), false);

    let (table_area, events_area) = if app.request_events {
        let wide = rest.width >= 120;
        let [a, b] = if wide {
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(rest)
        } else {
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(rest)
        };
        (a, Some(b))
    } else {
        (rest, None)
    };
    table(frame, table_area, app);
    if let Some(area) = events_area {
        events(frame, area, app);
    }
    super::page_rows(table_area)
}

fn block<'a>(t: &Theme, title: String, right: Option<String>, focused: bool) -> Block<'a> {
    let mut b = Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(t.border(focused))
        .title(Span::styled(title, t.title(focused)));
    if let Some(r) = right {
        b = b.title(Line::from(Span::styled(r, t.muted())).right_aligned());
    }
    b
}

fn chart(frame: &mut Frame, area: Rect, app: &App, model: Option<&str>, tokens: bool) {
    let t = &app.theme;
    let now_sec = app.now_ms.max(app.fleet.now_ms) / 1000;
    let seconds = (u64::from(area.width.saturating_sub(10)) * 2).clamp(10, CHART_SECONDS);
    let pick = |h: Vec<(u64, u64, u64)>| -> Vec<(f64, f64)> {
        h.into_iter()
            .map(|(sec, tok, req)| {
                let x = sec as f64 - now_sec as f64;
                (x, if tokens { tok as f64 } else { req as f64 })
            })
            .collect()
    };
    let fleet = pick(app.requests.history(now_sec, seconds, None));
    let one = model.map(|m| pick(app.requests.history(now_sec, seconds, Some(m))));
    let max = fleet
        .iter()
        .chain(one.iter().flatten())
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let what = if tokens { "tokens/s" } else { "requests/s" };
    let mut sets = vec![
        Dataset::default()
            .name("fleet")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.accent())
            .data(&fleet),
    ];
    if let (Some(points), Some(m)) = (&one, model) {
        sets.push(
            Dataset::default()
                .name(m.to_string())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(t.ok())
                .data(points),
        );
    }
    // The last seconds' mean: one second alone is mostly zero or a burst.
    let recent: Vec<f64> = fleet.iter().rev().take(10).map(|p| p.1).collect();
    let mean = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    let right = format!(" 10s avg {mean:.1} ");
    let chart = Chart::new(sets)
        .block(block(
            t,
            format!("{what} · last {}", span(seconds)),
            Some(right),
            false,
        ))
        .x_axis(
            Axis::default()
                .style(t.muted())
                .bounds([-(seconds as f64 - 1.0), 0.0])
                .labels([
                    Span::styled(format!("-{}", span(seconds)), t.muted()),
                    Span::styled("now", t.muted()),
                ]),
        )
        .y_axis(Axis::default().style(t.muted()).bounds([0.0, max]).labels([
            Span::styled("0", t.muted()),
            Span::styled(format!("{max:.0}"), t.muted()),
        ]));
    frame.render_widget(chart, area);
}

fn span(seconds: u64) -> String {
    if seconds >= 120 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

fn state_style(t: &Theme, s: RequestState) -> ratatui::style::Style {
    match s {
        RequestState::Routed | RequestState::Prefill => t.gauge(),
        RequestState::Generating => t.accent(),
        RequestState::Done => t.ok(),
        RequestState::ClientGone => t.warn(),
        RequestState::Failed => t.error(),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn table(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let listed = app.requests.listed();
    let wide = area.width >= 110;
    let now = app.now_ms.max(app.fleet.now_ms);
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(7),
    ];
    let mut header = vec!["", "REQUEST", "MODEL", "NODE", "STATE", "TIME", "TOKENS"];
    if wide {
        widths.extend([
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
        ]);
        header.extend(["PROMPT", "TTFT", "TOK/S", "FINISH"]);
    }
    let rows_room = area.height.saturating_sub(3).max(1) as usize;
    let sel = app.request_index();
    let offset = match sel {
        Some(s) if s >= rows_room => s + 1 - rows_room,
        _ => 0,
    };
    let rows: Vec<Row> = listed
        .iter()
        .skip(offset)
        .take(rows_room)
        .map(|r| row(r, t, now, wide))
        .collect();
    let right = format!(
        " {} in flight · {} ",
        app.requests.in_flight(),
        listed.len()
    );
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.muted().add_modifier(Modifier::BOLD)))
        .block(block(
            t,
            "requests · Enter events · Esc back".into(),
            Some(right),
            true,
        ))
        .column_spacing(1)
        .highlight_symbol("▶")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(t.selected());
    let mut state = TableState::default().with_selected(sel.map(|s| s - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

fn row<'a>(r: &'a RequestView, t: &Theme, now: u64, wide: bool) -> Row<'a> {
    let time = format!("{:.1}s", r.elapsed_ms(now) as f64 / 1000.0);
    let mut cells = vec![
        Cell::from(""),
        Cell::from(r.id.as_str()).style(t.text()),
        Cell::from(r.model.as_str()).style(t.text()),
        Cell::from(r.node.as_deref().unwrap_or("-")).style(t.muted()),
        Cell::from(r.state.label()).style(state_style(t, r.state)),
        Cell::from(Line::from(time).right_aligned()).style(t.text()),
        Cell::from(Line::from(tokens(r)).right_aligned()).style(t.text()),
    ];
    if wide {
        let prompt = match r.prompt_tokens {
            Some(p) if r.cached_tokens > 0 => format!("{p}/{}c", r.cached_tokens),
            Some(p) => p.to_string(),
            None => "-".into(),
        };
        cells.push(Cell::from(Line::from(prompt).right_aligned()).style(t.muted()));
        cells.push(
            Cell::from(Line::from(opt(r.ttft_ms.map(|v| format!("{v:.0}ms")))).right_aligned())
                .style(t.text()),
        );
        cells.push(
            Cell::from(Line::from(opt(r.decode_tok_s.map(|v| format!("{v:.1}")))).right_aligned())
                .style(t.text()),
        );
        cells.push(Cell::from(opt(r.finish_reason.as_ref())).style(t.muted()));
    }
    Row::new(cells)
}

/// Completion tokens, with those spent thinking (`40/12r`) when any.
fn tokens(r: &RequestView) -> String {
    match r.completion_tokens {
        Some(n) if r.reasoning_tokens > 0 => format!("{n}/{}r", r.reasoning_tokens),
        other => opt(other),
    }
}

fn events(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let listed = app.requests.listed();
    let Some(r) = app.request_index().and_then(|i| listed.get(i)) else {
        return;
    };
    let b = block(t, format!("events of {}", r.id), None, false);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let mut lines: Vec<Line> = r
        .events
        .iter()
        .map(|(ts, what)| {
            Line::from(vec![
                Span::styled(super::clock(*ts), t.muted()),
                Span::raw(" "),
                Span::styled(what.as_str(), t.text()),
            ])
        })
        .collect();
    if let Some(e) = &r.error {
        lines.push(Line::from(Span::styled(format!("error: {e}"), t.error())));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
