"""Conformance of cortex's client API with the official Python SDKs.

Run by gateway/tests/sdk.rs against a real gateway + neuron on loopback:
    CORTEX_URL=http://127.0.0.1:PORT CORTEX_KEY=... CORTEX_MODEL=smol python3 conformance.py

The model is the embedded 135M one: cases assert shapes, types, stop
reasons and token counts, not wording (except "Paris" for a greedy answer
with a system prompt). Every case runs; failures are listed at the end and
the exit status is 1 if any failed.
"""

import os
import sys
import traceback

import anthropic
import openai

URL = os.environ["CORTEX_URL"]
KEY = os.environ["CORTEX_KEY"]
MODEL = os.environ.get("CORTEX_MODEL", "smol")
SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France?"
COUNT = "Count: one, two, three"
# This anthropic SDK has no `temperature` argument; the API still takes one.
GREEDY = {"temperature": 0.0}

claude = anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0, timeout=120)
oai = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=120)

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(exc_type, fn):
    try:
        fn()
    except exc_type as e:
        return e
    raise AssertionError(f"expected {exc_type.__name__}")


def ask(max_tokens=24, **kw):
    return claude.messages.create(
        model=MODEL,
        max_tokens=max_tokens,
        extra_body=GREEDY,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
        **kw,
    )


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


# ---------------------------------------------------------------- anthropic


@case
def anthropic_text_with_system_prompt():
    m = ask()
    expect(isinstance(m, anthropic.types.Message), type(m))
    expect(m.type == "message" and m.role == "assistant", m)
    expect(m.id.startswith("msg_"), m.id)
    expect(m.stop_reason in ("end_turn", "max_tokens"), m.stop_reason)
    expect(m.content and m.content[0].type == "text", m.content)
    expect("Paris" in text_of(m), text_of(m))
    expect(isinstance(m.usage.input_tokens, int) and m.usage.input_tokens > 0, m.usage)
    expect(1 <= m.usage.output_tokens <= 24, m.usage)


@case
def anthropic_stream_helper_matches_non_streaming():
    whole = ask()
    with claude.messages.stream(
        model=MODEL,
        max_tokens=24,
        extra_body=GREEDY,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expect(text == text_of(whole), (text, text_of(whole)))
    expect(text_of(final) == text, final)
    expect(final.stop_reason == whole.stop_reason, final.stop_reason)
    expect(final.usage.output_tokens == whole.usage.output_tokens, final.usage)
    expect(final.usage.input_tokens == whole.usage.input_tokens, final.usage)


@case
def anthropic_raw_stream_event_order():
    events = list(ask(stream=True))
    kinds = [e.type for e in events if e.type != "ping"]
    expect(kinds[0] == "message_start", kinds)
    expect(kinds[1] == "content_block_start", kinds)
    expect(kinds[-2:] == ["message_delta", "message_stop"], kinds)
    expect("content_block_delta" in kinds and "content_block_stop" in kinds, kinds)
    delta = [e for e in events if e.type == "message_delta"][0]
    expect(delta.delta.stop_reason in ("end_turn", "max_tokens"), delta)


@case
def anthropic_max_tokens_cut_off():
    m = ask(max_tokens=2)
    expect(m.stop_reason == "max_tokens", m.stop_reason)
    expect(m.usage.output_tokens == 2, m.usage)
    with claude.messages.stream(
        model=MODEL, max_tokens=2, messages=[{"role": "user", "content": COUNT}]
    ) as stream:
        final = stream.get_final_message()
    expect(final.stop_reason == "max_tokens", final.stop_reason)


@case
def anthropic_stop_sequences():
    whole = text_of(ask())
    words = whole.split()
    stop = next((w for w in words[1:] if whole.find(w) > 0), None)
    expect(stop is not None, whole)
    cut = ask(stop_sequences=[stop])
    expect(text_of(cut) == whole[: whole.find(stop)], (stop, text_of(cut), whole))
    expect(cut.stop_reason == "stop_sequence", cut.stop_reason)
    expect(cut.stop_sequence == stop, (cut.stop_sequence, stop))


@case
def anthropic_count_tokens():
    with_system = claude.messages.count_tokens(
        model=MODEL, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    )
    expect(isinstance(with_system.input_tokens, int), with_system)
    # As on Anthropic's API, prompt-cache reads are counted apart from
    # input_tokens; together they are the whole prompt.
    usage = ask(max_tokens=1).usage
    read = usage.cache_read_input_tokens or 0
    expect(with_system.input_tokens == usage.input_tokens + read, (with_system, usage))
    without = claude.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}]
    )
    expect(without.input_tokens != with_system.input_tokens, (without, with_system))


@case
def anthropic_errors():
    e = raises(
        anthropic.NotFoundError,
        lambda: claude.messages.create(
            model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        ),
    )
    expect(e.status_code == 404, e)
    expect(e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error", e.body)

    def stream_unknown():
        with claude.messages.stream(
            model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            s.get_final_message()

    raises(anthropic.NotFoundError, stream_unknown)
    e = raises(
        anthropic.BadRequestError,
        lambda: claude.messages.create(
            model=MODEL, max_tokens=4, messages=[{"role": "robot", "content": "hi"}]
        ),
    )
    expect(e.body["error"]["type"] == "invalid_request_error", e.body)
    raises(
        anthropic.BadRequestError,
        lambda: claude.messages.create(model=MODEL, max_tokens=4, messages=[]),
    )
    raises(
        anthropic.NotFoundError,
        lambda: claude.messages.count_tokens(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        ),
    )
    bad_key = anthropic.Anthropic(base_url=URL, api_key="wrong", max_retries=0)
    raises(
        anthropic.AuthenticationError,
        lambda: bad_key.messages.create(
            model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "hi"}]
        ),
    )


@case
def anthropic_tools_accepted():
    m = claude.messages.create(
        model=MODEL,
        max_tokens=24,
        tools=[
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    expect(m.stop_reason in ("end_turn", "max_tokens", "tool_use"), m.stop_reason)
    for b in m.content:
        expect(b.type in ("text", "tool_use"), b)
        if b.type == "tool_use":
            expect(isinstance(b.input, dict) and b.name, b)


# ------------------------------------------------------------------- openai


def chat(**kw):
    args = dict(
        model=MODEL,
        max_tokens=24,
        temperature=0.0,
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
        ],
    )
    args.update(kw)
    return oai.chat.completions.create(**args)


@case
def openai_chat_text_stream_and_cut_off():
    c = chat()
    text = c.choices[0].message.content
    expect("Paris" in text, text)
    expect(c.choices[0].finish_reason in ("stop", "length"), c)
    expect(c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0, c.usage)
    chunks = list(chat(stream=True, stream_options={"include_usage": True}))
    streamed = "".join(
        ch.choices[0].delta.content or "" for ch in chunks if ch.choices
    )
    expect(streamed == text, (streamed, text))
    expect(chunks[-1].usage.completion_tokens == c.usage.completion_tokens, chunks[-1])
    cut = chat(max_tokens=2)
    expect(cut.choices[0].finish_reason == "length", cut)
    expect(cut.usage.completion_tokens == 2, cut.usage)
    stop = next((w for w in text.split()[1:] if text.find(w) > 0), None)
    stopped = chat(stop=[stop])
    expect(stopped.choices[0].message.content == text[: text.find(stop)], (stop, stopped))
    expect(stopped.choices[0].finish_reason == "stop", stopped)


@case
def openai_responses():
    r = oai.responses.create(
        model=MODEL, instructions=SYSTEM, input=QUESTION, max_output_tokens=24, temperature=0.0
    )
    expect(r.object == "response" and r.id.startswith("resp_"), r)
    expect(r.status in ("completed", "incomplete"), r.status)
    expect("Paris" in r.output_text, r.output_text)
    expect(r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage)
    events = list(
        oai.responses.create(
            model=MODEL,
            instructions=SYSTEM,
            input=QUESTION,
            max_output_tokens=24,
            temperature=0.0,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    expect(kinds[:2] == ["response.created", "response.in_progress"], kinds)
    expect(kinds[-1] in ("response.completed", "response.incomplete"), kinds)
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    expect(streamed == r.output_text, (streamed, r.output_text))
    expect([e.sequence_number for e in events] == list(range(len(events))), kinds)
    with oai.responses.stream(
        model=MODEL, instructions=SYSTEM, input=QUESTION, max_output_tokens=24, temperature=0.0
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    expect(final.output_text == r.output_text, final)
    cut = oai.responses.create(model=MODEL, input=COUNT, max_output_tokens=2)
    expect(cut.status == "incomplete", cut.status)
    expect(cut.incomplete_details.reason == "max_output_tokens", cut.incomplete_details)


@case
def openai_completions():
    c = oai.completions.create(model=MODEL, prompt=COUNT, max_tokens=8, temperature=0.0)
    expect(c.object == "text_completion", c)
    text = c.choices[0].text
    expect(isinstance(text, str) and text, c)
    streamed = "".join(
        ch.choices[0].text
        for ch in oai.completions.create(
            model=MODEL, prompt=COUNT, max_tokens=8, temperature=0.0, stream=True
        )
        if ch.choices
    )
    expect(streamed == text, (streamed, text))
    cut = oai.completions.create(model=MODEL, prompt=COUNT, max_tokens=2)
    expect(cut.choices[0].finish_reason == "length", cut)
    expect(cut.usage.completion_tokens == 2, cut.usage)


@case
def openai_errors():
    for call in (
        lambda: chat(model="no-such-model"),
        lambda: oai.responses.create(model="no-such-model", input="hi"),
        lambda: oai.completions.create(model="no-such-model", prompt="hi"),
    ):
        e = raises(openai.NotFoundError, call)
        expect(e.status_code == 404 and e.code == "model_not_found", e)
    raises(openai.BadRequestError, lambda: chat(messages=[]))
    raises(openai.BadRequestError, lambda: oai.completions.create(model=MODEL, prompt=[1, 2]))
    bad_key = openai.OpenAI(base_url=URL + "/v1", api_key="wrong", max_retries=0)
    raises(
        openai.AuthenticationError,
        lambda: bad_key.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        ),
    )


@case
def openai_chat_tools_accepted():
    c = chat(
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                    },
                },
            }
        ],
    )
    expect(c.choices[0].message.role == "assistant", c)
    expect(c.choices[0].finish_reason in ("stop", "length", "tool_calls"), c)


# ------------------------------------------------- structured model output
# Models whose greedy output is fixed by their weights (the neuron's
# tests/support/chain.rs): TOOLS_MODEL writes a Hermes call to get_weather
# for Paris; THINK_MODEL thinks "The user says hello." in <think> tags, then
# answers "Hello there!"; CHATTY_MODEL says "Let me check." then calls;
# MISTRAL_MODEL calls get_weather in Mistral's [TOOL_CALLS] syntax and,
# given the tool's result (its prompt then ends with [/TOOL_RESULTS]),
# answers "It is sunny in Paris.".

TOOLS_MODEL = os.environ.get("CORTEX_TOOLS_MODEL", "tools")
THINK_MODEL = os.environ.get("CORTEX_THINK_MODEL", "think")
CHATTY_MODEL = os.environ.get("CORTEX_CHATTY_MODEL", "chatty")
MISTRAL_MODEL = os.environ.get("CORTEX_MISTRAL_MODEL", "mistral")
THOUGHT = "The user says hello."
ANSWER = "Hello there!"
SUNNY = "It is sunny in Paris."
QUESTION_WEATHER = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def extra(obj, name):
    """A field the SDK's types do not declare (kept by its models)."""
    return (obj.model_extra or {}).get(name, getattr(obj, name, None))


@case
def openai_chat_tool_calls():
    import json

    kw = dict(
        model=TOOLS_MODEL,
        temperature=0,
        max_tokens=16,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
    )
    c = oai.chat.completions.create(**kw)
    choice = c.choices[0]
    expect(choice.finish_reason == "tool_calls", choice)
    expect(choice.message.content is None, choice.message)
    call = choice.message.tool_calls[0]
    expect(call.type == "function" and call.id, call)
    expect(call.function.name == "get_weather", call)
    expect(json.loads(call.function.arguments) == {"city": "Paris"}, call)

    name, args, finish = None, "", None
    for chunk in oai.chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        expect("tool_call" not in (delta.content or ""), delta)
        for tc in delta.tool_calls or []:
            expect(tc.index == 0, tc)
            if tc.function and tc.function.name:
                name = tc.function.name
            if tc.function and tc.function.arguments:
                args += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    expect(name == "get_weather", name)
    expect(json.loads(args) == {"city": "Paris"}, args)
    expect(finish == "tool_calls", finish)


@case
def openai_chat_reasoning_content():
    kw = dict(
        model=THINK_MODEL,
        temperature=0,
        max_tokens=16,
        messages=[{"role": "user", "content": "Hello"}],
    )
    c = oai.chat.completions.create(**kw)
    message = c.choices[0].message
    expect(extra(message, "reasoning_content") == THOUGHT, message)
    expect(message.content == ANSWER, message)
    expect(c.usage.completion_tokens_details.reasoning_tokens == 1, c.usage)
    # No thinking: Qwen3's switch off, and any thought closed at once.
    quiet = oai.chat.completions.create(reasoning_effort="none", **kw).choices[0].message
    expect(extra(quiet, "reasoning_content") is None, quiet)
    expect(quiet.content == ANSWER, quiet)

    reasoning, content = "", ""
    for chunk in oai.chat.completions.create(stream=True, **kw):
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += extra(delta, "reasoning_content") or ""
            content += delta.content or ""
    expect(reasoning == THOUGHT, reasoning)
    expect(content == ANSWER, content)


@case
def anthropic_thinking_blocks():
    kw = dict(
        model=THINK_MODEL,
        max_tokens=16,
        extra_body=GREEDY,
        messages=[{"role": "user", "content": "Hello"}],
    )
    m = claude.messages.create(**kw)
    expect([b.type for b in m.content] == ["thinking", "text"], m.content)
    expect(m.content[0].thinking == THOUGHT, m.content[0])
    expect(m.content[1].text == ANSWER, m.content[1])
    with claude.messages.stream(**kw) as stream:
        final = stream.get_final_message()
    expect([b.type for b in final.content] == ["thinking", "text"], final.content)
    expect(final.content[0].thinking == THOUGHT, final.content[0])
    expect(final.content[1].text == ANSWER, final.content[1])


@case
def anthropic_tool_use_blocks():
    kw = dict(
        model=TOOLS_MODEL,
        max_tokens=16,
        extra_body=GREEDY,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
    )
    for m in [claude.messages.create(**kw)]:
        expect(m.stop_reason == "tool_use", m)
        expect([b.type for b in m.content] == ["tool_use"], m.content)
        expect(m.content[0].name == "get_weather", m.content[0])
        expect(m.content[0].input == {"city": "Paris"}, m.content[0])
    with claude.messages.stream(**kw) as stream:
        final = stream.get_final_message()
    expect(final.stop_reason == "tool_use", final)
    expect(final.content[0].input == {"city": "Paris"}, final.content)


@case
def openai_responses_reasoning_and_function_call():
    import json

    r = oai.responses.create(model=THINK_MODEL, input="Hello", temperature=0, max_output_tokens=16)
    expect([o.type for o in r.output] == ["reasoning", "message"], r.output)
    expect(r.output[0].content[0].text == THOUGHT, r.output[0])
    expect(r.output_text == ANSWER, r.output_text)
    expect(r.usage.output_tokens_details.reasoning_tokens == 1, r.usage)

    r = oai.responses.create(
        model=TOOLS_MODEL,
        input="What is the weather in Paris?",
        temperature=0,
        tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}],
    )
    expect([o.type for o in r.output] == ["function_call"], r.output)
    expect(r.output[0].name == "get_weather", r.output[0])
    expect(json.loads(r.output[0].arguments) == {"city": "Paris"}, r.output[0])


ANTHROPIC_WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@case
def openai_chat_tool_choice_required_and_named():
    import json

    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        c = oai.chat.completions.create(
            model=CHATTY_MODEL,
            temperature=0,
            max_tokens=16,
            messages=[QUESTION_WEATHER],
            tools=[WEATHER],
            tool_choice=choice,
        )
        message = c.choices[0].message
        expect(c.choices[0].finish_reason == "tool_calls", c)
        expect(message.content is None, message)
        expect(json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}, message)
    m = claude.messages.create(
        model=CHATTY_MODEL,
        max_tokens=16,
        extra_body=GREEDY,
        messages=[QUESTION_WEATHER],
        tools=[ANTHROPIC_WEATHER],
        tool_choice={"type": "any"},
    )
    expect([b.type for b in m.content] == ["tool_use"], m.content)


@case
def openai_chat_two_turn_tool_exchange():
    import json

    kw = dict(model=MISTRAL_MODEL, temperature=0, max_tokens=32, tools=[WEATHER])
    first = oai.chat.completions.create(messages=[QUESTION_WEATHER], **kw)
    choice = first.choices[0]
    expect(choice.finish_reason == "tool_calls", choice)
    call = choice.message.tool_calls[0]
    expect(call.function.name == "get_weather", call)
    expect(json.loads(call.function.arguments) == {"city": "Paris"}, call)
    # The SDK's own message goes back as it came, then the tool's result.
    turn = [
        QUESTION_WEATHER,
        choice.message,
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 22 C"},
    ]
    second = oai.chat.completions.create(messages=turn, **kw)
    expect(second.choices[0].finish_reason == "stop", second)
    expect(second.choices[0].message.content == SUNNY, second)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in oai.chat.completions.create(messages=turn, stream=True, **kw)
        if c.choices
    )
    expect(streamed == SUNNY, streamed)


@case
def anthropic_two_turn_tool_exchange():
    kw = dict(model=MISTRAL_MODEL, max_tokens=32, extra_body=GREEDY, tools=[ANTHROPIC_WEATHER])
    first = claude.messages.create(messages=[QUESTION_WEATHER], **kw)
    expect(first.stop_reason == "tool_use", first)
    use = next(b for b in first.content if b.type == "tool_use")
    expect(use.name == "get_weather" and use.input == {"city": "Paris"}, use)
    turn = [
        QUESTION_WEATHER,
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 22 C"}],
        },
    ]
    second = claude.messages.create(messages=turn, **kw)
    expect(second.stop_reason == "end_turn", second)
    expect(text_of(second) == SUNNY, second.content)
    with claude.messages.stream(messages=turn, **kw) as stream:
        final = stream.get_final_message()
    expect(text_of(final) == SUNNY, final.content)


@case
def openai_responses_two_turn_function_call():
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}]
    kw = dict(model=MISTRAL_MODEL, temperature=0, tools=tools)
    first = oai.responses.create(input=[QUESTION_WEATHER], **kw)
    call = first.output[0]
    expect(call.type == "function_call" and call.name == "get_weather", first.output)
    turn = [QUESTION_WEATHER, *first.output,
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}]
    second = oai.responses.create(input=turn, **kw)
    expect(second.output_text == SUNNY, second.output)


def main():
    failed = []
    for fn in CASES:
        try:
            fn()
            print(f"ok   {fn.__name__}", flush=True)
        except Exception:
            failed.append(fn.__name__)
            print(f"FAIL {fn.__name__}\n{traceback.format_exc()}", flush=True)
    print(
        f"sdk conformance: openai {openai.__version__}, anthropic {anthropic.__version__}: "
        f"{len(CASES) - len(failed)} passed, {len(failed)} failed {failed}",
        flush=True,
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
