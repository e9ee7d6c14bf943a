//! Inference: the model registry, admission, the device worker and what it
//! runs for each request.

pub mod admission;
pub mod chat_template;
pub mod detokenize;
pub mod generate;
pub mod registry;
pub mod sampling;
pub mod stop;
pub mod worker;
