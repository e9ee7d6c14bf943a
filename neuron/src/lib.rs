//! neuron: the cortex per-host daemon. Discovers the host, loads models
//! into an in-process candle engine, serves the OpenAI chat API and a live
//! event stream.

pub mod api;
pub mod bench;
pub mod discovery;
pub mod engine;
pub mod events;
pub mod model;
pub mod node;
pub mod pull;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod shutdown;
