//! The nodes pane: each node's state and its devices with memory bars.

use cortex_common::neuron_api::DeviceInfo;
use cortex_common::status::NodeState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table, TableState};

use crate::app::{App, Pane};
use crate::fleet::human_bytes;

/// Table rows the visible nodes take (one per device, at least one).
pub fn row_count(app: &App) -> usize {
    app.visible_nodes()
        .iter()
        .map(|n| n.devices.len().max(1))
        .sum()
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let nodes = app.visible_nodes();
    let wide = area.width >= 120;
    let mut widths = vec![
        Constraint::Length(12),
        Constraint::Length(4),
        Constraint::Length(if wide { 24 } else { 14 }),
        Constraint::Fill(1),
        Constraint::Length(15),
        Constraint::Length(4),
    ];
    if wide {
        widths.insert(1, Constraint::Length(23));
    }
    // The bar column's width, as the table will lay it out.
    let inner = Rect {
        width: area.width.saturating_sub(2 + 1),
        ..area
    };
    let cols = Layout::horizontal(widths.clone()).spacing(1).split(inner);
    let bar_w = cols[if wide { 4 } else { 3 }].width as usize;

    // One (node, device) pair per table row; only the rows on screen are
    // turned into cells, so a fleet of many nodes stays cheap to draw.
    let sel = app.node_index(&nodes);
    let mut lines: Vec<(usize, Option<&DeviceInfo>)> = Vec::new();
    let mut selected_row = None;
    for (i, n) in nodes.iter().enumerate() {
        if Some(i) == sel {
            selected_row = Some(lines.len());
        }
        if n.devices.is_empty() {
            lines.push((i, None));
        } else {
            lines.extend(n.devices.iter().map(|d| (i, Some(d))));
        }
    }
    let visible_rows = (area.height.saturating_sub(3) as usize).max(1);
    let offset = match selected_row {
        Some(s) if s >= visible_rows => s + 1 - visible_rows,
        _ => 0,
    };
    let mut rows = Vec::with_capacity(visible_rows);
    for (k, (i, d)) in lines.iter().enumerate().skip(offset).take(visible_rows) {
        let n = nodes[*i];
        let first = k == 0 || lines[k - 1].0 != *i;
        let up = n.state == NodeState::Up;
        let state = if up {
            Span::styled("up", t.ok())
        } else {
            Span::styled("down", t.error())
        };
        {
            let mut cells: Vec<Cell> = vec![
                Cell::from(if first { n.name.clone() } else { String::new() }).style(t.text()),
            ];
            if wide {
                cells.push(
                    Cell::from(if first {
                        n.endpoint.clone()
                    } else {
                        String::new()
                    })
                    .style(t.muted()),
                );
            }
            cells.push(Cell::from(if first {
                Line::from(state.clone())
            } else {
                Line::default()
            }));
            match d {
                Some(d) => {
                    let frac = if d.memory_total_bytes == 0 {
                        0.0
                    } else {
                        d.memory_used_bytes as f64 / d.memory_total_bytes as f64
                    };
                    let bar_style = if frac > 0.9 { t.warn() } else { t.bar_used() };
                    cells.push(Cell::from(format!("{} {}", d.id, d.name)).style(t.muted()));
                    cells.push(Cell::from(Line::from(super::bar_spans(
                        frac,
                        bar_w,
                        bar_style,
                        t.bar_free(),
                    ))));
                    cells.push(
                        Cell::from(
                            Line::from(memory_text(d.memory_used_bytes, d.memory_total_bytes))
                                .right_aligned(),
                        )
                        .style(t.text()),
                    );
                }
                None => {
                    let why = n
                        .reason
                        .clone()
                        .unwrap_or_else(|| "no devices reported".into());
                    cells.push(Cell::from(why).style(if up { t.muted() } else { t.error() }));
                    cells.push(Cell::from(""));
                    cells.push(Cell::from(""));
                }
            }
            cells.push(
                Cell::from(
                    Line::from(if first {
                        n.in_flight.to_string()
                    } else {
                        String::new()
                    })
                    .right_aligned(),
                )
                .style(t.text()),
            );
            rows.push(Row::new(cells));
        }
    }
    let mut header: Vec<&str> = vec!["NODE", "", "DEVICE", "MEMORY", "USED/TOTAL", "INFL"];
    if wide {
        header.insert(1, "ENDPOINT");
    }
    let up = format!(" {}/{} up ", app.fleet.nodes_up(), app.fleet.nodes.len());
    let table = Table::new(rows, widths);
    let table = super::pane_table(app, Pane::Nodes, table, header, "nodes".into(), Some(up));
    let mut state = TableState::default().with_selected(selected_row.map(|r| r - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

/// `420/1024 MiB`, `19.6/24.0 GiB`: both in the unit of the total.
fn memory_text(used: u64, total: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if total as f64 >= 10.0 * GIB {
        format!("{:.1}/{:.1} GiB", used as f64 / GIB, total as f64 / GIB)
    } else if total as f64 >= MIB {
        format!("{:.0}/{:.0} MiB", used as f64 / MIB, total as f64 / MIB)
    } else {
        format!("{}/{}", human_bytes(used), human_bytes(total))
    }
}
