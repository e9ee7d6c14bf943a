//! Inference: the model registry, admission, the device worker, its
//! continuous-batching scheduler and the sequences it steps.

pub mod admission;
pub mod chat_template;
pub mod detokenize;
pub mod output;
pub mod pacing;
pub mod prompt;
pub mod registry;
pub mod sampling;
pub mod scheduler;
pub mod sequence;
pub mod stop;
pub mod tool_calls;
pub mod tool_format;
pub mod trailing_calls;
pub mod worker;
