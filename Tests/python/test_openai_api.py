"""The official `openai` client (and raw HTTP) against `dsv4 serve`."""
import json, re, socket, threading, time, urllib.request

import jsonschema  # not the server's automaton: an independent judge of schema outputs
import pytest
from openai import OpenAI, APIStatusError, AuthenticationError, BadRequestError, NotFoundError

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}}, "required": ["location"]}}}]


NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def json_prefix_ok(text):
    """Whether `text` is a prefix of some JSON document (RFC 8259): an independent pushdown
    recognizer, so a truncated constrained output can be judged without the server's code."""
    stack, state, i, n = [], "value", 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n" and state != "done":
            i += 1
            continue
        if state == "done":
            return c in " \t\r\n" and json_prefix_ok_rest(text[i:])
        if state in ("value", "value_or_close"):
            if state == "value_or_close" and c == "]":
                stack.pop()
                state, i = ("comma_or_close" if stack else "done"), i + 1
                continue
            if c in "{[":
                stack.append(c)
                state, i = ("key_or_close" if c == "{" else "value_or_close"), i + 1
                continue
            if c == '"':
                end = scan_string(text, i)
                if end is None:
                    return False
                if end == n:
                    return True  # an open string
                state, i = ("comma_or_close" if stack else "done"), end
                continue
            for word in ("true", "false", "null"):
                if word.startswith(text[i:i + len(word)]) and text[i] == word[0]:
                    if n - i < len(word):
                        return True  # a partial literal at the end
                    state, i = ("comma_or_close" if stack else "done"), i + len(word)
                    break
            else:
                j = i
                while j < n and text[j] in "+-.eE0123456789":
                    j += 1
                run = text[i:j]
                if not run:
                    return False
                if j == n:
                    return any(NUMBER.fullmatch(run + tail) for tail in ("", "0", "e0", "0e0"))
                if not NUMBER.fullmatch(run):
                    return False
                state, i = ("comma_or_close" if stack else "done"), j
            continue
        if state in ("key_or_close", "key"):
            if state == "key_or_close" and c == "}":
                stack.pop()
                state, i = ("comma_or_close" if stack else "done"), i + 1
                continue
            if c != '"':
                return False
            end = scan_string(text, i)
            if end is None:
                return False
            if end == n:
                return True
            state, i = "colon", end
            continue
        if state == "colon":
            if c != ":":
                return False
            state, i = "value", i + 1
            continue
        if state == "comma_or_close":
            if c == ",":
                state, i = ("key" if stack[-1] == "{" else "value"), i + 1
            elif (c == "}" and stack[-1] == "{") or (c == "]" and stack[-1] == "["):
                stack.pop()
                state, i = ("comma_or_close" if stack else "done"), i + 1
            else:
                return False
    return True


def json_prefix_ok_rest(rest):
    return rest.strip(" \t\r\n") == ""


def scan_string(text, i):
    """Index after the string starting at text[i] (a quote); len(text) if it is still open
    and valid so far; None if invalid."""
    n, i = len(text), i + 1
    while i < n:
        c = text[i]
        if c == '"':
            return i + 1
        if ord(c) < 0x20:
            return None
        if c == "\\":
            if i + 1 == n:
                return n
            e = text[i + 1]
            if e == "u":
                digits = text[i + 2:i + 6]
                if not all(d in "0123456789abcdefABCDEF" for d in digits):
                    return None
                if len(digits) < 4:
                    return n
                i += 6
                continue
            if e not in '"\\/bfnrt':
                return None
            i += 2
            continue
        i += 1
    return n


def test_json_prefix_checker_itself():
    for good in ["", "{", '{"a', '{"a": [1, 2.', '{"a": tr', '{"a": "x\\u00', '{"a": -', '{"a": 1e', '{"a": {}}', '[]', '{"a": [ ]', '{"k": 1, "']:
        assert json_prefix_ok(good), good
    for bad in ["}", '{"a" 1', '{"a": 01', '{"a": [1,]', '{"a": tru}', "{,", '{"a": 1}}', '{"a": "\\x"}', '{"a": 1} x', "{'a'"]:
        assert not json_prefix_ok(bad), bad


def client(s, key="x"):
    return OpenAI(base_url=s.base + "/v1", api_key=key, max_retries=0, timeout=120)


def test_models(server):
    models = client(server).models.list().data
    ids = [m.id for m in models]
    assert "dsv4-tiny" in ids and "deepseek-v4-flash" in ids
    assert models[0].model_extra["context_length"] == 1114112  # dsv4-tiny: a full 1M prompt plus its answer


def test_chat_plain_and_streaming(server):
    c = client(server)
    r = c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "Hello!"}], max_tokens=6,
                                  extra_body={"thinking": {"type": "disabled"}}, seed=3, temperature=0.7)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 6
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].message.content
    again = c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "Hello!"}], max_tokens=6,
                                      extra_body={"thinking": {"type": "disabled"}}, seed=3, temperature=0.7)
    assert again.choices[0].message.content == r.choices[0].message.content  # same seed, same tokens
    # Prefix caching: a long prompt seen for the first time has nothing cached; sent again, its
    # full pages come from the cache (never the whole prompt: the last token is recomputed).
    long = [{"role": "system", "content": f"nonce {time.time()} " + "The quick brown fox jumps over the lazy dog. " * 60},
            {"role": "user", "content": "Hi"}]
    first = c.chat.completions.create(model="dsv4-tiny", messages=long, max_tokens=1, extra_body={"thinking": {"type": "disabled"}})
    second = c.chat.completions.create(model="dsv4-tiny", messages=long, max_tokens=1, extra_body={"thinking": {"type": "disabled"}})
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < second.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens == first.usage.prompt_tokens
    chunks = list(c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].choices == []
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["length"]
    reasoning = "".join(ch.choices[0].delta.model_extra.get("reasoning_content") or "" for ch in chunks if ch.choices)
    assert reasoning  # thinking is on by default (DeepSeek API), so tokens go to reasoning_content


def test_chat_n_and_logprobs(server):
    r = client(server).chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, n=2,
                                               logprobs=True, top_logprobs=2, extra_body={"thinking": {"type": "disabled"}})
    assert len(r.choices) == 2
    lp = r.choices[0].logprobs.content
    assert len(lp) == 3 and len(lp[0].top_logprobs) == 2 and lp[0].logprob <= 0


def test_completions_text_and_token_ids(server):
    c = client(server)
    r = c.completions.create(model="dsv4-tiny", prompt="Once upon a time", max_tokens=4, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4
    ids = c.completions.create(model="dsv4-tiny", prompt=[100, 200, 300], max_tokens=3, temperature=0, extra_body={"return_token_ids": True})
    assert ids.model_extra["prompt_token_ids"] == [100, 200, 300]
    assert len(ids.choices[0].model_extra["token_ids"]) == 3
    stream = list(c.completions.create(model="dsv4-tiny", prompt=[100, 200, 300], max_tokens=3, temperature=0, stream=True))
    assert "".join(s.choices[0].text for s in stream if s.choices) == ids.choices[0].text


def test_errors_are_openai_shaped(server):
    c = client(server)
    with pytest.raises(NotFoundError) as e:
        c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(BadRequestError) as e:
        c.chat.completions.create(model="dsv4-tiny", messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(BadRequestError) as e:
        c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "x"}], top_p=1.5)
    assert e.value.body["param"] == "top_p"
    with pytest.raises(BadRequestError) as e:
        c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2_000_000)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(BadRequestError):
        c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "wizard", "content": "x"}])
    with pytest.raises(BadRequestError):
        c.completions.create(model="dsv4-tiny", prompt=[999999], max_tokens=1)


def raw(s, method, path, body=b"", headers=None):
    req = urllib.request.Request(s.base + path, data=body if method == "POST" else None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_http_fuzz_gets_4xx_and_server_keeps_serving(server):
    cases = [
        (b'{"messages": [', {"Content-Type": "application/json"}),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e999}', {"Content-Type": "application/json"}),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 123456789012345678901234567890}', {"Content-Type": "application/json"}),
        (b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"}),
        (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', {"Content-Type": "application/json"}),
        (b"hello", {"Content-Type": "text/plain"}),
        (b'{"messages": "nope"}', {"Content-Type": "application/json"}),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', {"Content-Type": "application/json"}),
        (b"", {"Content-Type": "application/json"}),
    ]
    for body, headers in cases:
        status, payload = raw(server, "POST", "/v1/chat/completions", body, headers)
        assert 400 <= status < 500, (body[:60], status, payload[:200])
        err = json.loads(payload)["error"]
        assert err["message"] and err["type"]
        assert raw(server, "GET", "/health")[0] == 200
    status, _ = raw(server, "POST", "/v1/chat/completions", b" " * (17 << 20), {"Content-Type": "application/json"})
    assert status == 413
    # A slow client: headers trickle in, then it gives up; the server keeps serving.
    s = socket.create_connection(("127.0.0.1", server.port))
    for part in [b"POST /v1/chat/completions HTTP/1.1\r\n", b"Host: x\r\n", b"Content-Length: 100\r\n\r\n", b'{"mess']:
        s.sendall(part)
        time.sleep(0.2)
    s.close()
    assert raw(server, "GET", "/health")[0] == 200


def test_tool_calls_and_reasoning_round_trip(scripted):
    c = client(scripted, key="sk-test")
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS)
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert m.model_extra["reasoning_content"] == "Let me check the weather."
    assert m.tool_calls[0].function.name == "get_weather"
    assert json.loads(m.tool_calls[0].function.arguments) == {"location": "Paris", "days": 2}
    # Streaming: the name arrives first, then argument deltas.
    deltas = [ch.choices[0].delta for ch in c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS, stream=True) if ch.choices]
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
    assert json.loads("".join(t.function.arguments or "" for t in calls)) == {"location": "Paris", "days": 2}
    # Next turns: the assistant turn (with reasoning) and the tool result go back in.
    msgs += [{"role": "assistant", "content": m.content, "reasoning_content": m.model_extra["reasoning_content"],
              "tool_calls": [tc.model_dump() for tc in m.tool_calls]},
             {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": '{"temp_c": 18}'}]
    r2 = c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS)
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens
    assert r2.usage.prompt_tokens_details.cached_tokens > 0  # the first turn's pages are reused
    msgs += [{"role": "assistant", "content": r2.choices[0].message.content, "tool_calls": [t.model_dump() for t in r2.choices[0].message.tool_calls]},
             {"role": "tool", "tool_call_id": r2.choices[0].message.tool_calls[0].id, "content": "sunny"}]
    r3 = c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS)
    assert r3.choices[0].finish_reason == "tool_calls"


def test_authentication(scripted):
    with pytest.raises(AuthenticationError) as e:
        client(scripted, key="wrong").models.list()
    assert e.value.body["code"] == "invalid_api_key"


def test_anthropic_messages(scripted):
    body = {"model": "dsv4-tiny", "max_tokens": 200, "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"name": "get_weather", "input_schema": TOOLS[0]["function"]["parameters"]}], "thinking": {"type": "enabled", "budget_tokens": 100}}
    status, payload = raw(scripted, "POST", "/v1/messages", json.dumps(body).encode(), {"Content-Type": "application/json", "x-api-key": "sk-test"})
    assert status == 200, payload
    msg = json.loads(payload)
    assert [b["type"] for b in msg["content"]] == ["thinking", "tool_use"]
    assert msg["content"][1]["input"] == {"location": "Paris", "days": 2} and msg["stop_reason"] == "tool_use"
    body["stream"] = True
    status, payload = raw(scripted, "POST", "/v1/messages", json.dumps(body).encode(), {"Content-Type": "application/json", "x-api-key": "sk-test"})
    events = [l[7:] for l in payload.decode().splitlines() if l.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop" and "content_block_delta" in events


def test_anthropic_errors_are_anthropic_shaped(scripted):
    """Every error of /v1/messages: {"type": "error", "error": {"type", "message"}}."""
    ok = {"model": "dsv4-tiny", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    auth = {"Content-Type": "application/json", "x-api-key": "sk-test"}
    for body, headers, status, kind in [
        (json.dumps(ok).encode(), {"Content-Type": "application/json", "x-api-key": "wrong"}, 401, "authentication_error"),
        (b'{"model": ', auth, 400, "invalid_request_error"),
        (json.dumps({**ok, "model": "claude-9"}).encode(), auth, 404, "not_found_error"),
        (json.dumps({**ok, "max_tokens": None}).encode(), auth, 400, "invalid_request_error"),
        (json.dumps({**ok, "temperature": -3}).encode(), auth, 400, "invalid_request_error"),
        (b" " * (17 << 20), auth, 413, "request_too_large"),
    ]:
        got, payload = raw(scripted, "POST", "/v1/messages", body, headers)
        assert got == status, (status, got, payload[:200])
        err = json.loads(payload)
        assert err["type"] == "error" and err["error"]["type"] == kind and err["error"]["message"], err
        assert set(err["error"]) == {"type", "message"} and "param" not in err, err


def test_many_idle_connections_and_concurrent_streams(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(1000)]
    try:
        results, errors, spans = [], [], []

        def one(i):
            try:
                start, first, text = time.time(), None, ""
                for ch in client(server).chat.completions.create(
                        model="dsv4-tiny", messages=[{"role": "user", "content": f"request {i}"}], max_tokens=4, stream=True,
                        extra_body={"thinking": {"type": "disabled"}}):
                    first = first or time.time()
                    text += (ch.choices[0].delta.content or "") if ch.choices else ""
                spans.append((first, time.time()))
                results.append(text)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors[:3]
        assert len(results) == 64
        # The streams ran concurrently: many were being served at once, and at one moment most
        # had sent their first chunk but not yet their last.
        assert server.metrics()["dsv4_requests_in_flight_peak"] >= 32
        overlap = max(sum(1 for f, l in spans if f <= t <= l) for t, _ in spans)
        assert overlap >= 16, (overlap, spans[:4])
        assert raw(server, "GET", "/health")[0] == 200
        # The idle connections are all still open, and a sample of them still serves requests.
        for s in idle[::50]:
            s.settimeout(10)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        for s in idle:
            s.setblocking(False)
            try:
                assert s.recv(1) != b"", "an idle connection was closed"
            except BlockingIOError:
                pass  # open, nothing to read
    finally:
        for s in idle:
            s.close()


def wait_for_cancel(server, before):
    deadline = time.time() + 30
    while time.time() < deadline:
        m = server.metrics()
        if m.get("dsv4_requests_in_flight") == 0 and m.get("dsv4_engine_requests") == 0 and m.get("dsv4_requests_cancelled_by_client_total", 0) > before:
            break
        time.sleep(0.2)
    m = server.metrics()
    assert m["dsv4_requests_in_flight"] == 0 and m["dsv4_engine_requests"] == 0
    assert m["dsv4_requests_cancelled_by_client_total"] == before + 1
    assert m["dsv4_engine_running_sequences"] == 0


def test_disconnect_mid_stream_frees_the_request(server):
    before = server.metrics().get("dsv4_requests_cancelled_by_client_total", 0)
    body = json.dumps({"model": "dsv4-tiny", "messages": [{"role": "user", "content": "tell me a long story"}], "max_tokens": 100000,
                       "stream": True, "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while got.count(b"data: ") < 5:
        got += s.recv(4096)
    s.close()
    wait_for_cancel(server, before)


def test_disconnect_while_waiting_for_a_non_streaming_answer_frees_the_request(server):
    before = server.metrics().get("dsv4_requests_cancelled_by_client_total", 0)
    body = json.dumps({"model": "dsv4-tiny", "messages": [{"role": "user", "content": "a long answer"}], "max_tokens": 100000,
                       "ignore_eos": True}).encode()
    gen = server.metrics()["dsv4_engine_generated_tokens_total"]
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert wait_until_more(server, gen + 3)  # it is generating
    s.close()
    wait_for_cancel(server, before)


def wait_until_more(server, gen, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.metrics()["dsv4_engine_generated_tokens_total"] > gen:
            return True
        time.sleep(0.1)
    return False


def test_constrained_decoding(server):
    c = client(server)
    r = c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "Reply in JSON."}], max_tokens=24,
                                  temperature=0, response_format={"type": "json_object"}, extra_body={"thinking": {"type": "disabled"}})
    text = r.choices[0].message.content
    assert text.startswith("{") and json_prefix_ok(text), (r.choices[0].finish_reason, text)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    # Random weights rarely close the object by themselves: force it with a bias on "{" (93) and
    # "}" (95). Both: without the first, the likeliest first token can be `{"`, whose open
    # string a "}" never closes (as happened once the prompt announced the response format).
    r = c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "JSON please"}], max_tokens=64,
                                  temperature=0, response_format={"type": "json_object"}, logit_bias={"93": 100, "95": 100},
                                  extra_body={"thinking": {"type": "disabled"}})
    assert json_prefix_ok(r.choices[0].message.content), r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and isinstance(json.loads(r.choices[0].message.content), dict), r.choices[0].message.content
    # Truncated by max_tokens, streamed or not: what was written is a valid prefix.
    for max_tokens in (3, 7, 12):
        kw = dict(model="dsv4-tiny", messages=[{"role": "user", "content": "JSON please"}], max_tokens=max_tokens, temperature=0.8, seed=max_tokens,
                  response_format={"type": "json_object"}, extra_body={"thinking": {"type": "disabled"}})
        r = c.chat.completions.create(**kw)
        assert json_prefix_ok(r.choices[0].message.content), (max_tokens, r.choices[0].message.content)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(stream=True, **kw) if ch.choices)
        assert json_prefix_ok(streamed), (max_tokens, streamed)
    r = c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, max_tokens=30,
                                  tool_choice={"type": "function", "function": {"name": "get_weather"}}, extra_body={"thinking": {"type": "disabled"}})
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    with pytest.raises(BadRequestError):
        c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "x"}],
                                  response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {"anyOf": [{"type": "object"}]}}})
    with pytest.raises(BadRequestError):
        c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "x"}], tools=TOOLS,
                                  tool_choice={"type": "function", "function": {"name": "nope"}})


def test_fill_in_the_middle(server):
    c = client(server)
    r = c.completions.create(model="dsv4-tiny", prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))", max_tokens=4,
                             temperature=0, extra_body={"return_token_ids": True})
    ids = r.model_extra["prompt_token_ids"]
    assert ids[:2] == [0, 128801] and ids[-1] == 128802 and 128800 in ids
    assert r.usage.completion_tokens == 4


def test_json_schema(server):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green"]}, "n": {"type": "integer"}},
              "required": ["ok", "color", "n"], "additionalProperties": False}
    r = client(server).chat.completions.create(
        model="dsv4-tiny", messages=[{"role": "user", "content": "Describe it."}], max_tokens=120, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}, extra_body={"thinking": {"type": "disabled"}})
    assert json_prefix_ok(r.choices[0].message.content), r.choices[0].message.content
    out = json.loads(r.choices[0].message.content)
    jsonschema.validate(out, schema)
    assert set(out) == {"ok", "color", "n"} and isinstance(out["ok"], bool) and out["color"] in ("red", "green") and isinstance(out["n"], int)
    assert r.choices[0].finish_reason == "stop"
    # Cut short, the output is still a valid prefix.
    for max_tokens in (2, 5, 9):
        r = client(server).chat.completions.create(
            model="dsv4-tiny", messages=[{"role": "user", "content": "Describe it."}], max_tokens=max_tokens, temperature=1, seed=max_tokens,
            response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}, extra_body={"thinking": {"type": "disabled"}})
        text = r.choices[0].message.content
        assert json_prefix_ok(text), (max_tokens, text)
        if r.choices[0].finish_reason == "stop":
            jsonschema.validate(json.loads(text), schema)


def test_json_schema_keywords_it_cannot_enforce_are_refused(server):
    c = client(server)
    for schema, param in [
        ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}, "response_format.json_schema.schema.properties.age.minimum"),
        ({"type": "object", "properties": {"id": {"type": "string", "pattern": "^a"}}}, "response_format.json_schema.schema.properties.id.pattern"),
        ({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}, "response_format.json_schema.schema.properties.d.format"),
    ]:
        with pytest.raises(BadRequestError) as e:
            c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "x"}], max_tokens=5,
                                      response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
        assert e.value.body["param"] == param and param.rsplit(".", 1)[1] in e.value.body["message"], e.value.body
