//! Modal dialogs: choosing a node (for load and evict) and confirming a
//! destructive action.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use crate::app::{App, Dialog, Purpose};
use crate::fleet::human_bytes;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, dialog: &Dialog) {
    let t = &app.theme;
    let (title, lines, danger) = match dialog {
        Dialog::ChooseNode {
            purpose,
            model,
            options,
            selected,
        } => {
            let title = match purpose {
                Purpose::Load => format!(" load {model} on… "),
                Purpose::Evict => format!(" evict {model} from… "),
            };
            let mut lines = Vec::new();
            for (i, opt) in options.iter().enumerate() {
                let label = match opt {
                    None => "auto: let the gateway place it".to_string(),
                    Some(name) => {
                        let free: u64 = app
                            .fleet
                            .nodes
                            .get(name)
                            .map(|n| n.devices.iter().map(|d| d.memory_free_bytes()).sum())
                            .unwrap_or(0);
                        format!("{name:<14} {} free", human_bytes(free))
                    }
                };
                let style = if i == *selected {
                    t.selected()
                } else {
                    t.text()
                };
                let marker = if i == *selected { "▶ " } else { "  " };
                lines.push(Line::from(Span::styled(format!("{marker}{label}"), style)));
            }
            lines.push(Line::default());
            lines.push(Line::from(Span::styled(
                "↑↓ choose · Enter ok · Esc cancel",
                t.muted(),
            )));
            (title, lines, matches!(purpose, Purpose::Evict))
        }
        Dialog::Confirm { question, yes, .. } => {
            let (y, n) = if *yes {
                (t.selected(), t.muted())
            } else {
                (t.muted(), t.selected())
            };
            let lines = vec![
                Line::from(Span::styled(question.clone(), t.text())),
                Line::default(),
                Line::from(vec![
                    Span::styled(" y  Yes ", y),
                    Span::raw("   "),
                    Span::styled(" n  No ", n),
                ])
                .centered(),
            ];
            (" confirm ".to_string(), lines, true)
        }
    };
    let width = lines
        .iter()
        .map(|l| l.width())
        .max()
        .unwrap_or(20)
        .max(title.chars().count())
        .clamp(30, 70) as u16
        + 4;
    let height = lines.len() as u16 + 2;
    let popup = super::centered(area, width, height);
    frame.render_widget(Clear, popup);
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(if danger { t.warn() } else { t.border(true) })
        .title(Span::styled(
            title,
            if danger { t.warn() } else { t.title(true) },
        ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}
