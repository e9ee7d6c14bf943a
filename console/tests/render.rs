//! Rendering snapshots: each screen drawn on ratatui's TestBackend from a
//! fleet built here, at 80×24 (the smallest supported terminal) and 160×48.
//! Review changes with `cargo insta review`; CI runs with the committed
//! snapshots (INSTA_UPDATE=no).

use std::time::Duration;

use cortex_common::event::{EventKind, EvictionCause, FinishReason, RequestEnd};
use cortex_console::app::{App, Conn, Msg, Pane};
use cortex_console::client::StreamMsg;
use cortex_console::fixtures::{T0, big_status, event, sample_status};
use cortex_console::fleet::Fleet;
use cortex_console::theme::Theme;
use cortex_console::ui;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

/// Sends a console stream events `dt` ms after T0, numbered from `seq` on.
struct Feed {
    seq: u64,
}

impl Feed {
    fn send(&mut self, app: &mut App, dt: u64, node: Option<&str>, kind: EventKind) {
        let ev = event(self.seq, T0 + dt, node, kind);
        app.update(Msg::Stream(StreamMsg::Event(Box::new(ev))));
        self.seq += 1;
    }
}

/// A connected console on the sample fleet, a few events into its life.
fn app() -> App {
    let mut app = App::new("http://127.0.0.1:31313", Theme::dark(), false);
    app.conn = Conn::Connected;
    app.now_ms = T0;
    let mut feed = Feed { seq: 1 };
    feed.send(
        &mut app,
        0,
        None,
        EventKind::Snapshot {
            status: Box::new(sample_status()),
        },
    );
    feed.send(
        &mut app,
        100,
        Some("beta"),
        EventKind::PlacementDecided {
            model: "smollm2-coder".into(),
            reason: "most free memory (1.8 GiB)".into(),
        },
    );
    feed.send(
        &mut app,
        200,
        Some("alpha"),
        EventKind::Evicted {
            model: "qwen3-0.6b".into(),
            for_model: "smollm2-chat".into(),
            strategy: EvictionCause::Lru,
            reason: "idle 12m, least recently used".into(),
        },
    );
    feed.send(
        &mut app,
        300,
        None,
        EventKind::Pinned {
            model: "smollm2-chat".into(),
        },
    );
    for s in 0..30u64 {
        feed.send(
            &mut app,
            1000 * s + 500,
            Some("alpha"),
            EventKind::RequestFinished {
                request_id: format!("r{s}"),
                model: "smollm2-chat".into(),
                prompt_tokens: 12,
                cached_tokens: 0,
                completion_tokens: (20 + (s * 7) % 40) as u32,
                reasoning_tokens: 0,
                ttft_ms: Some(30.0),
                prefill_tok_s: None,
                decode_tok_s: Some(40.0),
                duration_ms: 900.0,
                finish_reason: Some(FinishReason::Stop),
                ended: RequestEnd::Done,
                error: None,
            },
        );
        // The gateway counts each client request when it is done with it.
        feed.send(
            &mut app,
            1000 * s + 501,
            None,
            EventKind::RequestDone {
                request_id: format!("r{s}"),
                model: "smollm2-chat".into(),
                ended: RequestEnd::Done,
            },
        );
    }
    feed.send(
        &mut app,
        30_100,
        Some("beta"),
        EventKind::RequestFailed {
            request_id: "r99".into(),
            model: "smollm2-coder".into(),
            status: 503,
            reason: "queue full".into(),
        },
    );
    feed.send(
        &mut app,
        30_101,
        Some("beta"),
        EventKind::RequestDone {
            request_id: "r99".into(),
            model: "smollm2-coder".into(),
            ended: RequestEnd::Error,
        },
    );
    // The 30 requests above each had a matching start in real life.
    app.fleet
        .models
        .get_mut("smollm2-chat")
        .unwrap()
        .status
        .in_flight = 2;
    app.fleet
        .models
        .get_mut("smollm2-chat")
        .unwrap()
        .status
        .placements[0]
        .in_flight = 2;
    app.now_ms = T0 + 31_000;
    app
}

fn key(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal
        .draw(|f| {
            ui::draw(f, app);
        })
        .unwrap();
    terminal
}

fn snap(name: &str, app: &mut App) {
    for (w, h) in SIZES {
        let terminal = render(app, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
    }
}

#[test]
fn main_screen() {
    snap("main", &mut app());
}

#[test]
fn detail_focused_on_a_model_with_two_placements() {
    let mut app = app();
    key(&mut app, KeyCode::Char('j')); // smollm2-chat
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, Pane::Detail);
    snap("detail", &mut app);
}

#[test]
fn help_overlay() {
    snap("help", &mut {
        let mut a = app();
        key(&mut a, KeyCode::Char('?'));
        a
    });
}

#[test]
fn help_overlay_readonly_lists_no_actions() {
    let mut app = app();
    app.readonly = true;
    key(&mut app, KeyCode::Char('?'));
    let terminal = render(&mut app, 80, 24);
    let text = terminal.backend().to_string();
    assert!(text.contains("read-only"), "{text}");
    assert!(!text.contains("unload the model"), "{text}");
    insta::assert_snapshot!("help_readonly_80x24", terminal.backend());
}

#[test]
fn confirmation_dialog() {
    let mut app = app();
    key(&mut app, KeyCode::Char('G')); // smollm2-tiny
    key(&mut app, KeyCode::Char('u'));
    snap("confirm_unload", &mut app);
}

#[test]
fn load_node_chooser() {
    let mut app = app();
    key(&mut app, KeyCode::Char('g')); // qwen3-0.6b, cold
    key(&mut app, KeyCode::Char('l'));
    key(&mut app, KeyCode::Char('j'));
    snap("choose_node", &mut app);
}

#[test]
fn disconnected_and_stale() {
    let mut app = app();
    app.update(Msg::Stream(StreamMsg::Disconnected {
        error: "gateway http://127.0.0.1:31313 is unreachable: connection refused".into(),
        attempt: 3,
        retry_in: Duration::from_secs(2),
    }));
    app.update(Msg::Tick(app.now_ms + 12_000));
    snap("stale", &mut app);
    let text = render(&mut app, 80, 24).backend().to_string();
    assert!(text.contains("reconnecting #3"), "{text}");
    assert!(text.contains("stale"), "{text}");
}

#[test]
fn never_connected() {
    let mut app = App::new("http://127.0.0.1:31313", Theme::dark(), false);
    app.now_ms = T0;
    app.update(Msg::Stream(StreamMsg::Disconnected {
        error: "gateway http://127.0.0.1:31313 is unreachable: connection refused".into(),
        attempt: 1,
        retry_in: Duration::from_millis(250),
    }));
    snap("no_gateway", &mut app);
}

#[test]
fn filter_and_command_line_being_typed() {
    let mut app = app();
    key(&mut app, KeyCode::Char('/'));
    for c in "smol".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    insta::assert_snapshot!("filter_80x24", render(&mut app, 80, 24).backend());
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char(':'));
    for c in "load qwen3-0.6b be".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    insta::assert_snapshot!("command_80x24", render(&mut app, 80, 24).backend());
}

#[test]
fn a_big_fleet() {
    let mut app = App::new("http://127.0.0.1:31313", Theme::dark(), false);
    app.conn = Conn::Connected;
    app.fleet = Fleet::from_status(big_status(64, 256));
    for _ in 0..40 {
        key(&mut app, KeyCode::Char('j'));
    }
    snap("big_fleet", &mut app);
}

#[test]
fn resizes_cleanly_down_to_tiny_sizes() {
    let mut app = app();
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    for (w, h) in [
        (160, 48),
        (80, 24),
        (40, 10),
        (20, 5),
        (1, 1),
        (120, 30),
        (80, 24),
    ] {
        terminal.backend_mut().resize(w, h);
        terminal
            .resize(ratatui::layout::Rect::new(0, 0, w, h))
            .unwrap();
        terminal
            .draw(|f| {
                ui::draw(f, &app);
            })
            .unwrap();
    }
    // After shrinking and growing back, the frame equals a fresh draw.
    let fresh = render(&mut app, 80, 24);
    assert_eq!(terminal.backend().buffer(), fresh.backend().buffer());
}

/// Drawing reports the rows a page holds (it changes nothing itself), on
/// both screens, and more rows on a taller terminal.
#[test]
fn drawing_measures_the_page_for_update() {
    let mut app = app();
    app.fleet = Fleet::from_status(big_status(8, 60));
    let page = |app: &App, w: u16, h: u16| {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        let mut drawn = None;
        terminal.draw(|f| drawn = Some(ui::draw(f, app))).unwrap();
        drawn.unwrap().page_rows
    };
    let (small, tall) = (page(&app, 80, 24), page(&app, 80, 60));
    assert!(small >= 1 && tall > small, "{small} then {tall}");
    key(&mut app, KeyCode::Char('r'));
    let (small, tall) = (page(&app, 80, 24), page(&app, 80, 60));
    assert!(small >= 1 && tall > small, "requests: {small} then {tall}");
}

fn colours(buf: &Buffer) -> Vec<Color> {
    buf.content().iter().flat_map(|c| [c.fg, c.bg]).collect()
}

#[test]
fn mono_theme_draws_no_colour_and_themes_change_colours() {
    let mut app = app();
    app.theme = Theme::mono();
    let terminal = render(&mut app, 80, 24);
    let used = colours(terminal.backend().buffer());
    assert!(used.iter().all(|c| *c == Color::Reset), "mono drew colour");

    let mut app = self::app();
    let dark = colours(render(&mut app, 80, 24).backend().buffer());
    assert!(dark.contains(&Color::Cyan));
    app.update(Msg::theme_loaded(
        "light".into(),
        cortex_console::theme::load("light", &[]),
    ));
    let light = colours(render(&mut app, 80, 24).backend().buffer());
    assert!(light.contains(&Color::Blue));
    assert_ne!(dark, light);
}

/// Every width shows the MODEL column: the wide layout only turns on when
/// its fixed columns leave MODEL room (at 120 columns they once squeezed it
/// to nothing).
#[test]
fn the_model_column_shows_at_every_width() {
    let mut app = app();
    for w in 80u16..=220 {
        let terminal = render(&mut app, w, 40);
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(
            screen.contains("MODEL"),
            "MODEL column missing at width {w}"
        );
    }
}

/// The requests screen: a chart of the finished requests' tokens and the
/// requests in flight and recent; Enter opens the selected one's events.
#[test]
fn requests_screen_and_a_requests_events() {
    use cortex_console::app::Screen;
    let mut app = app();
    let mut feed = Feed { seq: 100 };
    let id = "gw-7-41";
    feed.send(
        &mut app,
        30_200,
        Some("alpha"),
        EventKind::RequestRouted {
            request_id: id.into(),
            model: "smollm2-chat".into(),
        },
    );
    feed.send(
        &mut app,
        30_210,
        Some("alpha"),
        EventKind::RequestStarted {
            request_id: id.into(),
            model: "smollm2-chat".into(),
            prompt_tokens: 412,
            cached_tokens: 380,
        },
    );
    feed.send(
        &mut app,
        30_260,
        Some("alpha"),
        EventKind::RequestFirstToken {
            request_id: id.into(),
            model: "smollm2-chat".into(),
            ttft_ms: 48.0,
        },
    );
    feed.send(
        &mut app,
        30_500,
        Some("beta"),
        EventKind::RequestRouted {
            request_id: "gw-7-42".into(),
            model: "smollm2-coder".into(),
        },
    );
    key(&mut app, KeyCode::Char('r'));
    assert_eq!(app.screen, Screen::Requests);
    snap("requests", &mut app);
    key(&mut app, KeyCode::Enter);
    assert!(app.request_events);
    assert_eq!(
        app.selected_request.as_deref(),
        Some(id),
        "the oldest in flight first"
    );
    snap("request_events", &mut app);
    key(&mut app, KeyCode::Esc);
    assert!(!app.request_events, "Esc closes the events first");
    key(&mut app, KeyCode::Down);
    assert_eq!(app.selected_request.as_deref(), Some("gw-7-42"));
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.screen, Screen::Fleet, "then goes back to the fleet");
}
