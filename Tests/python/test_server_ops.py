"""Operations of `dsv4 serve`: timeouts, admission (429), structured logs, timings, request
ids, TLS, Unix sockets, served names, context limits, keep-alives and graceful shutdown."""
import json, os, signal, socket, ssl, subprocess, threading, time

import httpx2 as httpx  # the http library the `openai` client uses
import pytest
from openai import OpenAI, BadRequestError, NotFoundError

from conftest import Server

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}}, "required": ["location"]}}}]
NO_THINK = {"thinking": {"type": "disabled"}}


def client(s, key="x", **kw):
    # One retry: the `ops` server closes idle connections after 4 s, which can race with the
    # client reusing a pooled one (429s are tested with raw requests).
    return OpenAI(base_url=s.base + "/v1", api_key=key, max_retries=1, timeout=120, **kw)


def post_json(s, path, body, headers=None):
    status, h, payload = s.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})
    return status, h, payload


def open_stream(s, body, path="/v1/chat/completions"):
    """A raw streaming request; returns the socket once the first SSE data arrived."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(data)) + data)
    got = b""
    while b"data: " not in got:
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    return sock, got


def read_all(sock, deadline_s=60):
    sock.settimeout(deadline_s)
    got = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        got += chunk
        if b"data: [DONE]" in got:
            break
    return got


def wait_until(pred, timeout=30, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def closed_within(sock, seconds, drip=None):
    """Seconds until the server closed `sock` (sending `drip` bytes every 0.25 s), or None."""
    start = time.time()
    sock.settimeout(0.25)
    while time.time() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.time() - start
        except socket.timeout:
            pass
        except ConnectionResetError:
            return time.time() - start
        if drip:
            try:
                sock.sendall(drip)
            except (BrokenPipeError, ConnectionResetError):
                return time.time() - start
    return None


# MARK: - Timeouts


def test_slow_drip_clients_are_cut_off_while_the_server_keeps_serving(ops):
    # Head dripped a header line at a time: never completes, cut at --header-timeout 1.
    head = socket.create_connection(("127.0.0.1", ops.port))
    head.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    # Body dripped a byte at a time after a complete head: cut at --body-timeout 2.
    body = socket.create_connection(("127.0.0.1", ops.port))
    body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    # An idle connection (no bytes yet) is not a slow request: still usable after the header timeout.
    idle = socket.create_connection(("127.0.0.1", ops.port))
    results = {}
    t = threading.Thread(target=lambda: results.update(body=closed_within(body, 8, drip=b" ")))
    t.start()
    results["head"] = closed_within(head, 8, drip=b"X-Slow: 1\r\n")
    t.join()
    assert results["head"] is not None and 0.8 <= results["head"] < 4, results
    assert results["body"] is not None and 1.8 <= results["body"] < 6, results
    assert ops.request("GET", "/health")[0] == 200
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.settimeout(10)
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")
    # --idle-timeout 4: the kept-alive connection is closed once idle that long.
    waited = closed_within(idle, 10)
    assert waited is not None and 3 <= waited < 8, waited
    notices = [l for l in ops.json_log() if "did not send its request" in l.get("msg", "")]
    assert any("head" in l["msg"] for l in notices) and any("body" in l["msg"] for l in notices)


# MARK: - Admission


def test_excess_concurrent_requests_get_429_with_retry_after(ops):
    before = ops.metrics()
    long = {"model": "tiny-a", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 400, "ignore_eos": True,
            "stream": True, **NO_THINK}
    streams = [open_stream(ops, long)[0] for _ in range(3)]  # --max-concurrent-requests 3, all admitted
    try:
        status, headers, payload = post_json(ops, "/v1/chat/completions", {"model": "tiny-a", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
        assert status == 429, payload
        assert headers["retry-after"] == "1"
        err = json.loads(payload)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
        status, _, _ = post_json(ops, "/v1/completions", {"model": "tiny-a", "prompt": "x", "max_tokens": 1})
        assert status == 429
        m = ops.metrics()
        assert m["dsv4_requests_in_flight"] == 3 and m["dsv4_requests_in_flight_peak"] == 3
        assert m["dsv4_requests_rejected_total"] == before.get("dsv4_requests_rejected_total", 0) + 2
        assert ops.request("GET", "/health")[0] == 200  # not a generation request: never refused
    finally:
        for s in streams:
            s.close()
    assert wait_until(lambda: ops.metrics()["dsv4_requests_in_flight"] == 0)
    r = client(ops).chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "x"}], max_tokens=1, extra_body=NO_THINK)
    assert r.usage.completion_tokens == 1
    # The dropped streams are logged as cancelled by their clients.
    assert wait_until(lambda: sum(1 for l in ops.json_log() if l.get("msg") == "request" and l.get("client_cancelled") is True) >= 3)


# MARK: - Logs, timings, request ids


def test_one_structured_log_line_per_request(ops):
    c = client(ops)
    c.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "log me"}], max_tokens=3, extra_body=NO_THINK,
                              extra_headers={"x-request-id": "log-test-1"})
    list(c.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "log me"}], max_tokens=2, stream=True,
                                   extra_body=NO_THINK, extra_headers={"x-request-id": "log-test-2"}))
    ops.request("GET", "/nowhere", headers={"x-request-id": "log-test-3"})
    lines = {l["request_id"]: l for l in ops.json_log() if l.get("msg") == "request" and str(l.get("request_id", "")).startswith("log-test-")}
    assert set(lines) == {"log-test-1", "log-test-2", "log-test-3"}, lines
    one, two = lines["log-test-1"], lines["log-test-2"]
    assert one["endpoint"] == "chat_completions" and one["status"] == 200 and one["stream"] is False and two["stream"] is True
    assert one["completion_tokens"] == 3 and two["completion_tokens"] == 2
    assert one["prompt_tokens"] > 0 and isinstance(one["cached_tokens"], int) and one["finish_reason"] == "length"
    for k in ("queue_ms", "prefill_ms", "decode_ms", "total_ms"):
        assert isinstance(one[k], (int, float)) and one[k] >= 0, k
    assert one["prefill_ms"] > 0 and one["total_ms"] >= one["prefill_ms"] + one["decode_ms"] and one["queue_ms"] <= one["prefill_ms"]
    assert one["client_cancelled"] is False and one["level"] == "info" and one["ts"].endswith("Z")
    assert lines["log-test-3"]["status"] == 404 and lines["log-test-3"]["endpoint"] == "unknown"
    # One line per request, not per chunk.
    assert sum(1 for l in ops.json_log() if l.get("request_id") == "log-test-2") == 1


def test_default_log_format_is_logfmt(server):
    client(server).models.list()
    lines = [l for l in server.log_lines() if " msg=request " in l and "endpoint=models" in l]
    assert lines and "status=200" in lines[-1] and "request_id=req-" in lines[-1] and lines[-1].startswith("ts=")


def test_timings_and_request_id_in_responses(ops):
    c = client(ops)
    raw = c.chat.completions.with_raw_response.create(model="tiny-a", messages=[{"role": "user", "content": "time me"}], max_tokens=4,
                                                      extra_body=NO_THINK, extra_headers={"x-request-id": "rid-42"})
    assert raw.headers["x-request-id"] == "rid-42"
    r = raw.parse()
    t = r.model_extra["timings"]
    assert t["prompt_n"] == r.usage.prompt_tokens - r.usage.prompt_tokens_details.cached_tokens and t["cache_n"] == r.usage.prompt_tokens_details.cached_tokens
    assert t["predicted_n"] == r.usage.completion_tokens == 4
    assert t["prompt_ms"] > 0 and t["predicted_ms"] > 0 and t["queue_ms"] >= 0
    assert abs(t["predicted_per_second"] - 4 * 1000 / t["predicted_ms"]) < 0.01 * t["predicted_per_second"] + 0.01
    assert abs(t["prompt_per_token_ms"] - t["prompt_ms"] / t["prompt_n"]) < 0.01
    # No client id: one is made up. Errors carry it too.
    raw = c.models.with_raw_response.list()
    assert raw.headers["x-request-id"].startswith("req-")
    status, headers, _ = post_json(ops, "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, {"x-request-id": "rid-err"})
    assert status == 404 and headers["x-request-id"] == "rid-err"
    # Streaming: the finish chunk and the usage chunk carry the timings.
    chunks = list(c.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "time me"}], max_tokens=3, stream=True,
                                            stream_options={"include_usage": True}, extra_body=NO_THINK))
    last = chunks[-1]
    assert last.usage.completion_tokens == 3 and last.model_extra["timings"]["predicted_n"] == 3
    finish = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].model_extra["timings"]["predicted_n"] == 3
    assert all("timings" not in (ch.model_extra or {}) for ch in chunks if ch not in (last, finish[0]))
    comp = c.completions.create(model="tiny-a", prompt="Once", max_tokens=2)
    assert comp.model_extra["timings"]["predicted_n"] == 2


# MARK: - Names, limits, tokenizer endpoints


def test_served_model_names_and_max_model_len(ops):
    c = client(ops)
    models = c.models.list().data
    assert [m.id for m in models] == ["tiny-a", "tiny-b"]
    assert all(m.model_extra["context_length"] == 512 and m.model_extra["max_model_len"] == 512 for m in models)
    with pytest.raises(NotFoundError) as e:
        c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "x"}], max_tokens=1)
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    with pytest.raises(BadRequestError) as e:
        c.chat.completions.create(model="tiny-b", messages=[{"role": "user", "content": "x"}], max_tokens=510)
    assert e.value.body["code"] == "context_length_exceeded" and "512" in e.value.body["message"]
    with pytest.raises(BadRequestError) as e:
        c.completions.create(model="tiny-b", prompt=[100] * 513, max_tokens=1)
    assert e.value.body["code"] == "context_length_exceeded"
    # Without max_tokens the default fits in what is left of the context.
    r = c.completions.create(model="tiny-b", prompt=[100] * 510, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 2 and r.choices[0].finish_reason == "length"


def test_tokenize_and_detokenize(ops):
    status, _, payload = post_json(ops, "/tokenize", {"prompt": "Hello world, 毕老师!"})
    assert status == 200
    tok = json.loads(payload)
    assert tok["count"] == len(tok["tokens"]) > 0 and tok["max_model_len"] == 512
    status, _, payload = post_json(ops, "/detokenize", {"tokens": tok["tokens"]})
    assert status == 200 and json.loads(payload)["prompt"] == "Hello world, 毕老师!"
    # The chat form counts exactly the prompt the model sees.
    msgs = [{"role": "user", "content": "count my tokens"}]
    _, _, payload = post_json(ops, "/tokenize", {"messages": msgs, **NO_THINK})
    r = client(ops).chat.completions.create(model="tiny-a", messages=msgs, max_tokens=1, extra_body=NO_THINK)
    assert json.loads(payload)["count"] == r.usage.prompt_tokens
    for path, body, param in [("/detokenize", {"tokens": ["x"]}, "tokens"), ("/detokenize", {"tokens": [-1]}, "tokens"),
                              ("/detokenize", {}, "tokens"), ("/tokenize", {}, "prompt")]:
        status, _, payload = post_json(ops, path, body)
        assert status == 400 and json.loads(payload)["error"]["param"] == param, (path, body)


# MARK: - SSE keep-alive


def test_keep_alive_comments_during_a_long_prefill(ops):
    sock, got = open_stream(ops, {"model": "tiny-a", "prompt": list(range(1000, 1400)), "max_tokens": 1, "stream": True}, path="/v1/completions")
    got += read_all(sock)
    sock.close()
    head = got.partition(b"data: ")[0]
    assert head.count(b": keep-alive\n\n") >= 1, head[-300:]  # sent while the 400-token prompt was prefilled
    assert b"data: [DONE]" in got


# MARK: - Sampling controls over the API


def test_max_completion_tokens_wins_over_max_tokens(ops):
    r = client(ops).chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "x"}], max_tokens=10, max_completion_tokens=2,
                                            extra_body={**NO_THINK, "ignore_eos": True})
    assert r.usage.completion_tokens == 2 and r.choices[0].finish_reason == "length"


def test_stop_strings_over_the_api(ops):
    c = client(ops)
    base = c.completions.create(model="tiny-a", prompt="Once upon a time", max_tokens=12, temperature=0, extra_body={"ignore_eos": True}).choices[0].text
    # A stop string from the middle of the greedy text: the answer ends right before it.
    k = next(i for i in range(2, len(base) - 2) if base[i:i + 2].strip() and base.find(base[i:i + 2]) == i)
    stop = base[k:k + 2]
    r = c.completions.create(model="tiny-a", prompt="Once upon a time", max_tokens=12, temperature=0, stop=[stop, "\x00never"], extra_body={"ignore_eos": True})
    assert r.choices[0].text == base[:k] and r.choices[0].finish_reason == "stop", (base, stop, r.choices[0].text)
    chat = c.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "x"}], max_tokens=10, temperature=0, extra_body=NO_THINK)
    text = chat.choices[0].message.content
    k = next((i for i in range(1, len(text) - 1) if text[i].strip() and text.find(text[i]) == i), None)
    if k is not None:
        r = c.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "x"}], max_tokens=10, temperature=0, stop=text[k],
                                      extra_body=NO_THINK)
        assert r.choices[0].message.content == text[:k] and r.choices[0].finish_reason == "stop"


def test_completions_logprobs(ops):
    r = client(ops).completions.create(model="tiny-a", prompt="Once upon a time", max_tokens=4, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert "".join(lp.tokens) == r.choices[0].text
    for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert l <= 0 and 1 <= len(top) <= 3
        assert abs(max(top.values()) - l) < 1e-4  # greedy: the chosen token is the most likely one


# MARK: - Tools over the API


def test_tool_choice_none_never_calls_tools(scripted):
    c = client(scripted, key="sk-test")
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    auto = c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS, max_tokens=300)
    assert auto.choices[0].finish_reason == "tool_calls"  # the script calls a tool when it may
    r = c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS, tool_choice="none", max_tokens=60)
    m = r.choices[0].message
    assert r.choices[0].finish_reason in ("stop", "length") and not m.tool_calls
    assert "<｜DSML｜tool_calls>" not in (m.content or "")
    assert r.usage.completion_tokens == 60  # it kept writing, just never a tool-call block
    # Without thinking the script starts with the block right away: still no tool call.
    r = c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS, tool_choice="none", max_tokens=30, extra_body=NO_THINK)
    assert not r.choices[0].message.tool_calls and "<｜DSML｜tool_calls>" not in r.choices[0].message.content
    chunks = list(c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS, tool_choice="none", max_tokens=60, stream=True))
    assert not any(ch.choices[0].delta.tool_calls for ch in chunks if ch.choices)


def uds_client(s):
    return OpenAI(base_url="http://localhost/v1", api_key="x", max_retries=0, timeout=60,
                  http_client=httpx.Client(transport=httpx.HTTPTransport(uds=s.unix_socket)))


def test_parallel_calls_and_tool_choice_required_over_a_unix_socket(parallel):
    assert os.path.exists(parallel.unix_socket)
    c = uds_client(parallel)
    assert [m.id for m in c.models.list().data][0] == "dsv4-tiny"
    msgs = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    for choice in ("auto", "required"):
        r = c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS, tool_choice=choice, extra_body=NO_THINK)
        calls = r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "tool_calls", (choice, r.choices[0].message)
        assert [json.loads(t.function.arguments) for t in calls] == [{"location": "Paris"}, {"location": "Rome"}]
        assert len({t.id for t in calls}) == 2
    deltas = [ch.choices[0].delta for ch in c.chat.completions.create(model="dsv4-tiny", messages=msgs, tools=TOOLS, stream=True,
                                                                      extra_body=NO_THINK) if ch.choices]
    indexes = sorted({t.index for d in deltas if d.tool_calls for t in d.tool_calls})
    assert indexes == [0, 1]
    with pytest.raises(BadRequestError):
        c.chat.completions.create(model="dsv4-tiny", messages=msgs, tool_choice="required", extra_body=NO_THINK)


# MARK: - TLS


def test_tls_with_a_self_signed_certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    s = Server("--tls-cert", str(cert), "--tls-key", str(key), tls_ca=str(cert))
    try:
        c = client(s, http_client=httpx.Client(verify=ssl.create_default_context(cafile=str(cert))))
        r = c.chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "secure?"}], max_tokens=2, extra_body=NO_THINK)
        assert r.usage.completion_tokens == 2
        # Plain HTTP on the TLS port gets no HTTP answer; unverified clients are refused by the client.
        plain = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        plain.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert not plain.recv(4096).startswith(b"HTTP/1.1 200")
        except ConnectionResetError:
            pass
        with pytest.raises(Exception):
            httpx.get(s.base + "/health", verify=True, timeout=10)
    finally:
        s.stop()


# MARK: - Graceful shutdown


def test_sigterm_finishes_short_requests_cancels_long_ones_and_exits_0():
    s = Server("--shutdown-timeout", "5")
    try:
        long_sock, _ = open_stream(s, {"messages": [{"role": "user", "content": "long"}], "max_tokens": 50000, "ignore_eos": True, "stream": True, **NO_THINK})
        short = {}

        def run_short():
            try:
                short["r"] = client(s).chat.completions.create(model="dsv4-tiny", messages=[{"role": "user", "content": "short"}], max_tokens=4,
                                                               extra_body={**NO_THINK, "ignore_eos": True})
            except Exception as e:  # noqa: BLE001
                short["e"] = e

        t = threading.Thread(target=run_short)
        t.start()
        assert wait_until(lambda: s.metrics()["dsv4_requests_in_flight"] == 2, timeout=30)
        s.proc.send_signal(signal.SIGTERM)
        t.join(timeout=60)
        assert "r" in short, short
        assert short["r"].usage.completion_tokens == 4  # in flight at SIGTERM: finished
        tail = read_all(long_sock, deadline_s=30)  # cancelled after the 5 s grace period
        long_sock.close()
        # The stream ends properly: a finish chunk, then [DONE] (then the chunked-encoding end).
        assert b'"finish_reason": "stop"' in tail and b"data: [DONE]" in tail, tail[-300:]
        assert s.proc.wait(timeout=30) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=2)
        assert any("shutting down" in l for l in s.log_lines())
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
