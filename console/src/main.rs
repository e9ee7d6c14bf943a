//! `cortex-console`: connects to a cortex gateway's admin API, follows the
//! fleet event stream and draws it; `--json` prints one status snapshot.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use cortex_common::status::FleetStatus;
use cortex_console::app::{App, Effect, Msg};
use cortex_console::client::{Backoff, Client, ClientError, DEFAULT_GATEWAY};
use cortex_console::theme::{self, Theme};
use cortex_console::ui;
use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt;
use tokio::sync::mpsc;

/// Live console of a cortex fleet: nodes, models, placements, latency, and
/// load / pin / unload / evict by keybinding (press ? inside for every key).
#[derive(Debug, Parser)]
#[command(name = "cortex-console", version)]
struct Args {
    /// The gateway to watch.
    #[arg(long, env = "CORTEX_GATEWAY", default_value = DEFAULT_GATEWAY)]
    gateway: String,
    /// Admin token of the gateway.
    #[arg(long, env = "CORTEX_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Colour theme: dark, light, high-contrast, mono, a name from themes/,
    /// or a path to a .toml file. NO_COLOR forces mono.
    #[arg(long, env = "CORTEX_THEME", default_value = theme::DEFAULT_THEME)]
    theme: String,
    /// Watch only: hide and disable every action.
    #[arg(long)]
    readonly: bool,
    /// Print one status snapshot (GET /admin/status) as JSON and exit.
    /// Exit code 1 when the gateway is unreachable or answers an error, 3
    /// when it refuses the token.
    #[arg(long)]
    json: bool,
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell) and exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
    /// Print the man page (roff) to install as cortex-console.1, and exit.
    #[arg(long)]
    manpage: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        let mut cmd = <Args as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "cortex-console", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if args.manpage {
        let man = clap_mangen::Man::new(<Args as clap::CommandFactory>::command());
        return match man.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cortex-console: writing the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cortex-console: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        return runtime.block_on(print_status(&args));
    }
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "cortex-console: stdout is not a terminal, so there is nothing to draw on; \
             use --json for a headless status snapshot"
        );
        return ExitCode::from(2);
    }
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cortex-console: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn print_status(args: &Args) -> ExitCode {
    let result = async {
        let client = Client::new(&args.gateway, args.token.clone())?;
        client.status().await
    }
    .await;
    match result {
        // In schema order when it is the document this console knows; as
        // received (keys sorted) when the gateway is newer, losing nothing.
        Ok(doc) => match serde_json::from_value::<FleetStatus>(doc.clone()).map_or_else(
            |_| serde_json::to_string_pretty(&doc),
            |s| serde_json::to_string_pretty(&s),
        ) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cortex-console: cannot print the status: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e @ ClientError::Unauthorized { .. }) => {
            eprintln!("cortex-console: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("cortex-console: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Puts the terminal back however `run` ends (the panic hook that
/// `ratatui::try_init` installs covers panics).
struct RestoreTerminal;

impl Drop for RestoreTerminal {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Most stream messages applied between two frames, so a flood of events
/// never starves the keyboard.
const MAX_BATCH: usize = 20_000;

async fn run(args: Args) -> anyhow::Result<()> {
    let no_color = theme::no_color_from_env();
    let dirs = theme::search_dirs();
    let theme = if no_color {
        Theme::mono()
    } else {
        let (name, in_dirs) = (args.theme.clone(), dirs.clone());
        tokio::task::spawn_blocking(move || theme::load(&name, &in_dirs))
            .await
            .context("reading the theme")??
    };
    let client = Client::new(&args.gateway, args.token.clone())?;
    init_logging();

    let mut app = App::new(client.base(), theme, args.readonly);
    app.no_color = no_color;
    app.now_ms = cortex_common::now_ms();

    let (stream_tx, mut stream_rx) = mpsc::channel(4096);
    let stream_client = client.clone();
    let stream_task = tokio::spawn(async move {
        stream_client
            .run_event_stream(stream_tx, Backoff::default())
            .await
    });
    // What effects carried out off the loop answer (admin calls, themes).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Msg>();

    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let _restore = RestoreTerminal;
    let mut term_events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    loop {
        let mut drawn = None;
        terminal
            .draw(|frame| drawn = Some(ui::draw(frame, &app)))
            .context("cannot draw")?;
        if let Some(d) = drawn.filter(|d| d.page_rows != app.page_rows) {
            app.update(Msg::Drawn(d));
        }
        let msg = tokio::select! {
            ev = term_events.next() => match ev {
                Some(Ok(TermEvent::Key(key))) => Some(Msg::Key(key)),
                Some(Ok(_)) => None, // resize, focus, mouse: redraw
                Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                None => break,
            },
            Some(s) = stream_rx.recv() => Some(Msg::Stream(s)),
            Some(answer) = done_rx.recv() => Some(answer),
            _ = tick.tick() => Some(Msg::Tick(cortex_common::now_ms())),
        };
        let mut effects = match msg {
            Some(m) => app.update(m),
            None => Vec::new(),
        };
        // Apply whatever else the stream has queued before the next frame.
        for _ in 0..MAX_BATCH {
            match stream_rx.try_recv() {
                Ok(s) => effects.extend(app.update(Msg::Stream(s))),
                Err(_) => break,
            }
        }
        let mut quit = false;
        for effect in effects {
            match effect {
                Effect::Quit => quit = true,
                Effect::Admin(request) => {
                    // Off the UI loop: a load blocks until the model is in.
                    let client = client.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let result = client.admin(&request).await;
                        if let Err(e) = &result {
                            tracing::warn!(action = %request.describe(), error = %e, "admin action failed");
                        }
                        let _ = done.send(Msg::ActionDone { request, result });
                    });
                }
                Effect::LoadTheme(name) => {
                    // A file read: off the loop.
                    let dirs = dirs.clone();
                    let done = done_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = theme::load(&name, &dirs);
                        let _ = done.send(Msg::theme_loaded(name, result));
                    });
                }
            }
        }
        if quit {
            break;
        }
    }
    stream_task.abort();
    Ok(())
}

/// The console's own tracing goes to tui-logger (the `L` view), never to
/// the terminal it draws on.
fn init_logging() {
    use tracing_subscriber::prelude::*;
    if tui_logger::init_logger(tui_logger::LevelFilter::Debug).is_err() {
        return;
    }
    tui_logger::set_default_level(tui_logger::LevelFilter::Info);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tui_logger::TuiTracingSubscriberLayer)
        .try_init();
}
