//! A neuron's streamed chat answer read as whole SSE frames, each one
//! classified once where the bytes arrive: a comment (keepalive), a chat
//! chunk, the neuron's error event, or `[DONE]`. The proxy decides from
//! these — not by scanning bytes — when an answer has started, when it
//! ended, and how.

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
pub enum Kind {
    /// Only comments (the neuron's keepalive).
    Comment,
    /// A chat completion chunk, parsed when it could be.
    Chunk(Option<Box<ChatCompletionChunk>>),
    /// The neuron's error event: the answer failed.
    Error(ApiError),
    /// `data: [DONE]`: the answer is complete.
    Done,
}

/// One whole frame: its bytes as received (blank line included), and what
/// it says.
#[derive(Debug)]
pub struct Frame {
    pub raw: Bytes,
    pub kind: Kind,
}

impl Frame {
    /// Whether the frame gives the client something of the answer: any
    /// data but a chunk that only opens the message (role, empty content).
    pub fn starts_answer(&self) -> bool {
        match &self.kind {
            Kind::Comment => false,
            Kind::Chunk(Some(c)) => {
                c.usage.is_some()
                    || c.choices.iter().any(|ch| {
                        ch.finish_reason.is_some()
                            || ch.delta.content.as_deref().is_some_and(|t| !t.is_empty())
                    })
                    // Tool-call fragments are not in the typed delta.
                    || self.raw.windows(12).any(|w| w == b"\"tool_calls\"")
            }
            Kind::Chunk(None) | Kind::Error(_) | Kind::Done => true,
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
                return Ok(Frame {
                    kind: classify(&raw),
                    raw,
                });
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

fn classify(raw: &[u8]) -> Kind {
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
        return Kind::Comment;
    };
    if data.trim() == "[DONE]" {
        return Kind::Done;
    }
    let value: Option<serde_json::Value> = serde_json::from_str(&data).ok();
    if value.as_ref().is_some_and(|v| v.get("error").is_some()) {
        return Kind::Error(from_upstream_body(500, data.as_bytes()));
    }
    Kind::Chunk(
        value
            .and_then(|v| serde_json::from_value(v).ok())
            .map(Box::new),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(parts: &[&'static str]) -> Vec<Result<Frame, ReadError>> {
        let parts: Vec<Result<Bytes, String>> = parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
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

    #[tokio::test]
    async fn frames_split_across_reads_and_what_starts_an_answer() {
        let whole = format!("{ROLE}\n\n: keepalive\n\n{TOKEN}\n\ndata: [DONE]\n\n");
        let leaked: &'static str = Box::leak(whole.into_boxed_str());
        let (a, b) = leaked.split_at(40);
        let got = frames(&[a, b]).await;
        let kinds: Vec<(bool, bool)> = got
            .iter()
            .filter_map(|f| f.as_ref().ok())
            .map(|f| (matches!(f.kind, Kind::Done), f.starts_answer()))
            .collect();
        assert_eq!(
            kinds,
            vec![(false, false), (false, false), (false, true), (true, true)]
        );
        assert!(matches!(got.last(), Some(Err(ReadError::Ended))));
        let first = got[0].as_ref().unwrap();
        assert!(first.raw.ends_with(b"\n\n"));
    }

    #[tokio::test]
    async fn done_inside_a_chunk_is_not_the_end_and_errors_are_parsed() {
        let tricky = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"data: [DONE]"},"finish_reason":null}]}"#;
        let whole = format!(
            "{tricky}\n\ndata: {{\"error\":{{\"message\":\"boom\",\"type\":\"server_error\",\"code\":\"x\"}}}}\n\n"
        );
        let leaked: &'static str = Box::leak(whole.into_boxed_str());
        let got = frames(&[leaked]).await;
        assert!(matches!(
            got[0].as_ref().unwrap().kind,
            Kind::Chunk(Some(_))
        ));
        match &got[1].as_ref().unwrap().kind {
            Kind::Error(e) => assert_eq!(e.message, "boom"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_endless_frame_is_an_error() {
        let big: &'static str = Box::leak("x".repeat(MAX_FRAME + 10).into_boxed_str());
        let got = frames(&["data: ", big]).await;
        assert!(matches!(got.last(), Some(Err(ReadError::TooLarge))));
    }
}
