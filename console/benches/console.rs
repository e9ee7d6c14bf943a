//! Console benchmarks (figures in the README):
//! - applying 100k fleet events to the console's fleet model (goal ≥ 100k
//!   events/s);
//! - drawing one frame of a 64-node × 256-model fleet on ratatui's
//!   TestBackend (goal ≤ 2 ms).

use std::hint::black_box;
use std::time::Duration;

use cortex_common::event::EventKind;
use cortex_console::app::{App, Conn};
use cortex_console::fixtures::{T0, big_status, event, event_stream};
use cortex_console::fleet::Fleet;
use cortex_console::theme::Theme;
use cortex_console::ui;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn apply_events(c: &mut Criterion) {
    const N: usize = 100_000;
    let events = event_stream(N, 64, 256);
    let mut group = c.benchmark_group("fleet");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("apply_100k_events_64x256", |b| {
        b.iter_batched(
            || {
                let mut fleet = Fleet::new();
                fleet.apply(event(
                    1,
                    T0,
                    None,
                    EventKind::Snapshot {
                        status: Box::new(big_status(64, 256)),
                    },
                ));
                (fleet, events.clone())
            },
            |(mut fleet, events)| {
                for ev in events {
                    fleet.apply(ev);
                }
                black_box(fleet.last_seq)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn render_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let mut app = App::new("http://127.0.0.1:31313", Theme::dark(), false);
        app.conn = Conn::Connected;
        app.fleet = Fleet::from_status(big_status(64, 256));
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
        group.bench_function(format!("frame_64x256_{w}x{h}"), |b| {
            b.iter(|| {
                terminal
                    .draw(|f| {
                        ui::draw(f, &app);
                    })
                    .expect("draw on the test backend");
                // Force a full redraw next time, as a resize would.
                terminal.clear().expect("clear");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, apply_events, render_frame);
criterion_main!(benches);
