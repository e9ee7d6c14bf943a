//! The detail pane: the selected model's facts, its placements with per-node
//! figures, and its TTFT and tok/s distributions as bar charts built from the
//! hdrhistogram buckets the gateway ships.

use cortex_common::histogram::HistogramSnapshot;
use cortex_common::status::PlacementState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Paragraph};

use crate::app::{App, Pane};
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let model = app.current_model();
    let title = match model {
        Some(m) => format!("detail: {}", m.status.id),
        None => "detail".to_string(),
    };
    let block = super::pane_block(app, Pane::Detail, title, None);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(m) = model else {
        frame.render_widget(
            Paragraph::new(Span::styled("no model selected", t.muted())),
            inner,
        );
        return;
    };
    let s = &m.status;

    let mut lines = Vec::new();
    let mut facts = Vec::new();
    if s.pinned {
        facts.push(Span::styled("⚑ pinned", t.pinned()));
        facts.push(Span::styled(" · ", t.muted()));
    }
    facts.push(Span::styled(
        format!(
            "prio {} · {} MiB · {}",
            s.residency_priority, s.memory_mb, s.source
        ),
        t.text(),
    ));
    if !s.aliases.is_empty() {
        facts.push(Span::styled(
            format!(" · aka {}", s.aliases.join(", ")),
            t.muted(),
        ));
    }
    if s.waiting > 0 {
        facts.push(Span::styled(
            format!(" · {} waiting at the gateway", s.waiting),
            t.warn(),
        ));
    }
    lines.push(Line::from(facts));
    lines.push(Line::from(vec![
        Span::styled(format!("reqs {} ", s.requests_total), t.text()),
        Span::styled(
            format!("err {} ", s.errors_total),
            if s.errors_total > 0 {
                t.error()
            } else {
                t.muted()
            },
        ),
        Span::styled(
            format!(
                "TTFT {}/{}/{}ms ",
                super::num(s.ttft_ms.p50),
                super::num(s.ttft_ms.p90),
                super::num(s.ttft_ms.p99)
            ),
            t.text(),
        ),
        Span::styled(format!("tok/s {}", super::num(s.tok_s.p50)), t.text()),
    ]));
    for p in &s.placements {
        let (state, style) = match p.state {
            PlacementState::Loaded => ("loaded", t.ok()),
            PlacementState::Loading => ("loading", t.gauge()),
            PlacementState::Unloading => ("unloading", t.warn()),
        };
        let mut spans = vec![
            Span::styled(format!("{:<10} ", p.node), t.accent()),
            Span::styled(format!("{state:<9} "), style),
            Span::styled(
                format!(
                    "run {} queued {} ",
                    p.in_flight.saturating_sub(p.queued),
                    p.queued
                ),
                t.text(),
            ),
        ];
        if let Some(pr) = p.progress.filter(|pr| pr.total > 0) {
            spans.push(Span::styled(
                format!("{:.0}% ", pr.done as f64 * 100.0 / pr.total as f64),
                t.gauge(),
            ));
        }
        if let Some(h) = m.per_node.get(&p.node) {
            spans.push(Span::styled(
                format!(
                    "TTFT {}/{}ms tok/s {} ",
                    super::num(h.ttft_ms.percentiles.p50),
                    super::num(h.ttft_ms.percentiles.p99),
                    super::num(h.tok_s.percentiles.p50)
                ),
                t.text(),
            ));
        }
        if let Some(used) = p.last_used_ms {
            spans.push(Span::styled(
                format!(
                    "used {} ago",
                    super::ago(app.fleet.now_ms.saturating_sub(used))
                ),
                t.muted(),
            ));
        }
        lines.push(Line::from(spans));
    }
    // Nodes that reported distributions but hold no placement any more.
    for (node, h) in &m.per_node {
        if s.placements.iter().any(|p| &p.node == node) {
            continue;
        }
        lines.push(Line::from(Span::styled(
            format!(
                "{node:<10} gone      TTFT {}/{}ms tok/s {}",
                super::num(h.ttft_ms.percentiles.p50),
                super::num(h.ttft_ms.percentiles.p99),
                super::num(h.tok_s.percentiles.p50)
            ),
            t.muted(),
        )));
    }

    let text_h = (lines.len() as u16).min(inner.height.saturating_sub(3).max(2));
    let [text_area, charts] =
        Layout::vertical([Constraint::Length(text_h), Constraint::Fill(1)]).areas(inner);
    frame.render_widget(Paragraph::new(lines), text_area);
    if charts.height < 2 {
        return;
    }
    if charts.width >= 50 {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .spacing(1)
                .areas(charts);
        histogram(frame, left, "TTFT ms", &s.ttft_histogram, t, t.chart());
        histogram(frame, right, "tok/s", &s.tok_s_histogram, t, t.sparkline());
    } else {
        histogram(frame, charts, "TTFT ms", &s.ttft_histogram, t, t.chart());
    }
}

/// A vertical bar chart of a histogram's buckets, labelled by upper bound.
fn histogram(
    frame: &mut Frame,
    area: Rect,
    name: &str,
    h: &HistogramSnapshot,
    t: &Theme,
    bar_style: Style,
) {
    let title = if h.count == 0 {
        format!("{name}: no data yet")
    } else {
        format!(
            "{name} n={} p50 {} p99 {}",
            h.count,
            super::num(h.percentiles.p50),
            super::num(h.percentiles.p99)
        )
    };
    let block = Block::new().title(Span::styled(title, t.muted()));
    if h.buckets.is_empty() || h.count == 0 {
        frame.render_widget(block, area);
        return;
    }
    // Trim empty buckets at both ends so the bars that matter get the room.
    let first = h.buckets.iter().position(|b| b.count > 0).unwrap_or(0);
    let last = h.buckets.iter().rposition(|b| b.count > 0).unwrap_or(0);
    let buckets = &h.buckets[first..=last.max(first)];
    let n = buckets.len() as u16;
    let w = area.width;
    let (bar_width, gap) = if w >= n * 2 {
        (((w + 1) / n).saturating_sub(1).clamp(1, 6), 1)
    } else {
        ((w / n.max(1)).max(1), 0)
    };
    let bars: Vec<Bar> = buckets
        .iter()
        .map(|b| {
            Bar::default()
                .value(b.count)
                .label(Line::from(le_label(b.le)))
                .style(bar_style)
                .value_style(t.selected())
        })
        .collect();
    let chart = BarChart::default()
        .block(block)
        .data(BarGroup::default().bars(&bars))
        .bar_width(bar_width)
        .bar_gap(gap)
        .label_style(t.muted());
    frame.render_widget(chart, area);
}

/// `5`, `250`, `1k`, `2.5k`, `+∞`.
fn le_label(le: Option<f64>) -> String {
    match le {
        None => "+∞".to_string(),
        Some(v) if v >= 1000.0 => {
            let k = v / 1000.0;
            if k.fract() == 0.0 {
                format!("{k:.0}k")
            } else {
                format!("{k:.1}k")
            }
        }
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_labels_are_short() {
        use super::le_label;
        assert_eq!(le_label(Some(5.0)), "5");
        assert_eq!(le_label(Some(1000.0)), "1k");
        assert_eq!(le_label(Some(2500.0)), "2.5k");
        assert_eq!(le_label(None), "+∞");
    }
}
