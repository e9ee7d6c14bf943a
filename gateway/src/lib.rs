//! The gateway's translation between the client surfaces it serves
//! (Anthropic Messages, OpenAI Responses, legacy completions) and the chat
//! completions neurons speak. A library of its own so that its property
//! tests and bench reach it; the `cortex` binary (`main.rs`) is the rest.

pub mod translate;
