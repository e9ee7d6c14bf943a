//! The `?` overlay: every key binding (from `keys::BINDINGS`) and every `:`
//! command; `--readonly` leaves out the actions.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};

use crate::app::App;
use crate::command::USAGE;
use crate::keys::BINDINGS;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let keys: Vec<Line> = BINDINGS
        .iter()
        .filter(|b| !(b.action && app.readonly))
        .map(|b| {
            Line::from(vec![
                Span::styled(format!("{:<14}", b.keys), t.accent()),
                Span::styled(b.what, t.text()),
            ])
        })
        .collect();
    let popup_w = 100.min(area.width.saturating_sub(2));
    // Descriptions of commands only where the right column has room.
    let describe = popup_w >= 90;
    let mut cmds: Vec<Line> = Vec::new();
    for (syntax, what) in USAGE {
        let action = !matches!(*syntax, "quit" | "theme NAME");
        if action && app.readonly {
            continue;
        }
        cmds.push(Line::from(Span::styled(format!(":{syntax}"), t.accent())));
        if describe {
            cmds.push(Line::from(Span::styled(format!("  {what}"), t.muted())));
        }
    }
    let height = (keys.len().max(cmds.len()) as u16 + 3).min(area.height);
    let popup = super::centered(area, popup_w, height);
    frame.render_widget(Clear, popup);
    let title = if app.readonly {
        " help · read-only: actions hidden "
    } else {
        " help "
    };
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(t.border(true))
        .title(Span::styled(title, t.title(true)))
        .title_bottom(Line::from(Span::styled(" any key closes ", t.muted())).right_aligned());
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let [left, right] = Layout::horizontal([Constraint::Length(52), Constraint::Fill(1)])
        .spacing(1)
        .areas(inner);
    let mut left_lines = vec![Line::from(Span::styled("keys", t.title(false)))];
    left_lines.extend(keys);
    let mut right_lines = vec![Line::from(Span::styled("commands", t.title(false)))];
    right_lines.extend(cmds);
    frame.render_widget(Paragraph::new(left_lines), left);
    frame.render_widget(Paragraph::new(right_lines), right);
}
