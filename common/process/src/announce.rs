//! How a cortex server tells its parent where it listens: once bound, it
//! prints one line per listener on stdout, `listening on http://ADDR` (the
//! gateway adds `metrics on http://ADDR`), so a parent that passed port 0
//! learns the port. [`crate::spawn`] reads these lines.

use std::fmt::Display;

/// Starts the line that announces the main listener.
pub const LISTENING_PREFIX: &str = "listening on http://";
/// Starts the line that announces the metrics listener.
pub const METRICS_PREFIX: &str = "metrics on http://";

/// Prints the main listener's line.
pub fn listening(addr: impl Display) {
    println!("{LISTENING_PREFIX}{addr}");
}

/// Prints the metrics listener's line.
pub fn metrics(addr: impl Display) {
    println!("{METRICS_PREFIX}{addr}");
}
