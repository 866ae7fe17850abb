"""A 10-turn agent conversation with tools on the real dsv4-tiny (issue 13, must-show 2): each
turn re-sends the previous prompt, the assistant's answer (a tool call and its result on some
turns) and a new message; from turn 2 the prefix cache serves at least 95 % (the issue's bar;
the tests ask 99 %) of the previous turn's prompt + output tokens (snapshots at the end of
every prompt and output, and the answer as the template renders it back), and a turn served
from the cache answers token for token as the same request served cold. The same through
/v1/messages and /v1/responses."""
import json, os, time

import pytest
from openai import OpenAI

from conftest import Server

TOOLS = [
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a file of the project.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "run_tests", "description": "Run the test suite.",
        "parameters": {"type": "object", "properties": {"filter": {"type": "string"}, "verbose": {"type": "boolean"}}}}},
]
TURNS = 10
MAX_TOKENS = 40
COLD_TURN = 6  # the turn also served cold (on a fresh server) and compared token for token
SYSTEM = "You are a coding agent working in a Swift repository. " + " ".join(f"rule{i}: keep step {i} small." for i in range(40))


def client(s):
    return OpenAI(base_url=s.base + "/v1", api_key="x", max_retries=0, timeout=600)


def ask(s, messages, turn):
    """One greedy streamed turn: (assistant message dict, usage, seconds to the first token,
    logprob token list). Odd turns must call a tool."""
    kwargs = dict(model="dsv4-tiny", messages=messages, tools=TOOLS, max_tokens=MAX_TOKENS, temperature=0, stream=True,
                  stream_options={"include_usage": True}, logprobs=True, extra_body={"thinking": {"type": "disabled"}})
    if turn % 2 == 1:
        kwargs["tool_choice"] = {"type": "function", "function": {"name": TOOLS[turn // 2 % 2]["function"]["name"]}}
    start, first = time.time(), None
    content, calls, usage, tokens = "", {}, None, []
    for ch in client(s).chat.completions.create(**kwargs):
        if ch.usage:
            usage = ch.usage
        if not ch.choices:
            continue
        first = first or time.time()
        d = ch.choices[0].delta
        content += d.content or ""
        for tc in d.tool_calls or []:
            c = calls.setdefault(tc.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            c["id"] = tc.id or c["id"]
            c["function"]["name"] += tc.function.name or ""
            c["function"]["arguments"] += tc.function.arguments or ""
        if ch.choices[0].logprobs and ch.choices[0].logprobs.content:
            tokens += [t.token for t in ch.choices[0].logprobs.content]
    msg = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = [calls[i] for i in sorted(calls)]
    return msg, usage, first - start, tokens


def next_messages(messages, answer, turn):
    """The next turn's messages: the answer, its tool results, and a new user message."""
    out = messages + [answer]
    for c in answer.get("tool_calls", []):
        out.append({"role": "tool", "tool_call_id": c["id"], "content": json.dumps({"ok": True, "turn": turn, "lines": 40 + turn})})
    out.append({"role": "user", "content": f"Step {turn + 1}: now look at module {turn * 7 % 5} and tell me what to change."})
    return out


@pytest.fixture(scope="module")
def warm():
    s = Server()
    yield s
    s.stop()


def test_a_ten_turn_agent_conversation_hits_the_cache_and_answers_as_cold(warm):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Step 1: find why the build fails."}]
    rows, previous, cold_turn = [], None, None
    for turn in range(1, TURNS + 1):
        answer, usage, ttft, tokens = ask(warm, messages, turn)
        assert usage is not None and usage.completion_tokens > 0
        if turn % 2 == 1:
            assert answer.get("tool_calls"), f"turn {turn} (tool_choice required) called no tool: {answer}"
        cached = usage.prompt_tokens_details.cached_tokens
        if previous:
            need = previous.prompt_tokens + previous.completion_tokens
            # The issue asks for 95 %; the previous prompt alone is about 94 % here, and the
            # whole previous turn is cached (measured 100.1-100.3 %: its end token too).
            assert cached >= 0.99 * need, f"turn {turn}: cached {cached} of the previous turn's {need} prompt + output tokens"
            assert cached < usage.prompt_tokens
        rows.append((turn, usage.prompt_tokens, usage.completion_tokens, cached, ttft))
        if turn == COLD_TURN:
            cold_turn = (list(messages), answer, tokens, ttft)
        previous = usage
        messages = next_messages(messages, answer, turn)

    # The same turn cold, on a fresh server: the same tokens (greedy), and a slower first token.
    cold = Server()
    try:
        msgs, answer, tokens, warm_ttft = cold_turn
        cold_answer, cold_usage, cold_ttft, cold_tokens = ask(cold, msgs, COLD_TURN)
        assert cold_usage.prompt_tokens_details.cached_tokens == 0
        assert cold_tokens == tokens and cold_answer == answer, "a cache hit changed the greedy output"
    finally:
        cold.stop()
    report = os.environ.get("DSV4_AGENT_CACHE_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump({"turns": rows, "cold_turn": COLD_TURN, "cold_ttft": cold_ttft, "warm_ttft": warm_ttft}, f)


def test_anthropic_messages_next_turns_read_the_previous_turn_from_the_cache(warm):
    """/v1/messages: `cache_read_input_tokens` counts the hit, and a next turn reads at least
    99 % of the previous turn's input + output from the cache."""
    def post(messages):
        body = {"model": "dsv4-tiny", "max_tokens": 30, "temperature": 0, "system": SYSTEM + " (messages)", "messages": messages,
                "tools": [{"name": t["function"]["name"], "description": t["function"]["description"], "input_schema": t["function"]["parameters"]}
                          for t in TOOLS], "thinking": {"type": "disabled"}}
        status, _, raw = warm.request("POST", "/v1/messages", json.dumps(body), {"content-type": "application/json"}, timeout=300)
        assert status == 200, raw
        return json.loads(raw)

    messages = [{"role": "user", "content": "Step 1: list the failing tests."}]
    previous = None
    for turn in range(1, 5):
        r = post(messages)
        u = r["usage"]
        total_input = u["input_tokens"] + u["cache_read_input_tokens"]
        if previous:
            need = previous["input_tokens"] + previous["cache_read_input_tokens"] + previous["output_tokens"]
            assert u["cache_read_input_tokens"] >= 0.99 * need, f"turn {turn}: read {u['cache_read_input_tokens']} of {need}"
        assert u["input_tokens"] > 0 and total_input > 0
        previous = u
        messages = messages + [{"role": "assistant", "content": r["content"]}, {"role": "user", "content": f"Step {turn + 1}: go on."}]


def test_responses_next_turns_read_the_previous_turn_from_the_cache(warm):
    """/v1/responses with previous_response_id: the server renders the stored history, and a
    next turn reads at least 99 % of the previous turn's input + output from the cache (the
    previous input alone is about 92 % of it)."""
    c = client(warm)
    tools = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
              "parameters": t["function"]["parameters"]} for t in TOOLS]
    r = c.responses.create(model="dsv4-tiny", instructions=SYSTEM + " (responses)", input="Step 1: where do the tests live?", tools=tools,
                           max_output_tokens=60, temperature=0, reasoning={"effort": "none"})
    for turn in range(2, 5):
        previous = r.usage
        r = c.responses.create(model="dsv4-tiny", previous_response_id=r.id, instructions=SYSTEM + " (responses)", input=f"Step {turn}: go on.", tools=tools,
                               max_output_tokens=60, temperature=0, reasoning={"effort": "none"})
        need = previous.input_tokens + previous.output_tokens
        assert r.usage.input_tokens_details.cached_tokens >= 0.99 * need, f"turn {turn}: cached {r.usage.input_tokens_details.cached_tokens} of {need}"
