//! Tool calls written as text by the model, in the Hermes / Qwen convention:
//!
//! ```text
//! Let me look.
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```
//!
//! [`ToolCallParser`] separates such output into text and calls, either
//! incrementally (a stream of decoded fragments, split anywhere) or for a
//! complete text ([`parse_tool_calls`], which is the same parser fed once).
//!
//! Rules, identical for both uses:
//! - A call is `<tool_call>` BODY `</tool_call>` where BODY is a JSON object
//!   with a string `name` and `arguments` (or `parameters`) that is an
//!   object, a string holding a JSON object, or absent/null (→ `{}`).
//!   Arguments always come out as a JSON object.
//! - A body that is not such an object is not a call: the whole tagged span
//!   stays in the text, verbatim.
//! - Whitespace right before `<tool_call>` and right after `</tool_call>` of
//!   a valid call is formatting glue and is dropped; all other text is kept
//!   verbatim.
//! - Output that ends inside an unclosed `<tool_call>` is a call if the body
//!   so far is a valid one (the model stopped at the closing tag), text
//!   otherwise.

use serde_json::{Map, Value};

use cortex_common::openai::{FunctionCall, ToolCall};

pub const TOOL_CALL_OPEN: &str = "<tool_call>";
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// A call the model made; `arguments` is always an object.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedToolCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

impl ParsedToolCall {
    /// The arguments as a JSON document (OpenAI's `function.arguments`).
    pub fn arguments_json(&self) -> String {
        Value::Object(self.arguments.clone()).to_string()
    }

    /// As an OpenAI `tool_calls[]` entry with the given id.
    pub fn to_openai(&self, id: String) -> ToolCall {
        ToolCall {
            id,
            kind: "function".to_string(),
            function: FunctionCall {
                name: self.name.clone(),
                arguments: self.arguments_json(),
            },
        }
    }
}

/// What the parser yields, in output order. Consecutive `Text` pieces may
/// occur (how text is split depends on how input was split).
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Call(ParsedToolCall),
}

/// A whole generated text, separated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedText {
    pub content: String,
    pub tool_calls: Vec<ParsedToolCall>,
}

impl FromIterator<Piece> for ParsedText {
    /// The pieces of one text, in order: its content and its calls.
    fn from_iter<I: IntoIterator<Item = Piece>>(pieces: I) -> Self {
        let mut out = ParsedText::default();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.content.push_str(&t),
                Piece::Call(c) => out.tool_calls.push(c),
            }
        }
        out
    }
}

/// Separate a complete text into content and tool calls.
pub fn parse_tool_calls(text: &str) -> ParsedText {
    let mut parser = ToolCallParser::new();
    let mut pieces = Vec::new();
    parser.push(text, &mut pieces);
    parser.finish(&mut pieces);
    pieces.into_iter().collect()
}

/// Parse one call body (the JSON between the tags).
pub fn parse_tool_call_body(body: &str) -> Option<ParsedToolCall> {
    tool_call_from_value(serde_json::from_str(body.trim()).ok()?)
}

/// One call as JSON: an object with a string `name` and `arguments` (or
/// `parameters`, Llama 3's word) that is an object, a string holding one,
/// or absent/null (→ `{}`). Anything else is not a call.
pub fn tool_call_from_value(value: Value) -> Option<ParsedToolCall> {
    let Value::Object(mut obj) = value else {
        return None;
    };
    let name = match obj.remove("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => return None,
    };
    let args = obj.remove("arguments").or_else(|| obj.remove("parameters"));
    let arguments = match args {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(map)) => map,
            _ => return None,
        },
        Some(_) => return None,
    };
    Some(ParsedToolCall { name, arguments })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    InCall,
}

/// Incremental separator; see the module documentation for the rules.
/// `push` decoded text as it arrives, then `finish` once.
#[derive(Debug, Clone)]
pub struct ToolCallParser {
    mode: Mode,
    /// Unprocessed input: in `Text` mode a held-back possible prefix of the
    /// opening tag; in `InCall` mode the body so far.
    buf: String,
    /// Trailing whitespace not yet emitted: it is glue if a call follows.
    pending_ws: String,
    /// Whitespace that preceded the open tag of the call being read.
    call_pre_ws: String,
    /// Just after a valid call: leading whitespace is glue.
    after_call: bool,
}

impl Default for ToolCallParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ToolCallParser {
    pub fn new() -> Self {
        ToolCallParser {
            mode: Mode::Text,
            buf: String::new(),
            pending_ws: String::new(),
            call_pre_ws: String::new(),
            after_call: false,
        }
    }

    /// True while inside `<tool_call>` … (text is being withheld).
    pub fn in_call(&self) -> bool {
        self.mode == Mode::InCall
    }

    pub fn push(&mut self, fragment: &str, out: &mut Vec<Piece>) {
        // Fast path: plain text with no tag character and nothing held.
        if self.mode == Mode::Text
            && self.buf.is_empty()
            && !self.after_call
            && !fragment.contains('<')
        {
            self.emit_text(fragment, out);
            return;
        }
        self.buf.push_str(fragment);
        loop {
            match self.mode {
                Mode::Text => {
                    if self.after_call {
                        let trimmed = self.buf.trim_start();
                        if trimmed.is_empty() {
                            self.buf.clear();
                            return;
                        }
                        let cut = self.buf.len() - trimmed.len();
                        self.buf.drain(..cut);
                        self.after_call = false;
                    }
                    if let Some(i) = self.buf.find(TOOL_CALL_OPEN) {
                        let before: String = self.buf.drain(..i).collect();
                        self.buf.drain(..TOOL_CALL_OPEN.len());
                        self.pending_ws.push_str(&before);
                        let all = std::mem::take(&mut self.pending_ws);
                        let kept = all.trim_end();
                        if !kept.is_empty() {
                            out.push(Piece::Text(kept.to_string()));
                        }
                        self.call_pre_ws = all[kept.len()..].to_string();
                        self.mode = Mode::InCall;
                        continue;
                    }
                    let hold = partial_tag_len(&self.buf);
                    let text: String = self.buf.drain(..self.buf.len() - hold).collect();
                    self.emit_text(&text, out);
                    return;
                }
                Mode::InCall => {
                    let Some(j) = self.buf.find(TOOL_CALL_CLOSE) else {
                        return;
                    };
                    let body: String = self.buf.drain(..j).collect();
                    self.buf.drain(..TOOL_CALL_CLOSE.len());
                    self.mode = Mode::Text;
                    match parse_tool_call_body(&body) {
                        Some(call) => {
                            self.call_pre_ws.clear();
                            out.push(Piece::Call(call));
                            self.after_call = true;
                        }
                        None => {
                            let mut text = std::mem::take(&mut self.call_pre_ws);
                            text.push_str(TOOL_CALL_OPEN);
                            text.push_str(&body);
                            text.push_str(TOOL_CALL_CLOSE);
                            out.push(Piece::Text(text));
                        }
                    }
                }
            }
        }
    }

    /// Release text held back for a possible tag (trailing whitespace, a
    /// partial `<tool_…`) because something else comes next — a structured
    /// tool call from the upstream. Inside a call it does nothing.
    pub fn flush(&mut self, out: &mut Vec<Piece>) {
        if self.mode == Mode::InCall {
            return;
        }
        let mut text = std::mem::take(&mut self.pending_ws);
        let rest = std::mem::take(&mut self.buf);
        if !(self.after_call && rest.trim().is_empty()) {
            text.push_str(&rest);
        }
        self.after_call = false;
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
    }

    /// The output ended: release everything held back.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        match self.mode {
            Mode::Text => {
                let mut text = std::mem::take(&mut self.pending_ws);
                let rest = std::mem::take(&mut self.buf);
                if !(self.after_call && rest.trim().is_empty()) {
                    text.push_str(&rest);
                }
                if !text.is_empty() {
                    out.push(Piece::Text(text));
                }
            }
            Mode::InCall => {
                let body = std::mem::take(&mut self.buf);
                match parse_tool_call_body(&body) {
                    Some(call) => out.push(Piece::Call(call)),
                    None => {
                        let mut text = std::mem::take(&mut self.call_pre_ws);
                        text.push_str(TOOL_CALL_OPEN);
                        text.push_str(&body);
                        out.push(Piece::Text(text));
                    }
                }
            }
        }
        self.mode = Mode::Text;
        self.after_call = false;
        self.call_pre_ws.clear();
    }

    /// Emit text, holding back its trailing whitespace (glue if a call
    /// follows).
    fn emit_text(&mut self, text: &str, out: &mut Vec<Piece>) {
        emit_holding_whitespace(&mut self.pending_ws, text, out);
    }
}

/// Emits `text` after the whitespace held in `pending_ws`, holding back its
/// own trailing whitespace there instead: whitespace just before a tool call
/// belongs to no text piece (the caller decides, once it knows what
/// follows).
pub fn emit_holding_whitespace(pending_ws: &mut String, text: &str, out: &mut Vec<Piece>) {
    if text.is_empty() {
        return;
    }
    let kept = text.trim_end();
    if kept.is_empty() {
        pending_ws.push_str(text);
        return;
    }
    let mut s = std::mem::take(pending_ws);
    s.push_str(kept);
    out.push(Piece::Text(s));
    pending_ws.push_str(&text[kept.len()..]);
}

/// Length of the longest suffix of `s` that is a proper prefix of the open
/// tag (so it might become one with more input).
fn partial_tag_len(s: &str) -> usize {
    let tag = TOOL_CALL_OPEN.as_bytes();
    let bytes = s.as_bytes();
    let max = (tag.len() - 1).min(bytes.len());
    (1..=max)
        .rev()
        .find(|&n| bytes[bytes.len() - n..] == tag[..n])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Real Qwen2.5-Instruct output for a weather question (two calls).
    const QWEN_OUTPUT: &str = "I'll check both cities.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\", \"unit\": \"c\"}}\n</tool_call>";

    fn stream(text: &str, chunk: usize) -> ParsedText {
        let mut p = ToolCallParser::new();
        let mut pieces = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for c in chars.chunks(chunk) {
            p.push(&c.iter().collect::<String>(), &mut pieces);
        }
        p.finish(&mut pieces);
        pieces.into_iter().collect()
    }

    #[test]
    fn qwen_output_splits_into_text_and_calls() {
        let parsed = parse_tool_calls(QWEN_OUTPUT);
        assert_eq!(parsed.content, "I'll check both cities.");
        assert_eq!(parsed.tool_calls.len(), 2);
        assert_eq!(parsed.tool_calls[0].name, "get_weather");
        assert_eq!(
            Value::Object(parsed.tool_calls[1].arguments.clone()),
            json!({"city": "Rome", "unit": "c"})
        );
        for chunk in 1..12 {
            assert_eq!(stream(QWEN_OUTPUT, chunk), parsed, "chunk {chunk}");
        }
    }

    #[test]
    fn string_arguments_become_an_object() {
        let c = parse_tool_call_body(r#"{"name":"f","arguments":"{\"a\":1}"}"#).unwrap();
        assert_eq!(Value::Object(c.arguments), json!({"a": 1}));
        let c = parse_tool_call_body(r#"{"name":"f","parameters":{"b":2}}"#).unwrap();
        assert_eq!(c.arguments_json(), r#"{"b":2}"#);
        let c = parse_tool_call_body(r#"{"name":"f"}"#).unwrap();
        assert!(c.arguments.is_empty());
        assert!(parse_tool_call_body(r#"{"name":"f","arguments":"not json"}"#).is_none());
        assert!(parse_tool_call_body(r#"{"name":"f","arguments":[1]}"#).is_none());
        assert!(parse_tool_call_body(r#"{"arguments":{}}"#).is_none());
    }

    #[test]
    fn invalid_call_stays_verbatim_text() {
        let text = "a <tool_call>{oops}</tool_call> b";
        let parsed = parse_tool_calls(text);
        assert_eq!(parsed.content, text);
        assert!(parsed.tool_calls.is_empty());
        assert_eq!(stream(text, 1), parsed);
    }

    #[test]
    fn lookalike_tags_and_plain_text_pass_through() {
        for text in [
            "x < y and <tool>",
            "<tool_cal",
            "a\n\n",
            "  ",
            "<",
            "<tool_call",
        ] {
            let parsed = parse_tool_calls(text);
            assert_eq!(parsed.content, text);
            assert_eq!(stream(text, 1), parsed);
        }
    }

    #[test]
    fn unclosed_call_at_end_of_output() {
        let parsed = parse_tool_calls("<tool_call>\n{\"name\":\"f\",\"arguments\":{}}\n");
        assert_eq!(parsed.tool_calls.len(), 1);
        assert_eq!(parsed.content, "");
        let parsed = parse_tool_calls("ok <tool_call>{\"name\":");
        assert_eq!(parsed.content, "ok <tool_call>{\"name\":");
        assert!(parsed.tool_calls.is_empty());
    }

    #[test]
    fn text_after_a_call_is_kept() {
        let parsed = parse_tool_calls("<tool_call>{\"name\":\"f\"}</tool_call>\n\nDone.  ");
        assert_eq!(parsed.content, "Done.  ");
    }

    #[test]
    fn text_is_emitted_before_the_call_completes() {
        let mut p = ToolCallParser::new();
        let mut out = Vec::new();
        p.push("Hello wor", &mut out);
        assert_eq!(out, vec![Piece::Text("Hello wor".into())]);
        out.clear();
        p.push("ld <tool_", &mut out);
        assert_eq!(out, vec![Piece::Text("ld".into())]);
        out.clear();
        p.push("call>{\"name\":\"f\"}", &mut out);
        assert!(out.is_empty() && p.in_call());
        p.push("</tool_call>", &mut out);
        assert!(matches!(&out[0], Piece::Call(c) if c.name == "f"));
    }
}
