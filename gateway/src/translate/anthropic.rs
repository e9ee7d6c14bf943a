//! The Anthropic Messages API (`/v1/messages`): its wire shapes and their
//! translation to and from the chat completions neurons speak.

pub mod error;
pub mod request;
pub mod response;
pub mod schema;
pub mod stream;
