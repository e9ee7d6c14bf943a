//! OpenAI Responses `ResponsesRequest` → `ChatCompletionRequest`.
//!
//! Kept: `instructions` (one leading system message, verbatim), the input
//! string (one user message) or items in order — messages (roles `user`,
//! `assistant`, `system`; `developer` becomes `system`, the only role chat
//! templates know for it), `function_call` items (→ assistant `tool_calls`,
//! consecutive calls merged into one assistant turn as Chat Completions
//! expects), `function_call_output` (→ `tool` messages) and `reasoning`
//! items (their text → the next assistant turn's `reasoning_content`, for
//! the chat template to keep or drop as the model expects) —, function
//! tools, tool_choice, parallel_tool_calls, `reasoning.effort` (→
//! `reasoning_effort`), max_output_tokens (→ max_tokens), temperature,
//! top_p, user, stream (with `include_usage`).
//!
//! Rejected (400): `previous_response_id` and `item_reference` (cortex is
//! stateless), hosted tools. Dropped: a reasoning item no assistant turn
//! follows.

use serde_json::{Value, json};

use crate::translate::responses::schema::{
    FunctionOutput, Input, InputContent, InputItem, InputPart, ResponsesRequest, Tool,
};
use crate::translate::{TranslateError, chat_request, chat_tool, chat_tools};
use cortex_common::openai::{
    ChatCompletionRequest, ChatMessage, ContentPart, FunctionCall, MessageContent, ToolCall,
};

pub fn to_chat_request(req: &ResponsesRequest) -> Result<ChatCompletionRequest, TranslateError> {
    if req.previous_response_id.is_some() {
        return Err(TranslateError::new(
            "unsupported_parameter",
            "previous_response_id: cortex is stateless and stores no responses; send the whole conversation in `input`",
        ));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = &req.instructions {
        messages.push(ChatMessage::text("system", instructions));
    }
    match &req.input {
        Input::Text(s) => messages.push(ChatMessage::text("user", s)),
        Input::Items(items) => {
            let mut thought = String::new();
            for (i, item) in items.iter().enumerate() {
                item_to_messages(i, item, &mut thought, &mut messages)?;
            }
        }
    }
    let tools = chat_tools(req.tools.as_deref(), tool)?;
    Ok(ChatCompletionRequest {
        max_tokens: req.max_output_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        tools,
        tool_choice: req.tool_choice.as_ref().map(tool_choice),
        parallel_tool_calls: req.parallel_tool_calls,
        reasoning_effort: req.reasoning.as_ref().and_then(|r| r.effort.clone()),
        user: req.user.clone(),
        ..chat_request(&req.model, messages, req.stream)
    })
}

/// Appends what `item` says to `out`. `thought` collects reasoning items
/// until the assistant turn they belong to.
fn item_to_messages(
    i: usize,
    item: &InputItem,
    thought: &mut String,
    out: &mut Vec<ChatMessage>,
) -> Result<(), TranslateError> {
    match item {
        InputItem::Message { role, content } => {
            let role = match role.as_str() {
                "user" | "assistant" | "system" => role.as_str(),
                "developer" => "system",
                other => {
                    return Err(TranslateError::new(
                        "invalid_role",
                        format!("input[{i}].role: unexpected role '{other}'"),
                    ));
                }
            };
            let reasoning = if role == "assistant" {
                (!thought.is_empty()).then(|| std::mem::take(thought))
            } else {
                thought.clear();
                None
            };
            out.push(ChatMessage {
                role: role.to_string(),
                content: Some(content_of(content)),
                reasoning_content: reasoning,
                ..Default::default()
            });
        }
        InputItem::FunctionCall {
            call_id,
            name,
            arguments,
            ..
        } => {
            let call = ToolCall {
                id: call_id.clone(),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: arguments.clone(),
                },
            };
            let reasoning = (!thought.is_empty()).then(|| std::mem::take(thought));
            match out.last_mut() {
                Some(last) if last.role == "assistant" => {
                    last.tool_calls.get_or_insert_with(Vec::new).push(call);
                    if let Some(r) = reasoning {
                        last.reasoning_content
                            .get_or_insert_with(String::new)
                            .push_str(&r);
                    }
                }
                _ => out.push(ChatMessage {
                    role: "assistant".to_string(),
                    content: None,
                    tool_calls: Some(vec![call]),
                    reasoning_content: reasoning,
                    ..Default::default()
                }),
            }
        }
        InputItem::FunctionCallOutput { call_id, output } => out.push(ChatMessage {
            role: "tool".to_string(),
            content: Some(match output {
                FunctionOutput::Text(s) => MessageContent::Text(s.clone()),
                FunctionOutput::Parts(parts) => parts_content(parts),
            }),
            tool_call_id: Some(call_id.clone()),
            ..Default::default()
        }),
        InputItem::Reasoning(item) => thought.push_str(&reasoning_text(item)),
        InputItem::ItemReference { id } => {
            return Err(TranslateError::new(
                "unsupported_parameter",
                format!(
                    "input[{i}]: item_reference '{id}': cortex is stateless and stores no items"
                ),
            ));
        }
    }
    Ok(())
}

/// A reasoning item's text: its `content` (`reasoning_text` parts, what
/// cortex answers), else its `summary`.
fn reasoning_text(item: &serde_json::Map<String, Value>) -> String {
    let texts = |key: &str| -> String {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect()
    };
    let content = texts("content");
    if content.is_empty() {
        texts("summary")
    } else {
        content
    }
}

fn content_of(content: &InputContent) -> MessageContent {
    match content {
        InputContent::Text(s) => MessageContent::Text(s.clone()),
        InputContent::Parts(parts) => parts_content(parts),
    }
}

/// Text-only parts become one string (concatenated as OpenAI does);
/// anything with an image stays parts.
fn parts_content(parts: &[InputPart]) -> MessageContent {
    let text_only = parts
        .iter()
        .all(|p| !matches!(p, InputPart::InputImage { .. }));
    if text_only {
        return MessageContent::Text(parts.iter().map(part_text).collect());
    }
    MessageContent::Parts(
        parts
            .iter()
            .map(|p| match p {
                InputPart::InputImage { image_url, detail } => {
                    let mut url = json!({ "url": image_url.clone().unwrap_or_default() });
                    if let Some(d) = detail {
                        url["detail"] = Value::String(d.clone());
                    }
                    ContentPart {
                        kind: "image_url".to_string(),
                        text: None,
                        image_url: Some(url),
                    }
                }
                other => ContentPart {
                    kind: "text".to_string(),
                    text: Some(part_text(other).to_string()),
                    image_url: None,
                },
            })
            .collect(),
    )
}

fn part_text(p: &InputPart) -> &str {
    match p {
        InputPart::InputText { text } | InputPart::OutputText { text } => text,
        InputPart::Refusal { refusal } => refusal,
        InputPart::InputImage { .. } => "",
    }
}

fn tool(i: usize, t: &Tool) -> Result<Value, TranslateError> {
    let (true, Some(name)) = (t.kind == "function", t.name.as_ref()) else {
        return Err(TranslateError::new(
            "unsupported_tool",
            format!(
                "tools[{i}]: tool type '{}' is not supported; only function tools are",
                t.kind
            ),
        ));
    };
    let mut function = json!({ "name": name });
    if let Some(p) = &t.parameters {
        function["parameters"] = p.clone();
    }
    if let Some(s) = t.strict {
        function["strict"] = Value::Bool(s);
    }
    Ok(chat_tool(function, t.description.as_ref()))
}

/// Responses' flat `{"type":"function","name"}` → Chat's nested form;
/// string choices are the same in both.
fn tool_choice(c: &Value) -> Value {
    match c {
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}})
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_function_loop_translates() {
        let req: ResponsesRequest = serde_json::from_str(
            r#"{"model":"m","instructions":"Be terse.","stream":true,"max_output_tokens":64,
            "input":[
              {"role":"developer","content":"dev note"},
              {"role":"user","content":[{"type":"input_text","text":"Weather "},{"type":"input_text","text":"in Paris and Rome?"}]},
              {"type":"reasoning","id":"rs_1","summary":[]},
              {"type":"function_call","call_id":"call_1","name":"w","arguments":"{\"c\":\"Paris\"}"},
              {"type":"function_call","call_id":"call_2","name":"w","arguments":"{\"c\":\"Rome\"}"},
              {"type":"function_call_output","call_id":"call_1","output":"15C"},
              {"type":"function_call_output","call_id":"call_2","output":[{"type":"input_text","text":"20C"}]},
              {"role":"assistant","content":[{"type":"output_text","text":"Paris 15C","annotations":[]}]},
              {"role":"user","content":[{"type":"input_image","image_url":"https://x/i.png","detail":"low"}]}
            ],
            "tools":[{"type":"function","name":"w","parameters":{"type":"object"},"strict":true}],
            "tool_choice":{"type":"function","name":"w"}}"#,
        )
        .unwrap();
        let v = serde_json::to_value(to_chat_request(&req).unwrap()).unwrap();
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role":"system","content":"Be terse."}));
        assert_eq!(m[1], json!({"role":"system","content":"dev note"}));
        assert_eq!(
            m[2],
            json!({"role":"user","content":"Weather in Paris and Rome?"})
        );
        assert_eq!(m[3]["role"], "assistant");
        assert_eq!(m[3]["content"], Value::Null);
        assert_eq!(m[3]["tool_calls"][1]["id"], "call_2");
        assert_eq!(
            m[4],
            json!({"role":"tool","content":"15C","tool_call_id":"call_1"})
        );
        assert_eq!(
            m[5],
            json!({"role":"tool","content":"20C","tool_call_id":"call_2"})
        );
        assert_eq!(m[6], json!({"role":"assistant","content":"Paris 15C"}));
        assert_eq!(
            m[7]["content"][0]["image_url"],
            json!({"url":"https://x/i.png","detail":"low"})
        );
        assert_eq!(m.len(), 8);
        assert_eq!(
            v["tools"][0],
            json!({"type":"function","function":{"name":"w","parameters":{"type":"object"},"strict":true}})
        );
        assert_eq!(
            v["tool_choice"],
            json!({"type":"function","function":{"name":"w"}})
        );
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn reasoning_items_go_back_with_their_assistant_turn() {
        let req: ResponsesRequest = serde_json::from_str(
            r#"{"model":"m","reasoning":{"effort":"low","summary":"auto"},"parallel_tool_calls":false,
            "input":[
              {"role":"user","content":"Weather?"},
              {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"Call the tool."}]},
              {"type":"function_call","call_id":"call_1","name":"w","arguments":"{}"},
              {"type":"function_call_output","call_id":"call_1","output":"15C"},
              {"type":"reasoning","id":"rs_2","summary":[{"type":"summary_text","text":"Answer it."}]},
              {"role":"assistant","content":"It is 15C."},
              {"type":"reasoning","id":"rs_3","content":[{"type":"reasoning_text","text":"stray"}]},
              {"role":"user","content":"Thanks"}
            ]}"#,
        )
        .unwrap();
        let chat = to_chat_request(&req).unwrap();
        let m = &chat.messages;
        assert_eq!(m[1].reasoning_content.as_deref(), Some("Call the tool."));
        assert_eq!(m[3].reasoning_content.as_deref(), Some("Answer it."));
        assert_eq!(
            m[3].content
                .as_ref()
                .and_then(MessageContent::as_text)
                .as_deref(),
            Some("It is 15C."),
            "never duplicated into the content"
        );
        assert_eq!(
            m[4].reasoning_content, None,
            "a thought no assistant turn follows"
        );
        assert_eq!(m.len(), 5);
        assert_eq!(chat.reasoning_effort.as_deref(), Some("low"));
        assert_eq!(chat.parallel_tool_calls, Some(false));
    }

    #[test]
    fn plain_string_input_and_no_instructions() {
        let req: ResponsesRequest = serde_json::from_str(r#"{"model":"m","input":"hi"}"#).unwrap();
        let chat = to_chat_request(&req).unwrap();
        assert_eq!(chat.messages, vec![ChatMessage::text("user", "hi")]);
        assert_eq!(chat.max_tokens, None);
    }

    #[test]
    fn stateful_features_and_hosted_tools_are_rejected() {
        let req: ResponsesRequest =
            serde_json::from_str(r#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#)
                .unwrap();
        assert_eq!(
            to_chat_request(&req).unwrap_err().code,
            "unsupported_parameter"
        );
        let req: ResponsesRequest = serde_json::from_str(
            r#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#,
        )
        .unwrap();
        assert_eq!(
            to_chat_request(&req).unwrap_err().code,
            "unsupported_parameter"
        );
        let req: ResponsesRequest = serde_json::from_str(
            r#"{"model":"m","input":"x","tools":[{"type":"web_search_preview"}]}"#,
        )
        .unwrap();
        assert_eq!(to_chat_request(&req).unwrap_err().code, "unsupported_tool");
    }
}
