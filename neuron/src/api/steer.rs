//! How a chat request steers the model's output beyond sampling: whether
//! tool calls are parsed, a call it requires (`tool_choice: "required"` or
//! a named function: the call's start is written at the end of the prompt,
//! so the answer is that call), at most one call (`parallel_tool_calls:
//! false`), and how much the model may think (`reasoning_effort`,
//! `thinking_budget`: the template's switch and a budget of reasoning
//! tokens the sequence enforces).

use cortex_common::error::ApiError;
use cortex_common::openai::{ChatCompletionRequest, ReasoningEffort, ToolChoice};
use serde_json::{Map, Value};

use crate::engine::output::ModelFormat;

/// What the request asks of the output, checked against the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steering {
    /// Tool calls are parsed: tools offered, not refused, and the model
    /// writes a syntax cortex reads.
    pub parse_tools: bool,
    /// The start of the call the request requires (empty: none).
    pub prime: String,
    /// At most one call: generation ends after the first.
    pub single_call: bool,
    /// Reasoning tokens allowed before the thought is closed.
    pub reasoning_budget: Option<u32>,
    /// The chat template's extra variables: the request's own, plus what
    /// `reasoning_effort` sets where the request did not.
    pub kwargs: Option<Map<String, Value>>,
}

/// Reasoning tokens each effort allows: `none` closes a thought at once
/// (and switches thinking off in templates that can), `high` does not
/// limit it.
pub fn effort_budget(effort: ReasoningEffort) -> Option<u32> {
    match effort {
        ReasoningEffort::None => Some(0),
        ReasoningEffort::Minimal => Some(256),
        ReasoningEffort::Low => Some(1024),
        ReasoningEffort::Medium => Some(4096),
        ReasoningEffort::High => None,
    }
}

/// Reads the request's steering for a model `model` of `format`; a
/// request that asks what cannot be done is a 400 saying why.
pub fn steer(
    req: &ChatCompletionRequest,
    model: &str,
    format: &ModelFormat,
) -> Result<Steering, ApiError> {
    let bad = |field: &str, why: String| {
        ApiError::invalid("invalid_value", format!("field `{field}`: {why}"))
    };
    let choice = req.tool_choice().map_err(|why| bad("tool_choice", why))?;
    let offered = req.tool_names();
    let must_call = match &choice {
        ToolChoice::Auto | ToolChoice::None => None,
        ToolChoice::Required => Some(None),
        ToolChoice::Function(name) => Some(Some(name.as_str())),
    };
    let prime = match (must_call, format.tools) {
        (None, _) => String::new(),
        (Some(_), _) if offered.is_empty() => {
            return Err(bad(
                "tool_choice",
                "a call is required but `tools` offers none".into(),
            ));
        }
        (Some(Some(name)), _) if !offered.contains(&name) => {
            return Err(bad(
                "tool_choice",
                format!(
                    "function `{name}` is not among `tools` ({})",
                    offered.join(", ")
                ),
            ));
        }
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "tool_choice_unsupported",
                format!(
                    "model `{model}` writes tool calls in no syntax cortex reads (Hermes \
                     <tool_call>, Llama 3 JSON, Mistral [TOOL_CALLS]), so a call cannot be \
                     required of it; use tool_choice \"auto\""
                ),
            ));
        }
        (Some(function), Some(tools)) => tools.prime(function),
    };
    let effort = match &req.reasoning_effort {
        None => None,
        Some(name) => Some(ReasoningEffort::parse(name).ok_or_else(|| {
            bad(
                "reasoning_effort",
                format!(
                    "`{name}` is not an effort; use one of {}",
                    ReasoningEffort::NAMES.join(", ")
                ),
            )
        })?),
    };
    let mut kwargs = req.chat_template_kwargs.clone();
    if let Some(effort) = effort {
        let k = kwargs.get_or_insert_with(Map::new);
        k.entry("reasoning_effort")
            .or_insert_with(|| Value::from(effort.name()));
        if effort == ReasoningEffort::None {
            k.entry("enable_thinking").or_insert(Value::Bool(false));
        }
    }
    Ok(Steering {
        parse_tools: !offered.is_empty() && choice != ToolChoice::None && format.tools.is_some(),
        prime,
        single_call: req.parallel_tool_calls == Some(false),
        reasoning_budget: req.thinking_budget.or(effort.and_then(effort_budget)),
        kwargs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tool_format::ToolFormat;
    use serde_json::json;

    fn req(extra: Value) -> ChatCompletionRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        serde_json::from_value(body).unwrap()
    }

    const HERMES: ModelFormat = ModelFormat {
        reasoning: true,
        tools: Some(ToolFormat::Hermes),
    };

    #[test]
    fn required_and_named_calls_are_primed() {
        let s = steer(&req(json!({})), "m", &HERMES).unwrap();
        assert!(s.parse_tools && s.prime.is_empty() && !s.single_call);
        let s = steer(&req(json!({"tool_choice": "required"})), "m", &HERMES).unwrap();
        assert_eq!(s.prime, "<tool_call>");
        let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                           "parallel_tool_calls": false});
        let s = steer(&req(named), "m", &HERMES).unwrap();
        assert_eq!(s.prime, ToolFormat::Hermes.prime(Some("get_weather")));
        assert!(s.single_call);
        let s = steer(&req(json!({"tool_choice": "none"})), "m", &HERMES).unwrap();
        assert!(!s.parse_tools);
    }

    #[test]
    fn impossible_tool_choices_are_400s_that_say_why() {
        let err = |extra: Value, format: &ModelFormat| {
            steer(&req(extra), "m", format).unwrap_err().message
        };
        let other = json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}});
        assert!(err(other, &HERMES).contains("`nope` is not among `tools` (get_weather)"));
        let mut no_tools = req(json!({"tool_choice": "required"}));
        no_tools.tools = None;
        assert!(
            steer(&no_tools, "m", &HERMES)
                .unwrap_err()
                .message
                .contains("offers none")
        );
        let plain = ModelFormat::default();
        let e = steer(&req(json!({"tool_choice": "required"})), "m", &plain).unwrap_err();
        assert_eq!(e.code, "tool_choice_unsupported");
        // Auto on such a model is fine: its answer is text.
        assert!(!steer(&req(json!({})), "m", &plain).unwrap().parse_tools);
        assert!(err(json!({"tool_choice": "any"}), &HERMES).contains("field `tool_choice`"));
    }

    #[test]
    fn effort_sets_a_budget_and_the_templates_switches() {
        let s = steer(&req(json!({"reasoning_effort": "none"})), "m", &HERMES).unwrap();
        assert_eq!(s.reasoning_budget, Some(0));
        assert_eq!(
            s.kwargs,
            json!({"reasoning_effort": "none", "enable_thinking": false})
                .as_object()
                .cloned()
        );
        let s = steer(&req(json!({"reasoning_effort": "low"})), "m", &HERMES).unwrap();
        assert_eq!(s.reasoning_budget, Some(1024));
        let s = steer(&req(json!({"reasoning_effort": "high"})), "m", &HERMES).unwrap();
        assert_eq!(s.reasoning_budget, None);
        // An explicit budget wins; the client's own kwargs are kept.
        let s = steer(
            &req(json!({"reasoning_effort": "none", "thinking_budget": 7,
                        "chat_template_kwargs": {"enable_thinking": true}})),
            "m",
            &HERMES,
        )
        .unwrap();
        assert_eq!(s.reasoning_budget, Some(7));
        assert_eq!(s.kwargs.unwrap()["enable_thinking"], true);
        let e = steer(&req(json!({"reasoning_effort": "max"})), "m", &HERMES).unwrap_err();
        assert!(e.message.contains("reasoning_effort"), "{}", e.message);
    }
}
