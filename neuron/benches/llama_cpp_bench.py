#!/usr/bin/env python3
"""Reference speed measurement of llama.cpp (via llama-cpp-python) for a GGUF model.

This is a benchmark tool, not a test dependency: nothing in the Rust build or the
test suite imports or runs it. It gives a llama.cpp baseline on the same machine
and the same GGUF file to compare the neuron runtime against.

Installing the interpreter (once per machine, OUTSIDE the repo)
---------------------------------------------------------------
The venv lives outside the repository; llama-cpp-python is built from the PyPI
sdist with native CPU flags (AVX-512 etc. on Zen 4). It takes a while on 2 cores.
cmake and ninja come from PyPI through pip's build isolation; only gcc/g++ are
needed on the machine.

    python3 -m venv ~/.venvs/llama-cpp
    ~/.venvs/llama-cpp/bin/pip install --upgrade pip
    CMAKE_ARGS="-DGGML_NATIVE=ON" nice -n 10 \\
        ~/.venvs/llama-cpp/bin/pip install llama-cpp-python==0.3.36

Running it by hand
------------------
    ~/.venvs/llama-cpp/bin/python neuron/benches/llama_cpp_bench.py \\
        --model ~/.cache/cortex/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --threads 2 --prompt-tokens 512 --decode-tokens 128 --runs 3

How `neuron bench` calls it
---------------------------
    neuron bench --llama-cpp-python ~/.venvs/llama-cpp/bin/python

runs `<python> neuron/benches/llama_cpp_bench.py --model PATH --threads N
--prompt-tokens P --decode-tokens D --runs R` and parses stdout.

Output contract
---------------
On success the script exits 0 and prints exactly ONE JSON object (one line) on
stdout; everything else (llama.cpp logs, warnings) goes to stderr. On failure it
exits non-zero and prints an error on stderr (stdout stays empty).

Contract fields (stable; `neuron bench` may rely on them):

    llama_cpp_version     str    llama-cpp-python package version, e.g. "0.3.36"
    threads               int    n_threads and n_threads_batch used
    prompt_tokens         int    actual prefill prompt length in tokens (== --prompt-tokens)
    prefill_tok_s         float  prompt_tokens / wall time of llm.eval(prompt) from an
                                 empty KV cache (after llm.reset()); median of --runs
    decode_tok_s          float  greedy decode rate right after that prefill:
                                 decode_tokens / wall time of the loop
                                 (sample argmax -> eval 1 token) x decode_tokens;
                                 the prefill is excluded; median of --runs
    first_turn_ttft_ms    float  chat turn 1 (one user message of ~500 tokens, rendered
                                 with the GGUF chat template) from an empty KV cache:
                                 wall time from create_chat_completion(stream=True) to
                                 its first streamed chunk (= prompt processing + first
                                 token); median of --runs
    followup_ttft_ms      float  chat turn 2 = turn 1 + turn 1's greedy answer (32 tokens
                                 max) + a short new user message, on the same Llama
                                 object, so llama-cpp-python's own prefix reuse (it
                                 keeps the KV cache and re-evaluates only the suffix
                                 that differs from the previous call) applies; same
                                 timing as above; median of --runs
    peak_rss_mb           float  peak resident set size of this process (ru_maxrss), MiB
    greedy_france         str    greedy completion (max 32 tokens, temperature 0, top_k 1,
                                 repeat_penalty 1.0) of the chat
                                 [{"role":"user","content":"What is the capital of France?"}]
                                 rendered with the model's own chat template from the GGUF
    greedy_france_system  str    the same with {"role":"system","content":"You are a
                                 helpful assistant."} as the first message

Informational fields (may change): model, n_ctx, n_batch, n_ubatch, runs,
decode_tokens, chat_format, system_info, *_runs lists with every run's value,
prefill_tok_s_llama_perf / decode_tok_s_llama_perf (the same phases timed by
llama.cpp's own llama_perf_context counters, i.e. without Python overhead),
first_turn_prompt_tokens, first_turn_answer, first_turn_answer_tokens,
followup_prompt_tokens, followup_tokens_evaluated (prompt tokens actually
decoded in turn 2, i.e. not served from the reused prefix).

Method notes
------------
* Prompts are deterministic: a fixed English paragraph is repeated, tokenized with
  the model's tokenizer and trimmed to exactly N tokens (including BOS if the
  model adds one).
* One untimed warm-up (a full prefill plus a few decode steps, and one chat turn)
  runs first so page-faulting the mmapped weights is not timed.
* n_ctx 2048 (or more if needed), n_batch = n_ubatch = 512, verbose=False.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time

PARAGRAPH = (
    "The old lighthouse stood at the edge of the cliff, where the land gave way to "
    "the restless grey sea. For more than a century its keepers had climbed the "
    "narrow spiral stairs each evening to light the lamp, trim the wick and polish "
    "the great lens until it shone. Ships passing in the night relied on its steady "
    "beam to find their way around the dangerous rocks below. In the village at the "
    "foot of the hill, fishermen mended their nets, children played along the harbour "
    "wall, and the baker opened his shop before dawn so that the smell of fresh bread "
    "drifted through the quiet streets. Visitors who came in summer often asked about "
    "the history of the place, and the older residents were always happy to tell "
    "stories about storms, shipwrecks and brave rescues. "
)

FOLLOWUP_MESSAGE = "Thanks. Now give it a short title."
FRANCE = "What is the capital of France?"
SYSTEM = "You are a helpful assistant."


def log(msg: str) -> None:
    print(f"[llama_cpp_bench] {msg}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="path to the GGUF model")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--chat-prompt-tokens", type=int, default=500,
                   help="approximate length of the first chat turn (default 500)")
    p.add_argument("--chat-answer-tokens", type=int, default=32,
                   help="greedy answer length of the first chat turn (default 32)")
    return p.parse_args()


def tokens_of_length(llm, n: int) -> list[int]:
    """Deterministic prompt of exactly n tokens (BOS included if the model adds one)."""
    text = PARAGRAPH
    while True:
        toks = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(toks) >= n:
            return list(toks[:n])
        text += PARAGRAPH


def text_of_about(llm, n: int) -> str:
    """Deterministic plain text of about n tokens (cut on a token boundary)."""
    text = PARAGRAPH
    while len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) < n:
        text += PARAGRAPH
    toks = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:n]
    return llm.detokenize(toks).decode("utf-8", errors="ignore").strip()


def perf(llama_cpp, llm):
    d = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return d.t_p_eval_ms, d.t_eval_ms, d.n_p_eval, d.n_eval


def main() -> int:
    args = parse_args()
    model_path = os.path.expanduser(args.model)
    if not os.path.isfile(model_path):
        log(f"model not found: {model_path}")
        return 2

    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp import llama_chat_format

    n_ctx = max(2048, args.prompt_tokens + args.decode_tokens + 16,
                args.chat_prompt_tokens + 2 * args.chat_answer_tokens + 128)
    llm = Llama(
        model_path=model_path,
        n_ctx=n_ctx,
        n_batch=512,
        n_ubatch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        seed=0,
        verbose=False,
    )
    # Always use the chat template stored in the GGUF (not a built-in guess).
    if "chat_template.default" in llm._chat_handlers:
        llm.chat_format = "chat_template.default"
    else:
        log(f"GGUF has no chat template; llama-cpp-python uses {llm.chat_format!r}")

    # Greedy sampler for the raw decode loop (argmax in C, as llama.cpp's own).
    greedy = llama_cpp.llama_sampler_init_greedy()

    prompt = tokens_of_length(llm, args.prompt_tokens)

    def prefill_decode(n_decode: int):
        llm.reset()  # n_tokens = 0; eval() then drops the whole KV cache
        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        for _ in range(n_decode):
            tok = llama_cpp.llama_sampler_sample(greedy, llm._ctx.ctx, -1)
            llm.eval([tok])
        t2 = time.perf_counter()
        tp, te, np_, ne = perf(llama_cpp, llm)
        return t1 - t0, t2 - t1, tp, te, np_, ne

    # Warm-up (untimed).
    prefill_decode(min(8, args.decode_tokens))

    prefill_runs, decode_runs, prefill_perf, decode_perf = [], [], [], []
    for i in range(args.runs):
        dt_p, dt_d, tp, te, np_, ne = prefill_decode(args.decode_tokens)
        prefill_runs.append(len(prompt) / dt_p)
        decode_runs.append(args.decode_tokens / dt_d)
        if tp > 0 and np_ > 0:
            prefill_perf.append(np_ / (tp / 1000.0))
        if te > 0 and ne > 0:
            decode_perf.append(ne / (te / 1000.0))
        log(f"run {i}: prefill {prefill_runs[-1]:.1f} tok/s, decode {decode_runs[-1]:.1f} tok/s")

    # ---- chat: cold first turn, then a follow-up with prefix reuse ----
    eos_id = llm.token_eos()
    bos_id = llm.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=llm.metadata.get("tokenizer.chat_template", ""),
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )

    def chat_tokens(messages) -> int:
        r = formatter(messages=messages)
        return len(llm.tokenize(r.prompt.encode("utf-8"), add_bos=not r.added_special,
                                special=True))

    # Size the user text so the rendered first turn is ~chat_prompt_tokens.
    overhead = chat_tokens([{"role": "user", "content": ""}])
    question = "\n\nSummarize the text above in one sentence."
    q_len = len(llm.tokenize(question.encode("utf-8"), add_bos=False, special=False))
    body = text_of_about(llm, max(16, args.chat_prompt_tokens - overhead - q_len))
    turn1 = [{"role": "user", "content": body + question}]

    gen_kwargs = dict(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0,
                      repeat_penalty=1.0, seed=0)

    def timed_chat(messages, max_tokens):
        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        t0 = time.perf_counter()
        ttft = None
        parts = []
        for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                stream=True, **gen_kwargs):
            if ttft is None:
                ttft = time.perf_counter() - t0
            delta = chunk["choices"][0].get("delta", {})
            if delta.get("content"):
                parts.append(delta["content"])
        _, _, np_, ne = perf(llama_cpp, llm)
        return ttft * 1000.0, "".join(parts), np_, ne

    def conversation():
        llm.reset()  # cold: nothing reusable for turn 1
        ttft1, answer, np1, ne1 = timed_chat(turn1, args.chat_answer_tokens)
        turn2 = turn1 + [{"role": "assistant", "content": answer},
                         {"role": "user", "content": FOLLOWUP_MESSAGE}]
        ttft2, _, np2, ne2 = timed_chat(turn2, args.chat_answer_tokens)
        return ttft1, ttft2, answer, turn2, np1, np2

    conversation()  # warm-up (untimed)
    first_runs, follow_runs = [], []
    answer, turn2, evaluated2 = "", turn1, 0
    for i in range(args.runs):
        ttft1, ttft2, answer, turn2, _, evaluated2 = conversation()
        first_runs.append(ttft1)
        follow_runs.append(ttft2)
        log(f"run {i}: first-turn TTFT {ttft1:.1f} ms, follow-up TTFT {ttft2:.1f} ms")

    # ---- greedy answers with the GGUF chat template ----
    def greedy_answer(messages):
        llm.reset()
        r = llm.create_chat_completion(messages=messages, max_tokens=32, **gen_kwargs)
        return r["choices"][0]["message"]["content"]

    france = greedy_answer([{"role": "user", "content": FRANCE}])
    france_sys = greedy_answer([{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": FRANCE}])

    llama_cpp.llama_sampler_free(greedy)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    med = statistics.median
    out = {
        "llama_cpp_version": llama_cpp.__version__,
        "threads": args.threads,
        "prompt_tokens": len(prompt),
        "prefill_tok_s": round(med(prefill_runs), 2),
        "decode_tok_s": round(med(decode_runs), 2),
        "first_turn_ttft_ms": round(med(first_runs), 2),
        "followup_ttft_ms": round(med(follow_runs), 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "greedy_france": france,
        "greedy_france_system": france_sys,
        # informational
        "model": model_path,
        "n_ctx": n_ctx,
        "n_batch": 512,
        "n_ubatch": 512,
        "runs": args.runs,
        "decode_tokens": args.decode_tokens,
        "chat_format": llm.chat_format,
        "prefill_tok_s_runs": [round(x, 2) for x in prefill_runs],
        "decode_tok_s_runs": [round(x, 2) for x in decode_runs],
        "prefill_tok_s_llama_perf": round(med(prefill_perf), 2) if prefill_perf else None,
        "decode_tok_s_llama_perf": round(med(decode_perf), 2) if decode_perf else None,
        "first_turn_ttft_ms_runs": [round(x, 2) for x in first_runs],
        "followup_ttft_ms_runs": [round(x, 2) for x in follow_runs],
        "first_turn_prompt_tokens": chat_tokens(turn1),
        "first_turn_answer": answer,
        "first_turn_answer_tokens": len(llm.tokenize(answer.encode("utf-8"),
                                                     add_bos=False, special=False)),
        "followup_prompt_tokens": chat_tokens(turn2),
        "followup_tokens_evaluated": evaluated2,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
    }
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
