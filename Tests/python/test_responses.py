"""The agent clients' surface against `dsv4 serve`: the OpenAI Responses API with the official
`openai` client (create, stream, store, previous_response_id, retrieve, delete, input_tokens),
the OpenAI Agents SDK running a tool-using agent, and Anthropic's messages.count_tokens with
the official `anthropic` client."""
import json, threading, time

import jsonschema
import pytest
from openai import OpenAI, BadRequestError, NotFoundError

from conftest import Server
from test_openai_api import json_prefix_ok

MODEL = "dsv4-tiny"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}}, "required": ["location"]}}]


def client(s, key="x"):
    return OpenAI(base_url=s.base + "/v1", api_key=key, max_retries=0, timeout=120)


def input_tokens(s, body, key="x"):
    """POST /v1/responses/input_tokens through the client's typed method."""
    r = client(s, key).responses.input_tokens.count(**body)
    assert r.object == "response.input_tokens"
    return r.input_tokens


def test_plain_create_reports_items_usage_and_status(server):
    c = client(server)
    r = c.responses.create(model=MODEL, input="Hello there", instructions="Be brief.", max_output_tokens=12,
                           metadata={"k": "v"}, user="u1", temperature=0.7)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == MODEL
    assert r.status in ("completed", "incomplete")
    if r.status == "incomplete":
        assert r.incomplete_details.reason == "max_output_tokens"
    assert r.instructions == "Be brief." and r.metadata == {"k": "v"} and r.user == "u1" and r.max_output_tokens == 12
    assert r.output and {i.type for i in r.output} <= {"reasoning", "message"}
    u = r.usage
    assert 0 < u.output_tokens <= 12 and u.total_tokens == u.input_tokens + u.output_tokens
    assert 0 <= u.output_tokens_details.reasoning_tokens <= u.output_tokens
    assert u.input_tokens == input_tokens(server, {"model": MODEL, "input": "Hello there", "instructions": "Be brief."})
    # A long prompt sent twice: the second time its full pages come from the prefix cache.
    long = f"nonce {time.time()} " + "The quick brown fox jumps over the lazy dog. " * 60
    first = c.responses.create(model=MODEL, input="Hi", instructions=long, max_output_tokens=1)
    again = c.responses.create(model=MODEL, input="Hi", instructions=long, max_output_tokens=1)
    assert first.usage.input_tokens_details.cached_tokens == 0
    assert 0 < again.usage.input_tokens_details.cached_tokens < again.usage.input_tokens


def test_reasoning_off_gives_one_message(server):
    r = client(server).responses.create(model=MODEL, input="Say hi", reasoning={"effort": "none"}, max_output_tokens=6)
    assert [i.type for i in r.output] == ["message"] and r.output[0].content[0].type == "output_text"
    assert r.output_text == r.output[0].content[0].text
    assert r.usage.output_tokens_details.reasoning_tokens == 0


def test_json_schema_output_follows_the_schema(server):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green"]}, "n": {"type": "integer"}},
              "required": ["ok", "color", "n"], "additionalProperties": False}
    r = client(server).responses.create(model=MODEL, input="Describe it.", reasoning={"effort": "none"}, max_output_tokens=120, temperature=0,
                                        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}})
    assert r.status == "completed", r.output_text
    jsonschema.validate(json.loads(r.output_text), schema)
    # json_object: a JSON object, or (cut short) a prefix of one.
    r = client(server).responses.create(model=MODEL, input="json please", reasoning={"effort": "none"}, max_output_tokens=40, temperature=0,
                                        text={"format": {"type": "json_object"}})
    assert r.output_text.lstrip().startswith("{") and json_prefix_ok(r.output_text), r.output_text
    if r.status == "completed":
        assert isinstance(json.loads(r.output_text), dict)


def test_tool_call_then_continuation_with_previous_response_id(scripted):
    c = client(scripted, "sk-test")
    first = c.responses.create(model=MODEL, input="Weather in Paris?", tools=TOOLS, instructions="You help.")
    assert [i.type for i in first.output] == ["reasoning", "function_call"]
    assert first.output[0].content[0].text == "Let me check the weather."
    call = first.output[1]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"location": "Paris", "days": 2} and call.call_id.startswith("call_")
    assert first.status == "completed" and first.store is True
    # Continued: renders exactly as the whole history sent again (same prompt tokens) and hits the cache.
    output = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    second = c.responses.create(model=MODEL, previous_response_id=first.id, input=output, tools=TOOLS, instructions="You help.")
    history = [{"role": "user", "content": "Weather in Paris?"}] + [i.model_dump(exclude_none=True) for i in first.output] + output
    full = {"model": MODEL, "input": history, "tools": TOOLS, "instructions": "You help."}
    assert second.usage.input_tokens == input_tokens(scripted, full, "sk-test")
    assert second.usage.input_tokens == input_tokens(scripted, {"model": MODEL, "previous_response_id": first.id, "input": output,
                                                                "tools": TOOLS, "instructions": "You help."}, "sk-test")
    assert second.usage.input_tokens > first.usage.input_tokens
    assert second.usage.input_tokens_details.cached_tokens > 0  # the first turn's pages are reused
    assert second.previous_response_id == first.id
    # Stored: retrieve, delete, then 404 (also as previous_response_id).
    got = c.responses.retrieve(first.id)
    assert got.id == first.id and [i.type for i in got.output] == ["reasoning", "function_call"]
    assert c.responses.delete(first.id) is None
    with pytest.raises(NotFoundError):
        c.responses.retrieve(first.id)
    with pytest.raises(NotFoundError) as e:
        c.responses.create(model=MODEL, previous_response_id=first.id, input="again")
    assert e.value.body["param"] == "previous_response_id"


def test_store_false_is_not_retrievable(scripted):
    c = client(scripted, "sk-test")
    r = c.responses.create(model=MODEL, input="hi", store=False)
    with pytest.raises(NotFoundError):
        c.responses.retrieve(r.id)


def test_stream_events_parse_in_order_with_sequence_numbers(scripted):
    c = client(scripted, "sk-test")
    with c.responses.stream(model=MODEL, input="Weather in Paris?", tools=TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.reasoning_text.delta" in types and "response.function_call_arguments.delta" in types
    args_done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(args_done) == 1 and json.loads(args_done[0].arguments) == {"location": "Paris", "days": 2}
    # Every item is added before its deltas and done after them; no markup in any text.
    open_items = set()
    for e in events:
        if e.type == "response.output_item.added":
            open_items.add(e.item.id)
        elif e.type == "response.output_item.done":
            open_items.remove(e.item.id)
        elif e.type.endswith(".delta"):
            assert e.item_id in open_items, e
            assert "DSML" not in e.delta and "</think>" not in e.delta
    assert not open_items
    assert [i.type for i in final.output] == ["reasoning", "function_call"] and final.usage.output_tokens > 0


def test_stream_on_the_real_model_ends_incomplete_at_the_limit(server):
    with client(server).responses.stream(model=MODEL, input="Tell a long story", max_output_tokens=5) as stream:
        events = list(stream)
    assert events[-1].type in ("response.completed", "response.incomplete")
    if events[-1].type == "response.incomplete":
        assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_bad_requests_get_located_openai_errors(scripted):
    c = client(scripted, "sk-test")
    for kwargs, param in [
        ({"input": [{"type": "bogus"}]}, "input[0].type"),
        ({"input": [{"type": "function_call_output", "call_id": "x", "output": "y"}]}, "messages[0]"),
        ({"input": "x", "tools": [{"type": "custom", "name": "t"}]}, "tools[0].type"),
        ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
        ({"input": []}, "input"),
    ]:
        with pytest.raises(BadRequestError) as e:
            c.responses.create(model=MODEL, **kwargs)
        assert e.value.body["param"] == param, (kwargs, e.value.body)


def test_store_stays_within_its_bounds(tmp_path):
    """1,000 stored responses over HTTP into a store of 50 / 60 kB (a debug build's engine
    serves ~10 requests a second here; ResponsesTests puts 10,000 into the store directly)."""
    script = tmp_path / "s.txt"
    script.write_text("ok")
    s = Server("--fake-script", str(script), "--responses-store-count", "50", "--responses-store-bytes", "60000")
    try:
        ids, lock = [], threading.Lock()

        def worker(n):
            c = client(s)
            for i in range(n):
                r = c.responses.create(model=MODEL, input=f"request {i} " + "x" * (i % 50), reasoning={"effort": "none"})
                with lock:
                    ids.append(r.id)

        threads = [threading.Thread(target=worker, args=(125,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ids) == 1000
        m = s.metrics()
        assert 0 < m['dsv4_responses_stored{kind="count"}'] <= 50 and m['dsv4_responses_stored{kind="max_count"}'] == 50
        assert m['dsv4_responses_stored{kind="bytes"}'] <= 60_000
        c = client(s)
        with pytest.raises(NotFoundError):
            c.responses.retrieve(ids[0])  # long evicted
        assert sum(1 for i in ids[-8:] if c.responses.retrieve(i).id == i) == 8  # the newest are kept
        assert s.proc.poll() is None
    finally:
        s.stop()


def test_openai_agents_sdk_runs_a_tool_using_agent(scripted):
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI
    calls = []

    @agents.function_tool
    def get_weather(location: str, days: int = 1) -> str:
        """Weather for a city."""
        calls.append((location, days))
        return f"sunny in {location}"

    model = agents.OpenAIResponsesModel(model=MODEL, openai_client=AsyncOpenAI(base_url=scripted.base + "/v1", api_key="sk-test", max_retries=0))
    agent = agents.Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather], model=model,
                         tool_use_behavior="stop_on_first_tool")
    result = agents.Runner.run_sync(agent, "Weather in Paris?", run_config=agents.RunConfig(tracing_disabled=True))
    assert calls == [("Paris", 2)] and result.final_output == "sunny in Paris"


def test_anthropic_count_tokens_matches_create(scripted):
    anthropic = pytest.importorskip("anthropic")
    c = anthropic.Anthropic(base_url=scripted.base, api_key="sk-test", max_retries=0)
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": TOOLS[0]["parameters"]}]
    for kwargs in [{"messages": [{"role": "user", "content": "Hi"}]},
                   {"messages": [{"role": "user", "content": "Weather?"}], "system": "Be brief.", "tools": tools,
                    "thinking": {"type": "enabled", "budget_tokens": 1024}}]:
        counted = c.messages.count_tokens(model=MODEL, **kwargs).input_tokens
        made = c.messages.create(model=MODEL, max_tokens=64, **kwargs)
        assert counted == made.usage.input_tokens + (made.usage.cache_read_input_tokens or 0)
