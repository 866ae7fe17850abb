#!/usr/bin/env python3
"""The context curve through the server, as a user measures it: random token-id prompts on
/v1/completions of `dsv4 serve` (streaming), timed by the client.

    python3 bench/context_curve.py [--bin PATH] [--model DIR] [--lengths 4096,65536]
                                   [--decode-tokens 16] [--threads 2] [--kv-cache-dtype f32|bf16|fp8]
                                   [--kv-cache-memory BYTES] [--progress] [--json]

For each length: prefill seconds (request sent -> first token), prefill tok/s, decode tok/s at
that depth (first token -> last), the server's resident memory after the request (VmRSS and
peak VmHWM from /proc), the cache bytes in use and per token of context (/metrics), and the
ratio of each prefill throughput to the first length's. --progress asks for the server's
prompt_progress events and prints one on stderr every 30 s.
The server listens on 127.0.0.1 only; one server serves every length, so the caches of
earlier lengths are freed (different random prompts share no prefix).
"""
import argparse, json, os, random, socket, subprocess, sys, tempfile, time, urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            return float(line.split()[-1])
    return float("nan")


def stream_completion(port, prompt, max_tokens, progress=False):
    body = json.dumps({"model": "dsv4-tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True, "stream": True, "return_progress": progress}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    sent = time.time()
    first = last = None
    tokens = 0
    shown = sent
    with urllib.request.urlopen(req, timeout=24 * 3600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            p = chunk.get("prompt_progress")
            if p and time.time() - shown > 30:
                shown = time.time()
                print(f"  {p['processed']} / {p['total']} tokens, {p['time_ms'] / 1000:.0f} s", file=sys.stderr, flush=True)
            if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                now = time.time()
                first = first or now
                last = now
                tokens += 1
    return sent, first, last, tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled dsv4-tiny)")
    ap.add_argument("--lengths", default="4096,65536")
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-cache-memory", type=int, default=2 << 30)
    ap.add_argument("--kv-cache-dtype", default="f32", choices=["f32", "bf16", "fp8"])
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = a.bin or os.path.join(subprocess.check_output(
        ["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, text=True).strip(), "dsv4")
    lengths = [int(x) for x in a.lengths.split(",")]
    port = free_port()
    args = [binary, "serve", "--port", str(port), "--threads", str(a.threads), "--max-model-len", str(max(lengths) + a.decode_tokens + 8),
            "--kv-cache-memory", str(a.kv_cache_memory), "--kv-cache-dtype", a.kv_cache_dtype]
    if a.model:
        args += ["--model", a.model]
    log = tempfile.NamedTemporaryFile(prefix="dsv4-context-", suffix=".log", delete=False)
    server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit("server exited: " + open(log.name).read()[-2000:])
                time.sleep(0.5)
        rng = random.Random(7)
        base = None
        for n in lengths:
            prompt = [rng.randrange(2, 120000) for _ in range(n)]
            sent, first, last, tokens = stream_completion(port, prompt, a.decode_tokens, a.progress)
            prefill = first - sent
            decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
            rate = n / prefill
            base = base or rate
            row = {"prompt_tokens": n, "prefill_seconds": round(prefill, 3), "prefill_tokens_per_second": round(rate, 1),
                   "decode_tokens_per_second": round(decode, 2), "prefill_ratio_to_first": round(rate / base, 3),
                   "server_rss_mb": proc_kb(server.pid, "VmRSS") // 1024, "server_peak_rss_mb": proc_kb(server.pid, "VmHWM") // 1024,
                   "kv_cache_dtype": a.kv_cache_dtype,
                   "cache_bytes_per_token": metric(port, "dsv4_cache_bytes_per_token"),
                   "cache_used_mb": round(metric(port, 'dsv4_cache_bytes{kind="used"}') / 1e6, 1)}
            if a.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{n:>9} tokens: prefill {prefill:8.2f} s ({rate:7.1f} tok/s, {rate / base:.2f}x the first), "
                      f"decode {decode:6.2f} tok/s, server RSS {row['server_rss_mb']} MB (peak {row['server_peak_rss_mb']} MB), "
                      f"cache {a.kv_cache_dtype} {row['cache_bytes_per_token']:.1f} B/token, {row['cache_used_mb']} MB in use",
                      flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
