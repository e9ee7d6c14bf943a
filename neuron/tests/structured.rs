//! Structured output end to end on the real neuron: models whose greedy
//! output is fixed by their weights (see `support/chain.rs`) write a Hermes
//! tool call or a `<think>` thought in the real format, and
//! `/v1/chat/completions` answers `tool_calls` and `reasoning_content`,
//! streamed and not, never the markup in `content`.

mod support;

use cortex_common::event::EventKind;
use serde_json::{Value, json};
use support::Neuron;
use support::chain::{HERMES, OPENS_THINK, QWEN3, write_chain};

const CALL_JSON: &str = "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n";
const BAD_CALL: &str = "\n{\"name\": get_weather}\n";
/// A thought of two tokens: reasoning token counts are the thought's own,
/// markers apart.
const THOUGHT: [&str; 2] = ["\nThe user", " says hello.\n"];
const ANSWER: &str = "\n\nHello there!";

/// A neuron with chain models loaded: `tools` (a Hermes call), `think` (a
/// thought, then an answer), `think-open` (its template opens the thought)
/// and `bad-tools` (a call whose JSON does not parse).
async fn fleet_of_chains(root: &std::path::Path) -> Neuron {
    let models = [
        (
            "tools",
            HERMES,
            vec!["<tool_call>", CALL_JSON, "</tool_call>"],
        ),
        (
            "think",
            QWEN3,
            vec!["<think>", THOUGHT[0], THOUGHT[1], "</think>", ANSWER],
        ),
        (
            "think-open",
            OPENS_THINK,
            vec![THOUGHT[0], THOUGHT[1], "</think>", ANSWER],
        ),
        (
            "bad-tools",
            HERMES,
            vec!["<tool_call>", BAD_CALL, "</tool_call>"],
        ),
    ];
    for (name, template, pieces) in &models {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write_chain(&dir, template, pieces);
    }
    let n = Neuron::start(&["--model-root", root.to_str().unwrap()]);
    for (name, _, _) in &models {
        n.load(name, root.join(name).to_str().unwrap()).await;
    }
    n
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn ask(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hello, what is the weather in Paris?"}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn structured_output_on_chat_completions() {
    let root = tempfile::tempdir().unwrap();
    let n = fleet_of_chains(root.path()).await;
    tool_calls_non_streaming(&n).await;
    tool_calls_streaming(&n).await;
    tool_markup_stays_text_without_tools_or_with_tool_choice_none(&n).await;
    a_call_that_does_not_parse_is_text(&n).await;
    reasoning_non_streaming(&n).await;
    reasoning_streaming(&n).await;
    a_prompt_opened_thought(&n).await;
    a_thought_cut_by_max_tokens_is_all_reasoning(&n).await;
    template_kwargs_reach_the_template(&n).await;
}

async fn tool_calls_non_streaming(n: &Neuron) {
    let (s, body) = n.chat(ask("tools", json!({"tools": weather_tool()}))).await;
    assert_eq!(s, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let message = &choice["message"];
    assert_eq!(message["content"], Value::Null, "{body}");
    let calls = message["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 1, "{body}");
    assert!(
        calls[0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_")),
        "{body}"
    );
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(body["usage"]["completion_tokens"], 3, "{body}");
}

async fn tool_calls_streaming(n: &Neuron) {
    let chunks = n
        .chat_stream(ask(
            "tools",
            json!({"tools": weather_tool(), "stream_options": {"include_usage": true}}),
        ))
        .await;
    let mut name = None;
    let mut id = None;
    let mut args = String::new();
    let mut finish = None;
    for c in &chunks {
        let delta = &c["choices"][0]["delta"];
        if let Some(text) = delta["content"].as_str() {
            assert!(!text.contains("tool_call"), "markup in content: {c}");
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            assert_eq!(call["index"], 0, "{c}");
            if let Some(n) = call["function"]["name"].as_str() {
                assert!(name.is_none(), "the name comes once: {c}");
                assert!(
                    args.is_empty(),
                    "id and name come before the arguments: {c}"
                );
                name = Some(n.to_string());
                id = call["id"].as_str().map(str::to_string);
            }
            args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"), "{chunks:?}");
    assert!(id.is_some_and(|i| i.starts_with("call_")), "{chunks:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"), "{chunks:?}");
}

async fn tool_markup_stays_text_without_tools_or_with_tool_choice_none(n: &Neuron) {
    for extra in [
        json!({}),
        json!({"tools": weather_tool(), "tool_choice": "none"}),
    ] {
        let (s, body) = n.chat(ask("tools", extra.clone())).await;
        assert_eq!(s, 200, "{body}");
        let message = &body["choices"][0]["message"];
        assert!(message.get("tool_calls").is_none(), "{extra}: {body}");
        assert_eq!(
            message["content"],
            format!("<tool_call>{CALL_JSON}</tool_call>"),
            "{extra}: {body}"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    }
}

async fn a_call_that_does_not_parse_is_text(n: &Neuron) {
    let markup = format!("<tool_call>{BAD_CALL}</tool_call>");
    let (s, body) = n
        .chat(ask("bad-tools", json!({"tools": weather_tool()})))
        .await;
    assert_eq!(s, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["content"], markup, "{body}");
    assert!(choice["message"].get("tool_calls").is_none(), "{body}");
    assert_eq!(choice["finish_reason"], "stop", "{body}");
    let chunks = n
        .chat_stream(ask("bad-tools", json!({"tools": weather_tool()})))
        .await;
    assert_eq!(support::stream_text(&chunks), markup);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()),
        "{chunks:?}"
    );
}

async fn reasoning_non_streaming(n: &Neuron) {
    let mut events = n.events().await;
    let (s, body) = n.chat(ask("think", json!({}))).await;
    assert_eq!(s, 200, "{body}");
    let message = &body["choices"][0]["message"];
    assert_eq!(
        message["reasoning_content"], "The user says hello.",
        "{body}"
    );
    assert_eq!(message["content"], "Hello there!", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 5, "{body}");
    // The thought's two tokens; `<think>` and `</think>` are not reasoning.
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"], 2,
        "{body}"
    );
    // The event counts them apart too.
    let finished = support::next_event(
        &mut events,
        "request_finished",
        |e| matches!(&e.kind, EventKind::RequestFinished { model, .. } if model == "think"),
    )
    .await;
    match finished.kind {
        EventKind::RequestFinished {
            completion_tokens,
            reasoning_tokens,
            ..
        } => assert_eq!((completion_tokens, reasoning_tokens), (5, 2)),
        other => panic!("{other:?}"),
    }
}

async fn reasoning_streaming(n: &Neuron) {
    let chunks = n
        .chat_stream(ask(
            "think",
            json!({"stream_options": {"include_usage": true}}),
        ))
        .await;
    let mut reasoning = String::new();
    let mut content = String::new();
    for c in &chunks {
        let delta = &c["choices"][0]["delta"];
        if let Some(r) = delta["reasoning_content"].as_str() {
            assert!(
                content.is_empty(),
                "reasoning after the answer began: {chunks:?}"
            );
            reasoning.push_str(r);
        }
        content.push_str(delta["content"].as_str().unwrap_or(""));
    }
    assert_eq!(reasoning, "The user says hello.");
    assert_eq!(content, "Hello there!");
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(
        usage["usage"]["completion_tokens_details"]["reasoning_tokens"], 2,
        "{usage}"
    );
}

async fn a_prompt_opened_thought(n: &Neuron) {
    let (s, body) = n.chat(ask("think-open", json!({}))).await;
    assert_eq!(s, 200, "{body}");
    let message = &body["choices"][0]["message"];
    assert_eq!(
        message["reasoning_content"], "The user says hello.",
        "{body}"
    );
    assert_eq!(message["content"], "Hello there!", "{body}");
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"], 2,
        "{body}"
    );
    let chunks = n.chat_stream(ask("think-open", json!({}))).await;
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "The user says hello.");
    assert_eq!(support::stream_text(&chunks), "Hello there!");
}

async fn a_thought_cut_by_max_tokens_is_all_reasoning(n: &Neuron) {
    let (s, body) = n.chat(ask("think", json!({"max_tokens": 3}))).await;
    assert_eq!(s, 200, "{body}");
    let message = &body["choices"][0]["message"];
    assert_eq!(
        message["reasoning_content"], "The user says hello.",
        "{body}"
    );
    assert_eq!(message["content"], "", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"], 2,
        "{body}"
    );
}

/// Qwen3's `enable_thinking: false` writes an empty thought into the
/// prompt: the prompt grows by those tokens.
async fn template_kwargs_reach_the_template(n: &Neuron) {
    let count = |extra: Value| {
        let mut body = ask("think", extra);
        body.as_object_mut().unwrap().remove("max_tokens");
        body
    };
    let (_, on) = n.post("/v1/chat/count_tokens", count(json!({}))).await;
    let (_, off) = n
        .post(
            "/v1/chat/count_tokens",
            count(json!({"chat_template_kwargs": {"enable_thinking": false}})),
        )
        .await;
    let (on, off) = (
        on["prompt_tokens"].as_u64().unwrap(),
        off["prompt_tokens"].as_u64().unwrap(),
    );
    // `<think>`, `\n\n`, `</think>`, `\n\n`: 2 marker tokens and 4 bytes.
    assert_eq!(off, on + 6, "on {on}, off {off}");
}
