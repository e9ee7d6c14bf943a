//! The header: gateway, connection state, fleet health, nodes up/total and
//! fleet rates; a second line while the gateway is away.

use cortex_common::status::FleetHealth;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, Conn};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let sep = || Span::styled("  ", t.header());
    let (conn_text, conn_style) = match &app.conn {
        Conn::Connecting => ("◌ connecting".to_string(), t.warn()),
        Conn::Connected => ("● connected".to_string(), t.ok()),
        Conn::Disconnected { attempt, .. } => (format!("○ reconnecting #{attempt}"), t.error()),
    };
    let fleet = &app.fleet;
    let (health_text, health_style) = if !fleet.has_snapshot {
        ("? unknown", t.muted())
    } else {
        match fleet.health() {
            FleetHealth::Ok => ("▲ ok", t.ok()),
            FleetHealth::Degraded => ("▼ degraded", t.warn()),
            FleetHealth::Down => ("✖ down", t.error()),
        }
    };
    let (rps, tps) = fleet.rates();
    let mut spans = vec![
        Span::styled(app.gateway.clone(), t.header().patch(t.title(false))),
        sep(),
        Span::styled(conn_text, conn_style),
        sep(),
        Span::styled(health_text, health_style),
        sep(),
        Span::styled(
            format!("nodes {}/{}", fleet.nodes_up(), fleet.nodes.len()),
            t.header(),
        ),
        sep(),
        Span::styled(format!("{} req/s", super::num(Some(rps))), t.header()),
        sep(),
        Span::styled(format!("{} tok/s", super::num(Some(tps))), t.header()),
    ];
    if app.readonly {
        spans.push(sep());
        spans.push(Span::styled("read-only", t.warn()));
    }
    let mut lines = vec![Line::from(spans)];
    if area.height > 1 {
        if let Conn::Disconnected {
            error,
            since_ms,
            retry_at_ms,
            ..
        } = &app.conn
        {
            let retry = retry_at_ms.saturating_sub(app.now_ms);
            let what = if app.fleet.has_snapshot {
                format!(
                    "⚠ gateway away {} — last state shown, stale; retry in {} — {error}",
                    super::ago(app.now_ms.saturating_sub(*since_ms)),
                    super::ago(retry.max(1000)),
                )
            } else {
                format!(
                    "⚠ no gateway yet; retry in {} — {error}",
                    super::ago(retry.max(1000))
                )
            };
            lines.push(Line::from(Span::styled(what, t.error())));
        } else if app.is_stale() {
            lines.push(Line::from(Span::styled(
                "◌ reconnecting — last state shown, stale",
                t.warn(),
            )));
        }
    }
    frame.render_widget(
        Paragraph::new(lines).style(Style::new().patch(t.header())),
        area,
    );
}
