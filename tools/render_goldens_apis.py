"""Random OpenAI Responses and Anthropic Messages requests for tools/render_goldens.py.

They cover what the two APIs carry into a V4 prompt: instructions / system prompts (string
and text blocks), developer and mid-conversation system messages, multi-part user content
(text, images), assistant history, reasoning items and thinking blocks, function calls and
their outputs (parallel, answered out of order, string and multi-part outputs), function
tools (strict schemas, missing descriptions / parameters, built-in tools the recipe drops),
tool_choice, reasoning efforts, thinking on/off, structured-output formats.
"""
import json

from render_goldens import MODEL, schema, text, value

EFFORTS = ["none", "minimal", "low", "medium", "high", "xhigh", "max"]


def _params(rng):
    return {"type": "object", "properties": {f"arg{j}": schema(rng) for j in range(rng.randrange(0, 4))},
            "required": [] if rng.random() < 0.5 else ["arg0"]}


def _call_id(rng, t, c):
    return rng.choice([f"call_{t}_{c}", f"fc_{rng.randrange(10**6)}", "".join(rng.choice("aZ09_-") for _ in range(6))])


def _args(rng):
    return json.dumps({f"arg{j}": value(rng) for j in range(rng.randrange(0, 3))})


# MARK: - Responses

def _responses_tools(rng):
    tools = []
    for i in range(rng.randrange(1, 4)):
        t = {"type": "function", "name": f"tool_{i}_{rng.choice(['get', 'set', 'run'])}"}
        if rng.random() < 0.8:
            t["description"] = text(rng)
        if rng.random() < 0.9:
            t["parameters"] = _params(rng)
        if rng.random() < 0.2:
            t["strict"] = rng.choice([True, False])
        tools.append(t)
    if rng.random() < 0.1:
        tools.insert(rng.randrange(len(tools) + 1), {"type": rng.choice(["web_search", "web_search_preview", "file_search"])})
    return tools


def _user_content(rng):
    r = rng.random()
    if r < 0.5:
        return text(rng)
    parts = [{"type": "input_text", "text": text(rng)} for _ in range(rng.randrange(1, 3))]
    if rng.random() < 0.15:
        parts.insert(rng.randrange(len(parts) + 1), {"type": "input_image", "image_url": "https://example.com/a.png"})
    return parts


def _reasoning_item(rng):
    item = {"type": "reasoning", "id": f"rs_{rng.randrange(1000)}", "summary": []}
    if rng.random() < 0.3:
        item["summary"] = [{"type": "summary_text", "text": text(rng)}]
    if rng.random() < 0.8:
        item["content"] = [{"type": "reasoning_text", "text": text(rng)} for _ in range(rng.randrange(1, 3))]
    return item


def _assistant_message(rng):
    if rng.random() < 0.2:
        return {"role": "assistant", "content": text(rng)}
    return {"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": text(rng)} for _ in range(rng.randrange(1, 3))]}


def _assistant_turn(rng, tools, t):
    """Items of one assistant turn (reasoning, text, calls) and the outputs that answer it."""
    items = []
    if rng.random() < 0.5:
        items.append(_reasoning_item(rng))
    if rng.random() < 0.7:
        items.append(_assistant_message(rng))
    calls = []
    if tools and rng.random() < 0.6:
        fns = [x["name"] for x in tools if x["type"] == "function"]
        for c in range(rng.randrange(1, 3)):
            calls.append({"type": "function_call", "call_id": _call_id(rng, t, c), "name": rng.choice(fns), "arguments": _args(rng)})
    if not items and not calls:
        items.append(_assistant_message(rng))
    outputs = []
    for c in rng.sample(calls, len(calls)):
        out = text(rng) if rng.random() < 0.7 else [{"type": "input_text", "text": text(rng)} for _ in range(2)]
        outputs.append({"type": "function_call_output", "call_id": c["call_id"], "output": out})
    return items + calls, outputs


def responses_request(rng):
    tools = _responses_tools(rng) if rng.random() < 0.4 else []
    body = {"model": MODEL}
    if rng.random() < 0.15:
        body["input"] = text(rng)
    else:
        items = []
        if rng.random() < 0.2:
            items.append({"role": rng.choice(["system", "developer"]), "content": text(rng)})
        turns = rng.randrange(1, 4)
        for t in range(turns):
            items.append({"role": "user", "content": _user_content(rng)} if rng.random() < 0.8 else
                         {"type": "message", "role": "user", "content": _user_content(rng)})
            if rng.random() < 0.08:
                items.append({"role": rng.choice(["system", "developer"]), "content": text(rng, 2)})
            if t == turns - 1 and rng.random() < 0.5:
                break
            turn, outputs = _assistant_turn(rng, tools, t)
            items += turn + outputs
        body["input"] = items
    if rng.random() < 0.5:
        body["instructions"] = text(rng)
    if tools:
        body["tools"] = tools
        if rng.random() < 0.3:
            fns = [x["name"] for x in tools if x["type"] == "function"]
            # Not "required" or a named function: the recipe then opens the tool-call block in the
            # prompt, where this server forces the call by constrained decoding (README).
            body["tool_choice"] = rng.choice(["auto", "none"])
        if rng.random() < 0.2:
            body["parallel_tool_calls"] = rng.choice([True, False])
    if rng.random() < 0.7:
        body["reasoning"] = {"effort": rng.choice(EFFORTS)}
    r = rng.random()
    if r < 0.08:
        body["text"] = {"format": {"type": "json_schema", "name": "answer", "schema": _params(rng), "strict": rng.choice([True, False])}}
    elif r < 0.12:
        body["text"] = {"format": {"type": "json_object"}}
        body["instructions"] = "Reply in json. " + body.get("instructions", "")
    elif r < 0.16:
        body["text"] = {"format": {"type": "text"}}
    if rng.random() < 0.2:
        body.update({"temperature": 0.5, "top_p": 0.9, "max_output_tokens": 64, "metadata": {"k": "v"}, "user": "u1", "store": False})
    return body


# MARK: - Messages

def _blocks(rng):
    return [{"type": "text", "text": text(rng)} for _ in range(rng.randrange(1, 3))]


def messages_request(rng):
    tools = []
    if rng.random() < 0.4:
        for i in range(rng.randrange(1, 4)):
            t = {"name": f"tool_{i}_{rng.choice(['get', 'set', 'run'])}", "input_schema": _params(rng)}
            if rng.random() < 0.8:
                t["description"] = text(rng)
            tools.append(t)
    body = {"model": MODEL, "max_tokens": rng.choice([16, 1024])}
    if rng.random() < 0.5:
        body["system"] = text(rng) if rng.random() < 0.6 else _blocks(rng)
    msgs = []
    turns = rng.randrange(1, 4)
    for t in range(turns):
        msgs.append({"role": "user", "content": text(rng) if rng.random() < 0.5 else _blocks(rng)})
        if t == turns - 1 and rng.random() < 0.6:
            break
        content = []
        if rng.random() < 0.5:
            content.append({"type": "thinking", "thinking": text(rng), "signature": "sig"})
        if rng.random() < 0.7:
            content.append({"type": "text", "text": text(rng)})
        calls = []
        if tools and rng.random() < 0.6:
            for c in range(rng.randrange(1, 3)):
                calls.append({"type": "tool_use", "id": _call_id(rng, t, c), "name": rng.choice(tools)["name"],
                              "input": json.loads(_args(rng))})
        content += calls
        if not content:
            content.append({"type": "text", "text": text(rng)})
        msgs.append({"role": "assistant", "content": content if rng.random() < 0.9 or calls else text(rng)})
        if calls:
            results = []
            for c in rng.sample(calls, len(calls)):
                out = text(rng) if rng.random() < 0.7 else _blocks(rng)
                results.append({"type": "tool_result", "tool_use_id": c["id"], "content": out})
            if rng.random() < 0.3:
                results.append({"type": "text", "text": text(rng)})
            msgs.append({"role": "user", "content": results})
            if t == turns - 1:
                break
    body["messages"] = msgs
    if tools:
        body["tools"] = tools
        if rng.random() < 0.3:
            body["tool_choice"] = rng.choice([{"type": "auto"}, {"type": "none"}])  # not any / tool: see responses_request
    r = rng.random()
    if r < 0.3:
        body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    elif r < 0.5:
        body["thinking"] = {"type": "disabled"}
    elif r < 0.6:
        body["thinking"] = {"type": "adaptive"}
    if rng.random() < 0.3:
        body["output_config"] = {"effort": rng.choice(["low", "medium", "high", "max"])}
    if rng.random() < 0.2:
        body.update({"temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"]})
    return body
