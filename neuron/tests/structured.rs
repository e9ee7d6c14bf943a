//! Structured output end to end on the real neuron: models whose greedy
//! output is fixed by their weights (see `support/chain.rs`) write tool
//! calls in the Hermes, Llama 3 and Mistral syntaxes, or a `<think>`
//! thought, with those families' templates and vocabularies, and
//! `/v1/chat/completions` answers `tool_calls` and `reasoning_content`,
//! streamed and not, never the markup in `content`. Also: `tool_choice`
//! and `parallel_tool_calls` honoured, a tool's result in the next turn,
//! past reasoning handed back as the template expects, reasoning budgets,
//! and sampling defaults from `generation_config.json`.

mod support;

use cortex_common::event::EventKind;
use serde_json::{Value, json};
use support::Neuron;
use support::chain::{
    CHATML, ChainModel, HERMES, LLAMA3, LLAMA3_SPECIALS, MISTRAL, MISTRAL_SPECIALS, OPENS_THINK,
    QWEN3, QWEN3_HISTORY, SHARP, write_chain, write_model,
};

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
    let mut events = n.events().await;
    let (s, body) = n
        .chat(ask("bad-tools", json!({"tools": weather_tool()})))
        .await;
    assert_eq!(s, 200, "{body}");
    // The event stream says so, for the request that got the text.
    let said = support::next_event(
        &mut events,
        "tool_call_unparsed",
        |e| matches!(&e.kind, EventKind::ToolCallUnparsed { model, .. } if model == "bad-tools"),
    )
    .await;
    match said.kind {
        EventKind::ToolCallUnparsed {
            request_id, count, ..
        } => {
            assert_eq!(count, 1);
            assert_eq!(Some(request_id.as_str()), body["id"].as_str(), "{body}");
        }
        other => panic!("{other:?}"),
    }
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

/// A weather call's parts as Hermes writes them, so a prompt primed with a
/// call's start ends on one of the chain's tokens.
const HERMES_HEAD: &str = "\n{\"name\": \"get_weather\", \"arguments\": ";
const PARIS: &str = "{\"city\": \"Paris\"}}\n";
/// Llama 3's, cut the same way.
const LLAMA_OPEN: &str = "{\"name\": \"";
const LLAMA_NAMED: &str = "get_weather\", \"parameters\": ";
const LLAMA_ARGS: &str = "{\"city\": \"Paris\"}}";
const SUNNY: &str = "It is sunny in Paris.";

/// Writes each model into its own directory under `root`, starts a neuron
/// that may read there and loads them all.
async fn neuron_with(root: &std::path::Path, models: &[(&str, ChainModel<'_>)]) -> Neuron {
    for (name, model) in models {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write_model(&dir, model);
    }
    let n = Neuron::start(&["--model-root", root.to_str().unwrap()]);
    for (name, _) in models {
        n.load(name, root.join(name).to_str().unwrap()).await;
    }
    n
}

fn llama(chains: &'static [(&'static str, &'static [&'static str])]) -> ChainModel<'static> {
    ChainModel {
        template: LLAMA3,
        specials: &LLAMA3_SPECIALS,
        markers: &[],
        bos: Some("<|begin_of_text|>"),
        eos: "<|eot_id|>",
        chains,
        weight: SHARP,
    }
}

/// Mistral v3's, or with `[ARGS]` v11's vocabulary (calls as
/// `name[ARGS]{…}`).
fn mistral(
    args: bool,
    chains: &'static [(&'static str, &'static [&'static str])],
) -> ChainModel<'static> {
    const V11: [&str; 10] = [
        "<s>",
        "</s>",
        "[INST]",
        "[/INST]",
        "[TOOL_CALLS]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
        "[ARGS]",
    ];
    ChainModel {
        template: MISTRAL,
        specials: if args { &V11 } else { &MISTRAL_SPECIALS },
        markers: &[],
        bos: Some("<s>"),
        eos: "</s>",
        chains,
        weight: SHARP,
    }
}

/// The message and finish reason of a non-streamed answer, and the same
/// assembled from the stream: they must agree.
async fn both_ways(n: &Neuron, body: Value) -> (Value, String) {
    let (status, whole) = n.chat(body.clone()).await;
    assert_eq!(status, 200, "{whole}");
    let message = whole["choices"][0]["message"].clone();
    let finish = whole["choices"][0]["finish_reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let chunks = n.chat_stream(body).await;
    let (mut content, mut reasoning, mut names, mut args) = (
        String::new(),
        String::new(),
        Vec::new(),
        Vec::<String>::new(),
    );
    let mut streamed_finish = String::new();
    for c in &chunks {
        let delta = &c["choices"][0]["delta"];
        content.push_str(delta["content"].as_str().unwrap_or(""));
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if let Some(name) = call["function"]["name"].as_str() {
                assert_eq!(i, names.len(), "calls come in order: {chunks:?}");
                names.push(name.to_string());
                args.push(String::new());
            }
            args[i].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            streamed_finish = f.to_string();
        }
    }
    assert_eq!(streamed_finish, finish, "{chunks:?}");
    assert_eq!(
        content,
        message["content"].as_str().unwrap_or(""),
        "{chunks:?}"
    );
    assert_eq!(
        reasoning,
        message["reasoning_content"].as_str().unwrap_or(""),
        "{chunks:?}"
    );
    let calls: Vec<(String, Value)> = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let args = c["function"]["arguments"].as_str().unwrap();
            (
                c["function"]["name"].as_str().unwrap().to_string(),
                serde_json::from_str(args).unwrap(),
            )
        })
        .collect();
    let streamed: Vec<(String, Value)> = names
        .into_iter()
        .zip(args.iter().map(|a| serde_json::from_str(a).unwrap()))
        .collect();
    assert_eq!(streamed, calls, "{chunks:?}");
    (message, finish)
}

/// The calls of a message: `(name, arguments)`.
fn calls_of(message: &Value) -> Vec<(String, Value)> {
    message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["function"]["name"].as_str().unwrap().to_string(),
                serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

fn paris() -> Vec<(String, Value)> {
    vec![("get_weather".to_string(), json!({"city": "Paris"}))]
}

#[tokio::test]
async fn llama3_and_mistral_tool_calls() {
    let root = tempfile::tempdir().unwrap();
    let n = neuron_with(
        root.path(),
        &[
            (
                "llama",
                llama(&[(
                    "\n",
                    &[
                        "<|python_tag|>",
                        "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
                    ],
                )]),
            ),
            (
                "llama-bare",
                llama(&[("\n", &[LLAMA_OPEN, LLAMA_NAMED, LLAMA_ARGS])]),
            ),
            (
                "mistral",
                mistral(
                    false,
                    &[
                        (
                            "[/INST]",
                            &[
                                "[TOOL_CALLS]",
                                " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
                            ],
                        ),
                        ("[/TOOL_RESULTS]", &[SUNNY]),
                    ],
                ),
            ),
            (
                "mistral-args",
                mistral(
                    true,
                    &[(
                        "[/INST]",
                        &[
                            "Let me check.",
                            "[TOOL_CALLS]",
                            "get_weather",
                            "[ARGS]",
                            "{\"city\": \"Paris\"}",
                        ],
                    )],
                ),
            ),
        ],
    )
    .await;
    let tools = json!({"tools": weather_tool()});
    for model in ["llama", "llama-bare", "mistral"] {
        let (message, finish) = both_ways(&n, ask(model, tools.clone())).await;
        assert_eq!(finish, "tool_calls", "{model}: {message}");
        assert_eq!(message["content"], Value::Null, "{model}: {message}");
        assert_eq!(calls_of(&message), paris(), "{model}: {message}");
    }
    let (message, finish) = both_ways(&n, ask("mistral-args", tools.clone())).await;
    assert_eq!(finish, "tool_calls", "{message}");
    assert_eq!(message["content"], "Let me check.", "{message}");
    assert_eq!(calls_of(&message), paris(), "{message}");

    // Without tools the same output is text; the special markers are kept.
    let (_, body) = n.chat(ask("mistral-args", json!({}))).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Let me check.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}",
        "{body}"
    );
    let (_, body) = n.chat(ask("llama", json!({}))).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
        "{body}"
    );

    // The tool's result, next turn: Mistral's template takes only
    // nine-character call ids, so the neuron gives it such ids (the same
    // for the call and its result); its prompt then ends with the result,
    // and the model answers from there.
    let (_, first) = n.chat(ask("mistral", tools.clone())).await;
    let call = first["choices"][0]["message"]["tool_calls"][0].clone();
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.len() > 9, "{first}");
    let mut second = ask("mistral", tools.clone());
    second["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call]}),
        json!({"role": "tool", "tool_call_id": id, "content": "Sunny, 22 C"}),
    ]);
    let (message, finish) = both_ways(&n, second.clone()).await;
    assert_eq!(finish, "stop", "{message}");
    assert_eq!(message["content"], SUNNY, "{message}");
    // Ids of any shape are mapped, a short one too.
    second["messages"][2]["tool_call_id"] = json!("c");
    second["messages"][1]["tool_calls"][0]["id"] = json!("c");
    let (s, body) = n.chat(second).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], SUNNY, "{body}");
}

#[tokio::test]
async fn tool_choice_and_parallel_tool_calls() {
    let root = tempfile::tempdir().unwrap();
    let chatty: &[(&str, &[&str])] = &[(
        "\n",
        &[
            "Let me check.",
            "<tool_call>",
            HERMES_HEAD,
            PARIS,
            "</tool_call>",
        ],
    )];
    let two: &[(&str, &[&str])] = &[(
        "\n",
        &[
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            "\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>",
        ],
    )];
    let plain: &[(&str, &[&str])] = &[("\n", &["Hello."])];
    let n = neuron_with(
        root.path(),
        &[
            ("chatty", chatty_model(chatty)),
            ("two", chatty_model(two)),
            (
                "plain",
                ChainModel {
                    markers: &[],
                    ..ChainModel::chatml(CHATML, plain)
                },
            ),
            (
                "llama-bare",
                llama(&[("\n", &[LLAMA_OPEN, LLAMA_NAMED, LLAMA_ARGS])]),
            ),
            (
                "mistral-args",
                mistral(
                    true,
                    &[(
                        "[/INST]",
                        &[
                            "Let me check.",
                            "[TOOL_CALLS]",
                            "get_weather",
                            "[ARGS]",
                            "{\"city\": \"Paris\"}",
                        ],
                    )],
                ),
            ),
        ],
    )
    .await;
    let with = |choice: Value| json!({"tools": weather_tool(), "tool_choice": choice});
    let named = json!({"type": "function", "function": {"name": "get_weather"}});

    // auto: the model's own answer, text and call.
    let (message, finish) = both_ways(&n, ask("chatty", with(json!("auto")))).await;
    assert_eq!(
        (message["content"].as_str(), finish.as_str()),
        (Some("Let me check."), "tool_calls")
    );
    assert_eq!(calls_of(&message), paris());
    // required and a named function: the prompt ends with the call's start,
    // so the answer is the call, in every syntax.
    for model in ["chatty", "llama-bare", "mistral-args"] {
        for choice in [json!("required"), named.clone()] {
            let (message, finish) = both_ways(&n, ask(model, with(choice.clone()))).await;
            assert_eq!(finish, "tool_calls", "{model} {choice}: {message}");
            assert_eq!(
                message["content"],
                Value::Null,
                "{model} {choice}: {message}"
            );
            assert_eq!(calls_of(&message), paris(), "{model} {choice}: {message}");
        }
    }
    // A forced call's start is prompt, not answer.
    let (_, free) = n.chat(ask("chatty", with(json!("auto")))).await;
    let (_, forced) = n.chat(ask("chatty", with(json!("required")))).await;
    assert_eq!(
        forced["usage"]["prompt_tokens"].as_u64().unwrap(),
        free["usage"]["prompt_tokens"].as_u64().unwrap() + 1,
        "<tool_call> written after the prompt: {forced}"
    );
    assert_eq!(forced["usage"]["completion_tokens"], 3, "{forced}");

    // parallel_tool_calls: false ends the answer after the first call.
    let (message, finish) = both_ways(&n, ask("two", with(json!("auto")))).await;
    assert_eq!(
        (calls_of(&message).len(), finish.as_str()),
        (2, "tool_calls")
    );
    let mut one = ask("two", with(json!("auto")));
    one["parallel_tool_calls"] = json!(false);
    let (message, finish) = both_ways(&n, one.clone()).await;
    assert_eq!(calls_of(&message), paris(), "{message}");
    assert_eq!(finish, "tool_calls");
    let (_, body) = n.chat(one).await;
    assert_eq!(
        body["usage"]["completion_tokens"], 1,
        "stopped after the call: {body}"
    );

    // What cannot be done is a 400 saying why.
    for (model, extra, says) in [
        (
            "chatty",
            with(json!({"type": "function", "function": {"name": "get_time"}})),
            "`get_time` is not among `tools` (get_weather)",
        ),
        ("chatty", json!({"tool_choice": "required"}), "offers none"),
        ("chatty", with(json!("sometimes")), "field `tool_choice`"),
        (
            "plain",
            with(json!("required")),
            "writes tool calls in no syntax cortex reads",
        ),
    ] {
        let (s, body) = n.chat(ask(model, extra.clone())).await;
        assert_eq!(s, 400, "{extra}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{extra}: {message}");
    }
    // auto on a model without a tool syntax: its text, as before.
    let (s, body) = n.chat(ask("plain", with(json!("auto")))).await;
    assert_eq!(
        (s, &body["choices"][0]["message"]["content"]),
        (200, &json!("Hello."))
    );
}

fn chatty_model<'a>(chains: &'a [(&'a str, &'a [&'a str])]) -> ChainModel<'a> {
    ChainModel::chatml(HERMES, chains)
}

#[tokio::test]
async fn reasoning_budgets_efforts_and_history() {
    let root = tempfile::tempdir().unwrap();
    let steps: &[(&str, &[&str])] = &[(
        "\n",
        &[
            "<think>",
            "\nStep one.",
            " Step two.",
            " Step three.\n",
            "</think>",
            "\n\nDone.",
        ],
    )];
    let history: &[(&str, &[&str])] = &[("\n", &["Fine."])];
    let n = neuron_with(
        root.path(),
        &[
            ("steps", ChainModel::chatml(QWEN3, steps)),
            ("history", ChainModel::chatml(QWEN3_HISTORY, history)),
        ],
    )
    .await;

    // Unbounded, the whole thought.
    let (message, _) = both_ways(&n, ask("steps", json!({}))).await;
    assert_eq!(
        message["reasoning_content"],
        "Step one. Step two. Step three."
    );
    assert_eq!(message["content"], "Done.");
    // A budget of one token: the thought is closed after it, the answer
    // follows.
    let (message, finish) = both_ways(&n, ask("steps", json!({"thinking_budget": 1}))).await;
    assert_eq!(message["reasoning_content"], "Step one.", "{message}");
    assert_eq!(
        (message["content"].as_str(), finish.as_str()),
        (Some("Done."), "stop")
    );
    let (_, body) = n.chat(ask("steps", json!({"thinking_budget": 1}))).await;
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"], 1,
        "{body}"
    );
    // <think>, one step, the forced </think>, the answer.
    assert_eq!(body["usage"]["completion_tokens"], 4, "{body}");
    // Effort none switches Qwen3's thinking off (an empty thought in the
    // prompt) and closes any thought at once; low leaves this short one be.
    let (message, _) = both_ways(&n, ask("steps", json!({"reasoning_effort": "none"}))).await;
    assert_eq!(message.get("reasoning_content"), None, "{message}");
    assert_eq!(message["content"], "Done.");
    let (message, _) = both_ways(&n, ask("steps", json!({"reasoning_effort": "low"}))).await;
    assert_eq!(
        message["reasoning_content"],
        "Step one. Step two. Step three."
    );
    let (s, body) = n
        .chat(ask("steps", json!({"reasoning_effort": "max"})))
        .await;
    assert_eq!(s, 400, "{body}");

    // History: a past turn's reasoning reaches the template apart from its
    // content; Qwen3's keeps it within the current tool loop only.
    let n = &n;
    let count = |messages: Value| {
        let body = json!({"model": "history", "messages": messages, "tools": weather_tool()});
        async move {
            let (s, v) = n.post("/v1/chat/count_tokens", body).await;
            assert_eq!(s, 200, "{v}");
            v["prompt_tokens"].as_u64().unwrap()
        }
    };
    let thought = "Call the tool.";
    let call = json!([{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]);
    let in_loop = |reasoning: Option<&str>| {
        json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": call, "reasoning_content": reasoning},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        ])
    };
    let kept = count(in_loop(Some(thought))).await;
    let without = count(in_loop(None)).await;
    // `<think>` "\n" thought "\n" `</think>` "\n\n": markers one token each,
    // every other byte one token; the content is not touched.
    assert_eq!(kept, without + 1 + 1 + thought.len() as u64 + 1 + 1 + 2);
    let earlier = |reasoning: Option<&str>| {
        json!([
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!", "reasoning_content": reasoning},
            {"role": "user", "content": "Weather in Paris?"},
        ])
    };
    assert_eq!(
        count(earlier(Some(thought))).await,
        count(earlier(None)).await
    );
}

#[tokio::test]
async fn sampling_defaults_come_from_generation_config() {
    let root = tempfile::tempdir().unwrap();
    let pieces: &[(&str, &[&str])] = &[("\n", &["Hello", " there", "!"])];
    // Nearly flat: sampled, the answer is random; greedy, the chain.
    let flat = ChainModel {
        weight: 0.1,
        ..ChainModel::chatml(CHATML, pieces)
    };
    let models = [("published", flat), ("bare", flat)];
    for (name, model) in &models {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write_model(&dir, model);
    }
    // Qwen3's own, but with top_k 1: sampling with these defaults is
    // greedy, so the model's answer is its chain.
    std::fs::write(
        root.path().join("published/generation_config.json"),
        json!({"do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 1}).to_string(),
    )
    .unwrap();
    let n = Neuron::start(&["--model-root", root.path().to_str().unwrap()]);
    for (name, _) in &models {
        n.load(name, root.path().join(name).to_str().unwrap()).await;
    }
    let (_, listed) = n.get("/models").await;
    let sampling = |id: &str| {
        listed["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()["sampling"]
            .clone()
    };
    assert_eq!(
        sampling("published"),
        json!({"temperature": 0.6, "top_p": 0.95, "top_k": 1})
    );
    assert_eq!(sampling("bare"), json!({"temperature": 1.0}));

    let n = &n;
    let answer = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "max_tokens": 3, "seed": 7,
            "messages": [{"role": "user", "content": "Hi"}]});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        async move {
            let (s, v) = n.chat(body).await;
            assert_eq!(s, 200, "{v}");
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // The model's defaults apply to what the request leaves out…
    assert_eq!(answer("published", json!({})).await, "Hello there!");
    // …where the neuron's (temperature 1, no top-k) sample at random…
    assert_ne!(answer("bare", json!({})).await, "Hello there!");
    // …and a request's own values win over the model's.
    assert_ne!(
        answer("published", json!({"top_k": 50})).await,
        "Hello there!"
    );
    assert_eq!(answer("bare", json!({"top_k": 1})).await, "Hello there!");
}
