//! cortex-console: a live terminal view of a cortex fleet. The binary
//! (`main.rs`) wires the terminal and the network to the pieces here:
//!
//! - [`fleet`]: the local fleet model, fed by the gateway's event stream;
//! - [`requests`]: the requests in flight and recent, from the same stream;
//! - [`app`]: the console's state and its update function (keys, events,
//!   action outcomes in; admin requests out);
//! - [`client`]: the event stream (with reconnect) and the admin calls;
//! - [`keys`], [`command`]: key bindings and the `:` command line;
//! - [`theme`]: colour themes from `themes/*.toml`;
//! - [`ui`]: drawing, one file per pane.

pub mod app;
pub mod client;
pub mod command;
#[doc(hidden)]
pub mod fixtures;
pub mod fleet;
pub mod keys;
pub mod requests;
pub mod theme;
pub mod ui;
