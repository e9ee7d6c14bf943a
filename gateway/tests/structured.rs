//! Structured model output through the gateway, end to end: a real neuron
//! serving models whose greedy output is fixed by their weights (a Hermes
//! tool call; a Qwen3-style `<think>` thought, then an answer; see the
//! neuron's `tests/support/chain.rs`), and a real gateway in front. Every
//! surface carries the neuron's structure: OpenAI chat `tool_calls` and
//! `reasoning_content`, Anthropic `thinking` and `tool_use` blocks,
//! Responses `reasoning` and `function_call` items, with reasoning token
//! counts; streamed and not. And what a request asks of the output on each
//! surface: a tool call required (OpenAI `required` or a named function,
//! Anthropic `any` / `tool`, the Responses equivalents), one call at most,
//! a reasoning budget or effort; a tool's result in the next turn (a
//! Mistral-format model, whose answer then differs), past thinking handed
//! back; and models.toml's sampling settings over the model's own.

mod support;

#[path = "../../neuron/tests/support/chain.rs"]
mod chain;

use serde_json::{Value, json};
use support::*;

const KEY: &str = "structured-key";
const CALL_JSON: &str = "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n";
/// Two calls in one turn, each one token (a chain visits a token once).
const TWO_CALLS: [&str; 2] = [
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>",
];
const THOUGHT: &str = "\nThe user says hello.\n";
const ANSWER: &str = "\n\nHello there!";

/// A Hermes call cut where a call's start primed after the prompt ends.
const CHATTY: [&str; 5] = [
    "Let me check.",
    "<tool_call>",
    "\n{\"name\": \"get_weather\", \"arguments\": ",
    "{\"city\": \"Paris\"}}\n",
    "</tool_call>",
];
const STEPS: [&str; 6] = [
    "<think>",
    "\nStep one.",
    " Step two.",
    " Step three.\n",
    "</think>",
    "\n\nDone.",
];
const SUNNY: &str = "It is sunny in Paris.";

struct Fleet {
    gw: Gateway,
    _neuron: cortex_process::Child,
    _models: tempfile::TempDir,
}

impl Fleet {
    async fn start() -> Fleet {
        let root = tempfile::tempdir().expect("temp dir");
        const TOOLS: &[&str] = &["<tool_call>", CALL_JSON, "</tool_call>"];
        const THINK: &[&str] = &["<think>", THOUGHT, "</think>", ANSWER];
        const MISTRAL_CALL: &[&str] = &[
            "[TOOL_CALLS]",
            " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
        ];
        const HELLO: &[&str] = &["Hello", " there", "!"];
        let models = [
            (
                "tools",
                chain::ChainModel::chatml(chain::HERMES, &[("\n", TOOLS)]),
            ),
            (
                "think",
                chain::ChainModel::chatml(chain::QWEN3, &[("\n", THINK)]),
            ),
            (
                "two-tools",
                chain::ChainModel::chatml(chain::HERMES, &[("\n", &TWO_CALLS)]),
            ),
            (
                "chatty",
                chain::ChainModel::chatml(chain::HERMES, &[("\n", &CHATTY)]),
            ),
            (
                "steps",
                chain::ChainModel::chatml(chain::QWEN3, &[("\n", &STEPS)]),
            ),
            (
                "history",
                chain::ChainModel::chatml(chain::QWEN3_HISTORY, &[("\n", &["Fine."])]),
            ),
            (
                "mistral",
                chain::ChainModel {
                    template: chain::MISTRAL,
                    specials: &chain::MISTRAL_SPECIALS,
                    markers: &[],
                    bos: Some("<s>"),
                    eos: "</s>",
                    chains: &[("[/INST]", MISTRAL_CALL), ("[/TOOL_RESULTS]", &[SUNNY])],
                    weight: chain::SHARP,
                },
            ),
            (
                "sampled",
                chain::ChainModel {
                    weight: 0.1,
                    ..chain::ChainModel::chatml(chain::CHATML, &[("\n", HELLO)])
                },
            ),
        ];
        let mut toml = String::new();
        for (id, model) in &models {
            let dir = root.path().join(id);
            std::fs::create_dir_all(&dir).expect("model dir");
            chain::write_model(&dir, model);
            let source = dir.to_str().expect("utf-8 temp path");
            toml.push_str(&format!(
                "[[models]]\nid = \"{id}\"\nsource = {source:?}\nmemory_mb = 10\n"
            ));
        }
        // The model publishes greedy defaults (top_k 1); models.toml widens
        // them for requests through this gateway.
        std::fs::write(
            root.path().join("sampled/generation_config.json"),
            json!({"temperature": 0.6, "top_p": 0.95, "top_k": 1}).to_string(),
        )
        .expect("generation_config.json");
        toml.push_str("top_k = 50\n");
        let root_flag = root.path().to_str().expect("utf-8 temp path").to_string();
        let neuron = neuron_with(
            "a",
            250,
            "127.0.0.1:0",
            &["--max-queue", "64", "--model-root", &root_flag],
        );
        let gw = gateway_with(
            &[&neuron],
            "lru",
            &toml,
            "",
            &format!("api_keys = [\"{KEY}\"]"),
        )
        .await;
        Fleet {
            gw,
            _neuron: neuron,
            _models: root,
        }
    }

    async fn send(&self, path: &str, body: &Value) -> reqwest::Response {
        self.gw
            .http
            .post(format!("{}{path}", self.gw.url))
            .bearer_auth(KEY)
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self.send(path, &body).await;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.expect("a JSON answer");
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .gw
            .http
            .get(format!("{}{path}", self.gw.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        resp.json().await.expect("a JSON answer")
    }

    /// Every `data:` payload of a streamed answer, parsed (`[DONE]` left out).
    async fn stream(&self, path: &str, mut body: Value) -> Vec<Value> {
        body["stream"] = json!(true);
        let resp = self.send(path, &body).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        read_sse(resp)
            .await
            .iter()
            .filter(|d| d.as_str() != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{path}: {e}: {d}")))
            .collect()
    }
}

fn chat(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hello, what is the weather in Paris?"}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

fn openai_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn anthropic_tools() -> Value {
    json!([{"name": "get_weather", "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_surface_carries_structured_output() {
    let f = Fleet::start().await;
    chat_tool_calls(&f).await;
    parallel_tool_calls(&f).await;
    chat_reasoning(&f).await;
    messages_thinking_and_tool_use(&f).await;
    responses_reasoning_and_function_calls(&f).await;
    required_and_single_calls_on_every_surface(&f).await;
    reasoning_budgets_on_every_surface(&f).await;
    tool_results_and_past_thinking(&f).await;
    sampling_from_models_toml_over_the_models_own(&f).await;
}

async fn chat_tool_calls(f: &Fleet) {
    let body = chat("tools", json!({"tools": openai_tools()}));
    let v = f.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], Value::Null, "{v}");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather", "{v}");
    let args = m["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .expect("arguments string");
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"city": "Paris"})
    );

    let chunks = f.stream("/v1/chat/completions", body).await;
    let mut args = String::new();
    let mut names = Vec::new();
    for c in &chunks {
        let delta = &c["choices"][0]["delta"];
        assert!(
            !delta["content"]
                .as_str()
                .unwrap_or("")
                .contains("tool_call"),
            "{c}"
        );
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            if let Some(n) = call["function"]["name"].as_str() {
                names.push(n.to_string());
                assert!(call["id"].is_string(), "{c}");
            }
            args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(names, ["get_weather"], "{chunks:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"], "{chunks:?}");
}

/// Two calls in one turn: two `tool_calls` (indices 0 and 1 when
/// streamed), two `tool_use` blocks, two `function_call` items.
async fn parallel_tool_calls(f: &Fleet) {
    let cities = |calls: Vec<&Value>, args: &dyn Fn(&Value) -> Value| -> Vec<Value> {
        calls.iter().map(|c| args(c)["city"].clone()).collect()
    };
    let parse =
        |s: &Value| serde_json::from_str::<Value>(s.as_str().unwrap_or("")).unwrap_or(Value::Null);
    let body = chat("two-tools", json!({"tools": openai_tools()}));
    let v = f.post("/v1/chat/completions", body.clone()).await;
    let calls: Vec<&Value> = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls")
        .iter()
        .collect();
    assert_eq!(
        cities(calls, &|c| parse(&c["function"]["arguments"])),
        [json!("Paris"), json!("Rome")],
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let chunks = f.stream("/v1/chat/completions", body).await;
    let mut args = [String::new(), String::new()];
    for c in &chunks {
        for call in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().expect("index") as usize;
            args[i].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    let args: Vec<Value> = args
        .iter()
        .map(|a| serde_json::from_str::<Value>(a).unwrap()["city"].clone())
        .collect();
    assert_eq!(args, [json!("Paris"), json!("Rome")], "{chunks:?}");

    let v = f
        .post(
            "/v1/messages",
            chat("two-tools", json!({"tools": anthropic_tools()})),
        )
        .await;
    let blocks: Vec<&Value> = v["content"].as_array().expect("content").iter().collect();
    assert!(blocks.iter().all(|b| b["type"] == "tool_use"), "{v}");
    assert_eq!(
        cities(blocks, &|b| b["input"].clone()),
        [json!("Paris"), json!("Rome")],
        "{v}"
    );

    let v = f
        .post(
            "/v1/responses",
            json!({"model": "two-tools", "input": "Weather?", "temperature": 0,
                   "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}),
        )
        .await;
    let items: Vec<&Value> = v["output"].as_array().expect("output").iter().collect();
    assert!(items.iter().all(|i| i["type"] == "function_call"), "{v}");
    assert_eq!(
        cities(items, &|i| parse(&i["arguments"])),
        [json!("Paris"), json!("Rome")],
        "{v}"
    );
}

async fn chat_reasoning(f: &Fleet) {
    let v = f
        .post("/v1/chat/completions", chat("think", json!({})))
        .await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], "The user says hello.", "{v}");
    assert_eq!(m["content"], "Hello there!", "{v}");
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"], 1,
        "{v}"
    );

    let chunks = f
        .stream(
            "/v1/chat/completions",
            chat("think", json!({"stream_options": {"include_usage": true}})),
        )
        .await;
    let field = |name: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][name].as_str())
            .collect()
    };
    assert_eq!(field("reasoning_content"), "The user says hello.");
    assert_eq!(field("content"), "Hello there!");
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(
        usage["usage"]["completion_tokens_details"]["reasoning_tokens"], 1,
        "{usage}"
    );
}

async fn messages_thinking_and_tool_use(f: &Fleet) {
    let v = f.post("/v1/messages", chat("think", json!({}))).await;
    assert_eq!(
        v["content"],
        json!([{"type": "thinking", "thinking": "The user says hello.", "signature": ""},
               {"type": "text", "text": "Hello there!"}]),
        "{v}"
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 4, "{v}");

    let events = f.stream("/v1/messages", chat("think", json!({}))).await;
    let starts: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .filter_map(|e| e["content_block"]["type"].as_str())
        .collect();
    assert_eq!(starts, ["thinking", "text"], "{events:?}");
    let thinking: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "thinking_delta")
        .filter_map(|e| e["delta"]["thinking"].as_str())
        .collect();
    assert_eq!(thinking, "The user says hello.");
    let text: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "text_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello there!");

    // `thinking: disabled` reaches a Qwen3-style template as
    // `enable_thinking: false`, which writes an empty thought into the
    // prompt: `<think>`, `\n\n`, `</think>`, `\n\n` are 6 more tokens.
    let count = |thinking: Value| {
        let mut body =
            json!({"model": "think", "messages": [{"role": "user", "content": "Hello"}]});
        if !thinking.is_null() {
            body["thinking"] = thinking;
        }
        body
    };
    let on = f
        .post("/v1/messages/count_tokens", count(Value::Null))
        .await;
    let off = f
        .post(
            "/v1/messages/count_tokens",
            count(json!({"type": "disabled"})),
        )
        .await;
    let tokens = |v: &Value| v["input_tokens"].as_u64().expect("input_tokens");
    assert_eq!(tokens(&off), tokens(&on) + 6, "on {on}, off {off}");
    // count_tokens takes no max_tokens: a thinking budget (Claude Code
    // sends one) is not measured against one.
    let budgeted = f
        .post(
            "/v1/messages/count_tokens",
            count(json!({"type": "enabled", "budget_tokens": 31999})),
        )
        .await;
    assert_eq!(tokens(&budgeted), tokens(&on), "{budgeted}");

    let v = f
        .post(
            "/v1/messages",
            chat("tools", json!({"tools": anthropic_tools()})),
        )
        .await;
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let blocks = v["content"].as_array().expect("content");
    assert_eq!(blocks.len(), 1, "{v}");
    assert_eq!(blocks[0]["type"], "tool_use");
    assert_eq!(blocks[0]["name"], "get_weather");
    assert_eq!(blocks[0]["input"], json!({"city": "Paris"}));
}

async fn responses_reasoning_and_function_calls(f: &Fleet) {
    let body =
        json!({"model": "think", "input": "Hello", "temperature": 0, "max_output_tokens": 16});
    let v = f.post("/v1/responses", body.clone()).await;
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 2, "{v}");
    assert_eq!(output[0]["type"], "reasoning", "{v}");
    assert_eq!(output[0]["content"][0]["text"], "The user says hello.");
    assert_eq!(output[1]["type"], "message");
    assert_eq!(output[1]["content"][0]["text"], "Hello there!");
    assert_eq!(
        v["usage"]["output_tokens_details"]["reasoning_tokens"], 1,
        "{v}"
    );

    let events = f.stream("/v1/responses", body).await;
    let reasoning: String = events
        .iter()
        .filter(|e| e["type"] == "response.reasoning_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(reasoning, "The user says hello.");
    let done = events.last().expect("events");
    assert_eq!(done["type"], "response.completed", "{done}");
    assert_eq!(done["response"]["output"][0]["type"], "reasoning");
    assert_eq!(
        done["response"]["usage"]["output_tokens_details"]["reasoning_tokens"],
        1
    );

    let body = json!({"model": "tools", "input": "Weather in Paris?", "temperature": 0,
        "tools": [{"type": "function", "name": "get_weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
    let v = f.post("/v1/responses", body).await;
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 1, "{v}");
    assert_eq!(output[0]["type"], "function_call");
    assert_eq!(output[0]["name"], "get_weather");
    let args = output[0]["arguments"].as_str().expect("arguments");
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"city": "Paris"})
    );
}

/// `tool_choice` that requires a call, and one call at most, through each
/// surface's own words for them.
async fn required_and_single_calls_on_every_surface(f: &Fleet) {
    // The model's own answer: text, then the call.
    let v = f
        .post(
            "/v1/messages",
            chat("chatty", json!({"tools": anthropic_tools()})),
        )
        .await;
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|b| b["type"].as_str())
        .collect();
    assert_eq!(kinds, ["text", "tool_use"], "{v}");
    // Required, or this tool: the call alone.
    for choice in [
        json!({"type": "any"}),
        json!({"type": "tool", "name": "get_weather"}),
    ] {
        let body = chat(
            "chatty",
            json!({"tools": anthropic_tools(), "tool_choice": choice}),
        );
        let v = f.post("/v1/messages", body.clone()).await;
        assert_eq!(v["stop_reason"], "tool_use", "{choice}: {v}");
        assert_eq!(
            v["content"],
            json!([{"type": "tool_use", "id": v["content"][0]["id"], "name": "get_weather",
                    "input": {"city": "Paris"}}]),
            "{choice}: {v}"
        );
        let events = f.stream("/v1/messages", body).await;
        assert!(
            !events.iter().any(|e| e["delta"]["type"] == "text_delta"),
            "{choice}: {events:?}"
        );
    }
    for choice in [
        json!("required"),
        json!({"type": "function", "name": "get_weather"}),
    ] {
        let v = f
            .post(
                "/v1/responses",
                json!({"model": "chatty", "input": "Weather?", "temperature": 0,
                       "tool_choice": choice,
                       "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}),
            )
            .await;
        let kinds: Vec<&str> = v["output"]
            .as_array()
            .expect("output")
            .iter()
            .filter_map(|i| i["type"].as_str())
            .collect();
        assert_eq!(kinds, ["function_call"], "{choice}: {v}");
    }
    let v = f
        .post(
            "/v1/chat/completions",
            chat(
                "chatty",
                json!({"tools": openai_tools(), "tool_choice": "required"}),
            ),
        )
        .await;
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    // A choice the model cannot honour is a 400 in the surface's shape.
    let resp = f
        .send(
            "/v1/messages",
            &chat(
                "chatty",
                json!({"tools": anthropic_tools(), "tool_choice": {"type": "tool", "name": "nope"}}),
            ),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`nope` is not among `tools`")),
        "{v}"
    );

    // One call at most.
    let v = f
        .post(
            "/v1/messages",
            chat(
                "two-tools",
                json!({"tools": anthropic_tools(),
                       "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}),
            ),
        )
        .await;
    assert_eq!(v["content"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["content"][0]["input"]["city"], "Paris", "{v}");
    let v = f
        .post(
            "/v1/responses",
            json!({"model": "two-tools", "input": "Weather?", "temperature": 0,
                   "parallel_tool_calls": false,
                   "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}),
        )
        .await;
    assert_eq!(v["output"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["parallel_tool_calls"], false, "{v}");
    let v = f
        .post(
            "/v1/chat/completions",
            chat(
                "two-tools",
                json!({"tools": openai_tools(), "parallel_tool_calls": false}),
            ),
        )
        .await;
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{v}"
    );
}

/// Anthropic's `budget_tokens`, Responses' `reasoning.effort` and chat's
/// `reasoning_effort` reach the neuron's reasoning budget.
async fn reasoning_budgets_on_every_surface(f: &Fleet) {
    let body = json!({"model": "steps", "max_tokens": 16, "temperature": 0,
        "thinking": {"type": "enabled", "budget_tokens": 1},
        "messages": [{"role": "user", "content": "Hello"}]});
    let v = f.post("/v1/messages", body.clone()).await;
    assert_eq!(
        v["content"],
        json!([{"type": "thinking", "thinking": "Step one.", "signature": ""},
               {"type": "text", "text": "Done."}]),
        "{v}"
    );
    let events = f.stream("/v1/messages", body.clone()).await;
    let thinking: String = events
        .iter()
        .filter_map(|e| e["delta"]["thinking"].as_str())
        .collect();
    assert_eq!(thinking, "Step one.", "{events:?}");
    // As on Anthropic's API, the budget must be below max_tokens.
    let mut over = body;
    over["thinking"]["budget_tokens"] = json!(16);
    let resp = f.send("/v1/messages", &over).await;
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("budget_tokens")),
        "{v}"
    );

    let v = f
        .post(
            "/v1/responses",
            json!({"model": "steps", "input": "Hello", "temperature": 0,
                   "reasoning": {"effort": "none"}}),
        )
        .await;
    let kinds: Vec<&str> = v["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect();
    assert_eq!(kinds, ["message"], "no thought: {v}");
    assert_eq!(v["output"][0]["content"][0]["text"], "Done.", "{v}");
    let v = f
        .post(
            "/v1/chat/completions",
            chat("steps", json!({"thinking_budget": 2})),
        )
        .await;
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"], "Step one. Step two.",
        "{v}"
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        2
    );
}

/// A tool's result in the next turn, on a model whose prompt then ends
/// differently (Mistral's), so its answer shows the result arrived; and a
/// past turn's thinking handed back for the template to keep.
async fn tool_results_and_past_thinking(f: &Fleet) {
    let question = json!({"role": "user", "content": "Weather in Paris?"});
    let first = f
        .post(
            "/v1/messages",
            json!({"model": "mistral", "max_tokens": 32, "temperature": 0,
                   "tools": anthropic_tools(), "messages": [question]}),
        )
        .await;
    assert_eq!(first["stop_reason"], "tool_use", "{first}");
    let call = first["content"][0].clone();
    let second = f
        .post(
            "/v1/messages",
            json!({"model": "mistral", "max_tokens": 32, "temperature": 0,
            "tools": anthropic_tools(), "messages": [
                question,
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [{"type": "tool_result",
                    "tool_use_id": call["id"], "content": "Sunny, 22 C"}]},
            ]}),
        )
        .await;
    assert_eq!(second["stop_reason"], "end_turn", "{second}");
    assert_eq!(
        second["content"],
        json!([{"type": "text", "text": SUNNY}]),
        "{second}"
    );

    let first = f
        .post(
            "/v1/responses",
            json!({"model": "mistral", "input": "Weather in Paris?", "temperature": 0,
                   "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}),
        )
        .await;
    let call = first["output"][0].clone();
    assert_eq!(call["type"], "function_call", "{first}");
    let second = f
        .post(
            "/v1/responses",
            json!({"model": "mistral", "temperature": 0,
                   "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
                   "input": [
                       {"role": "user", "content": "Weather in Paris?"},
                       call,
                       {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"},
                   ]}),
        )
        .await;
    assert_eq!(second["output"][0]["content"][0]["text"], SUNNY, "{second}");

    // Thinking blocks of the current tool loop reach a Qwen3-style template
    // as the turn's reasoning: the prompt grows by the thought, in <think>.
    let count = |thinking: Option<&str>| {
        let mut assistant = vec![
            json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                        "input": {"city": "Paris"}}),
        ];
        if let Some(t) = thinking {
            assistant.insert(
                0,
                json!({"type": "thinking", "thinking": t, "signature": ""}),
            );
        }
        json!({"model": "history", "tools": anthropic_tools(), "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": "Sunny"}]},
        ]})
    };
    let thought = "Call the tool.";
    let with = f
        .post("/v1/messages/count_tokens", count(Some(thought)))
        .await;
    let without = f.post("/v1/messages/count_tokens", count(None)).await;
    let tokens = |v: &Value| v["input_tokens"].as_u64().expect("input_tokens");
    // `<think>` "\n" thought "\n" `</think>` "\n\n".
    assert_eq!(
        tokens(&with),
        tokens(&without) + 1 + 1 + thought.len() as u64 + 1 + 1 + 2,
        "with {with}, without {without}"
    );
}

/// models.toml's `top_k = 50` over the model's published `top_k: 1`: a
/// request that says nothing samples widely (not the chain), one that
/// says `top_k: 1` gets the chain; `/v1/models` shows the merged defaults.
async fn sampling_from_models_toml_over_the_models_own(f: &Fleet) {
    let listed = |v: &Value| -> Value {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|m| m["id"] == "sampled")
            .expect("sampled listed")["cortex"]["sampling"]
            .clone()
    };
    let models = f.get("/v1/models").await;
    assert_eq!(
        listed(&models),
        json!({"top_k": 50}),
        "before a load: models.toml's only"
    );
    let ask = |extra: Value| {
        let mut body = json!({"model": "sampled", "max_tokens": 3, "seed": 7,
            "messages": [{"role": "user", "content": "Hi"}]});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        body
    };
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let wide = f.post("/v1/chat/completions", ask(json!({}))).await;
    assert_ne!(text(&wide), "Hello there!", "{wide}");
    let own = f
        .post("/v1/chat/completions", ask(json!({"top_k": 1})))
        .await;
    assert_eq!(text(&own), "Hello there!", "{own}");
    // Once the neuron's next report of the model arrives, its own defaults
    // show under models.toml's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let models = f.get("/v1/models").await;
        let sampling = listed(&models);
        if sampling.get("temperature").is_some() {
            assert_eq!(
                sampling,
                json!({"temperature": 0.6, "top_p": 0.95, "top_k": 50}),
                "{models}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the neuron's defaults never showed: {models}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
