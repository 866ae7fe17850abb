#!/usr/bin/env python3
"""Random requests rendered by DeepSeek's own deepseek-recipe (the oracle), per API.

    python3 tools/render_goldens.py golden OUT.jsonl [--api chat|responses|messages] [--count 400] [--seed 1]
        writes {"request": ..., "prompt": ...} lines (committed as a fixture)
    python3 tools/render_goldens.py check [--api chat|responses|messages] [--count 3000] [--seed 9] [--bin dsv4]
        fresh requests, `dsv4 render --api API --jsonl`, compare byte for byte (exit 1 on mismatch)

Chat requests (below); Responses and Messages requests: see tools/render_goldens_apis.py.

Requests cover thinking on/off, every reasoning effort, system prompts (also mid-conversation),
tools with nested schemas, assistant tool calls (valid and invalid JSON arguments, parallel
calls), tool results (string and multi-part, out of order), multi-part user content,
reasoning_content in history, latest_reminder messages, assistant prefixes, strict tools and
response formats.
"""
import argparse, json, os, random, subprocess, sys

import deepseek_recipe as dr

MODEL = "DeepSeek-V4-Pro"
WORDS = ["hello", "world", "Paris", "价格", "こんにちは", "😀", "x = 1;", "line1\nline2", "  spaced  ", "<tag>", "\"quoted\"",
         "tab\there", "ünïcödé", "12345", "</tool_result>", "json"]


def text(rng, n=None):
    return " ".join(rng.choice(WORDS) for _ in range(n if n is not None else rng.randrange(1, 6)))


def maybe_empty(rng, s, p=0.08):
    return "" if rng.random() < p else s


def call_id(rng, t, c):
    # Real clients send ids in any byte order (the recipe sorts calls by id).
    return rng.choice([f"call_{t}_{c}", f"call_{rng.randrange(10**6)}", "".join(rng.choice("aZ09_-") for _ in range(6))])


def schema(rng, depth=0):
    t = rng.choice(["string", "integer", "number", "boolean", "array", "object"] if depth < 2 else ["string", "integer"])
    s = {"type": t}
    if rng.random() < 0.4:
        s["description"] = text(rng, 3)
    if t == "array":
        s["items"] = schema(rng, depth + 1)
    if t == "object":
        props = {f"p{i}_{rng.randrange(100)}": schema(rng, depth + 1) for i in range(rng.randrange(1, 4))}
        s["properties"] = props
        if rng.random() < 0.5:
            s["required"] = list(props)[:1]
    if t == "string" and rng.random() < 0.3:
        s["enum"] = ["a", "b", "c"]
    return s


def tool(rng, i):
    fn = {"name": f"tool_{i}_{rng.choice(['get', 'set', 'run'])}"}
    if rng.random() < 0.8:
        fn["description"] = text(rng)
    if rng.random() < 0.9:
        fn["parameters"] = {"type": "object", "properties": {f"arg{j}": schema(rng) for j in range(rng.randrange(0, 4))},
                            "required": [] if rng.random() < 0.5 else ["arg0"]}
    if rng.random() < 0.15:
        fn["strict"] = rng.choice([True, False])
    return {"type": "function", "function": fn}


def value(rng, depth=0):
    k = rng.randrange(6 if depth < 2 else 4)
    if k == 0: return text(rng)
    if k == 1: return rng.randrange(-1000, 1000)
    if k == 2: return rng.choice([True, False, None])
    if k == 3: return rng.choice([0.5, 2.25, -3.125, 100.0])
    if k == 4: return [value(rng, depth + 1) for _ in range(rng.randrange(0, 3))]
    return {f"k{j}": value(rng, depth + 1) for j in range(rng.randrange(0, 3))}


def request(rng):
    tools = [tool(rng, i) for i in range(rng.randrange(1, 4))] if rng.random() < 0.4 else []
    msgs = []
    if rng.random() < 0.6:
        msgs.append({"role": "system", "content": maybe_empty(rng, text(rng))})
    turns = rng.randrange(1, 4)
    for t in range(turns):
        if rng.random() < 0.2:
            msgs.append({"role": "user", "content": [{"type": "text", "text": text(rng)} for _ in range(rng.randrange(1, 3))]})
        else:
            msgs.append({"role": "user", "content": maybe_empty(rng, text(rng))})
            if rng.random() < 0.1:
                msgs.append({"role": "user", "content": maybe_empty(rng, text(rng), 0.3)})
        if rng.random() < 0.1:
            msgs.append({"role": "system", "content": maybe_empty(rng, text(rng, 2))})
        if t == turns - 1 and rng.random() < 0.5:
            break
        a = {"role": "assistant", "content": text(rng)}
        if rng.random() < 0.5:
            a["reasoning_content" if rng.random() < 0.8 else "reasoning"] = text(rng)
        calls = []
        if tools and rng.random() < 0.6:
            for c in range(rng.randrange(1, 3)):
                args = {f"arg{j}": value(rng) for j in range(rng.randrange(0, 3))}
                arg_text = json.dumps(args) if rng.random() < 0.9 else "not { json"
                calls.append({"id": call_id(rng, t, c), "type": "function",
                              "function": {"name": rng.choice(tools)["function"]["name"], "arguments": arg_text}})
            a["tool_calls"] = calls
            if rng.random() < 0.5:
                a["content"] = ""
        msgs.append(a)
        if calls:
            order = list(calls)
            rng.shuffle(order)
            for c in order:
                content = text(rng) if rng.random() < 0.7 else [{"type": "text", "text": text(rng)}, {"type": "text", "text": text(rng)}]
                msgs.append({"role": "tool", "tool_call_id": c["id"], "content": content})
            if rng.random() < 0.3:
                msgs.append({"role": "user", "content": maybe_empty(rng, text(rng), 0.2)})
            elif rng.random() < 0.3:
                msgs.append({"role": "assistant", "content": text(rng), "reasoning_content": text(rng)})
    if rng.random() < 0.05:
        msgs.append({"role": "latest_reminder", "content": text(rng)})
    elif msgs[-1]["role"] == "user" and rng.random() < 0.1:
        msgs.append({"role": "assistant", "content": text(rng), "prefix": True})
    body = {"model": MODEL, "messages": msgs}
    if tools:
        body["tools"] = tools
    r = rng.random()
    if r < 0.25:
        body["thinking"] = {"type": rng.choice(["enabled", "disabled", "adaptive"])}
    if rng.random() < 0.7:
        body["reasoning_effort"] = rng.choice(["none", "minimal", "low", "medium", "high", "xhigh", "ultra", "max"])
    if rng.random() < 0.1:
        body["response_format"] = rng.choice([{"type": "json_object"}, {"type": "text"},
                                              {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema(rng)}}])
    return body


def oracle(body, api="chat"):
    kind = {"chat": dr.ChatCompletionRequest, "responses": dr.ResponsesRequest, "messages": dr.MessagesRequest}[api]
    try:
        conv = kind(json.loads(json.dumps(body))).convert(dr.ConversionOptions())
        return dr.DeepseekV4Encoding().render_conversation(conv.conversation).prompt
    except Exception as e:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["golden", "check"])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=None)
    ap.add_argument("--api", choices=["chat", "responses", "messages"], default="chat")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    import render_goldens_apis as apis
    make = {"chat": request, "responses": apis.responses_request, "messages": apis.messages_request}[a.api]
    cases = []
    while len(cases) < a.count:
        b = make(rng)
        p = oracle(b, a.api)
        if p is not None:
            cases.append((b, p))
    if a.mode == "golden":
        with open(a.out, "w") as f:
            for b, p in cases:
                f.write(json.dumps({"request": b, "prompt": p}, ensure_ascii=False) + "\n")
        print(f"wrote {len(cases)} requests to {a.out}")
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = a.bin or os.path.join(subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, text=True).strip(), "dsv4")
    inp = "".join(json.dumps(b) + "\n" for b, _ in cases)
    res = subprocess.run([binary, "render", "--api", a.api, "--jsonl"], input=inp.encode(), capture_output=True, check=True)
    ours = [json.loads(l) for l in res.stdout.decode().splitlines()]
    bad = [(b, p, o) for (b, p), o in zip(cases, ours) if o != p]
    print(f"{len(cases) - len(bad)} passed, {len(bad)} failed")
    for b, p, o in bad[:3]:
        o = o if isinstance(o, str) else json.dumps(o, ensure_ascii=False)
        at = next((i for i, (x, y) in enumerate(zip(p, o)) if x != y), min(len(p), len(o)))
        print("REQUEST", json.dumps(b, ensure_ascii=False)[:1500])
        print(f"FIRST DIFFERENCE at character {at}")
        print("EXPECTED", repr(p[max(0, at - 300):at + 300]))
        print("GOT     ", repr(o[max(0, at - 300):at + 300]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
