//! Anthropic `MessagesRequest` → OpenAI `ChatCompletionRequest` (what the
//! neuron serves).
//!
//! Kept: model, system (one leading system message, verbatim), every turn in
//! order, text and image blocks, `tool_use` (→ assistant `tool_calls`, input
//! serialised as the arguments string), `tool_result` (→ `tool` messages,
//! placed where they were in the turn), tools, tool_choice, stop_sequences,
//! temperature, top_p, top_k, max_tokens, metadata.user_id (→ `user`),
//! stream (with `include_usage`, so the final usage can be reported),
//! `thinking` switched on or off (→ `chat_template_kwargs.enable_thinking`,
//! the switch of Qwen3-style templates; templates without it ignore it)
//! and its `budget_tokens` (→ `thinking_budget`, enforced by the neuron),
//! `disable_parallel_tool_use` (→ `parallel_tool_calls: false`), `thinking`
//! blocks of assistant turns (→ the turn's `reasoning_content`, which the
//! chat template keeps or drops as the model expects; never its content).
//!
//! Dropped, because the OpenAI shape has no place for them:
//! `redacted_thinking` blocks, `cache_control`, `tool_result.is_error`.
//! Rejected (400): server tools (no `input_schema`), blocks in a role that
//! cannot carry them, unknown roles, a `budget_tokens` that is not a whole
//! number below `max_tokens`.

use serde_json::{Value, json};

use crate::translate::anthropic::schema::{
    Content, ContentBlock, MessagesRequest, SystemPrompt, Tool, ToolChoice, ToolResultContent,
};
use crate::translate::{
    SYSTEM_BLOCK_SEPARATOR, TranslateError, chat_request, chat_tool, chat_tools,
};
use cortex_common::openai::{
    ChatCompletionRequest, ChatMessage, ContentPart, FunctionCall, MessageContent, StopSequences,
    ToolCall,
};

pub fn to_chat_request(req: &MessagesRequest) -> Result<ChatCompletionRequest, TranslateError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = system_text(req.system.as_ref()) {
        messages.push(ChatMessage::text("system", &system));
    }
    for (i, msg) in req.messages.iter().enumerate() {
        match msg.role.as_str() {
            "user" => user_turn(i, &msg.content, &mut messages)?,
            "assistant" => messages.push(assistant_turn(i, &msg.content)?),
            "system" => messages.push(ChatMessage::text("system", &plain_text(i, &msg.content)?)),
            other => {
                return Err(TranslateError::new(
                    "invalid_role",
                    format!(
                        "messages.{i}.role: unexpected role '{other}', expected 'user' or 'assistant'"
                    ),
                ));
            }
        }
    }
    let tools = chat_tools(req.tools.as_deref(), tool)?;
    let thinking_budget = thinking_budget(req)?;
    Ok(ChatCompletionRequest {
        max_tokens: Some(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop: req.stop_sequences.clone().map(StopSequences::Many),
        tools,
        tool_choice: req.tool_choice.as_ref().map(tool_choice),
        parallel_tool_calls: req
            .tool_choice
            .as_ref()
            .and_then(ToolChoice::disable_parallel_tool_use)
            .map(|disable| !disable),
        user: req.metadata.as_ref().and_then(|m| m.user_id.clone()),
        chat_template_kwargs: req.thinking_enabled().map(|on| {
            let mut kwargs = serde_json::Map::new();
            kwargs.insert("enable_thinking".into(), Value::Bool(on));
            kwargs
        }),
        thinking_budget,
        ..chat_request(&req.model, messages, req.stream)
    })
}

/// `thinking.budget_tokens` of an enabled thought, checked as Anthropic
/// does: a whole number below `max_tokens`.
fn thinking_budget(req: &MessagesRequest) -> Result<Option<u32>, TranslateError> {
    if req.thinking_enabled() != Some(true) {
        return Ok(None);
    }
    let Some(budget) = req.thinking.as_ref().and_then(|t| t.get("budget_tokens")) else {
        return Ok(None);
    };
    let bad = |why: String| TranslateError::new("invalid_thinking", why);
    let budget = budget
        .as_u64()
        .and_then(|b| u32::try_from(b).ok())
        .ok_or_else(|| {
            bad(format!(
                "thinking.budget_tokens: {budget} is not a whole number of tokens"
            ))
        })?;
    if budget >= req.max_tokens {
        return Err(bad(format!(
            "`max_tokens` ({}) must be greater than `thinking.budget_tokens` ({budget})",
            req.max_tokens
        )));
    }
    Ok(Some(budget))
}

/// The leading system message's text, or `None` when the client sent no
/// system prompt (an empty block list counts as none).
pub fn system_text(system: Option<&SystemPrompt>) -> Option<String> {
    match system? {
        SystemPrompt::Text(s) => Some(s.clone()),
        SystemPrompt::Blocks(blocks) if blocks.is_empty() => None,
        SystemPrompt::Blocks(blocks) => {
            let texts: Vec<&str> = blocks.iter().map(|b| b.text()).collect();
            Some(texts.join(SYSTEM_BLOCK_SEPARATOR))
        }
    }
}

fn user_turn(
    i: usize,
    content: &Content,
    out: &mut Vec<ChatMessage>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        Content::Text(s) => {
            out.push(ChatMessage::text("user", s));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlock::Text { .. } | ContentBlock::Image { .. } => parts.push(part(block)),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                ..
            } => {
                if !parts.is_empty() {
                    out.push(user_message(std::mem::take(&mut parts)));
                }
                out.push(ChatMessage {
                    role: "tool".to_string(),
                    content: Some(tool_result_content(content.as_ref())),
                    tool_call_id: Some(tool_use_id.clone()),
                    ..Default::default()
                });
            }
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::ToolUse { .. } => {
                return Err(TranslateError::new(
                    "invalid_content",
                    format!("messages.{i}.content.{j}: tool_use blocks belong in assistant turns"),
                ));
            }
        }
    }
    // A user turn that held only tool results adds no user message.
    if !parts.is_empty()
        || !blocks
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
    {
        out.push(user_message(parts));
    }
    Ok(())
}

fn part(block: &ContentBlock) -> ContentPart {
    match block {
        ContentBlock::Image { source } => ContentPart {
            kind: "image_url".to_string(),
            text: None,
            image_url: Some(json!({ "url": source.to_url() })),
        },
        ContentBlock::Text { text } => ContentPart {
            kind: "text".to_string(),
            text: Some(text.clone()),
            image_url: None,
        },
        // Callers only pass text and image blocks.
        _ => ContentPart {
            kind: "text".to_string(),
            text: Some(String::new()),
            image_url: None,
        },
    }
}

/// One text part is sent as a plain string; anything else as parts.
fn content_of(parts: Vec<ContentPart>) -> MessageContent {
    if let [only] = parts.as_slice()
        && only.kind == "text"
    {
        return MessageContent::Text(only.text.clone().unwrap_or_default());
    }
    if parts.is_empty() {
        return MessageContent::Text(String::new());
    }
    MessageContent::Parts(parts)
}

fn user_message(parts: Vec<ContentPart>) -> ChatMessage {
    ChatMessage {
        role: "user".to_string(),
        content: Some(content_of(parts)),
        ..Default::default()
    }
}

fn tool_result_content(content: Option<&ToolResultContent>) -> MessageContent {
    match content {
        None => MessageContent::Text(String::new()),
        Some(ToolResultContent::Text(s)) => MessageContent::Text(s.clone()),
        Some(ToolResultContent::Blocks(blocks)) => content_of(
            blocks
                .iter()
                .filter(|b| matches!(b, ContentBlock::Text { .. } | ContentBlock::Image { .. }))
                .map(part)
                .collect(),
        ),
    }
}

fn assistant_turn(i: usize, content: &Content) -> Result<ChatMessage, TranslateError> {
    let blocks = match content {
        Content::Text(s) => return Ok(ChatMessage::text("assistant", s)),
        Content::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut thought = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::Thinking { thinking, .. } => thought.push_str(thinking),
            ContentBlock::ToolUse { id, name, input } => calls.push(ToolCall {
                id: id.clone(),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: input.to_string(),
                },
            }),
            ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::Image { .. } | ContentBlock::ToolResult { .. } => {
                return Err(TranslateError::new(
                    "invalid_content",
                    format!(
                        "messages.{i}.content.{j}: assistant turns carry text and tool_use blocks only"
                    ),
                ));
            }
        }
    }
    let has_calls = !calls.is_empty();
    Ok(ChatMessage {
        role: "assistant".to_string(),
        // OpenAI's convention: `null` content on a tool-call-only turn.
        content: (!text.is_empty() || !has_calls).then_some(MessageContent::Text(text)),
        tool_calls: has_calls.then_some(calls),
        reasoning_content: (!thought.is_empty()).then_some(thought),
        ..Default::default()
    })
}

fn plain_text(i: usize, content: &Content) -> Result<String, TranslateError> {
    match content {
        Content::Text(s) => Ok(s.clone()),
        Content::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                match b {
                    ContentBlock::Text { text } => texts.push(text.as_str()),
                    _ => {
                        return Err(TranslateError::new(
                            "invalid_content",
                            format!(
                                "messages.{i}.content.{j}: system turns carry text blocks only"
                            ),
                        ));
                    }
                }
            }
            Ok(texts.join(SYSTEM_BLOCK_SEPARATOR))
        }
    }
}

fn tool(i: usize, t: &Tool) -> Result<Value, TranslateError> {
    let custom = matches!(t.kind.as_deref(), None | Some("custom"));
    let Some(schema) = t.input_schema.as_ref().filter(|_| custom) else {
        return Err(TranslateError::new(
            "unsupported_tool",
            format!(
                "tools.{i}: tool '{}' of type '{}' is not supported; only client tools with an input_schema are",
                t.name,
                t.kind.as_deref().unwrap_or("custom")
            ),
        ));
    };
    Ok(chat_tool(
        json!({ "name": t.name, "parameters": schema }),
        t.description.as_ref(),
    ))
}

fn tool_choice(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::Auto { .. } => json!("auto"),
        ToolChoice::Any { .. } => json!("required"),
        ToolChoice::None => json!("none"),
        ToolChoice::Tool { name, .. } => json!({"type": "function", "function": {"name": name}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::anthropic::schema::SystemBlock;

    fn req(json: &str) -> MessagesRequest {
        serde_json::from_str(json).unwrap()
    }

    /// A Claude Code turn: block system, a tool round trip, parallel results.
    const TRANSCRIPT: &str = r#"{
        "model": "qwen2.5-0.5b", "max_tokens": 512, "stream": true,
        "system": [{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}},
                   {"type":"text","text":"cwd: /repo"}],
        "messages": [
            {"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"},{"type":"text","text":"list files"}]},
            {"role":"assistant","content":[
                {"type":"thinking","thinking":"hmm","signature":"sig"},
                {"type":"text","text":"Running ls."},
                {"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}},
                {"type":"tool_use","id":"toolu_2","name":"Bash","input":{"command":"pwd"}}
            ]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"a.rs\nb.rs"}]},
                {"type":"tool_result","tool_use_id":"toolu_2","content":"/repo","is_error":false},
                {"type":"text","text":"thanks"}
            ]},
            {"role":"assistant","content":[{"type":"tool_use","id":"toolu_3","name":"Read","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_3"}]}
        ],
        "tools": [{"name":"Bash","description":"Run a command","input_schema":{"type":"object","properties":{"command":{"type":"string"}}}},
                  {"name":"Read","input_schema":{"type":"object"}}],
        "tool_choice": {"type":"any"},
        "stop_sequences": ["END"], "temperature": 0.0, "top_p": 1.0, "top_k": 5,
        "metadata": {"user_id": "user-9"}
    }"#;

    #[test]
    fn claude_code_turn_translates() {
        let chat = to_chat_request(&req(TRANSCRIPT)).unwrap();
        let v = serde_json::to_value(&chat).unwrap();
        let m = &v["messages"];
        assert_eq!(
            m[0],
            json!({"role":"system","content":"You are Claude Code.\n\ncwd: /repo"})
        );
        assert_eq!(m[1]["role"], "user");
        assert_eq!(
            m[1]["content"][1],
            json!({"type":"text","text":"list files"})
        );
        assert_eq!(m[2]["content"], "Running ls.");
        // The thought goes back apart from the content, for the template.
        assert_eq!(m[2]["reasoning_content"], "hmm");
        assert_eq!(m[2]["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(
            m[2]["tool_calls"][1]["function"]["arguments"],
            r#"{"command":"pwd"}"#
        );
        assert_eq!(
            m[3],
            json!({"role":"tool","content":"a.rs\nb.rs","tool_call_id":"toolu_1"})
        );
        assert_eq!(
            m[4],
            json!({"role":"tool","content":"/repo","tool_call_id":"toolu_2"})
        );
        assert_eq!(m[5], json!({"role":"user","content":"thanks"}));
        assert_eq!(m[6]["content"], Value::Null);
        assert_eq!(
            m[7],
            json!({"role":"tool","content":"","tool_call_id":"toolu_3"})
        );
        assert_eq!(m.as_array().unwrap().len(), 8);
        assert_eq!(
            v["tools"][0]["function"]["parameters"]["properties"]["command"]["type"],
            "string"
        );
        assert_eq!(v["tools"][0]["function"]["description"], "Run a command");
        assert_eq!(v["tool_choice"], "required");
        assert!(v.get("parallel_tool_calls").is_none());
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(v["max_tokens"], 512);
        assert_eq!(v["top_k"], 5);
        assert_eq!(v["temperature"], 0.0);
        assert_eq!(v["user"], "user-9");
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn system_is_one_verbatim_leading_message_or_nothing() {
        let r = req(
            r#"{"model":"m","max_tokens":1,"system":"  keep  me\n","messages":[{"role":"user","content":"hi"}]}"#,
        );
        let chat = to_chat_request(&r).unwrap();
        assert_eq!(
            chat.messages[0],
            ChatMessage::text("system", "  keep  me\n")
        );
        assert_eq!(chat.messages.len(), 2);
        let r = req(r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#);
        let chat = to_chat_request(&r).unwrap();
        assert_eq!(chat.messages, vec![ChatMessage::text("user", "hi")]);
        assert!(chat.stream_options.is_none());
        assert_eq!(
            system_text(Some(&SystemPrompt::Blocks(vec![SystemBlock::Text {
                text: "a".into()
            }]))),
            Some("a".into())
        );
        assert_eq!(system_text(Some(&SystemPrompt::Blocks(vec![]))), None);
    }

    #[test]
    fn images_become_data_urls() {
        let r = req(
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[
            {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4A=="}},
            {"type":"image","source":{"type":"url","url":"https://x/y.png"}},
            {"type":"text","text":"what is this?"}]}]}"#,
        );
        let v = serde_json::to_value(to_chat_request(&r).unwrap()).unwrap();
        assert_eq!(
            v["messages"][0]["content"][0]["image_url"]["url"],
            "data:image/jpeg;base64,/9j/4A=="
        );
        assert_eq!(
            v["messages"][0]["content"][1]["image_url"]["url"],
            "https://x/y.png"
        );
    }

    #[test]
    fn tool_choices_map() {
        for (choice, want) in [
            (r#"{"type":"auto"}"#, json!("auto")),
            (r#"{"type":"none"}"#, json!("none")),
            (
                r#"{"type":"any","disable_parallel_tool_use":true}"#,
                json!("required"),
            ),
            (
                r#"{"type":"tool","name":"f"}"#,
                json!({"type":"function","function":{"name":"f"}}),
            ),
        ] {
            let c: ToolChoice = serde_json::from_str(choice).unwrap();
            assert_eq!(tool_choice(&c), want);
        }
    }

    #[test]
    fn server_tools_and_bad_roles_are_rejected() {
        let r = req(
            r#"{"model":"m","max_tokens":1,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}]}"#,
        );
        let e = to_chat_request(&r).unwrap_err();
        assert_eq!(e.code, "unsupported_tool");
        assert!(e.message.contains("web_search_20250305"), "{}", e.message);
        let r = req(r#"{"model":"m","max_tokens":1,"messages":[{"role":"tool","content":"x"}]}"#);
        assert!(
            to_chat_request(&r)
                .unwrap_err()
                .message
                .contains("messages.0.role")
        );
        let r = req(
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}"#,
        );
        assert_eq!(to_chat_request(&r).unwrap_err().code, "invalid_content");
    }

    #[test]
    fn system_turns_inside_messages_stay_in_place() {
        let r = req(
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]}"#,
        );
        let chat = to_chat_request(&r).unwrap();
        assert_eq!(chat.messages[1], ChatMessage::text("system", "b"));
    }

    #[test]
    fn thinking_switches_the_templates_enable_thinking() {
        let body = |thinking: &str| {
            format!(
                r#"{{"model":"q","max_tokens":2048,"messages":[{{"role":"user","content":"hi"}}]{thinking}}}"#
            )
        };
        let kwargs = |thinking: &str| {
            to_chat_request(&req(&body(thinking)))
                .unwrap()
                .chat_template_kwargs
        };
        assert_eq!(kwargs(""), None);
        assert_eq!(
            kwargs(r#","thinking":{"type":"disabled"}"#),
            json!({"enable_thinking": false}).as_object().cloned()
        );
        assert_eq!(
            kwargs(r#","thinking":{"type":"enabled","budget_tokens":1024}"#),
            json!({"enable_thinking": true}).as_object().cloned()
        );
        assert_eq!(kwargs(r#","thinking":{"type":"adaptive"}"#), None);
    }

    #[test]
    fn thinking_budgets_are_enforced_below_max_tokens() {
        let chat = |thinking: &str| {
            to_chat_request(&req(&format!(
                r#"{{"model":"q","max_tokens":2048,"messages":[{{"role":"user","content":"hi"}}],"thinking":{thinking}}}"#
            )))
        };
        let budget = |thinking: &str| chat(thinking).unwrap().thinking_budget;
        assert_eq!(
            budget(r#"{"type":"enabled","budget_tokens":1024}"#),
            Some(1024)
        );
        assert_eq!(budget(r#"{"type":"enabled"}"#), None);
        assert_eq!(budget(r#"{"type":"disabled","budget_tokens":5}"#), None);
        for bad in [
            r#"{"type":"enabled","budget_tokens":2048}"#,
            r#"{"type":"enabled","budget_tokens":-1}"#,
            r#"{"type":"enabled","budget_tokens":"lots"}"#,
        ] {
            let e = chat(bad).unwrap_err();
            assert_eq!(e.code, "invalid_thinking", "{bad}");
            assert!(e.message.contains("budget_tokens"), "{}", e.message);
        }
    }

    #[test]
    fn disabling_parallel_tool_use_allows_one_call() {
        let parallel = |choice: &str| {
            to_chat_request(&req(&format!(
                r#"{{"model":"q","max_tokens":8,"messages":[{{"role":"user","content":"hi"}}],"tool_choice":{choice}}}"#
            )))
            .unwrap()
            .parallel_tool_calls
        };
        assert_eq!(parallel(r#"{"type":"auto"}"#), None);
        assert_eq!(
            parallel(r#"{"type":"auto","disable_parallel_tool_use":true}"#),
            Some(false)
        );
        assert_eq!(
            parallel(r#"{"type":"tool","name":"f","disable_parallel_tool_use":false}"#),
            Some(true)
        );
    }
}
