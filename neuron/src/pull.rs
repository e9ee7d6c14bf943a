//! `neuron pull SOURCE`: fetches a model into its cache without loading
//! it, exactly as a load would (same sources, `model_roots` and Hub
//! settings), printing progress on stderr and the model's path on stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::model::resolve::{Sources, resolve};
use crate::settings::Settings;

/// Fails with the whole reason (a non-zero exit) when the model cannot be
/// fetched.
pub async fn run(source: String, settings: &Settings) -> anyhow::Result<()> {
    let sources = Sources {
        roots: settings.model_roots.clone(),
        hub: settings.hub.clone(),
    };
    let shown = source.clone();
    // Off the runtime: the fetch blocks its thread until the files are in.
    let resolved = tokio::task::spawn_blocking(move || {
        let printer = Printer::new(&source);
        let resolved = resolve(&source, &sources, &|done, total| {
            printer.report(done, total)
        });
        printer.end();
        resolved
    })
    .await
    .context("the pull stopped")?
    .with_context(|| format!("cannot pull {shown}"))?;
    println!("{}", resolved.path().display());
    Ok(())
}

/// Download progress on stderr: one updating line on a terminal, a line
/// per tenth otherwise (logs).
struct Printer {
    source: String,
    terminal: bool,
    /// When the last line was printed, and its tenth.
    last: Mutex<Option<(Instant, u64)>>,
}

impl Printer {
    fn new(source: &str) -> Self {
        Printer {
            source: source.to_string(),
            terminal: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }

    fn report(&self, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        let percent = done.saturating_mul(100) / total;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = match *last {
            None => true,
            Some(_) if done == total => true,
            Some((at, _)) if self.terminal => at.elapsed() >= Duration::from_millis(200),
            Some((_, tenth)) => percent / 10 > tenth,
        };
        if !due {
            return;
        }
        *last = Some((Instant::now(), percent / 10));
        let line = format!(
            "{}: downloaded {:.1} of {:.1} MiB ({percent}%)",
            self.source,
            done as f64 / (1u64 << 20) as f64,
            total as f64 / (1u64 << 20) as f64,
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    /// Ends an updating line.
    fn end(&self) {
        let printed = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if self.terminal && printed {
            eprintln!();
        }
    }
}
