"""Tool calling on a local model (the packaged SmolLM2 GGUF): the grammar holds each call's arguments to its tool's
schema; calls come back in OpenAI's shape; tool results go back into the conversation."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edgekit.errors import ConfigError
from edgekit.runtimes.tools import parse_calls, template_takes_tools, tool_set
from tests.tools_data import ASK, SCHEMAS, TOOLS, WEATHER



def _check(call: dict) -> dict:
    assert call["type"] == "function" and call["id"].startswith("call_")
    spec = SCHEMAS[call["function"]["name"]]
    args = json.loads(call["function"]["arguments"])
    jsonschema.validate(args, spec)
    return args


def test_required_and_named_choices_call_with_valid_arguments(smol_gguf):
    r = smol_gguf.chat(ASK, tools=TOOLS, tool_choice="required", max_tokens=64)
    assert r.finish_reason == "tool_calls" and len(r.tool_calls) == 1
    _check(r.tool_calls[0])
    named = smol_gguf.chat(ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}},
                            max_tokens=64)
    assert named.finish_reason == "tool_calls" and named.tool_calls[0]["function"]["name"] == "add"
    assert set(_check(named.tool_calls[0])) == {"a", "b"}


def test_auto_and_none_may_answer_in_text(smol_gguf):
    for choice in ("auto", "none"):
        r = smol_gguf.chat(ASK, tools=TOOLS, tool_choice=choice, max_tokens=48)
        if r.finish_reason == "tool_calls":
            assert choice == "auto"
            _check(r.tool_calls[0])
        else:
            assert r.tool_calls is None and r.text and not r.text.startswith("<")


def test_a_tool_result_goes_back_into_the_conversation(smol_gguf):
    first = smol_gguf.chat(ASK, tools=TOOLS, tool_choice="required", max_tokens=64)
    call = first.tool_calls[0]
    conv = ASK + [{"role": "assistant", "content": None, "tool_calls": first.tool_calls},
                  {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 18, "sky": "sunny"}'}]
    prompt = smol_gguf.render_chat(conv, tools=tool_set(TOOLS))
    assert "<tool_response>\n{\"temperature\": 18" in prompt and prompt.count("<tool_call>") >= 2
    assert '"name": "get_weather"' in prompt.split("</tools>")[1]  # the earlier call, written back in Hermes form
    answer = smol_gguf.chat(conv, tools=TOOLS, tool_choice="none", max_tokens=32)
    assert answer.finish_reason in ("eos", "length") and answer.tool_calls is None and answer.text


def test_bad_tools_are_config_errors():
    cases = [
        ([{"type": "function", "function": {"parameters": {}}}], "name must be"),
        ([{"type": "function", "function": {"name": "a b"}}], "name must be"),
        ([WEATHER, WEATHER], "two functions named 'get_weather'"),
        ([], "non-empty list"),
        ([{"type": "retrieval"}], "must be {'type': 'function'"),
    ]
    for tools, words in cases:
        with pytest.raises(ConfigError) as exc:
            tool_set(tools)
        assert words in str(exc.value) and exc.value.params == ("tools",)
    with pytest.raises(ConfigError, match="not among the tools"):
        tool_set(TOOLS, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(ConfigError, match="tool_choice must be one of"):
        tool_set(TOOLS, "always")


def test_calls_parse_only_from_the_hermes_form():
    ts = tool_set(TOOLS)
    good = parse_calls('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>', ts)
    assert good[0]["function"] == {"name": "add", "arguments": '{"a": 1, "b": 2}'}
    assert parse_calls("The weather is fine.", ts) is None
    assert parse_calls('<tool_call>\n{"name": "other", "arguments": {}}\n</tool_call>', ts) is None
    assert template_takes_tools("{% if tools %}{{ tools | tojson }}{% endif %}")
    assert not template_takes_tools("{% for message in messages %}{{ message['content'] }}{% endfor %}")
