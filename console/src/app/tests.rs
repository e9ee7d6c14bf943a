//! Key handling: synthetic crossterm key events drive selection, panes,
//! filter, command line, dialogs and the admin requests they produce.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::fixtures::sample_status;

fn app() -> App {
    let mut app = App::new("http://127.0.0.1:31313", Theme::dark(), false);
    app.fleet = Fleet::from_status(sample_status());
    app.conn = Conn::Connected;
    app
}

fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn chars(app: &mut App, text: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    for c in text.chars() {
        out.extend(press(app, KeyCode::Char(c)));
    }
    out
}

fn selected(app: &App) -> String {
    app.current_model().unwrap().status.id.clone()
}

#[test]
fn j_k_and_arrows_move_the_model_selection() {
    let mut app = app();
    // Models are listed by id: qwen3-0.6b, smollm2-chat, smollm2-coder, smollm2-tiny.
    assert_eq!(selected(&app), "qwen3-0.6b");
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(selected(&app), "smollm2-chat");
    press(&mut app, KeyCode::Down);
    assert_eq!(selected(&app), "smollm2-coder");
    press(&mut app, KeyCode::Char('k'));
    assert_eq!(selected(&app), "smollm2-chat");
    press(&mut app, KeyCode::Char('G'));
    assert_eq!(selected(&app), "smollm2-tiny");
    press(&mut app, KeyCode::Down);
    assert_eq!(selected(&app), "smollm2-tiny", "stops at the end");
    press(&mut app, KeyCode::Char('g'));
    assert_eq!(selected(&app), "qwen3-0.6b");
    press(&mut app, KeyCode::Up);
    assert_eq!(selected(&app), "qwen3-0.6b", "stops at the top");
}

#[test]
fn selection_follows_the_model_not_the_row() {
    let mut app = app();
    chars(&mut app, "jj");
    assert_eq!(selected(&app), "smollm2-coder");
    // A new model sorting before it must not move the selection.
    app.update(Msg::Stream(StreamMsg::Event(Box::new(
        crate::fixtures::event(
            2,
            crate::fixtures::T0,
            Some("alpha"),
            cortex_common::event::EventKind::ModelLoadStarted {
                model: "aaa-first".into(),
                source: "embedded".into(),
            },
        ),
    ))));
    assert_eq!(selected(&app), "smollm2-coder");
}

#[test]
fn tab_and_numbers_switch_panes_and_nodes_have_their_own_selection() {
    let mut app = app();
    assert_eq!(app.focus, Pane::Models);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Detail);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Log);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Pane::Nodes);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus, Pane::Log);
    press(&mut app, KeyCode::Char('1'));
    assert_eq!(app.focus, Pane::Nodes);
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected_node.as_deref(), Some("beta"));
    assert_eq!(selected(&app), "qwen3-0.6b", "model selection untouched");
    // Enter on a node shows the models there.
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, Pane::Models);
    assert_eq!(app.filter, "beta");
    let ids: Vec<_> = app
        .visible_models()
        .iter()
        .map(|m| m.status.id.clone())
        .collect();
    assert_eq!(ids, ["smollm2-coder", "smollm2-tiny"]);
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, Pane::Detail);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, Pane::Models);
}

#[test]
fn filter_narrows_live_and_esc_clears_it() {
    let mut app = app();
    press(&mut app, KeyCode::Char('/'));
    assert_eq!(app.mode, Mode::Filter);
    chars(&mut app, "COD");
    let ids: Vec<_> = app
        .visible_models()
        .iter()
        .map(|m| m.status.id.clone())
        .collect();
    assert_eq!(ids, ["smollm2-coder"], "case-insensitive, live");
    // Keys typed in the filter are text, not actions.
    chars(&mut app, "q");
    assert_eq!(app.filter, "CODq");
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.filter, "COD");
    assert_eq!(selected(&app), "smollm2-coder");
    // Aliases match too.
    press(&mut app, KeyCode::Char('/'));
    chars(&mut app, "chat");
    assert_eq!(app.visible_models().len(), 1);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.filter, "");
    assert_eq!(app.visible_models().len(), 4);
}

#[test]
fn command_line_runs_actions_and_reports_errors() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    assert_eq!(app.mode, Mode::Command);
    chars(&mut app, "load qwen3-0.6b beta");
    let effects = press(&mut app, KeyCode::Enter);
    let want = AdminRequest::Load {
        model: "qwen3-0.6b".into(),
        node: Some("beta".into()),
    };
    assert_eq!(effects, vec![Effect::Admin(want.clone())]);
    assert_eq!(app.pending, vec![want]);
    assert_eq!(app.mode, Mode::Normal);

    press(&mut app, KeyCode::Char(':'));
    chars(&mut app, "pin smollm2-tiny");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Effect::Admin(AdminRequest::Pin {
            model: "smollm2-tiny".into()
        })]
    );

    press(&mut app, KeyCode::Char(':'));
    chars(&mut app, "bogus");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    let n = app.live_notice().unwrap();
    assert_eq!(n.level, Level::Error);
    assert!(n.text.contains("unknown command 'bogus'"), "{}", n.text);

    // Tab completes the verb; unload asks first.
    press(&mut app, KeyCode::Char(':'));
    chars(&mut app, "unl");
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.input, "unload ");
    chars(&mut app, "smollm2-chat");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(matches!(app.mode, Mode::Dialog(Dialog::Confirm { .. })));
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        vec![Effect::Admin(AdminRequest::Unload {
            model: "smollm2-chat".into(),
            node: None
        })]
    );

    // Reading a theme is the runtime's: update asks for it, then takes the answer.
    press(&mut app, KeyCode::Char(':'));
    chars(&mut app, "theme light");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Effect::LoadTheme("light".into())]
    );
    assert_eq!(app.theme.name, "dark", "nothing read inside update");
    app.update(Msg::theme_loaded(
        "light".into(),
        crate::theme::load("light", &[]),
    ));
    assert_eq!(app.theme.name, "light");
    app.update(Msg::theme_loaded(
        "nope".into(),
        crate::theme::load("nope", &[]),
    ));
    assert_eq!(app.theme.name, "light", "a failed read keeps the theme");
    assert_eq!(app.live_notice().map(|n| n.level), Some(Level::Error));
    press(&mut app, KeyCode::Char(':'));
    chars(&mut app, "quit");
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Effect::Quit]);
}

#[test]
fn esc_and_backspace_leave_the_command_line() {
    let mut app = app();
    press(&mut app, KeyCode::Char(':'));
    chars(&mut app, "lo");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.input, "");
    press(&mut app, KeyCode::Char(':'));
    press(&mut app, KeyCode::Backspace);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn p_toggles_the_pin() {
    let mut app = app();
    press(&mut app, KeyCode::Char('j')); // smollm2-chat, pinned
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        vec![Effect::Admin(AdminRequest::Unpin {
            model: "smollm2-chat".into()
        })]
    );
    press(&mut app, KeyCode::Char('j')); // smollm2-coder, not pinned
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        vec![Effect::Admin(AdminRequest::Pin {
            model: "smollm2-coder".into()
        })]
    );
}

#[test]
fn l_offers_auto_placement_and_free_nodes() {
    let mut app = app();
    press(&mut app, KeyCode::Char('j')); // smollm2-chat, on alpha
    assert!(press(&mut app, KeyCode::Char('l')).is_empty());
    let Mode::Dialog(Dialog::ChooseNode { options, .. }) = &app.mode else {
        panic!("expected the node chooser, got {:?}", app.mode);
    };
    // Auto, then the up nodes that do not hold it (gamma is down).
    assert_eq!(options, &vec![None, Some("beta".to_string())]);
    // Enter on the first option lets the gateway place it.
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Effect::Admin(AdminRequest::Load {
            model: "smollm2-chat".into(),
            node: None
        })]
    );
    press(&mut app, KeyCode::Char('l'));
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Effect::Admin(AdminRequest::Load {
            model: "smollm2-chat".into(),
            node: Some("beta".into())
        })]
    );
    press(&mut app, KeyCode::Char('l'));
    assert!(press(&mut app, KeyCode::Esc).is_empty());
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn u_asks_for_confirmation_and_no_is_the_default() {
    let mut app = app();
    press(&mut app, KeyCode::Char('G')); // smollm2-tiny on alpha and beta
    assert!(press(&mut app, KeyCode::Char('u')).is_empty());
    let Mode::Dialog(Dialog::Confirm { question, yes, .. }) = &app.mode else {
        panic!("expected a confirmation, got {:?}", app.mode);
    };
    assert_eq!(question, "Unload smollm2-tiny from alpha, beta?");
    assert!(!yes);
    // Enter on the default (No) cancels.
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.pending.is_empty());
    // Move to Yes, then Enter confirms.
    press(&mut app, KeyCode::Char('u'));
    press(&mut app, KeyCode::Left);
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Effect::Admin(AdminRequest::Unload {
            model: "smollm2-tiny".into(),
            node: None
        })]
    );
    // Nothing to unload: said plainly, no dialog.
    press(&mut app, KeyCode::Char('g')); // qwen3-0.6b, cold
    assert!(press(&mut app, KeyCode::Char('u')).is_empty());
    assert_eq!(app.mode, Mode::Normal);
    assert!(
        app.live_notice()
            .unwrap()
            .text
            .contains("not loaded anywhere")
    );
}

#[test]
fn e_chooses_a_node_then_confirms_the_eviction() {
    let mut app = app();
    press(&mut app, KeyCode::Char('j')); // smollm2-chat: only on alpha
    press(&mut app, KeyCode::Char('e'));
    let Mode::Dialog(Dialog::Confirm { question, .. }) = &app.mode else {
        panic!("expected a confirmation, got {:?}", app.mode);
    };
    assert_eq!(question, "Evict smollm2-chat from alpha?");
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    assert_eq!(app.mode, Mode::Normal);

    // smollm2-tiny: loaded on alpha, unloading on beta -> only alpha.
    press(&mut app, KeyCode::Char('G'));
    press(&mut app, KeyCode::Char('e'));
    assert!(matches!(app.mode, Mode::Dialog(Dialog::Confirm { .. })));
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        vec![Effect::Admin(AdminRequest::Evict {
            model: "smollm2-tiny".into(),
            node: "alpha".into()
        })]
    );
}

#[test]
fn readonly_disables_every_action() {
    let mut app = app();
    app.readonly = true;
    for key in ['l', 'p', 'u', 'e'] {
        assert!(press(&mut app, KeyCode::Char(key)).is_empty(), "{key}");
        assert_eq!(app.mode, Mode::Normal, "{key}");
    }
    assert!(app.live_notice().unwrap().text.contains("read-only"));
    press(&mut app, KeyCode::Char(':'));
    chars(&mut app, "pin smollm2-chat");
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    assert!(app.pending.is_empty());
    // Looking around still works.
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(selected(&app), "smollm2-chat");
}

#[test]
fn help_opens_and_any_key_closes_it_without_acting() {
    let mut app = app();
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode, Mode::Help);
    assert!(
        press(&mut app, KeyCode::Char('q')).is_empty(),
        "q closes help, not the app"
    );
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(press(&mut app, KeyCode::Char('q')), vec![Effect::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    press(&mut app, KeyCode::Char(':'));
    assert_eq!(app.update(Msg::Key(ctrl_c)), vec![Effect::Quit]);
}

#[test]
fn action_outcomes_are_shown_and_logged_never_swallowed() {
    let mut app = app();
    press(&mut app, KeyCode::Char('j'));
    let effects = press(&mut app, KeyCode::Char('p'));
    let Some(Effect::Admin(request)) = effects.into_iter().next() else {
        panic!("expected an admin request");
    };
    app.update(Msg::ActionDone {
        request: request.clone(),
        result: Err(ClientError::Api {
            status: 503,
            message: "no node can take it".into(),
            code: Some("overloaded".into()),
        }),
    });
    assert!(app.pending.is_empty());
    let n = app.live_notice().unwrap();
    assert_eq!(n.level, Level::Error);
    assert_eq!(
        n.text,
        "✗ unpin smollm2-chat failed: 503: no node can take it"
    );
    assert_eq!(app.fleet.log.back().unwrap().text, n.text);
    // Errors stay until dismissed; successes fade.
    app.update(Msg::Tick(app.now_ms + 60_000));
    assert!(app.live_notice().is_some());
    press(&mut app, KeyCode::Esc);
    assert!(app.live_notice().is_none());
    app.update(Msg::ActionDone {
        request,
        result: Ok("smollm2-chat unpinned".into()),
    });
    assert_eq!(app.live_notice().unwrap().text, "✓ smollm2-chat unpinned");
    app.update(Msg::Tick(app.now_ms + 60_000));
    assert!(app.live_notice().is_none());
}

#[test]
fn connection_state_follows_the_stream() {
    let mut app = app();
    assert!(!app.is_stale());
    app.now_ms = 1_000;
    app.update(Msg::Stream(StreamMsg::Disconnected {
        error: "connection refused".into(),
        attempt: 1,
        retry_in: std::time::Duration::from_secs(2),
    }));
    assert!(app.is_stale());
    let Conn::Disconnected {
        since_ms,
        retry_at_ms,
        ..
    } = app.conn.clone()
    else {
        panic!("expected disconnected");
    };
    assert_eq!((since_ms, retry_at_ms), (1_000, 3_000));
    assert!(app.fleet.log.back().unwrap().text.contains("disconnected"));
    app.now_ms = 5_000;
    app.update(Msg::Stream(StreamMsg::Disconnected {
        error: "connection refused".into(),
        attempt: 2,
        retry_in: std::time::Duration::from_secs(4),
    }));
    let Conn::Disconnected { since_ms, .. } = app.conn.clone() else {
        panic!("expected disconnected");
    };
    assert_eq!(since_ms, 1_000, "outage start is kept across retries");
    app.update(Msg::Stream(StreamMsg::Connected));
    assert!(!app.is_stale());
}

#[test]
fn log_pane_scrolls_back_and_esc_follows_again() {
    let mut app = app();
    press(&mut app, KeyCode::Char('4'));
    assert_eq!(app.log_scroll, 0);
    // Only one entry (the snapshot): nothing to scroll.
    press(&mut app, KeyCode::Up);
    assert_eq!(app.log_scroll, 0);
    for i in 0..5 {
        app.fleet
            .push_log(0, Level::Info, None, format!("line {i}"));
    }
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Up);
    assert_eq!(app.log_scroll, 2);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.log_scroll, 1);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.log_scroll, 0);
}

#[test]
fn a_page_is_what_the_last_frame_measured() {
    let mut app = app();
    assert_eq!(selected(&app), "qwen3-0.6b");
    app.update(Msg::Drawn(Drawn { page_rows: 2 }));
    press(&mut app, KeyCode::PageDown);
    assert_eq!(selected(&app), "smollm2-coder", "two rows down");
    app.update(Msg::Drawn(Drawn { page_rows: 0 }));
    press(&mut app, KeyCode::PageUp);
    assert_eq!(selected(&app), "smollm2-chat", "a page is at least a row");
}
