//! How cortex programs live as processes: a server announces its listeners
//! on stdout ([`announce`]), a parent starts servers and waits for those
//! lines ([`spawn`], used by `cortex demo` and the integration tests), and
//! every server stops gracefully on Ctrl-C or SIGTERM ([`shutdown`]).
//!
//! Not part of the wire contract (`cortex-common`): this is process
//! plumbing shared by the gateway, the neuron and the tests.

pub mod announce;
pub mod shutdown;
pub mod spawn;

pub use spawn::{Child, LaunchError, die_with_parent, sibling_binary, spawn_server};
