//! The events pane: the fleet's notable events (placements, evictions with
//! their reasons, pins, nodes up and down, errors, action outcomes), newest
//! at the bottom; or, toggled with `L`, the console's own log (tui-logger).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, Pane};
use crate::fleet::Level;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    if app.show_console_log {
        let block = super::pane_block(
            app,
            Pane::Log,
            "console log".into(),
            Some(" L events ".into()),
        );
        let widget = tui_logger::TuiLoggerWidget::default()
            .block(block)
            .style(t.text())
            .style_error(t.error())
            .style_warn(t.warn())
            .style_info(t.ok())
            .style_debug(t.muted())
            .style_trace(t.muted())
            .output_target(false)
            .output_file(false)
            .output_line(false)
            .output_timestamp(Some("%H:%M:%S".to_string()));
        frame.render_widget(widget, area);
        return;
    }
    let log = &app.fleet.log;
    let right = if app.log_scroll > 0 {
        format!(" ↑{} of {} ", app.log_scroll, log.len())
    } else {
        format!(" {} ", log.len())
    };
    let block = super::pane_block(app, Pane::Log, "events".into(), Some(right));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let rows = inner.height as usize;
    let end = log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = log
        .range(start..end)
        .map(|e| {
            let style = match e.level {
                Level::Info => t.text(),
                Level::Warn => t.warn(),
                Level::Error => t.error(),
            };
            let mut spans = vec![
                Span::styled(super::clock(e.ts_ms), t.muted()),
                Span::raw(" "),
            ];
            spans.push(Span::styled(e.text.as_str(), style));
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
