//! The console's state and its update function. Everything that happens —
//! a key, a fleet event, an admin call's answer, a theme file read, the
//! last frame's layout, a tick — arrives as a [`Msg`]; [`App::update`]
//! changes the state and returns the [`Effect`]s the runtime must carry out
//! (admin calls, reading a theme, quitting). Nothing here does I/O, so
//! tests drive it with synthetic keys and events; drawing (`ui`) only reads
//! it.

use cortex_common::status::{NodeState, NodeStatus, PlacementState};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::client::{AdminRequest, ClientError, StreamMsg};
use crate::command::{self, Command};
use crate::fleet::{Fleet, Level, ModelView};
use crate::keys::{self, Action};
use crate::requests::RequestLog;
use crate::theme::{self, Theme, ThemeError};

/// How long an informational notice stays in the footer.
const NOTICE_MS: u64 = 6_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Nodes,
    Models,
    Detail,
    Log,
}

pub const PANES: [Pane; 4] = [Pane::Nodes, Pane::Models, Pane::Detail, Pane::Log];

impl Pane {
    pub fn index(self) -> usize {
        PANES.iter().position(|p| *p == self).unwrap_or(0)
    }
    pub fn title(self) -> &'static str {
        match self {
            Pane::Nodes => "nodes",
            Pane::Models => "models",
            Pane::Detail => "detail",
            Pane::Log => "events",
        }
    }
}

#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Stream(StreamMsg),
    ActionDone {
        request: AdminRequest,
        result: Result<String, ClientError>,
    },
    /// The clock moved (wall clock, ms since the epoch).
    Tick(u64),
    /// A theme asked for with [`Effect::LoadTheme`] was read (or not).
    ThemeLoaded {
        name: String,
        result: Result<Theme, String>,
    },
    /// What the frame just drawn measured.
    Drawn(Drawn),
}

impl Msg {
    /// The answer to [`Effect::LoadTheme`].
    pub fn theme_loaded(name: String, result: Result<Theme, ThemeError>) -> Self {
        Msg::ThemeLoaded {
            name,
            result: result.map_err(|e| e.to_string()),
        }
    }
}

/// What drawing measured that keys depend on: drawing reports it, the
/// runtime passes it back as [`Msg::Drawn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drawn {
    /// Rows of the list that pages (models, or requests), for PageUp/Down.
    pub page_rows: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Admin(AdminRequest),
    /// Read the theme of this name (a file, or a built-in), answering
    /// with [`Msg::ThemeLoaded`].
    LoadTheme(String),
    Quit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    Connecting,
    Connected,
    Disconnected {
        error: String,
        attempt: u32,
        since_ms: u64,
        retry_at_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Load,
    Evict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    /// Pick where to load a model (`None` = let the gateway place it) or
    /// which node to evict it from.
    ChooseNode {
        purpose: Purpose,
        model: String,
        options: Vec<Option<String>>,
        selected: usize,
    },
    /// A destructive action waiting for a yes.
    Confirm {
        request: AdminRequest,
        question: String,
        yes: bool,
    },
}

/// What the body of the screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Nodes, models, detail and events.
    Fleet,
    /// The requests flowing through the fleet and the throughput chart.
    Requests,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Filter,
    Command,
    Help,
    Dialog(Dialog),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
    pub at_ms: u64,
}

pub struct App {
    pub fleet: Fleet,
    pub gateway: String,
    pub readonly: bool,
    pub theme: Theme,
    /// `NO_COLOR` was set: `:theme` cannot bring colour back.
    pub no_color: bool,
    pub conn: Conn,
    pub focus: Pane,
    pub selected_node: Option<String>,
    pub selected_model: Option<String>,
    /// Lines scrolled back from the newest log entry (0 = follow).
    pub log_scroll: usize,
    pub filter: String,
    pub mode: Mode,
    /// The text being typed in filter or command mode.
    pub input: String,
    pub notice: Option<Notice>,
    /// Admin calls sent and not answered yet.
    pub pending: Vec<AdminRequest>,
    /// Show the console's own log (tui-logger) instead of fleet events.
    pub show_console_log: bool,
    pub now_ms: u64,
    /// Rows of the list that pages, as the last frame drew it.
    pub page_rows: usize,
    /// Requests in flight and recent, fed by the same event stream.
    pub requests: RequestLog,
    pub screen: Screen,
    pub selected_request: Option<String>,
    /// The selected request's events are open.
    pub request_events: bool,
}

impl App {
    pub fn new(gateway: &str, theme: Theme, readonly: bool) -> Self {
        App {
            fleet: Fleet::new(),
            gateway: gateway.to_string(),
            readonly,
            theme,
            no_color: false,
            conn: Conn::Connecting,
            focus: Pane::Models,
            selected_node: None,
            selected_model: None,
            log_scroll: 0,
            filter: String::new(),
            mode: Mode::Normal,
            input: String::new(),
            notice: None,
            pending: Vec::new(),
            show_console_log: false,
            now_ms: 0,
            page_rows: 10,
            requests: RequestLog::new(),
            screen: Screen::Fleet,
            selected_request: None,
            request_events: false,
        }
    }

    /// Index of the selected request in `RequestLog::listed` order (the
    /// first when none is selected or it is gone).
    pub fn request_index(&self) -> Option<usize> {
        let listed = self.requests.listed();
        if listed.is_empty() {
            return None;
        }
        let at = self
            .selected_request
            .as_deref()
            .and_then(|id| listed.iter().position(|r| r.id == id));
        Some(at.unwrap_or(0))
    }

    /// Whether what is on screen may be out of date.
    pub fn is_stale(&self) -> bool {
        self.conn != Conn::Connected && self.fleet.has_snapshot
    }

    fn matches_filter(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// Models passing the filter (by id, alias or node), in id order.
    pub fn visible_models(&self) -> Vec<&ModelView> {
        self.fleet
            .models
            .values()
            .filter(|m| {
                self.matches_filter(&m.status.id)
                    || m.status.aliases.iter().any(|a| self.matches_filter(a))
                    || m.status
                        .placements
                        .iter()
                        .any(|p| self.matches_filter(&p.node))
            })
            .collect()
    }

    /// Nodes passing the filter (by name, or by a model placed there).
    pub fn visible_nodes(&self) -> Vec<&NodeStatus> {
        if self.filter.is_empty() {
            return self.fleet.nodes.values().collect();
        }
        let models = self.visible_models();
        self.fleet
            .nodes
            .values()
            .filter(|n| {
                self.matches_filter(&n.name)
                    || models
                        .iter()
                        .any(|m| m.status.placements.iter().any(|p| p.node == n.name))
            })
            .collect()
    }

    /// Index of the selected model among the visible ones (the first when
    /// the selection is gone).
    pub fn model_index(&self, visible: &[&ModelView]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        let id = self.selected_model.as_deref();
        Some(
            visible
                .iter()
                .position(|m| Some(m.status.id.as_str()) == id)
                .unwrap_or(0),
        )
    }

    pub fn node_index(&self, visible: &[&NodeStatus]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        let name = self.selected_node.as_deref();
        Some(
            visible
                .iter()
                .position(|n| Some(n.name.as_str()) == name)
                .unwrap_or(0),
        )
    }

    /// The model the detail pane and the actions are about.
    pub fn current_model(&self) -> Option<&ModelView> {
        let visible = self.visible_models();
        self.model_index(&visible).map(|i| visible[i])
    }

    pub fn notify(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some(Notice {
            level,
            text: text.into(),
            at_ms: self.now_ms,
        });
    }

    /// The notice still worth showing: errors until replaced or dismissed,
    /// the rest for a few seconds.
    pub fn live_notice(&self) -> Option<&Notice> {
        self.notice
            .as_ref()
            .filter(|n| n.level == Level::Error || self.now_ms < n.at_ms + NOTICE_MS)
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) => {
                if key.kind == KeyEventKind::Release {
                    return Vec::new();
                }
                self.on_key(key)
            }
            Msg::Stream(s) => {
                self.on_stream(s);
                Vec::new()
            }
            Msg::ActionDone { request, result } => {
                self.on_action_done(request, result);
                Vec::new()
            }
            Msg::Tick(now) => {
                self.now_ms = now;
                Vec::new()
            }
            Msg::ThemeLoaded { name, result } => {
                match result {
                    Ok(t) => {
                        self.theme = t;
                        self.notify(Level::Info, format!("theme {name}"));
                    }
                    Err(e) => self.notify(Level::Error, e),
                }
                Vec::new()
            }
            Msg::Drawn(d) => {
                self.page_rows = d.page_rows.max(1);
                Vec::new()
            }
        }
    }

    fn on_stream(&mut self, msg: StreamMsg) {
        match msg {
            StreamMsg::Connected => self.conn = Conn::Connected,
            StreamMsg::Event(ev) => {
                self.requests.apply(&ev);
                self.fleet.apply(*ev);
            }
            StreamMsg::BadEvent(why) => {
                let ts = self.fleet.now_ms;
                self.fleet.push_log(
                    ts,
                    Level::Warn,
                    None,
                    format!("unreadable event skipped: {why}"),
                );
            }
            StreamMsg::Disconnected {
                error,
                attempt,
                retry_in,
            } => {
                let since_ms = match &self.conn {
                    Conn::Disconnected { since_ms, .. } => *since_ms,
                    _ => self.now_ms,
                };
                if self.conn == Conn::Connected {
                    let ts = self.fleet.now_ms;
                    self.fleet.push_log(
                        ts,
                        Level::Error,
                        None,
                        format!("disconnected from the gateway: {error}"),
                    );
                }
                self.conn = Conn::Disconnected {
                    error,
                    attempt,
                    since_ms,
                    retry_at_ms: self.now_ms + retry_in.as_millis() as u64,
                };
            }
        }
    }

    fn on_action_done(&mut self, request: AdminRequest, result: Result<String, ClientError>) {
        if let Some(i) = self.pending.iter().position(|p| *p == request) {
            self.pending.remove(i);
        }
        let ts = self.fleet.now_ms.max(self.now_ms);
        match result {
            Ok(outcome) => {
                self.fleet
                    .push_log(ts, Level::Info, None, format!("✓ {outcome}"));
                self.notify(Level::Info, format!("✓ {outcome}"));
            }
            Err(e) => {
                let text = format!("✗ {} failed: {e}", request.describe());
                self.fleet.push_log(ts, Level::Error, None, text.clone());
                self.notify(Level::Error, text);
            }
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            return vec![Effect::Quit];
        }
        match self.mode.clone() {
            Mode::Normal => match keys::action_for(key) {
                Some(action) => self.on_action(action),
                None => Vec::new(),
            },
            Mode::Help => {
                // Any key closes the help; it never acts.
                self.mode = Mode::Normal;
                Vec::new()
            }
            Mode::Filter => {
                self.on_filter_key(key);
                Vec::new()
            }
            Mode::Command => self.on_command_key(key),
            Mode::Dialog(d) => self.on_dialog_key(d, key),
        }
    }

    fn on_filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => {
                self.filter.clear();
                self.input.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                self.input.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) => self.filter.push(c),
            _ => {}
        }
    }

    fn on_command_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => {
                self.input.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Backspace if self.input.pop().is_none() => self.mode = Mode::Normal,
            KeyCode::Backspace => {}
            KeyCode::Tab => {
                if let Some(verb) = command::complete(&self.input) {
                    self.input = format!("{verb} ");
                }
            }
            KeyCode::Enter => {
                let line = std::mem::take(&mut self.input);
                self.mode = Mode::Normal;
                return match command::parse(&line) {
                    Ok(cmd) => self.run_command(cmd),
                    Err(command::ParseError::Empty) => Vec::new(),
                    Err(e) => {
                        self.notify(Level::Error, format!(":{line}: {e}"));
                        Vec::new()
                    }
                };
            }
            KeyCode::Char(c) => self.input.push(c),
            _ => {}
        }
        Vec::new()
    }

    /// Carries out a parsed `:` command.
    pub fn run_command(&mut self, cmd: Command) -> Vec<Effect> {
        if cmd.is_action() && self.readonly {
            self.notify(Level::Error, "read-only console: actions are disabled");
            return Vec::new();
        }
        match cmd {
            Command::Quit => vec![Effect::Quit],
            Command::Help => {
                self.mode = Mode::Help;
                Vec::new()
            }
            Command::Theme { name } => self.load_theme(name),
            Command::Load { model, node } => self.send(AdminRequest::Load { model, node }),
            Command::Pin { model } => self.send(AdminRequest::Pin { model }),
            Command::Unpin { model } => self.send(AdminRequest::Unpin { model }),
            Command::Unload { model, node } => {
                self.confirm(AdminRequest::Unload { model, node });
                Vec::new()
            }
            Command::Evict { model, node } => {
                self.confirm(AdminRequest::Evict { model, node });
                Vec::new()
            }
        }
    }

    /// Asks the runtime for theme `name` (reading it is I/O).
    fn load_theme(&mut self, name: String) -> Vec<Effect> {
        if self.no_color && name != theme::MONO {
            self.notify(Level::Warn, "NO_COLOR is set: staying monochrome");
            return Vec::new();
        }
        vec![Effect::LoadTheme(name)]
    }

    fn on_dialog_key(&mut self, dialog: Dialog, key: KeyEvent) -> Vec<Effect> {
        match dialog {
            Dialog::ChooseNode {
                purpose,
                model,
                options,
                selected,
            } => {
                let last = options.len().saturating_sub(1);
                let selected = match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => {
                        self.mode = Mode::Normal;
                        return Vec::new();
                    }
                    KeyCode::Up | KeyCode::Char('k') => selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => (selected + 1).min(last),
                    KeyCode::Enter => {
                        self.mode = Mode::Normal;
                        let node = options.get(selected).cloned().flatten();
                        return match purpose {
                            Purpose::Load => self.send(AdminRequest::Load { model, node }),
                            Purpose::Evict => {
                                match node {
                                    Some(node) => self.confirm(AdminRequest::Evict { model, node }),
                                    None => self.notify(Level::Warn, "choose a node to evict from"),
                                }
                                Vec::new()
                            }
                        };
                    }
                    _ => selected,
                };
                self.mode = Mode::Dialog(Dialog::ChooseNode {
                    purpose,
                    model,
                    options,
                    selected,
                });
                Vec::new()
            }
            Dialog::Confirm {
                request,
                question,
                yes,
            } => {
                let yes = match key.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => {
                        self.mode = Mode::Normal;
                        return self.send(request);
                    }
                    KeyCode::Enter if yes => {
                        self.mode = Mode::Normal;
                        return self.send(request);
                    }
                    KeyCode::Enter | KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('q') => {
                        self.mode = Mode::Normal;
                        self.notify(Level::Info, format!("{} cancelled", request.describe()));
                        return Vec::new();
                    }
                    KeyCode::Left
                    | KeyCode::Right
                    | KeyCode::Tab
                    | KeyCode::BackTab
                    | KeyCode::Char('h')
                    | KeyCode::Char('l') => !yes,
                    _ => yes,
                };
                self.mode = Mode::Dialog(Dialog::Confirm {
                    request,
                    question,
                    yes,
                });
                Vec::new()
            }
        }
    }

    /// Queues an admin call; the footer shows it as pending until answered.
    fn send(&mut self, request: AdminRequest) -> Vec<Effect> {
        self.pending.push(request.clone());
        vec![Effect::Admin(request)]
    }

    fn confirm(&mut self, request: AdminRequest) {
        let question = match &request {
            AdminRequest::Evict { model, node } => format!("Evict {model} from {node}?"),
            AdminRequest::Unload {
                model,
                node: Some(n),
            } => format!("Unload {model} from {n}?"),
            AdminRequest::Unload { model, node: None } => {
                let nodes: Vec<String> = self
                    .fleet
                    .models
                    .get(model)
                    .map(|m| m.status.placements.iter().map(|p| p.node.clone()).collect())
                    .unwrap_or_default();
                if nodes.is_empty() {
                    format!("Unload {model} everywhere?")
                } else {
                    format!("Unload {model} from {}?", nodes.join(", "))
                }
            }
            other => format!("{}?", other.describe()),
        };
        self.mode = Mode::Dialog(Dialog::Confirm {
            request,
            question,
            yes: false,
        });
    }

    fn on_action(&mut self, action: Action) -> Vec<Effect> {
        let is_fleet_action = matches!(
            action,
            Action::Load | Action::TogglePin | Action::Unload | Action::Evict
        );
        if is_fleet_action && self.readonly {
            self.notify(Level::Warn, "read-only console: actions are disabled");
            return Vec::new();
        }
        if self.screen == Screen::Requests && self.on_requests_action(action) {
            return Vec::new();
        }
        match action {
            Action::Quit => return vec![Effect::Quit],
            Action::Requests => self.screen = Screen::Requests,
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-(self.page_rows.max(1) as isize)),
            Action::PageDown => self.move_selection(self.page_rows.max(1) as isize),
            Action::Top => self.move_selection(isize::MIN / 2),
            Action::Bottom => self.move_selection(isize::MAX / 2),
            Action::NextPane => self.focus = PANES[(self.focus.index() + 1) % PANES.len()],
            Action::PrevPane => {
                self.focus = PANES[(self.focus.index() + PANES.len() - 1) % PANES.len()]
            }
            Action::FocusPane(i) => {
                if let Some(p) = PANES.get(i) {
                    self.focus = *p;
                }
            }
            Action::Detail => {
                if self.focus == Pane::Nodes {
                    // Filter the models to the ones on the selected node.
                    let visible = self.visible_nodes();
                    if let Some(i) = self.node_index(&visible) {
                        self.filter = visible[i].name.clone();
                    }
                    self.focus = Pane::Models;
                } else {
                    self.focus = Pane::Detail;
                }
            }
            Action::Back => {
                if self.focus == Pane::Detail {
                    self.focus = Pane::Models;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                } else if self.notice.is_some() {
                    self.notice = None;
                } else {
                    self.log_scroll = 0;
                }
            }
            Action::StartFilter => {
                self.mode = Mode::Filter;
                self.filter.clear();
            }
            Action::StartCommand => {
                self.mode = Mode::Command;
                self.input.clear();
            }
            Action::Help => self.mode = Mode::Help,
            Action::ToggleLogSource => self.show_console_log = !self.show_console_log,
            Action::Load => return self.start_load(),
            Action::TogglePin => {
                let Some(m) = self.current_model() else {
                    self.notify(Level::Warn, "no model selected");
                    return Vec::new();
                };
                let model = m.status.id.clone();
                return if m.status.pinned {
                    self.send(AdminRequest::Unpin { model })
                } else {
                    self.send(AdminRequest::Pin { model })
                };
            }
            Action::Unload => {
                let Some(m) = self.current_model() else {
                    self.notify(Level::Warn, "no model selected");
                    return Vec::new();
                };
                let model = m.status.id.clone();
                if m.status.placements.is_empty() {
                    self.notify(Level::Warn, format!("{model} is not loaded anywhere"));
                } else {
                    self.confirm(AdminRequest::Unload { model, node: None });
                }
            }
            Action::Evict => self.start_evict(),
        }
        Vec::new()
    }

    fn start_load(&mut self) -> Vec<Effect> {
        let Some(m) = self.current_model() else {
            self.notify(Level::Warn, "no model selected");
            return Vec::new();
        };
        let model = m.status.id.clone();
        let placed: Vec<&str> = m
            .status
            .placements
            .iter()
            .map(|p| p.node.as_str())
            .collect();
        let mut options: Vec<Option<String>> = vec![None];
        options.extend(
            self.fleet
                .nodes
                .values()
                .filter(|n| n.state == NodeState::Up && !placed.contains(&n.name.as_str()))
                .map(|n| Some(n.name.clone())),
        );
        self.mode = Mode::Dialog(Dialog::ChooseNode {
            purpose: Purpose::Load,
            model,
            options,
            selected: 0,
        });
        Vec::new()
    }

    fn start_evict(&mut self) {
        let Some(m) = self.current_model() else {
            self.notify(Level::Warn, "no model selected");
            return;
        };
        let model = m.status.id.clone();
        let nodes: Vec<String> = m
            .status
            .placements
            .iter()
            .filter(|p| p.state != PlacementState::Unloading)
            .map(|p| p.node.clone())
            .collect();
        match nodes.len() {
            0 => self.notify(Level::Warn, format!("{model} is not resident anywhere")),
            1 => {
                if let Some(node) = nodes.into_iter().next() {
                    self.confirm(AdminRequest::Evict { model, node });
                }
            }
            _ => {
                self.mode = Mode::Dialog(Dialog::ChooseNode {
                    purpose: Purpose::Evict,
                    model,
                    options: nodes.into_iter().map(Some).collect(),
                    selected: 0,
                })
            }
        }
    }

    /// Keys on the requests screen; false when the fleet screen's meaning
    /// applies (quit, help, command line, actions on the selected model).
    fn on_requests_action(&mut self, action: Action) -> bool {
        let step = |app: &mut App, delta: isize| {
            let listed = app.requests.listed();
            if listed.is_empty() {
                return;
            }
            let cur = app.request_index().unwrap_or(0) as isize;
            let next = cur
                .saturating_add(delta)
                .clamp(0, listed.len() as isize - 1) as usize;
            app.selected_request = Some(listed[next].id.clone());
        };
        let page = self.page_rows.max(1) as isize;
        match action {
            Action::Up => step(self, -1),
            Action::Down => step(self, 1),
            Action::PageUp => step(self, -page),
            Action::PageDown => step(self, page),
            Action::Top => step(self, isize::MIN / 2),
            Action::Bottom => step(self, isize::MAX / 2),
            Action::Detail => {
                if self.requests.is_empty() {
                    self.notify(Level::Warn, "no requests yet");
                } else {
                    if self.selected_request.is_none() {
                        step(self, 0);
                    }
                    self.request_events = !self.request_events;
                }
            }
            Action::Back if self.request_events => self.request_events = false,
            Action::Back | Action::Requests => {
                self.screen = Screen::Fleet;
                self.request_events = false;
            }
            Action::NextPane | Action::PrevPane | Action::FocusPane(_) => {
                self.screen = Screen::Fleet;
                return false;
            }
            _ => return false,
        }
        true
    }

    fn move_selection(&mut self, delta: isize) {
        let step = |cur: Option<usize>, len: usize| -> Option<usize> {
            if len == 0 {
                return None;
            }
            let cur = cur.unwrap_or(0) as isize;
            Some((cur.saturating_add(delta)).clamp(0, len as isize - 1) as usize)
        };
        match self.focus {
            Pane::Nodes => {
                let visible = self.visible_nodes();
                let next =
                    step(self.node_index(&visible), visible.len()).map(|i| visible[i].name.clone());
                self.selected_node = next;
            }
            Pane::Models | Pane::Detail => {
                let visible = self.visible_models();
                let next = step(self.model_index(&visible), visible.len())
                    .map(|i| visible[i].status.id.clone());
                self.selected_model = next;
            }
            Pane::Log => {
                let max = self.fleet.log.len().saturating_sub(1) as isize;
                // Up scrolls back in time.
                self.log_scroll = (self.log_scroll as isize)
                    .saturating_sub(delta)
                    .clamp(0, max.max(0)) as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests;
