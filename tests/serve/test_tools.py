"""Tool calling through edgekit serve with the official openai client, streamed and not."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.serve.conftest import CLIENT_KEY, client
from tests.tools_data import ASK, SCHEMAS, TOOLS



@pytest.fixture
def server(serve_app, local_gguf):
    return serve_app(local_gguf, None, api_keys=(CLIENT_KEY,), model_name="smollm2", max_queue=4)


def _valid(call) -> dict:
    spec = SCHEMAS[call.function.name]
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, spec)
    return args


def _streamed(c, **kw):
    chunks = list(c.chat.completions.create(model="smollm2", stream=True, **kw))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    return calls, text, finishes


def test_required_named_and_auto_streamed_and_not(server):
    c = client(server.base)
    for choice in ("required", {"type": "function", "function": {"name": "add"}}):
        r = c.chat.completions.create(model="smollm2", messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=64)
        msg = r.choices[0].message
        assert r.choices[0].finish_reason == "tool_calls" and msg.content is None and len(msg.tool_calls) == 1
        _valid(msg.tool_calls[0])
        if isinstance(choice, dict):
            assert msg.tool_calls[0].function.name == "add"
        calls, text, finishes = _streamed(c, messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=64)
        assert finishes == ["tool_calls"] and text == "" and len(calls) == 1 and calls[0].index == 0
        assert calls[0].function.name == msg.tool_calls[0].function.name
        assert calls[0].function.arguments == msg.tool_calls[0].function.arguments  # greedy: the same call
    auto = c.chat.completions.create(model="smollm2", messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=48)
    if auto.choices[0].finish_reason == "tool_calls":
        _valid(auto.choices[0].message.tool_calls[0])
    else:
        assert auto.choices[0].message.content and not auto.choices[0].message.tool_calls
        calls, text, finishes = _streamed(c, messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=48)
        assert text == auto.choices[0].message.content and not calls


def test_a_tool_result_round_trip(server):
    c = client(server.base)
    first = c.chat.completions.create(model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required",
                                      max_tokens=64).choices[0].message
    call = first.tool_calls[0]
    conv = ASK + [first.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 18, "sky": "sunny"})}]
    answer = c.chat.completions.create(model="smollm2", messages=conv, tools=TOOLS, tool_choice="none", max_tokens=32)
    assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.content
    calls, text, finishes = _streamed(c, messages=conv, tools=TOOLS, tool_choice="none", max_tokens=32)
    assert text == answer.choices[0].message.content and not calls and finishes == [answer.choices[0].finish_reason]
    again = c.chat.completions.create(model="smollm2", messages=conv, tools=TOOLS, tool_choice="required", max_tokens=64)
    assert again.choices[0].finish_reason == "tool_calls"  # a second call after the result: the loop goes on
    _valid(again.choices[0].message.tool_calls[0])


@pytest.mark.parametrize("tools, choice, param, words", [
    ([{"type": "function", "function": {"parameters": {"type": "object"}}}], None, "tools", "name must be"),
    (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice", "not among the tools"),
    (TOOLS, "always", "tool_choice", "tool_choice must be one of"),
    ([{"type": "retrieval"}], None, "tools", "must be {'type': 'function'"),
])
def test_bad_tools_are_400s(server, tools, choice, param, words):
    c = client(server.base)
    kw = {"tool_choice": choice} if choice is not None else {}
    with pytest.raises(openai.BadRequestError) as exc:
        c.chat.completions.create(model="smollm2", messages=ASK, tools=tools, max_tokens=8, **kw)
    assert exc.value.body["param"] == param and words in exc.value.body["message"]


def test_tools_go_to_the_remote_and_its_calls_come_back(serve_app, server, broken_local):
    """The local model fails; the router's remote is another edgekit serve (a real OpenAI-compatible server
    that calls tools): the tools go with the request, the calls come back, streamed and not."""
    from edgekit.router import Policy, RemoteLLM, Router

    remote = RemoteLLM(server.base, "smollm2", api_key=CLIENT_KEY, timeout=120, deadline_s=600)
    router = Router(broken_local, remote, Policy(threshold=0.0))
    try:
        r = router.chat(ASK, tools=TOOLS, tool_choice="required", max_tokens=64)
        assert r.decision.tier == "remote" and r.finish_reason == "tool_calls" and len(r.tool_calls) == 1
        args = json.loads(r.tool_calls[0]["function"]["arguments"])
        jsonschema.validate(args, {t["function"]["name"]: t["function"]["parameters"]
                                   for t in TOOLS}[r.tool_calls[0]["function"]["name"]])
        events = list(router.stream_chat(ASK, tools=TOOLS, tool_choice="required", max_tokens=64))
        assert events[-1].finish_reason == "tool_calls" and events[-1].tool_calls[0]["function"] == r.tool_calls[0]["function"]
        front = serve_app(router)
        msg = client(front.base, key="unused").chat.completions.create(
            model="m", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=64).choices[0]
        assert msg.finish_reason == "tool_calls" and msg.message.tool_calls[0].function.name == r.tool_calls[0]["function"]["name"]
    finally:
        remote.close()
