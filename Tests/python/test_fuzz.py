"""Generated bad input over every POST endpoint: every well-formed request with bad values gets
the right 4xx and an error body in its route's shape (Anthropic's on /v1/messages, OpenAI's
elsewhere); only malformed HTTP may end in a closed connection. The server keeps serving, and
its memory stays bounded."""
import http.client, json, socket, time

import pytest

MODEL = "dsv4-tiny"
MSGS = [{"role": "user", "content": "x"}]
# A valid body per endpoint (max 1 token, so a case wrongly accepted stays cheap), and for each
# field the JSON kinds it accepts besides null (optional fields accept null as "absent").
ENDPOINTS = {
    "/v1/chat/completions": ({"model": MODEL, "messages": MSGS, "max_tokens": 1}, {
        "model": {"string"}, "messages": {"array"}, "max_tokens": {"int"}, "max_completion_tokens": {"int"}, "temperature": {"int", "float"},
        "top_p": {"int", "float"}, "top_k": {"int"}, "n": {"int"}, "seed": {"int"}, "stream": {"bool"}, "stop": {"string", "array"},
        "logprobs": {"bool"}, "top_logprobs": {"int"}, "presence_penalty": {"int", "float"}, "logit_bias": {"object"},
        "tools": {"array"}, "tool_choice": {"string", "object"}, "response_format": {"object"}, "stream_options": {"object"},
        "stop_token_ids": {"array"}, "ignore_eos": {"bool"}}),
    "/v1/completions": ({"model": MODEL, "prompt": "x", "max_tokens": 1}, {
        "model": {"string"}, "prompt": {"string", "array"}, "max_tokens": {"int"}, "temperature": {"int", "float"}, "n": {"int"},
        "logprobs": {"int"}, "echo": {"bool"}, "suffix": {"string"}, "stop": {"string", "array"}, "return_token_ids": {"bool"},
        "stream": {"bool"}, "seed": {"int"}}),
    "/v1/messages": ({"model": MODEL, "messages": MSGS, "max_tokens": 1}, {
        "model": {"string"}, "messages": {"array"}, "max_tokens": {"int"}, "system": {"string", "array"}, "tools": {"array"},
        "tool_choice": {"object"}, "stop_sequences": {"array"}, "temperature": {"int", "float"}, "stream": {"bool"}}),
    "/v1/responses": ({"model": MODEL, "input": "x", "max_output_tokens": 1}, {
        "model": {"string"}, "input": {"string", "array"}, "instructions": {"string"}, "max_output_tokens": {"int"},
        "temperature": {"int", "float"}, "top_p": {"int", "float"}, "tools": {"array"}, "tool_choice": {"string", "object"},
        "parallel_tool_calls": {"bool"}, "reasoning": {"object"}, "text": {"object"}, "metadata": {"object"}, "user": {"string"},
        "store": {"bool"}, "stream": {"bool"}, "previous_response_id": {"string"}}),
    "/v1/responses/input_tokens": ({"model": MODEL, "input": "x"}, {"model": {"string"}, "input": {"string", "array"}, "tools": {"array"}}),
    "/v1/messages/count_tokens": ({"model": MODEL, "messages": MSGS}, {
        "model": {"string"}, "messages": {"array"}, "system": {"string", "array"}, "tools": {"array"}}),
    "/tokenize": ({"prompt": "x"}, {"prompt": {"string"}}),
    "/detokenize": ({"tokens": [1, 2]}, {"tokens": {"array"}}),
}
REQUIRED = {"/v1/chat/completions": {"messages"}, "/v1/completions": {"prompt"}, "/v1/messages": {"messages", "max_tokens"},
            "/v1/responses": {"input"}, "/v1/responses/input_tokens": {"input"}, "/v1/messages/count_tokens": {"messages"},
            "/tokenize": {"prompt"}, "/detokenize": {"tokens"}}
SAMPLES = {"string": "zz-not-valid", "int": -7, "float": 0.5, "bool": True, "array": [{"bad": 1}], "object": {"bad": {"deeper": [1]}}}
# Wrong values of the right type, and extremes.
VALUES = [
    ("/v1/chat/completions", "max_tokens", 0), ("/v1/chat/completions", "max_tokens", -1), ("/v1/chat/completions", "n", 0),
    ("/v1/chat/completions", "n", 10 ** 6), ("/v1/chat/completions", "temperature", -1), ("/v1/chat/completions", "top_p", 0),
    ("/v1/chat/completions", "top_logprobs", 10 ** 6), ("/v1/chat/completions", "max_tokens", 10 ** 30),
    ("/v1/chat/completions", "logit_bias", {"99999999999": 1}), ("/v1/chat/completions", "logit_bias", {"x": 1}),
    ("/v1/chat/completions", "messages", [{"role": "user"}]), ("/v1/chat/completions", "messages", [{"content": "x"}]),
    ("/v1/chat/completions", "messages", [{"role": "tool", "content": "x"}]),
    ("/v1/chat/completions", "tools", [{"type": "function"}]), ("/v1/chat/completions", "tool_choice", "sometimes"),
    ("/v1/chat/completions", "response_format", {"type": "xml"}), ("/v1/chat/completions", "stop_token_ids", ["a"]),
    ("/v1/chat/completions", "stop", ["a"] * 5 + [7]), ("/v1/chat/completions", "model", "gpt-4"),
    ("/v1/completions", "prompt", []), ("/v1/completions", "prompt", [-1]), ("/v1/completions", "prompt", [10 ** 12]),
    ("/v1/completions", "prompt", [[1], [2]]), ("/v1/completions", "prompt", ""), ("/v1/completions", "logprobs", -1),
    ("/v1/completions", "max_tokens", 10 ** 7), ("/v1/messages", "messages", [{"role": "system", "content": "x"}]),
    ("/v1/messages", "messages", []), ("/detokenize", "tokens", [10 ** 9]), ("/detokenize", "tokens", [1.5]),
    ("/v1/responses", "input", []), ("/v1/responses", "input", [{"type": "bogus"}]), ("/v1/responses", "input", [7]),
    ("/v1/responses", "input", [{"role": "wizard", "content": "x"}]), ("/v1/responses", "input", [{"role": "user", "content": 5}]),
    ("/v1/responses", "input", [{"role": "user", "content": [{"type": "input_audio", "data": "x"}]}]),
    ("/v1/responses", "input", [{"type": "function_call_output", "call_id": "nope", "output": "x"}]),
    ("/v1/responses", "input", [{"role": "user", "content": "x"}, {"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]),
    ("/v1/responses", "input", [{"role": "user", "content": "x"}, {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]),
    ("/v1/responses", "input", [{"type": "item_reference", "id": "msg_1"}]),
    ("/v1/responses", "input", [{"role": "user", "content": "x"}] * 20000 + [{"type": "bogus"}]),
    ("/v1/responses", "input", "x " * 1_500_000), ("/v1/responses", "max_output_tokens", 0), ("/v1/responses", "max_output_tokens", -1),
    ("/v1/responses", "max_output_tokens", 10 ** 7), ("/v1/responses", "temperature", -1), ("/v1/responses", "tool_choice", "sometimes"),
    ("/v1/responses", "tool_choice", {"type": "function", "name": "absent"}), ("/v1/responses", "tools", [{"type": "function"}]),
    ("/v1/responses", "tools", [{"type": "custom", "name": "x"}]), ("/v1/responses", "tools", [{"no": "type"}]),
    ("/v1/responses", "reasoning", {"effort": "extreme"}), ("/v1/responses", "text", {"format": {"type": "xml"}}),
    ("/v1/responses", "text", {"format": {"type": "json_schema", "name": "x"}}), ("/v1/responses", "metadata", {"k": 1}),
    ("/v1/responses", "metadata", {f"k{i}": "v" for i in range(17)}), ("/v1/responses", "previous_response_id", "resp_unknown"),
    ("/v1/responses", "previous_response_id", "../../etc"), ("/v1/responses", "unknown_field", 1), ("/v1/responses", "background", True),
    ("/v1/responses", "model", "gpt-4"), ("/v1/messages/count_tokens", "messages", []), ("/v1/responses/input_tokens", "input", []),
]
JSON = {"Content-Type": "application/json"}


# Where each endpoint's body takes a number and a string (for the value-level cases).
NUMBER_FIELD = {"/v1/chat/completions": "max_tokens", "/v1/completions": "max_tokens", "/v1/messages": "max_tokens",
                "/v1/responses": "max_output_tokens", "/v1/responses/input_tokens": "max_output_tokens", "/v1/messages/count_tokens": "max_tokens",
                "/tokenize": "prompt", "/detokenize": "tokens"}


def with_raw(base, field, raw_value):
    """The body with `field` set to raw JSON text (which may be invalid)."""
    return json.dumps({**base, field: "@@"}).encode().replace(b'"@@"', raw_value)


def cases():
    out = []
    for path, (base, fields) in ENDPOINTS.items():
        raw = json.dumps(base).encode()
        for cut in sorted({1, 2, len(raw) // 3, len(raw) // 2, len(raw) - 2, len(raw) - 1}):
            out.append((path, raw[:cut], JSON, "truncated"))
        for field, kinds in fields.items():
            accepted = kinds | ({"int"} if "float" in kinds else set())
            for kind, sample in SAMPLES.items():
                if kind not in accepted:
                    out.append((path, json.dumps({**base, field: sample}).encode(), JSON, f"{field}={kind}"))
        for field in REQUIRED[path]:
            out.append((path, json.dumps({k: v for k, v in base.items() if k != field}).encode(), JSON, f"missing {field}"))
            out.append((path, json.dumps({**base, field: None}).encode(), JSON, f"null {field}"))
        num = NUMBER_FIELD[path]
        wrap = (lambda v: b"[" + v + b"]") if num == "tokens" else (lambda v: v)
        text_field = "prompt" if "prompt" in base else ("messages" if "messages" in base else ("input" if "input" in base else None))

        def bad_text(t):
            if text_field == "input":
                return with_raw(base, "input", b'"' + t + b'"')
            if text_field == "messages":
                return with_raw(base, "messages", b'[{"role": "user", "content": "' + t + b'"}]')
            if text_field == "prompt":
                return with_raw(base, "prompt", b'"' + t + b'"')
            return with_raw(base, "tokens", b'["' + t + b'"]')
        out += [
            (path, b"", JSON, "empty"),
            (path, b"[1, 2]", JSON, "array body"),
            (path, b'"text"', JSON, "string body"),
            (path, b"null", JSON, "null body"),
            (path, b"{" * 100_000, JSON, "deep objects"),
            (path, b"[" * 200_000 + b"]" * 200_000, JSON, "deep arrays"),
            (path, b'{"a":' * 70 + b"1" + b"}" * 70, JSON, "nesting past the limit"),
            (path, with_raw(base, num, wrap(b"1e99999")), JSON, "huge exponent"),
            (path, with_raw(base, num, wrap(b"9" * 5000)), JSON, "huge integer"),
            (path, with_raw(base, num, wrap(b"-" + b"9" * 400)), JSON, "huge negative"),
            (path, with_raw(base, num, wrap(b"1" + b"0" * 30)), JSON, "beyond Int64"),
            (path, with_raw(base, num, wrap(b"NaN")), JSON, "NaN"),
            (path, with_raw(base, num, wrap(b"01")), JSON, "leading zero"),
            (path, bad_text(b"\xff\xfe\xc0\x80"), JSON, "invalid utf-8"),
            (path, bad_text(b"\x01"), JSON, "control character in string"),
            (path, bad_text(b"\\q"), JSON, "bad escape"),
            (path, raw, {"Content-Type": "text/plain"}, "text/plain"),
            (path, raw, {"Content-Type": "application/x-www-form-urlencoded"}, "form"),
            (path, raw, {"Content-Type": "multipart/form-data; boundary=x"}, "multipart"),
            (path, raw + b"garbage", JSON, "trailing garbage"),
            (path, raw + raw, JSON, "two objects"),
            (path, raw[:-1] + b', "k": tru}', JSON, "bad literal"),
            (path, b'{"a": 1, "a": ' + b"[" * 62 + b"]" * 62 + b"}", JSON, "duplicate keys, deep value"),
        ]
    for path, field, value in VALUES:
        base = ENDPOINTS[path][0]
        out.append((path, json.dumps({**base, field: value}).encode(), JSON, f"{field}={value!r}"[:60]))
    return out


def send(server, path, body, headers, method="POST"):
    """(status, body) or (None, None) when the server closed the connection."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    except (ConnectionError, http.client.RemoteDisconnected, socket.timeout):
        return None, None
    finally:
        c.close()


ANTHROPIC_TYPES = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error", "request_too_large",
                   "rate_limit_error", "api_error", "overloaded_error"}


def expected_status(path, body, headers, what):
    """The status a well-formed request with this bad input must get."""
    if not headers.get("Content-Type", "").startswith("application/json"):
        return 415
    if what == "model='gpt-4'" or what.startswith("previous_response_id='"):
        return 404
    return 400


def check_error(status, payload, what, path="/v1/chat/completions", want=None):
    """A 4xx (exactly `want` when given) with an error body in the route's shape."""
    assert status is not None, (what, "the server closed the connection on a well-formed request")
    if want is not None:
        assert status == want, (what, status, payload[:300])
    assert 400 <= status < 500, (what, status, payload[:300])
    body = json.loads(payload)
    if path.rstrip("/").startswith("/v1/messages"):
        assert body.get("type") == "error" and set(body["error"]) == {"type", "message"}, (what, body)
        err = body["error"]
        assert err["type"] in ANTHROPIC_TYPES, (what, err)
    else:
        err = body["error"]
        assert set(err) >= {"message", "type", "param", "code"}, (what, err)
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), (what, err)


def test_generated_bad_requests_get_openai_errors_and_memory_stays_bounded(server):
    all_cases = cases()
    assert len(all_cases) > 300
    rss = []
    for round_ in range(4):
        for path, body, headers, what in all_cases:
            status, payload = send(server, path, body, headers)
            check_error(status, payload, f"{path} {what}", path, expected_status(path, body, headers, what))
        assert server.request("GET", "/health")[0] == 200
        # The server trims malloc's free pages once a second (HeapTrimmer); a request's buffers
        # may still be held for a moment after its answer, so the round's figure is the lowest of
        # four readings a second apart: memory that is leaked never comes back.
        samples = []
        for _ in range(4):
            time.sleep(1.0)
            samples.append((server.rss_kb("RssAnon"), server.rss_kb()))
        rss.append(min(samples))
    print("RssAnon, VmRSS per round (KB):", rss)
    # Rounds 2-4 repeat round 1: memory that grows with every round is a leak. Before the
    # server trimmed its heaps it grew once, by 64-120 MB, in round 2 or 3 and then stayed
    # flat (2026-12-07: [218312, 338016, 338020] KB, [231212, 214212, 333512, 333912]): freed
    # request memory kept by the malloc arenas of threads that first took the large cases then.
    # Round 1 stays warm-up; a leak shows over the rounds after it. Anonymous memory only (VmRSS
    # also counts the mapped model's pages). CI, 2026-12-07, one reading 1.5 s after each round:
    # VmRSS [139872, 74368, 79604, 144228] KB, and locally RssAnon [32964, 38224, 38184, 86600]
    # once, flat at ~38,100 over six rounds the next time: a transient, hence the minimum.
    anon = [a for a, _ in rss]
    assert anon[3] - anon[1] < 64 * 1024, rss
    assert server.proc.poll() is None


def test_unknown_routes_and_methods_are_openai_shaped(server):
    for method, path, want in [("GET", "/v1/chat/completions", 405), ("GET", "/v1/completions", 405), ("POST", "/v1/models", 405),
                               ("GET", "/v1/messages", 405), ("GET", "/v1/messages/", 405),
                               ("DELETE", "/health", 405), ("PUT", "/tokenize", 405), ("GET", "/nope", 404), ("POST", "/v2/chat/completions", 404),
                               ("GET", "/v1/models/extra", 404)]:
        status, headers, payload = server.request(method, path, b"{}" if method != "GET" else None, {"Content-Type": "application/json"})
        assert status == want, (method, path, status)
        check_error(status, payload, f"{method} {path}", path, want)
        if want == 405:
            assert headers["allow"] in ("GET", "POST")


def test_malformed_http_gets_400_or_a_closed_connection(server):
    # The one place a closed connection is a fair answer: bytes that are not HTTP.
    for garbage in [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, b"GET / HTTP/9.9\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                    b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"NOT-A-METHOD\r\n\r\n", b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
                    b"GET /health HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"]:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            s.sendall(garbage)
            got = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        finally:
            s.close()
        if got:
            status = int(got.split(b" ", 2)[1])
            assert 400 <= status < 500, (garbage[:40], got[:200])
        assert server.request("GET", "/health")[0] == 200
