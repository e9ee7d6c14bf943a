//! Rendering a conversation into the prompt text the model was trained on,
//! with the model's own Jinja chat template (from `tokenizer_config.json` or
//! GGUF metadata), or ChatML when the model has none.

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde_json::json;

use cortex_common::openai::ChatMessage;

pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// The template source, for diagnostics.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("message {index} has content that is not text (images and files are not supported)")]
    NonTextContent { index: usize },
    #[error("message {index}: tool call arguments are not valid JSON: {detail}")]
    BadToolArguments { index: usize, detail: String },
    #[error("the model's chat template rejected the conversation: {0}")]
    Render(String),
}

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // Templates use this for "today's date"; UTC keeps it deterministic.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format
        .replace("%Y", &y.to_string())
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"))
        .replace("%B", MONTHS[(m - 1) as usize])
        .replace("%b", &MONTHS[(m - 1) as usize][..3])
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl ChatTemplate {
    pub fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let source = source.unwrap_or(CHATML_TEMPLATE).to_string();
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source.clone())
            .map_err(|e| e.to_string())?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            source,
        })
    }

    /// Renders `messages` (and `tools`, when given) with the generation
    /// prompt appended.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String, TemplateError> {
        self.render_values(&message_values(messages)?, tools, None)
    }

    /// Renders messages already in the shape templates read (see
    /// [`message_values`]). `kwargs` are extra template variables (a
    /// request's `chat_template_kwargs`, e.g. `enable_thinking`); they never
    /// replace the ones set here.
    pub fn render_values(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&[serde_json::Value]>,
        kwargs: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError::Render(e.to_string()))?;
        let tools = tools.map(Value::from_serialize);
        template
            .render(context! {
                messages => Value::from_serialize(messages),
                add_generation_prompt => true,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
                tools => tools,
                ..Value::from_serialize(kwargs)
            })
            .map_err(|e| TemplateError::Render(e.to_string()))
    }
}

/// Messages in the shape chat templates read: text content, tool calls
/// with their arguments as objects, `reasoning_content` where a turn has
/// one.
pub fn message_values(messages: &[ChatMessage]) -> Result<Vec<serde_json::Value>, TemplateError> {
    let mut rendered = Vec::with_capacity(messages.len());
    for (index, m) in messages.iter().enumerate() {
        let content = match &m.content {
            None => String::new(),
            Some(c) => c.as_text().ok_or(TemplateError::NonTextContent { index })?,
        };
        let mut msg = json!({ "role": m.role, "content": content });
        if let Some(name) = &m.name {
            msg["name"] = json!(name);
        }
        if let Some(id) = &m.tool_call_id {
            msg["tool_call_id"] = json!(id);
        }
        // A past turn's thinking, apart from its content: the template
        // keeps it or drops it as the model was trained (Qwen3 keeps only
        // the current tool loop's).
        if let Some(thought) = &m.reasoning_content {
            msg["reasoning_content"] = json!(thought);
        }
        if let Some(calls) = &m.tool_calls {
            let mut out = Vec::new();
            for call in calls {
                // Templates expect arguments as an object, not a string.
                let args: serde_json::Value = serde_json::from_str(&call.function.arguments)
                    .map_err(|e| TemplateError::BadToolArguments {
                        index,
                        detail: e.to_string(),
                    })?;
                out.push(json!({
                    "id": call.id,
                    "type": "function",
                    "function": { "name": call.function.name, "arguments": args }
                }));
            }
            msg["tool_calls"] = json!(out);
        }
        rendered.push(msg);
    }
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_default_renders_roles_and_generation_prompt() {
        let t = ChatTemplate::new(None, "", "<|im_end|>").unwrap();
        let out = t
            .render(
                &[
                    ChatMessage::text("system", "Be brief."),
                    ChatMessage::text("user", "Hi"),
                ],
                None,
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% for m in messages %}{{ m.content.strip().upper() }}{% endfor %}{% if messages|length > 1 %}{{ raise_exception('only one message') }}{% endif %}";
        let t = ChatTemplate::new(Some(src), "", "").unwrap();
        assert_eq!(
            t.render(&[ChatMessage::text("user", "  hi ")], None)
                .unwrap(),
            "HI"
        );
        let err = t
            .render(
                &[
                    ChatMessage::text("user", "a"),
                    ChatMessage::text("user", "b"),
                ],
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("only one message"), "{err}");
    }

    #[test]
    fn tool_arguments_reach_the_template_as_objects() {
        let src = "{% for m in messages %}{% for c in m.tool_calls %}{{ c.function.arguments.city }}{% endfor %}{% endfor %}";
        let t = ChatTemplate::new(Some(src), "", "").unwrap();
        let msg = ChatMessage {
            role: "assistant".into(),
            content: None,
            tool_calls: Some(vec![cortex_common::openai::ToolCall {
                id: "c1".into(),
                kind: "function".into(),
                function: cortex_common::openai::FunctionCall {
                    name: "weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                },
            }]),
            ..Default::default()
        };
        assert_eq!(t.render(&[msg], None).unwrap(), "Paris");
    }

    #[test]
    fn template_kwargs_reach_the_template_but_never_replace_its_variables() {
        let src = "{% if enable_thinking is defined and enable_thinking is false %}off{% else %}on{% endif %}{{ messages|length }}";
        let t = ChatTemplate::new(Some(src), "", "").unwrap();
        let values = message_values(&[ChatMessage::text("user", "x")]).unwrap();
        assert_eq!(t.render_values(&values, None, None).unwrap(), "on1");
        let kwargs = json!({"enable_thinking": false, "messages": []});
        let kwargs = kwargs.as_object();
        assert_eq!(t.render_values(&values, None, kwargs).unwrap(), "off1");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
