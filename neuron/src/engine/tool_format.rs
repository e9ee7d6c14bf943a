//! The syntaxes in which models write tool calls, which one a model uses,
//! and how a request that must call a tool gets the call started.
//!
//! - **Hermes** `<tool_call>{"name": …, "arguments": …}</tool_call>`
//!   (Qwen2.5, Qwen3, SmolLM3, most fine-tunes), read by
//!   [`super::tool_calls::ToolCallParser`].
//! - **Llama 3.1–3.3** JSON: the answer is `{"name": …, "parameters": …}`
//!   (several separated by `;`), alone or after `<|python_tag|>`.
//! - **Mistral** `[TOOL_CALLS]`: a JSON array of `{"name", "arguments"}`
//!   (v3 tokenizers: Mistral 7B v0.3, Mixtral 8x22B), or `name[ARGS]{…}`
//!   per call (v11+: Mistral Small 3.2, Devstral, Magistral).
//!
//! The last two run to the end of the answer and are read by
//! [`super::trailing_calls`]. A model that writes none of them answers text.

use crate::engine::tool_calls::TOOL_CALL_OPEN;
use cortex_common::openai::ChatMessage;
use tokenizers::Tokenizer;

pub const PYTHON_TAG: &str = "<|python_tag|>";
pub const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
pub const MISTRAL_ARGS: &str = "[ARGS]";
pub const MISTRAL_CALL_ID: &str = "[CALL_ID]";
/// How Llama 3.x templates introduce a tool's result.
const LLAMA_TOOL_RESULT: &str = "<|start_header_id|>ipython<|end_header_id|>";
/// Mistral templates accept only call ids of nine letters and digits.
const MISTRAL_ID_LEN: usize = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Llama3,
    /// `args_marker`: calls are `name[ARGS]{…}` (v11+), else a JSON array.
    Mistral {
        args_marker: bool,
    },
}

impl ToolFormat {
    /// A model's syntax: the one its chat template writes calls in, else
    /// the one its vocabulary has a marker token for.
    pub fn detect(tokenizer: &Tokenizer, template: &str) -> Option<Self> {
        let token = |m: &str| tokenizer.token_to_id(m).is_some();
        let mistral = || ToolFormat::Mistral {
            args_marker: token(MISTRAL_ARGS) || template.contains(MISTRAL_ARGS),
        };
        if template.contains(MISTRAL_CALLS) {
            Some(mistral())
        } else if template.contains(TOOL_CALL_OPEN) {
            Some(ToolFormat::Hermes)
        } else if template.contains(PYTHON_TAG) || template.contains(LLAMA_TOOL_RESULT) {
            Some(ToolFormat::Llama3)
        } else if token(MISTRAL_CALLS) {
            Some(mistral())
        } else if token(TOOL_CALL_OPEN) {
            Some(ToolFormat::Hermes)
        } else if token(PYTHON_TAG) {
            Some(ToolFormat::Llama3)
        } else {
            None
        }
    }

    /// The markers this syntax writes: when they are special tokens, the
    /// detokenizer must keep them in the text for the parser to see.
    pub fn markers(self) -> &'static [&'static str] {
        match self {
            ToolFormat::Hermes => &[TOOL_CALL_OPEN, "</tool_call>"],
            ToolFormat::Llama3 => &[PYTHON_TAG],
            ToolFormat::Mistral { .. } => &[MISTRAL_CALLS, MISTRAL_ARGS, MISTRAL_CALL_ID],
        }
    }

    /// Whether `text` (returned as the answer) looks like a call the parser
    /// could not read, for the log.
    pub fn looks_like_a_call(self, text: &str) -> bool {
        match self {
            ToolFormat::Hermes => text.contains(TOOL_CALL_OPEN),
            ToolFormat::Llama3 => {
                text.contains(PYTHON_TAG) || text.trim_start().starts_with("{\"name\"")
            }
            ToolFormat::Mistral { .. } => text.contains(MISTRAL_CALLS),
        }
    }

    /// The start of a call, written at the end of the prompt so that the
    /// answer continues it: any call, or a call of `function` (its name
    /// written too, so no other can follow).
    pub fn prime(self, function: Option<&str>) -> String {
        // A JSON string: the name quoted and escaped.
        let name = |f: &str| serde_json::Value::from(f).to_string();
        match (self, function) {
            (ToolFormat::Hermes, None) => TOOL_CALL_OPEN.to_string(),
            (ToolFormat::Hermes, Some(f)) => {
                format!("{TOOL_CALL_OPEN}\n{{\"name\": {}, \"arguments\": ", name(f))
            }
            (ToolFormat::Llama3, None) => "{\"name\": \"".to_string(),
            (ToolFormat::Llama3, Some(f)) => format!("{{\"name\": {}, \"parameters\": ", name(f)),
            (ToolFormat::Mistral { .. }, None) => MISTRAL_CALLS.to_string(),
            (ToolFormat::Mistral { args_marker: true }, Some(f)) => {
                format!("{MISTRAL_CALLS}{f}{MISTRAL_ARGS}")
            }
            (ToolFormat::Mistral { args_marker: false }, Some(f)) => {
                format!("{MISTRAL_CALLS} [{{\"name\": {}, \"arguments\": ", name(f))
            }
        }
    }

    /// Makes the conversation's tool call ids ones the model's template
    /// accepts. Mistral's templates refuse any id but nine letters and
    /// digits: others are replaced by such an id derived from them, the
    /// same for a call and its result. Other syntaxes take ids as they are.
    pub fn template_call_ids(self, messages: &mut [ChatMessage]) {
        if !matches!(self, ToolFormat::Mistral { .. }) {
            return;
        }
        for m in messages {
            for call in m.tool_calls.iter_mut().flatten() {
                call.id = mistral_id(&call.id);
            }
            if let Some(id) = &mut m.tool_call_id {
                *id = mistral_id(id);
            }
        }
    }
}

/// A nine-character id of letters and digits standing for `id`: itself
/// when it is one, else derived from a hash of it (FNV-1a, stable across
/// runs so a conversation renders the same every turn).
fn mistral_id(id: &str) -> String {
    if id.len() == MISTRAL_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0..MISTRAL_ID_LEN)
        .map(|_| {
            let c = ALPHABET[(hash % 62) as usize] as char;
            hash /= 62;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_common::openai::{FunctionCall, ToolCall};
    use tokenizers::AddedToken;
    use tokenizers::models::bpe::BPE;

    fn vocab(specials: &[&str]) -> Tokenizer {
        let mut tok = Tokenizer::new(BPE::default());
        tok.add_special_tokens(
            &specials
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect::<Vec<_>>(),
        );
        tok
    }

    #[test]
    fn the_template_decides_then_the_vocabulary() {
        let none = vocab(&[]);
        assert_eq!(ToolFormat::detect(&none, "plain"), None);
        assert_eq!(
            ToolFormat::detect(&none, "{{ '<tool_call>' }}"),
            Some(ToolFormat::Hermes)
        );
        // Llama 3.2's template writes no marker but names the tool role.
        assert_eq!(
            ToolFormat::detect(
                &none,
                "{{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}"
            ),
            Some(ToolFormat::Llama3)
        );
        assert_eq!(
            ToolFormat::detect(&vocab(&["[TOOL_CALLS]"]), "x"),
            Some(ToolFormat::Mistral { args_marker: false })
        );
        assert_eq!(
            ToolFormat::detect(&vocab(&["[TOOL_CALLS]", "[ARGS]"]), "x"),
            Some(ToolFormat::Mistral { args_marker: true })
        );
        // Hermes 3 on Llama 3.1: a Llama vocabulary, a Hermes template.
        assert_eq!(
            ToolFormat::detect(&vocab(&["<|python_tag|>"]), "<tool_call>"),
            Some(ToolFormat::Hermes)
        );
        assert_eq!(
            ToolFormat::detect(&vocab(&["<|python_tag|>"]), "x"),
            Some(ToolFormat::Llama3)
        );
    }

    #[test]
    fn primes_open_a_call_in_each_syntax() {
        assert_eq!(ToolFormat::Hermes.prime(None), "<tool_call>");
        assert_eq!(
            ToolFormat::Hermes.prime(Some("get_weather")),
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
        );
        assert_eq!(
            ToolFormat::Llama3.prime(Some("a\"b")),
            "{\"name\": \"a\\\"b\", \"parameters\": "
        );
        assert_eq!(
            ToolFormat::Mistral { args_marker: true }.prime(Some("f")),
            "[TOOL_CALLS]f[ARGS]"
        );
        assert_eq!(
            ToolFormat::Mistral { args_marker: false }.prime(Some("f")),
            "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": "
        );
    }

    #[test]
    fn mistral_call_ids_become_nine_alphanumerics_consistently() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: "{}".into(),
            },
        };
        let mut messages = vec![
            ChatMessage {
                role: "assistant".into(),
                tool_calls: Some(vec![call("call_0123456789abcdef"), call("Ab3dE6gH9")]),
                ..Default::default()
            },
            ChatMessage {
                role: "tool".into(),
                tool_call_id: Some("call_0123456789abcdef".into()),
                ..Default::default()
            },
        ];
        let mut hermes = messages.clone();
        ToolFormat::Hermes.template_call_ids(&mut hermes);
        assert_eq!(hermes, messages);
        ToolFormat::Mistral { args_marker: false }.template_call_ids(&mut messages);
        let calls = messages[0].tool_calls.as_ref().unwrap();
        let id = &calls[0].id;
        assert_eq!(id.len(), 9);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert_eq!(messages[1].tool_call_id.as_ref(), Some(id));
        assert_eq!(calls[1].id, "Ab3dE6gH9", "a valid id is kept");
        assert_ne!(mistral_id("call_1"), mistral_id("call_2"));
    }
}
