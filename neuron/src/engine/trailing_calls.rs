//! Tool calls that run to the end of the answer, as Llama 3.x and Mistral
//! write them (see [`super::tool_format`]): text streams until the call
//! begins — `[TOOL_CALLS]` (Mistral), `<|python_tag|>` or a `{` opening
//! the answer (Llama 3) —, then everything is held and read once the answer
//! ends. Calls that do not read are the answer's text, verbatim; the
//! whitespace between text and calls that do read is dropped.
//!
//! Streaming-safe as [`crate::engine::tool_calls::ToolCallParser`]
//! is: a marker split across pushes is held back, never emitted in halves.

use crate::engine::tool_calls::{
    ParsedToolCall, Piece, emit_holding_whitespace, tool_call_from_value,
};
use serde_json::{Map, Value};

use super::tool_format::{MISTRAL_ARGS, MISTRAL_CALL_ID, MISTRAL_CALLS, PYTHON_TAG};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Llama3,
    Mistral,
}

impl Syntax {
    fn marker(self) -> &'static str {
        match self {
            Syntax::Llama3 => PYTHON_TAG,
            Syntax::Mistral => MISTRAL_CALLS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only whitespace so far: a Llama 3 answer may still open with `{`.
    Lead,
    Text,
    /// Inside the calls: held until the end.
    Calls,
}

#[derive(Debug)]
pub struct TrailingCalls {
    syntax: Syntax,
    mode: Mode,
    /// `Lead`/`Text`: a possible start of the marker; `Calls`: everything
    /// after the marker (or from the opening `{`).
    buf: String,
    /// Trailing whitespace of the text: dropped if calls follow.
    pending_ws: String,
    /// The marker that opened the calls (empty for a bare `{`), to give the
    /// text back verbatim when they do not read.
    opened_with: &'static str,
}

impl TrailingCalls {
    pub fn new(syntax: Syntax) -> Self {
        TrailingCalls {
            syntax,
            mode: Mode::Lead,
            buf: String::new(),
            pending_ws: String::new(),
            opened_with: "",
        }
    }

    pub fn push(&mut self, text: &str, out: &mut Vec<Piece>) {
        self.buf.push_str(text);
        let marker = self.syntax.marker();
        loop {
            match self.mode {
                Mode::Calls => return,
                Mode::Lead => {
                    let body = self.buf.trim_start();
                    let ws = self.buf.len() - body.len();
                    if body.is_empty() {
                        self.pending_ws.push_str(&self.buf);
                        self.buf.clear();
                        return;
                    }
                    self.pending_ws.push_str(&self.buf[..ws]);
                    self.buf.drain(..ws);
                    if self.syntax == Syntax::Llama3 && self.buf.starts_with('{') {
                        self.mode = Mode::Calls;
                        return;
                    }
                    self.mode = Mode::Text;
                }
                Mode::Text => {
                    if let Some(at) = self.buf.find(marker) {
                        let before: String = self.buf.drain(..at).collect();
                        self.buf.drain(..marker.len());
                        self.emit(&before, out);
                        self.opened_with = marker;
                        self.mode = Mode::Calls;
                        return;
                    }
                    let hold = marker_prefix_len(&self.buf, marker);
                    let ready: String = self.buf.drain(..self.buf.len() - hold).collect();
                    self.emit(&ready, out);
                    return;
                }
            }
        }
    }

    /// The answer ended: calls are read, or given back as text.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        let rest = std::mem::take(&mut self.buf);
        let ws = std::mem::take(&mut self.pending_ws);
        if self.mode != Mode::Calls {
            let text = ws + &rest;
            if !text.is_empty() {
                out.push(Piece::Text(text));
            }
            return;
        }
        let calls = match self.syntax {
            Syntax::Llama3 => llama3_calls(&rest),
            Syntax::Mistral => mistral_calls(&rest),
        };
        match calls {
            Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
            None => out.push(Piece::Text(format!("{ws}{}{rest}", self.opened_with))),
        }
    }

    /// Text before the calls: sent, but its trailing whitespace held back.
    fn emit(&mut self, text: &str, out: &mut Vec<Piece>) {
        emit_holding_whitespace(&mut self.pending_ws, text, out);
    }
}

/// Bytes at the end of `text` that are a proper prefix of `marker`.
fn marker_prefix_len(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| marker.is_char_boundary(n) && text.ends_with(&marker[..n]))
        .unwrap_or(0)
}

/// Llama 3: one or more call objects separated by `;` or whitespace (or
/// one array of them). `None` unless every one is a call.
fn llama3_calls(body: &str) -> Option<Vec<ParsedToolCall>> {
    let mut calls = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let value = values.next()?.ok()?;
        rest = rest[values.byte_offset()..]
            .trim_start_matches(|c: char| c == ';' || c.is_whitespace());
        match value {
            Value::Array(items) => {
                for item in items {
                    calls.push(tool_call_from_value(item)?);
                }
            }
            other => calls.push(tool_call_from_value(other)?),
        }
    }
    (!calls.is_empty()).then_some(calls)
}

/// Mistral, after the first `[TOOL_CALLS]`: a JSON array of calls, or
/// `name[ARGS]{…}` (optionally `name[CALL_ID]id[ARGS]{…}`), each further
/// call after its own `[TOOL_CALLS]`.
fn mistral_calls(body: &str) -> Option<Vec<ParsedToolCall>> {
    let mut calls = Vec::new();
    for part in body.split(MISTRAL_CALLS) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if part.starts_with('[') {
            let Value::Array(items) = serde_json::from_str(part).ok()? else {
                return None;
            };
            for item in items {
                calls.push(tool_call_from_value(item)?);
            }
            continue;
        }
        let (head, args) = part.split_once(MISTRAL_ARGS)?;
        let name = head.split(MISTRAL_CALL_ID).next().unwrap_or(head).trim();
        let arguments: Value = serde_json::from_str(args.trim()).ok()?;
        let mut call = Map::new();
        call.insert("name".into(), Value::from(name));
        call.insert("arguments".into(), arguments);
        calls.push(tool_call_from_value(Value::Object(call))?);
    }
    (!calls.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Feeds `text` cut after every `chunk` characters; the merged text and
    /// the calls.
    fn run(syntax: Syntax, text: &str, chunk: usize) -> (String, Vec<ParsedToolCall>) {
        let mut p = TrailingCalls::new(syntax);
        let mut out = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for c in chars.chunks(chunk) {
            p.push(&c.iter().collect::<String>(), &mut out);
        }
        p.finish(&mut out);
        let (mut content, mut calls) = (String::new(), Vec::new());
        for piece in out {
            match piece {
                Piece::Text(t) => content.push_str(&t),
                Piece::Call(c) => calls.push(c),
            }
        }
        (content, calls)
    }

    fn args(c: &ParsedToolCall) -> Value {
        Value::Object(c.arguments.clone())
    }

    #[test]
    fn llama3_bare_json_and_python_tag_calls() {
        for text in [
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            "\n<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            "<|python_tag|>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}",
        ] {
            for chunk in 1..8 {
                let (content, calls) = run(Syntax::Llama3, text, chunk);
                assert_eq!(content, "", "{text:?} by {chunk}");
                assert_eq!(calls.len(), 1, "{text:?} by {chunk}");
                assert_eq!(calls[0].name, "get_weather");
                assert_eq!(args(&calls[0]), json!({"city": "Paris"}));
            }
        }
    }

    #[test]
    fn llama3_several_calls_and_text_before_a_tag() {
        let text = "Checking both.\n<|python_tag|>{\"name\": \"w\", \"parameters\": {\"c\": \"Paris\"}}; {\"name\": \"w\", \"parameters\": {\"c\": \"Rome\"}}";
        for chunk in 1..8 {
            let (content, calls) = run(Syntax::Llama3, text, chunk);
            assert_eq!(content, "Checking both.");
            let cities: Vec<Value> = calls.iter().map(|c| args(c)["c"].clone()).collect();
            assert_eq!(cities, [json!("Paris"), json!("Rome")]);
        }
    }

    #[test]
    fn llama3_text_is_text() {
        for text in [
            "The answer is {probably} 4.",
            "  {not json",
            "{\"no\": \"name\"}",
            "<|python_tag|>brave_search.call(query=\"x\")",
            "<|python_ta",
        ] {
            for chunk in 1..5 {
                let (content, calls) = run(Syntax::Llama3, text, chunk);
                assert_eq!(content, text, "by {chunk}");
                assert!(calls.is_empty());
            }
        }
    }

    #[test]
    fn mistral_json_array_calls() {
        let text = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}, {\"name\": \"get_time\", \"arguments\": {}}]";
        for chunk in 1..8 {
            let (content, calls) = run(Syntax::Mistral, text, chunk);
            assert_eq!(content, "");
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["get_weather", "get_time"]);
            assert_eq!(args(&calls[0]), json!({"city": "Paris"}));
        }
    }

    #[test]
    fn mistral_args_marker_calls_after_text() {
        let text = "Let me look.\n\n[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[CALL_ID]x1[ARGS]{}";
        for chunk in 1..8 {
            let (content, calls) = run(Syntax::Mistral, text, chunk);
            assert_eq!(content, "Let me look.");
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["get_weather", "get_time"]);
            assert_eq!(args(&calls[0]), json!({"city": "Paris"}));
        }
    }

    #[test]
    fn mistral_calls_that_do_not_read_are_text() {
        for text in [
            "ok [TOOL_CALLS] [{\"name\": oops}]",
            "[TOOL_CALLS]get_weather{\"city\": 1}",
            "[TOOL_CALLS]",
            "plain [TOOL_CA",
        ] {
            for chunk in 1..6 {
                let (content, calls) = run(Syntax::Mistral, text, chunk);
                assert_eq!(content, text, "by {chunk}");
                assert!(calls.is_empty());
            }
        }
    }
}
