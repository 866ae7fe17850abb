#!/usr/bin/env python3
"""Random model generations parsed by deepseek-recipe's stream parser (the oracle), compared
with `dsv4 parse`: reasoning_content, content and tool calls (name, arguments) folded from
the streamed deltas.

    python3 tools/parse_goldens.py golden OUT.jsonl [--count 300] [--seed 1]
    python3 tools/parse_goldens.py check [--count 2000] [--seed 5] [--bin dsv4]
"""
import argparse, json, os, random, subprocess, sys

import deepseek_recipe as dr

D = "｜DSML｜"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "location": {"type": "string"}, "days": {"type": "integer"}}}}}]
PIECES = ["hello", " world", "\n", "\n\n", "中文", "😀", "a < b", "x=1;", "\"q\"", "\\", "\t", "</thi", "<think>", "</think>", "｜DSM", "<｜User｜>", "json"]


def text(rng, n=None):
    return "".join(rng.choice(PIECES) for _ in range(n if n is not None else rng.randrange(0, 6)))


def param(rng):
    if rng.random() < 0.5:
        return f'<{D}parameter name="p{rng.randrange(5)}" string="true">{text(rng).replace("</", "<")}</{D}parameter>'
    v = rng.choice(["1", "2.50", "true", "null", '{"a": [1, "x"]}', "[1, 2]", "not json"])
    return f'<{D}parameter name="n{rng.randrange(5)}" string="false">{v}</{D}parameter>'


def block(rng):
    s = f"<{D}tool_calls>\n"
    for _ in range(rng.randrange(1, 3)):
        s += f'<{D}invoke name="{rng.choice(["get_weather", "other", "x_y"])}">\n'
        s += "".join(param(rng) + "\n" for _ in range(rng.randrange(0, 4)))
        s += f"</{D}invoke>\n"
    return s + f"</{D}tool_calls>"


WELL_FORMED = False


def generation(rng):
    thinking = rng.random() < 0.7
    s = ""
    if thinking:
        s += text(rng).replace("</think>", "")
        if rng.random() < 0.85:
            s += "</think>"
    s += text(rng).replace("</think>", "") if rng.random() < 0.8 else ""
    if rng.random() < 0.5:
        s += rng.choice(["\n\n", "\n", ""]) + block(rng)
        if not WELL_FORMED and rng.random() < 0.2:
            s = s[: rng.randrange(len(s) // 2, len(s))]  # unterminated
    return s, thinking, rng.random() < 0.85


def oracle(gen, thinking, tools, step):
    body = {"model": "DeepSeek-V4-Pro", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if tools:
        body["tools"] = TOOLS
    if not thinking:
        body["thinking"] = {"type": "disabled"}
    conv = dr.ChatCompletionRequest(body).convert(dr.ConversionOptions())
    sp = dr.StreamProcessor(dr.ChatCompletionRequest.chunk_generator(conv, "id", "m"), conv.parsing_options)
    chunks = []
    add = lambda r: chunks.extend(r if isinstance(r, list) else ([] if r is None else [r]))
    add(sp.push(dr.InferenceChunk.ready()))
    for i in range(0, len(gen), step):
        add(sp.push(dr.InferenceChunk.text(gen[i:i + step], 1)))
    add(sp.push(dr.InferenceChunk.finish(dr.InferenceFinishReason.Stop)))
    add(sp.finish())
    r = {"reasoning_content": None, "content": None, "tool_calls": []}
    for c in (json.loads(x.to_json()) for x in chunks):
        for ch in c.get("choices", []):
            d = ch.get("delta", {})
            for k in ("reasoning_content", "content"):
                if d.get(k) is not None:
                    r[k] = (r[k] or "") + d[k]
            for t in d.get("tool_calls") or []:
                while len(r["tool_calls"]) <= t["index"]:
                    r["tool_calls"].append({"name": "", "arguments": ""})
                f = t.get("function", {})
                r["tool_calls"][t["index"]]["name"] += f.get("name") or ""
                r["tool_calls"][t["index"]]["arguments"] += f.get("arguments") or ""
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["golden", "check"])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=None)
    ap.add_argument("--well-formed", action="store_true", help="only complete tool blocks")
    a = ap.parse_args()
    global WELL_FORMED
    WELL_FORMED = a.well_formed
    rng = random.Random(a.seed)
    cases = []
    while len(cases) < a.count:
        g, th, tl = generation(rng)
        step = rng.choice([1, 2, 3, 7, 1000])
        try:
            cases.append(({"text": g, "thinking": th, "tools": tl, "chunk": step}, oracle(g, th, tl, step)))
        except Exception:
            pass  # the oracle rejects some malformed streams outright
    if a.mode == "golden":
        with open(a.out, "w") as f:
            for inp, exp in cases:
                f.write(json.dumps({"input": inp, "expected": exp}, ensure_ascii=False) + "\n")
        print(f"wrote {len(cases)} generations to {a.out}")
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = a.bin or os.path.join(subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, text=True).strip(), "dsv4")
    res = subprocess.run([binary, "parse"], input="".join(json.dumps(i) + "\n" for i, _ in cases).encode(), capture_output=True, check=True)
    ours = [json.loads(l) for l in res.stdout.decode().splitlines()]
    bad = [(i, e, o) for (i, e), o in zip(cases, ours) if e != o]
    print(f"{len(cases) - len(bad)} passed, {len(bad)} failed")
    for i, e, o in bad[:5]:
        print("INPUT   ", json.dumps(i, ensure_ascii=False))
        print("EXPECTED", json.dumps(e, ensure_ascii=False))
        print("GOT     ", json.dumps(o, ensure_ascii=False))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
