//! What forwarding a request gives back, typed: a whole JSON answer or a
//! stream of events, each parsed once where the neuron's bytes were read
//! (`neuron_sse`). Every client surface renders these values in its own
//! shape; none reads the proxy's bytes.

use cortex_common::error::ApiError;
use cortex_common::openai::{ChatCompletionChunk, ChatCompletionResponse};
use futures::stream::BoxStream;

/// A request that reached a neuron and was answered (failures before that
/// are the `Err` of [`super::forward`]).
pub enum Answer {
    /// A non-streamed answer and the node that served it.
    Whole { node: String, reply: Reply },
    /// A streamed answer: the node when one was at hand at once (a stream
    /// that waits for a cold load commits before it knows), and the events.
    Stream {
        node: Option<String>,
        events: BoxStream<'static, Event>,
    },
}

/// A non-streamed answer.
#[derive(Debug)]
pub enum Reply {
    /// A chat completion, assembled from the neuron's stream.
    Chat(Box<ChatCompletionResponse>),
    /// Any other JSON document (e.g. a token count), as the neuron sent it.
    Document(serde_json::Value),
}

/// One thing that happened on a streamed answer. A stream ends with `Done`
/// or `Failed`; the request is recorded as finished before either is
/// yielded, so a surface may stop reading there.
#[derive(Debug)]
pub enum Event {
    /// Nothing to say yet: the surface keeps the client company.
    Wait(Wait),
    /// A chat completion chunk, as the neuron sent it.
    Chunk(Box<ChatCompletionChunk>),
    /// The answer failed (a message fit for the client); nothing follows.
    Failed(ApiError),
    /// The answer is complete; nothing follows.
    Done,
}

/// Why a stream is silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No replica yet: a cold load or room being made.
    Model,
    /// A replica was found; the request is on its way to the neuron.
    Neuron,
    /// The neuron is working (prefill) or kept the connection alive.
    Idle,
}
