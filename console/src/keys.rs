//! Key bindings of the normal mode, in one table: [`action_for`] maps a key
//! to an [`Action`], and the help overlay and footer list the same table, so
//! a binding cannot exist without being documented.
//!
//! Text-entry modes (filter, command line) and dialogs read keys themselves
//! in `app.rs`.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key means in normal mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    NextPane,
    PrevPane,
    FocusPane(usize),
    Detail,
    Back,
    StartFilter,
    StartCommand,
    Help,
    ToggleLogSource,
    /// The requests screen, and back.
    Requests,
    Load,
    TogglePin,
    Unload,
    Evict,
    Quit,
}

/// One documented binding.
pub struct Binding {
    pub keys: &'static str,
    pub what: &'static str,
    /// Changes the fleet: hidden and disabled by `--readonly`.
    pub action: bool,
}

const fn b(keys: &'static str, what: &'static str, action: bool) -> Binding {
    Binding { keys, what, action }
}

/// Every key of the console, in the order the help overlay lists them.
pub const BINDINGS: &[Binding] = &[
    b("↑ ↓  j k", "move the selection", false),
    b("g G  Home End", "first / last row", false),
    b("PgUp PgDn", "move by a page", false),
    b("Tab  S-Tab", "next / previous pane", false),
    b("1 2 3 4", "nodes / models / detail / events pane", false),
    b("Enter", "detail of the selected model", false),
    b("Esc", "back: close, clear filter", false),
    b("/", "filter nodes and models by name", false),
    b(":", "command line (:help lists commands)", false),
    b("L", "events / the console's own log", false),
    b("r", "requests screen: in flight, recent, throughput", false),
    b("?", "this help", false),
    b("l", "load the model (choose node or auto)", true),
    b("p", "pin / unpin the model", true),
    b("u", "unload the model everywhere (confirm)", true),
    b("e", "evict the model from a node (confirm)", true),
    b("q  Ctrl-C", "quit", false),
];

/// The action bound to `key` in normal mode, if any.
pub fn action_for(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let action = match key.code {
        KeyCode::Char('c') if ctrl => Action::Quit,
        KeyCode::Char('d') if ctrl => Action::PageDown,
        KeyCode::Char('u') if ctrl => Action::PageUp,
        _ if ctrl => return None,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Tab => Action::NextPane,
        KeyCode::BackTab => Action::PrevPane,
        KeyCode::Char(c @ '1'..='4') => Action::FocusPane(c as usize - '1' as usize),
        KeyCode::Enter => Action::Detail,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char(':') => Action::StartCommand,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('L') => Action::ToggleLogSource,
        KeyCode::Char('r') => Action::Requests,
        KeyCode::Char('l') => Action::Load,
        KeyCode::Char('p') => Action::TogglePin,
        KeyCode::Char('u') => Action::Unload,
        KeyCode::Char('e') => Action::Evict,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    };
    Some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn vim_keys_and_arrows_agree() {
        assert_eq!(action_for(key(KeyCode::Char('j'))), Some(Action::Down));
        assert_eq!(action_for(key(KeyCode::Down)), Some(Action::Down));
        assert_eq!(action_for(key(KeyCode::Char('k'))), Some(Action::Up));
        assert_eq!(action_for(key(KeyCode::Up)), Some(Action::Up));
    }

    #[test]
    fn number_keys_focus_panes() {
        assert_eq!(
            action_for(key(KeyCode::Char('1'))),
            Some(Action::FocusPane(0))
        );
        assert_eq!(
            action_for(key(KeyCode::Char('4'))),
            Some(Action::FocusPane(3))
        );
        assert_eq!(action_for(key(KeyCode::Char('5'))), None);
    }

    #[test]
    fn ctrl_c_quits_and_other_ctrl_keys_do_nothing() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ctrl_c), Some(Action::Quit));
        let ctrl_l = KeyEvent::new(KeyCode::Char('l'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ctrl_l), None);
    }

    #[test]
    fn releases_are_ignored() {
        let mut k = key(KeyCode::Char('q'));
        k.kind = KeyEventKind::Release;
        assert_eq!(action_for(k), None);
    }
}
