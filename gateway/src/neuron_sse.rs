//! A neuron's streamed chat answer read as whole SSE frames, each one
//! parsed once where the bytes arrive: a comment (keepalive), a typed chat
//! chunk, the neuron's error event as an [`ApiError`], or `[DONE]`. The
//! proxy decides from these when an answer has started, when it ended, and
//! how; every client surface renders from the same values, so no bytes are
//! read twice.

use bytes::{Bytes, BytesMut};
use cortex_common::error::ApiError;
use cortex_common::openai::ChatCompletionChunk;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::from_upstream_body;

/// Largest frame accepted from a neuron; a longer one is a broken stream.
const MAX_FRAME: usize = 1 << 20;

/// What one frame says.
#[derive(Debug)]
pub enum Frame {
    /// Only comments (the neuron's keepalive).
    Comment,
    /// A chat completion chunk.
    Chunk(Box<ChatCompletionChunk>),
    /// Data that is not a chat completion chunk: a broken stream.
    Invalid(String),
    /// The neuron's error event: the answer failed.
    Error(ApiError),
    /// `data: [DONE]`: the answer is complete.
    Done,
}

impl Frame {
    /// Whether the frame gives the client something of the answer: any
    /// data but a chunk that only opens the message (role, empty content)
    /// or thinks aloud.
    pub fn starts_answer(&self) -> bool {
        match self {
            Frame::Comment => false,
            Frame::Chunk(c) => {
                c.usage.is_some()
                    || c.choices.iter().any(|ch| {
                        ch.finish_reason.is_some()
                            || ch.delta.tool_calls.is_some()
                            || ch.delta.content.as_deref().is_some_and(|t| !t.is_empty())
                    })
            }
            Frame::Invalid(_) | Frame::Error(_) | Frame::Done => true,
        }
    }
}

/// Why reading frames stopped short of `[DONE]`.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed (reset, idle timeout, ...).
    Transport(String),
    /// The stream ended between or inside frames, before `[DONE]`.
    Ended,
    /// A frame larger than [`MAX_FRAME`].
    TooLarge,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Transport(e) => write!(f, "failed: {e}"),
            ReadError::Ended => f.write_str("ended before [DONE]"),
            ReadError::TooLarge => write!(f, "sent a frame larger than {MAX_FRAME} bytes"),
        }
    }
}

/// Splits a byte stream into [`Frame`]s.
pub struct Frames {
    inner: BoxStream<'static, Result<Bytes, String>>,
    buf: BytesMut,
}

impl Frames {
    pub fn new(resp: reqwest::Response) -> Self {
        Frames::from_stream(resp.bytes_stream().map(|r| r.map_err(|e| e.to_string())))
    }

    pub fn from_stream(
        s: impl futures::Stream<Item = Result<Bytes, String>> + Send + 'static,
    ) -> Self {
        Frames {
            inner: s.boxed(),
            buf: BytesMut::new(),
        }
    }

    /// The next frame; after `Err` nothing follows. Cancel-safe: bytes
    /// already read stay buffered.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(raw) = split_frame(&mut self.buf) {
                return Ok(classify(&raw));
            }
            if self.buf.len() > MAX_FRAME {
                return Err(ReadError::TooLarge);
            }
            match self.inner.next().await {
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
                Some(Err(e)) => return Err(ReadError::Transport(e)),
                None => return Err(ReadError::Ended),
            }
        }
    }
}

/// Splits one frame, up to and including its blank line, off `buf`.
fn split_frame(buf: &mut BytesMut) -> Option<Bytes> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let end = match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(buf.split_to(end).freeze())
}

fn classify(raw: &[u8]) -> Frame {
    let text = String::from_utf8_lossy(raw);
    let mut data: Option<String> = None;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("data:") {
            let d = d.strip_prefix(' ').unwrap_or(d);
            match &mut data {
                Some(acc) => {
                    acc.push('\n');
                    acc.push_str(d);
                }
                None => data = Some(d.to_string()),
            }
        }
    }
    let Some(data) = data else {
        return Frame::Comment;
    };
    if data.trim() == "[DONE]" {
        return Frame::Done;
    }
    let value: serde_json::Value = match serde_json::from_str(&data) {
        Ok(v) => v,
        Err(e) => return Frame::Invalid(format!("data that is not JSON ({e})")),
    };
    if value.get("error").is_some() {
        return Frame::Error(from_upstream_body(500, data.as_bytes()));
    }
    match serde_json::from_value(value) {
        Ok(chunk) => Frame::Chunk(Box::new(chunk)),
        Err(e) => Frame::Invalid(format!("data that is not a chat completion chunk ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(parts: &[&str]) -> Vec<Result<Frame, ReadError>> {
        let parts: Vec<Result<Bytes, String>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
            .collect();
        let mut f = Frames::from_stream(futures::stream::iter(parts));
        let mut out = Vec::new();
        loop {
            let next = f.next().await;
            let end = next.is_err();
            out.push(next);
            if end {
                return out;
            }
        }
    }

    const ROLE: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    const TOKEN: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
    const CALL: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#;

    #[tokio::test]
    async fn frames_split_across_reads_and_what_starts_an_answer() {
        let whole = format!("{ROLE}\n\n: keepalive\n\n{TOKEN}\n\ndata: [DONE]\n\n");
        // Every split point, including inside `\n\n` and inside the JSON.
        for at in 1..whole.len() {
            let (a, b) = whole.split_at(at);
            let got = frames(&[a, b]).await;
            let kinds: Vec<(bool, bool)> = got
                .iter()
                .filter_map(|f| f.as_ref().ok())
                .map(|f| (matches!(f, Frame::Done), f.starts_answer()))
                .collect();
            assert_eq!(
                kinds,
                vec![(false, false), (false, false), (false, true), (true, true)],
                "split at {at}"
            );
            assert!(matches!(got.last(), Some(Err(ReadError::Ended))));
            match &got[2] {
                Ok(Frame::Chunk(c)) => {
                    assert_eq!(c.choices[0].delta.content.as_deref(), Some("hi"))
                }
                other => panic!("split at {at}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_tool_call_fragment_starts_the_answer_and_is_typed() {
        let whole = format!("{CALL}\r\n\r\n");
        let got = frames(&[&whole]).await;
        let first = got[0].as_ref().unwrap();
        assert!(first.starts_answer());
        match first {
            Frame::Chunk(c) => {
                let calls = c.choices[0].delta.tool_calls.as_ref().unwrap();
                assert_eq!(calls[0].id.as_deref(), Some("call_1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn done_inside_a_chunk_is_not_the_end_and_errors_are_typed() {
        let tricky = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"data: [DONE]"},"finish_reason":null}]}"#;
        let whole = format!(
            "{tricky}\n\ndata: {{\"error\":{{\"message\":\"boom\",\"type\":\"server_error\",\"code\":\"x\"}}}}\n\n"
        );
        let got = frames(&[&whole]).await;
        assert!(matches!(got[0].as_ref().unwrap(), Frame::Chunk(_)));
        match got[1].as_ref().unwrap() {
            Frame::Error(e) => {
                assert_eq!(e.message, "boom");
                assert_eq!(e.kind, cortex_common::error::ErrorKind::Upstream);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn data_that_is_no_chunk_is_invalid() {
        let got = frames(&["data: {\"id\":3}\n\ndata: nonsense\n\n"]).await;
        assert!(
            matches!(got[0].as_ref().unwrap(), Frame::Invalid(m) if m.contains("chat completion chunk"))
        );
        assert!(matches!(got[1].as_ref().unwrap(), Frame::Invalid(m) if m.contains("not JSON")));
    }

    #[tokio::test]
    async fn an_endless_frame_is_an_error() {
        let big = "x".repeat(MAX_FRAME + 10);
        let got = frames(&["data: ", &big]).await;
        assert!(matches!(got.last(), Some(Err(ReadError::TooLarge))));
    }
}
