"""Long prompts show where they are: llama-server's `return_progress` (`prompt_progress` in the
stream), the prefill gauge in /metrics, and a client that leaves mid-prefill freeing its request
at once. The bundled tiny model prefills 512 tokens per engine step (serve's default)."""
import json
import random
import threading
import time

from openai import OpenAI

from test_server_ops import open_stream, wait_until


def sse_objects(raw):
    out = []
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("data: {"):
            out.append(json.loads(line[6:]))
    return out


def stream_raw(s, path, body, timeout=120):
    status, _, payload = s.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"}, timeout=timeout)
    assert status == 200, payload[:300]
    return sse_objects(payload)


def test_completions_stream_reports_prompt_progress(server):
    rng = random.Random(1)
    prompt = [rng.randrange(2, 120000) for _ in range(2000)]
    objs = stream_raw(server, "/v1/completions", {"model": "dsv4-tiny", "prompt": prompt, "max_tokens": 2, "stream": True,
                                                   "return_progress": True, "ignore_eos": True})
    progress, first_text = [], None
    for i, o in enumerate(objs):
        if "prompt_progress" in o:
            assert o["choices"] == [] and o["object"] == "text_completion"
            assert first_text is None, "progress after the first token"
            progress.append(o["prompt_progress"])
        elif o.get("choices") and first_text is None:
            first_text = i
    assert first_text is not None
    assert all(p["total"] == 2000 and p["cache"] == 0 for p in progress)
    done = [p["processed"] for p in progress]
    # Admission (0), after each of the 512-token steps that leave the prompt unfinished, and
    # complete once before the first token.
    assert done[0] == 0 and done[-1] == 2000 and done == sorted(done), done
    assert [d for d in done if 0 < d < 2000] == [512, 1024, 1536], done
    times = [p["time_ms"] for p in progress]
    assert times == sorted(times) and times[-1] > 0


def test_chat_progress_parses_with_the_openai_client_and_is_absent_unless_asked(server):
    c = OpenAI(base_url=server.base + "/v1", api_key="none")
    text = " ".join(f"word{i}" for i in range(700))  # about 1,400 tokens
    msgs = [{"role": "user", "content": text}]
    chunks = list(c.chat.completions.create(model="dsv4-tiny", messages=msgs, max_tokens=2, stream=True,
                                            extra_body={"return_progress": True, "thinking": {"type": "disabled"}}))
    progress = [ch.model_extra["prompt_progress"] for ch in chunks if (ch.model_extra or {}).get("prompt_progress")]
    assert len(progress) >= 3 and progress[-1]["processed"] == progress[-1]["total"] > 1024
    assert any(0 < p["processed"] < p["total"] for p in progress)
    plain = list(c.chat.completions.create(model="dsv4-tiny", messages=msgs, max_tokens=2, stream=True,
                                           extra_body={"thinking": {"type": "disabled"}}))
    assert not any((ch.model_extra or {}).get("prompt_progress") for ch in plain)


def test_metrics_show_prefill_tokens_of_running_requests(server):
    rng = random.Random(2)
    prompt = [rng.randrange(2, 120000) for _ in range(3000)]
    seen = []

    def poll():
        while len(seen) < 1000:
            m = server.metrics()
            seen.append((m.get('dsv4_prefill_tokens{state="done"}', -1), m.get('dsv4_prefill_tokens{state="remaining"}', -1)))
            if seen[-1][1] > 0 and seen[-1][0] > 0:
                return
            time.sleep(0.05)

    t = threading.Thread(target=poll)
    t.start()
    stream_raw(server, "/v1/completions", {"model": "dsv4-tiny", "prompt": prompt, "max_tokens": 1, "stream": True})
    t.join(timeout=5)
    mid = [(d, r) for d, r in seen if d > 0 and r > 0]
    assert mid and all(d + r == 3000 and d % 512 == 0 for d, r in mid), seen[-5:]
    m = server.metrics()
    assert m['dsv4_prefill_tokens{state="remaining"}'] == 0 and m['dsv4_prefill_tokens{state="done"}'] == 0


def test_client_leaving_mid_prefill_frees_its_request_at_once(server):
    rng = random.Random(3)
    prompt = [rng.randrange(2, 120000) for _ in range(30000)]  # tens of seconds of prefill
    before = server.metrics()
    sock, got = open_stream(server, {"model": "dsv4-tiny", "prompt": prompt, "max_tokens": 1, "stream": True, "return_progress": True},
                            path="/v1/completions")
    # Wait for a progress event past admission (the prefill is under way), then leave.
    while b'"processed": 512' not in got and b'"processed":512' not in got:
        chunk = sock.recv(65536)
        assert chunk, got[-300:]
        got += chunk
    left = time.time()
    sock.close()
    assert wait_until(lambda: server.metrics()["dsv4_engine_requests"] == 0, timeout=10, step=0.05)
    freed_after = time.time() - left
    m = server.metrics()
    assert m['dsv4_prefill_tokens{state="remaining"}'] == 0
    assert m["dsv4_requests_cancelled_by_client_total"] == before.get("dsv4_requests_cancelled_by_client_total", 0) + 1
    # One engine step here is 512 tokens (well under 2 s on these machines); the prefill
    # itself would have taken far longer.
    assert freed_after < 5, freed_after
