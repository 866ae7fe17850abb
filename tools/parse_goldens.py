#!/usr/bin/env python3
"""Random model generations parsed by deepseek-recipe's stream parser (the oracle), compared
with `dsv4 parse`: reasoning_content, content and tool calls (name, arguments) folded from
the streamed deltas.

    python3 tools/parse_goldens.py golden OUT.jsonl [--count 300] [--seed 1]
    python3 tools/parse_goldens.py cases OUT.jsonl     # the hand-picked CASES below
    python3 tools/parse_goldens.py check [--count 2000] [--seed 5] [--bin dsv4]

`cases` writes the recipe's answer for each of CASES (tools requested) at every chunk size
1-9 and all at once: Tests/Fixtures/chat/parse_cases.jsonl, read by OutputParserTests.
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

T = f"<{D}tool_calls>"
I = f"<{D}invoke"
P = f"<{D}parameter"
E = f"</{D}"
# Hand-picked streams, by the test group that reads them: (group, text, thinking).
CASES = [
    # A stream that stopped inside a tool call: arguments stay as streamed so far.
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="x">\n{P} name="n2" string="false">1', True),
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="x">\n', True),
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="x">\n{P} name="p" string="true">ab{E}', True),
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="x">\n{P} name="p" string="true">ab</{D[:-1]}', True),
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="x">\n{P} name="p" string="true">ab{E}parameter>\n{E}', True),
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="x">\n{P} name="p', True),
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="x">\n{P} name="p" ', True),
    ("unterminated", f"r</think>c\n\n<{D}tool_ca", True),
    ("unterminated", f'r</think>c\n\n{T}\n{I} name="get_w', True),
    # Newlines after a held-back partial marker.
    ("partial-marker-newline", "r</thi\n\n</think>c", True),
    ("partial-marker-newline", f'r</thi\n{T}\n{I} name="f">\n{E}invoke>\n{E}tool_calls>', True),
    ("partial-marker-newline", f'r<｜DSM\n\n{T}\n{I} name="f">\n{E}invoke>\n{E}tool_calls>', True),
    ("partial-marker-newline", "r<｜DSM\n</think>c", True),
    ("partial-marker-newline", f'r</think>c</thi\n{T}\n{I} name="f">\n{E}invoke>\n{E}tool_calls>', True),
    ("partial-marker-newline", f'c</thi\n\n{T}\n{I} name="f">\n{E}invoke>\n{E}tool_calls>', False),
    ("partial-marker-newline", "r</think>c\n\n", True),
    ("partial-marker-newline", "r</thi\n", True),
    ("partial-marker-newline", f'a\n\n</think>{T}\n{I} name="f">\n{E}invoke>\n{E}tool_calls>', False),
    ("partial-marker-newline", f'r</think>a\n</think>\n{T}\n{I} name="f">\n{E}invoke>\n{E}tool_calls>', True),
    # Leading newlines dropped from each stage's input.
    ("leading-newlines", "r</think>\n\n</think>\n\nb", True),
    ("leading-newlines", "\n\nr\n\n</think>\n\nc", True),
    ("leading-newlines", "\n\na\n</think>\nb", False),
    # Deviations the recipe accepts or ends the block on.
    ("lenient", f'r{I} name="x">\n{E}invoke>', True),
    ("lenient", f'r</think>c{T}{I} name="x">junk{P} name="a" string="true">1{E}parameter>junk{E}invoke>x'
                f'{I} name="y">{E}invoke>{E}tool_calls>tail', True),
    ("lenient", f"r</think>c<{D}foo>bar", True),
    ("lenient", f'r</think>c\n\n{T}\n{I} name="x">\n{P} name="p0" string="maybe">1{E}parameter>{E}invoke>{E}tool_calls>', True),
]
CASE_CHUNKS = list(range(1, 10)) + [1_000_000]


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
    ap.add_argument("mode", choices=["golden", "cases", "check"])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=None)
    ap.add_argument("--well-formed", action="store_true", help="only complete tool blocks")
    a = ap.parse_args()
    global WELL_FORMED
    WELL_FORMED = a.well_formed
    if a.mode == "cases":
        with open(a.out, "w") as f:
            for group, g, th in CASES:
                for step in CASE_CHUNKS:
                    inp = {"text": g, "thinking": th, "tools": True, "chunk": step}
                    f.write(json.dumps({"group": group, "input": inp, "expected": oracle(g, th, True, step)},
                                       ensure_ascii=False) + "\n")
        print(f"wrote {len(CASES)} cases x {len(CASE_CHUNKS)} chunk sizes to {a.out}")
        return
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
