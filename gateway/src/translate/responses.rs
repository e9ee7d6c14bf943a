//! The OpenAI Responses API (`/v1/responses`): its wire shapes and their
//! translation to and from the chat completions neurons speak.

pub mod request;
pub mod response;
pub mod schema;
pub mod stream;
