//! The model's output as structure: generated text split into reasoning,
//! answer and tool calls, once, here, where the model's markers are known.
//!
//! Formats, detected per model from its tokenizer vocabulary and chat
//! template ([`ModelFormat::detect`]):
//! - reasoning between `<think>` and `</think>` (Qwen3, DeepSeek-R1
//!   distills, SmolLM3). A template that opens `<think>` in the prompt makes
//!   the output start mid-thought ([`ModelFormat::for_request`]); a
//!   generation cut mid-thought is all reasoning, with an empty answer.
//! - tool calls in the model's syntax ([`ToolFormat`]): Hermes
//!   `<tool_call>` blocks, parsed by [`ToolCallParser`], or Llama 3 / Mistral
//!   calls that run to the end of the answer ([`TrailingCalls`]). A call
//!   whose JSON does not parse stays text.
//!
//! A model with neither gets its text back as the answer, as is.
//!
//! Streaming-safe: [`OutputParser::push`] takes decoded text split anywhere
//! and holds back what could still be the start of a marker (as stop
//! sequences are held back), so a marker is never emitted in halves.
//! Whitespace right after `<think>`, around `</think>` and at the start of
//! the answer after a thought is formatting and is dropped.

use crate::engine::tool_calls::{ParsedToolCall, Piece, ToolCallParser};
use tokenizers::Tokenizer;

use super::tool_format::ToolFormat;
use super::trailing_calls::{Syntax, TrailingCalls};

pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// What a model's output may contain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelFormat {
    /// The model thinks between `<think>` and `</think>`.
    pub reasoning: bool,
    /// The syntax it writes tool calls in, if cortex knows it.
    pub tools: Option<ToolFormat>,
}

impl ModelFormat {
    /// A model's format, from its vocabulary (a marker that is a token of
    /// its own) or its chat template (a template that writes the marker).
    pub fn detect(tokenizer: &Tokenizer, template: &str) -> Self {
        let has =
            |marker: &str| tokenizer.token_to_id(marker).is_some() || template.contains(marker);
        ModelFormat {
            reasoning: has(THINK_OPEN) && has(THINK_CLOSE),
            tools: ToolFormat::detect(tokenizer, template),
        }
    }

    /// Every marker this format reads, for the detokenizer to keep.
    pub fn markers(&self) -> Vec<&'static str> {
        let mut markers = Vec::new();
        if self.reasoning {
            markers.extend([THINK_OPEN, THINK_CLOSE]);
        }
        if let Some(tools) = self.tools {
            markers.extend(tools.markers());
        }
        markers
    }

    /// The format for one request. `prompt_tail` is the end of the rendered
    /// prompt (a template that ends it with `<think>` starts the output
    /// mid-thought); `tools` is false when the request does not want tool
    /// calls parsed (none offered, or `tool_choice: "none"`); `primed` is
    /// text written after the rendered prompt that the answer continues
    /// (the start of a call the request requires).
    pub fn for_request(&self, prompt_tail: &str, tools: bool, primed: String) -> OutputFormat {
        OutputFormat {
            reasoning: self.reasoning,
            tools: self.tools.filter(|_| tools),
            starts_in_reasoning: self.opens_thought(prompt_tail),
            primed,
        }
    }

    /// Whether a prompt ending in `tail` leaves the model inside a thought.
    pub fn opens_thought(&self, tail: &str) -> bool {
        self.reasoning && tail.trim_end().ends_with(THINK_OPEN)
    }

    /// What to write after a prompt ending in `tail` so the answer starts
    /// with `prime` (a call's start): a thought the prompt opened is closed
    /// first.
    pub fn primed(&self, tail: &str, prime: &str) -> String {
        if prime.is_empty() || !self.opens_thought(tail) {
            return prime.to_string();
        }
        format!("{THINK_CLOSE}\n\n{prime}")
    }
}

/// How one request's output is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputFormat {
    pub reasoning: bool,
    /// Tool calls to parse, in this syntax.
    pub tools: Option<ToolFormat>,
    /// The prompt opened `<think>`: output starts inside the thought.
    pub starts_in_reasoning: bool,
    /// Text at the end of the prompt that the output continues: read first,
    /// as if generated, never sent on as such.
    pub primed: String,
}

/// One piece of structured output, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Content(String),
    Reasoning(String),
    ToolCall(ParsedToolCall),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing decided yet: the output may open a thought.
    Start,
    Reasoning,
    Content,
}

/// Incremental splitter; `push` decoded text as it comes, `finish` once.
pub struct OutputParser {
    state: State,
    /// Text not yet classified: a possible marker prefix (or, at the start,
    /// whitespace before one).
    buf: String,
    /// Whitespace at the end of the reasoning so far: dropped if the thought
    /// closes next, emitted if more reasoning follows.
    reasoning_ws: String,
    /// Whitespace at the start of the current section is still dropped.
    trim_lead: bool,
    tools: Option<Tools>,
}

/// The tool-call parser of the request's syntax.
enum Tools {
    Hermes(ToolCallParser),
    Trailing(TrailingCalls),
}

impl Tools {
    fn new(format: ToolFormat) -> Self {
        match format {
            ToolFormat::Hermes => Tools::Hermes(ToolCallParser::new()),
            ToolFormat::Llama3 => Tools::Trailing(TrailingCalls::new(Syntax::Llama3)),
            ToolFormat::Mistral { .. } => Tools::Trailing(TrailingCalls::new(Syntax::Mistral)),
        }
    }

    fn push(&mut self, text: &str, out: &mut Vec<Piece>) {
        match self {
            Tools::Hermes(p) => p.push(text, out),
            Tools::Trailing(p) => p.push(text, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<Piece>) {
        match self {
            Tools::Hermes(p) => p.finish(out),
            Tools::Trailing(p) => p.finish(out),
        }
    }
}

impl OutputParser {
    pub fn new(format: &OutputFormat) -> Self {
        let state = if !format.reasoning {
            State::Content
        } else if format.starts_in_reasoning {
            State::Reasoning
        } else {
            State::Start
        };
        let mut parser = OutputParser {
            state,
            buf: String::new(),
            reasoning_ws: String::new(),
            trim_lead: state == State::Reasoning,
            tools: format.tools.map(Tools::new),
        };
        // The primed text opens a call (after closing the thought, if
        // the prompt opened one): held, so nothing comes out of it.
        let mut held = Vec::new();
        parser.push(&format.primed, &mut held);
        debug_assert!(held.is_empty(), "{held:?}");
        parser
    }

    /// Inside a thought: text arriving now is reasoning.
    pub fn in_reasoning(&self) -> bool {
        match self.state {
            State::Reasoning => true,
            State::Start => false,
            State::Content => false,
        }
    }

    pub fn push(&mut self, text: &str, out: &mut Vec<Output>) {
        if self.state == State::Content && !self.trim_lead {
            self.content(text, out);
            return;
        }
        self.buf.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.buf.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                        self.buf = rest.to_string();
                        self.state = State::Reasoning;
                        self.trim_lead = true;
                        continue;
                    }
                    if THINK_OPEN.starts_with(trimmed) {
                        return; // all whitespace, or a prefix of the marker
                    }
                    self.state = State::Content;
                    let text = std::mem::take(&mut self.buf);
                    self.content(&text, out);
                    return;
                }
                State::Reasoning => {
                    if self.trim_lead {
                        let trimmed = self.buf.trim_start();
                        if trimmed.is_empty() {
                            self.buf.clear();
                            return;
                        }
                        self.buf = trimmed.to_string();
                        self.trim_lead = false;
                    }
                    if let Some(at) = self.buf.find(THINK_CLOSE) {
                        let thought = self.buf[..at].trim_end().to_string();
                        self.buf.drain(..at + THINK_CLOSE.len());
                        let held = std::mem::take(&mut self.reasoning_ws);
                        if !thought.is_empty() {
                            out.push(Output::Reasoning(held + &thought));
                        }
                        self.state = State::Content;
                        self.trim_lead = true;
                        continue;
                    }
                    let hold = marker_prefix_len(&self.buf, THINK_CLOSE);
                    let ready: String = self.buf.drain(..self.buf.len() - hold).collect();
                    let body = ready.trim_end();
                    if body.is_empty() {
                        self.reasoning_ws.push_str(&ready);
                    } else {
                        let ws = ready[body.len()..].to_string();
                        let held = std::mem::replace(&mut self.reasoning_ws, ws);
                        out.push(Output::Reasoning(held + body));
                    }
                    return;
                }
                State::Content => {
                    let text = std::mem::take(&mut self.buf);
                    let text = if self.trim_lead {
                        let trimmed = text.trim_start();
                        if trimmed.is_empty() {
                            return;
                        }
                        self.trim_lead = false;
                        trimmed
                    } else {
                        &text
                    };
                    self.content(text, out);
                    return;
                }
            }
        }
    }

    /// The end of generation: whatever is held is released. A thought never
    /// closed is all reasoning (the answer stays empty).
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            State::Start => {
                self.state = State::Content;
                self.content(&rest, out);
            }
            State::Reasoning => {
                let thought = rest.trim_end();
                if !thought.is_empty() {
                    let held = std::mem::take(&mut self.reasoning_ws);
                    out.push(Output::Reasoning(held + thought));
                }
            }
            State::Content => {}
        }
        if let Some(tools) = &mut self.tools {
            let mut pieces = Vec::new();
            tools.finish(&mut pieces);
            out.extend(pieces.into_iter().map(from_piece));
        }
    }

    fn content(&mut self, text: &str, out: &mut Vec<Output>) {
        if text.is_empty() {
            return;
        }
        match &mut self.tools {
            None => out.push(Output::Content(text.to_string())),
            Some(tools) => {
                let mut pieces = Vec::new();
                tools.push(text, &mut pieces);
                out.extend(pieces.into_iter().map(from_piece));
            }
        }
    }
}

fn from_piece(piece: Piece) -> Output {
    match piece {
        Piece::Text(t) => Output::Content(t),
        Piece::Call(c) => Output::ToolCall(c),
    }
}

/// Bytes at the end of `text` that are a proper prefix of `marker`.
fn marker_prefix_len(text: &str, marker: &str) -> usize {
    marker
        .char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .filter(|&i| text.ends_with(&marker[..i]))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen3() -> ModelFormat {
        ModelFormat {
            reasoning: true,
            tools: Some(ToolFormat::Hermes),
        }
    }

    fn thinking() -> OutputFormat {
        qwen3().for_request("", true, String::new())
    }

    /// Feeds `pieces` one by one; returns the merged reasoning, content and
    /// calls.
    fn run(format: &OutputFormat, pieces: &[&str]) -> (String, String, Vec<ParsedToolCall>) {
        let mut p = OutputParser::new(format);
        let mut out = Vec::new();
        for piece in pieces {
            p.push(piece, &mut out);
        }
        p.finish(&mut out);
        let (mut reasoning, mut content, mut calls) = (String::new(), String::new(), Vec::new());
        for o in out {
            match o {
                Output::Reasoning(r) => {
                    assert!(!r.is_empty());
                    reasoning.push_str(&r);
                }
                Output::Content(c) => content.push_str(&c),
                Output::ToolCall(c) => calls.push(c),
            }
        }
        (reasoning, content, calls)
    }

    /// Every way of cutting `text` into two or three pieces.
    fn splits(text: &str) -> Vec<Vec<&str>> {
        let cuts: Vec<usize> = (1..text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let mut all = vec![vec![text]];
        for &a in &cuts {
            all.push(vec![&text[..a], &text[a..]]);
            for &b in cuts.iter().filter(|&&b| b > a) {
                all.push(vec![&text[..a], &text[a..b], &text[b..]]);
            }
        }
        all
    }

    #[test]
    fn thought_then_answer_at_every_split() {
        let text = "<think>\nLet me see.\n</think>\n\nIt is 4.";
        for pieces in splits(text) {
            let (r, c, calls) = run(&thinking(), &pieces);
            assert_eq!(r, "Let me see.", "{pieces:?}");
            assert_eq!(c, "It is 4.", "{pieces:?}");
            assert!(calls.is_empty());
        }
    }

    #[test]
    fn markers_split_over_many_tokens_are_held_back() {
        let mut p = OutputParser::new(&thinking());
        let mut out = Vec::new();
        for piece in ["<", "th", "ink", ">", "a b", " </", "thi", "nk", ">", "ok"] {
            p.push(piece, &mut out);
        }
        assert_eq!(
            out,
            vec![
                Output::Reasoning("a b".into()),
                Output::Content("ok".into())
            ]
        );
    }

    #[test]
    fn a_prompt_opened_thought_starts_as_reasoning() {
        let format = qwen3().for_request("<|im_start|>assistant\n<think>\n", true, String::new());
        assert!(format.starts_in_reasoning);
        for pieces in splits("\nhmm\n</think>\n\nyes") {
            let (r, c, _) = run(&format, &pieces);
            assert_eq!((r.as_str(), c.as_str()), ("hmm", "yes"), "{pieces:?}");
        }
    }

    #[test]
    fn a_closing_marker_only_after_a_prompt_opened_thought() {
        let format = qwen3().for_request("<think>", true, String::new());
        let (r, c, _) = run(&format, &["</think>", "answer"]);
        assert_eq!((r.as_str(), c.as_str()), ("", "answer"));
    }

    #[test]
    fn a_thought_cut_short_is_all_reasoning() {
        for pieces in splits("<think>\nstill going </thi") {
            let (r, c, _) = run(&thinking(), &pieces);
            assert_eq!(r, "still going </thi", "{pieces:?}");
            assert_eq!(c, "");
        }
        let format = qwen3().for_request("<think>\n", false, String::new());
        let (r, c, _) = run(&format, &["half a", " thought"]);
        assert_eq!((r.as_str(), c.as_str()), ("half a thought", ""));
    }

    #[test]
    fn no_thought_at_all_is_content() {
        for pieces in splits("  <thin ice>") {
            let (r, c, _) = run(&thinking(), &pieces);
            assert_eq!((r.as_str(), c.as_str()), ("", "  <thin ice>"), "{pieces:?}");
        }
        // A closing marker in a plain answer is the answer's text.
        let (r, c, _) = run(&thinking(), &["a </think> b"]);
        assert_eq!(r, "");
        assert_eq!(c, "a </think> b");
    }

    #[test]
    fn a_model_without_markers_passes_text_through() {
        let (r, c, calls) = run(
            &OutputFormat::default(),
            &[
                "<think>x</think>",
                "<tool_call>{\"name\":\"f\"}</tool_call>",
            ],
        );
        assert_eq!(r, "");
        assert_eq!(c, "<think>x</think><tool_call>{\"name\":\"f\"}</tool_call>");
        assert!(calls.is_empty());
    }

    #[test]
    fn tool_calls_after_a_thought_at_every_split() {
        let text = "<think>\nweather?\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        for pieces in splits(text) {
            let (r, c, calls) = run(&thinking(), &pieces);
            assert_eq!(r, "weather?", "{pieces:?}");
            assert_eq!(c, "", "{pieces:?}");
            assert_eq!(calls.len(), 1, "{pieces:?}");
            assert_eq!(calls[0].name, "get_weather");
            assert_eq!(calls[0].arguments_json(), r#"{"city":"Paris"}"#);
        }
    }

    #[test]
    fn a_call_whose_json_does_not_parse_stays_text() {
        let (_, c, calls) = run(&thinking(), &["<tool_call>{\"name\": oops}</tool_call>"]);
        assert!(calls.is_empty());
        assert_eq!(c, "<tool_call>{\"name\": oops}</tool_call>");
    }

    #[test]
    fn tool_calls_are_not_parsed_when_not_wanted() {
        let format = qwen3().for_request("", false, String::new());
        let (_, c, calls) = run(&format, &["<tool_call>{\"name\": \"f\"}</tool_call>"]);
        assert!(calls.is_empty());
        assert_eq!(c, "<tool_call>{\"name\": \"f\"}</tool_call>");
    }

    #[test]
    fn a_tool_call_inside_a_thought_is_reasoning() {
        let (r, c, calls) = run(
            &thinking(),
            &["<think><tool_call>{\"name\": \"f\"}</tool_call></think>done"],
        );
        assert!(calls.is_empty());
        assert_eq!(r, "<tool_call>{\"name\": \"f\"}</tool_call>");
        assert_eq!(c, "done");
    }

    #[test]
    fn reasoning_state_is_reported_for_token_accounting() {
        let mut p = OutputParser::new(&thinking());
        let mut out = Vec::new();
        assert!(!p.in_reasoning());
        p.push("<think>", &mut out);
        assert!(p.in_reasoning());
        p.push("x</think>", &mut out);
        assert!(!p.in_reasoning());
    }

    #[test]
    fn a_primed_call_is_continued_and_never_sent_as_text() {
        let prime = ToolFormat::Hermes.prime(Some("get_weather"));
        let format = qwen3().for_request("", true, prime);
        for pieces in splits("{\"city\": \"Paris\"}}\n</tool_call>") {
            let (r, c, calls) = run(&format, &pieces);
            assert_eq!((r.as_str(), c.as_str()), ("", ""), "{pieces:?}");
            assert_eq!(calls.len(), 1, "{pieces:?}");
            assert_eq!(calls[0].name, "get_weather");
            assert_eq!(calls[0].arguments_json(), r#"{"city":"Paris"}"#);
        }
        // What does not read as a call is text, the primed start included.
        let format = qwen3().for_request("", true, ToolFormat::Hermes.prime(None));
        let (_, c, calls) = run(&format, &["I will not."]);
        assert!(calls.is_empty());
        assert_eq!(c, "<tool_call>I will not.");
    }

    #[test]
    fn a_primed_call_after_a_prompt_opened_thought_closes_it_first() {
        let prime = qwen3().primed("<think>\n", &ToolFormat::Hermes.prime(None));
        assert_eq!(prime, "</think>\n\n<tool_call>");
        let format = qwen3().for_request("<think>\n", true, prime);
        assert!(format.starts_in_reasoning);
        let (r, c, calls) = run(&format, &["{\"name\": \"f\"}", "</tool_call>"]);
        assert_eq!((r.as_str(), c.as_str()), ("", ""));
        assert_eq!(calls[0].name, "f");
    }

    #[test]
    fn trailing_syntaxes_after_a_thought() {
        for (tools, text) in [
            (
                ToolFormat::Llama3,
                "<think>hm</think>\n\n{\"name\": \"f\", \"parameters\": {\"a\": 1}}",
            ),
            (
                ToolFormat::Mistral { args_marker: true },
                "<think>hm</think>ok [TOOL_CALLS]f[ARGS]{\"a\": 1}",
            ),
        ] {
            let model = ModelFormat {
                reasoning: true,
                tools: Some(tools),
            };
            for pieces in splits(text) {
                let (r, c, calls) = run(&model.for_request("", true, String::new()), &pieces);
                assert_eq!(r, "hm", "{pieces:?}");
                assert!(c.is_empty() || c == "ok", "{pieces:?}: {c}");
                assert_eq!(calls.len(), 1, "{pieces:?}");
                assert_eq!(calls[0].arguments_json(), r#"{"a":1}"#);
            }
        }
    }
}
