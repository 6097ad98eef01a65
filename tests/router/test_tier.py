"""One protocol test for every tier: a local Model, a RemoteLLM and a Router each satisfy ``Tier``.

The tiers are real: the packaged SmolLM2 GGUF loaded locally, the real llama-cpp-python
server serving the same file (with an API key), and Routers over the two, one whose policy
keeps every answer local and one whose policy sends every answer to the remote. Each is
held to the contract written in edgekit/runtimes/tier.py: same call shapes, same result
types, a stream that joins into the non-streaming answer (greedy), the finish only on the
last event, max_tokens respected, bad input refused with ConfigError at call time. Code
typed against Tier (calibration, ``edgekit run``'s answer loop) takes each of them.
"""

from __future__ import annotations

import json
import math

import pytest

from edgekit.errors import ConfigError
from edgekit.router import Policy, RemoteLLM, Router
from edgekit.router.calibration import Question, run_calibration
from edgekit.runtimes.base import GenerationConfig, GenerationResult, Model, Timings, TokenEvent
from edgekit.runtimes.tier import Tier

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
MESSAGES = [{"role": "user", "content": "What is the chemical symbol for silver?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to fly."}]
COUNT = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
ALWAYS_LOCAL = Policy(threshold=0.0)  # no score is below 0: the draft is always kept
ALWAYS_REMOTE = Policy(low_confidence=False, ttft_budget_s=1e-9)  # no local first token is that fast
TIERS = ["model", "remote", "router-local", "router-remote"]
CALLS = [("generate", "stream", PROMPT), ("chat", "stream_chat", MESSAGES)]


@pytest.fixture(params=TIERS)
def tier(request, local_gguf):
    if request.param == "model":
        return local_gguf
    remote = request.getfixturevalue("remote")
    if request.param == "remote":
        return remote
    return Router(local_gguf, remote, ALWAYS_LOCAL if request.param == "router-local" else ALWAYS_REMOTE)


def has_tokens(tier) -> bool:
    """Whether the tier's answers come with token ids and probabilities (the local model's do)."""
    return isinstance(tier, Model) or (isinstance(tier, Router) and tier.policy is ALWAYS_LOCAL)


def test_each_is_a_tier(tier):
    assert isinstance(tier, Tier)
    assert tier.kind == "decoder" and tier.backend in ("llama.cpp", "remote", "router")


def test_other_things_are_not_tiers(local_gguf):
    assert not isinstance(object(), Tier) and not isinstance(Policy(), Tier) and not isinstance("a prompt", Tier)
    with pytest.raises(TypeError, match="remote must be a Tier"):
        Router(local_gguf, "http://127.0.0.1:8080/v1")


@pytest.mark.parametrize("call,stream_call,payload", CALLS, ids=["generate", "chat"])
def test_a_stream_joins_into_the_answer(tier, call, stream_call, payload):
    res = getattr(tier, call)(payload, max_tokens=12)
    assert isinstance(res, GenerationResult) and isinstance(res.timings, Timings)
    assert res.text.strip() and res.finish_reason in ("eos", "stop", "length")
    assert len(res.token_ids) == len(res.probs) == len(res.entropies)

    stream = getattr(tier, stream_call)(payload, max_tokens=12)
    events = list(stream)
    assert events and all(isinstance(e, TokenEvent) for e in events)
    assert "".join(e.text for e in events) == res.text  # greedy: the same answer, streamed
    assert [e.index for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.finish_reason == res.finish_reason and isinstance(last.timings, Timings)
    assert all(e.finish_reason is None and e.timings is None for e in events[:-1])  # the finish comes once, last
    assert 0 < last.timings.ttft_s <= last.timings.total_s

    if has_tokens(tier):
        assert [e.token_id for e in events] == res.token_ids and len(res.token_ids) > 0
        assert all(0 < e.prob <= 1 for e in events) and res.probs == [e.prob for e in events]
    else:  # a remote answer: no token ids, no probabilities, said plainly
        assert res.token_ids == [] and all(e.token_id == -1 and math.isnan(e.prob) for e in events)


def test_max_tokens_caps_every_tier(tier):
    res = tier.chat(STORY, max_tokens=5)
    assert res.finish_reason == "length" and res.timings.decode_tokens + 1 == 5
    assert len(res.token_ids) == (5 if has_tokens(tier) else 0)
    events = list(tier.stream_chat(STORY, max_tokens=5))
    assert events[-1].finish_reason == "length" and "".join(e.text for e in events) == res.text
    assert 1 <= sum(1 for e in events if e.text) <= 5


def test_a_config_and_keyword_overrides_mean_the_same(tier):
    by_config = tier.chat(MESSAGES, GenerationConfig(max_tokens=6))
    by_keyword = tier.chat(MESSAGES, max_tokens=6)
    overridden = tier.chat(MESSAGES, GenerationConfig(max_tokens=64), max_tokens=6)
    assert by_config.text == by_keyword.text == overridden.text
    assert by_config.finish_reason == by_keyword.finish_reason == overridden.finish_reason
    longer = "".join(e.text for e in tier.stream_chat(MESSAGES, GenerationConfig(max_tokens=6), max_tokens=24))
    assert longer.startswith(by_config.text) and len(longer) >= len(by_config.text)


def test_a_stop_string_ends_the_answer_on_every_tier(tier):
    free = tier.chat(COUNT, max_tokens=24)
    assert "," in free.text  # the answer would go on past a comma...
    res = tier.chat(COUNT, max_tokens=24, stop=[","])
    assert res.text == free.text[: free.text.index(",")]  # ...and stops right before the first one
    assert res.finish_reason == ("stop" if has_tokens(tier) else "eos")  # the OpenAI API does not say which
    events = list(tier.stream_chat(COUNT, max_tokens=24, stop=[","]))
    assert "".join(e.text for e in events) == res.text and events[-1].finish_reason == res.finish_reason


@pytest.mark.parametrize("bad", [
    lambda t: t.generate(123),
    lambda t: t.stream(None),
    lambda t: t.chat("not a list of messages"),
    lambda t: t.stream_chat([{"role": "user"}]),
    lambda t: t.generate(PROMPT, max_tokens=0),
    lambda t: t.stream(PROMPT, max_tokenz=4),
    lambda t: t.chat(MESSAGES, {"max_tokens": 4}),
    lambda t: t.stream_chat(MESSAGES, GenerationConfig(), temperature=-1),
], ids=["prompt-int", "prompt-none", "messages-str", "message-no-content", "max-tokens-0", "unknown-setting",
        "config-dict", "bad-override"])
def test_bad_input_is_refused_at_call_time(tier, bad):
    with pytest.raises(ConfigError):
        bad(tier)  # streams too: refused when called, before anything is iterated or sent


def test_a_router_answers_as_the_tier_it_routes_to(local_gguf, remote):
    for policy, direct, where in [(ALWAYS_LOCAL, local_gguf, "local"), (ALWAYS_REMOTE, remote, "remote")]:
        router = Router(local_gguf, remote, policy)
        for call, payload in [("generate", PROMPT), ("chat", MESSAGES)]:
            routed = getattr(router, call)(payload, max_tokens=10)
            assert routed.decision.tier == where and not routed.decision.degraded
            assert routed.text == getattr(direct, call)(payload, max_tokens=10).text


def test_code_typed_against_tier_takes_every_tier(tier, capsys):
    from edgekit.cli.run import answer

    questions = [Question("What is the chemical symbol for silver?", ("Ag",)), Question("What is 2 plus 2?", ("4",))]
    samples = run_calibration(tier, questions, ALWAYS_LOCAL, max_tokens=8)
    assert [s.question for s in samples] == [q.question for q in questions]
    assert all(s.answer for s in samples)
    if has_tokens(tier):
        assert all(0 < s.score <= 1 and 0 < len(s.probs) <= 8 for s in samples)
    else:
        assert all(s.score == 0.0 and s.probs == [] for s in samples)  # no probabilities: nothing to score

    text, calls = answer(tier, ("chat", MESSAGES), GenerationConfig(max_tokens=8), as_json=True, first_k=8)
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == text == tier.chat(MESSAGES, max_tokens=8).text and calls is None  # no tools: text
    assert out["tier"] == ("local" if has_tokens(tier) else "remote")
    assert (out["confidence"] is not None) == has_tokens(tier)
    assert (out["decision"] is not None) == isinstance(tier, Router)


def test_remote_is_the_routers_own_module():
    import edgekit
    import edgekit.router

    assert edgekit.RemoteLLM is RemoteLLM is edgekit.router.RemoteLLM
    assert RemoteLLM.__module__ == "edgekit.router.remote" and edgekit.Tier is Tier
