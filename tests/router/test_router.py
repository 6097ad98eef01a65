"""Router triggers against the real local model and the real remote server (plus faulty servers).

Each trigger is shown to fire when it should and not otherwise. The low-confidence case is
real: SmolLM2-135M answers "the jaguar" to "Which animal is known as the king of the jungle?"
with low confidence, and "Ag" to the chemical symbol of silver with high confidence.
"""

from __future__ import annotations

import json
import math

import pytest

import edgekit
from edgekit.errors import BackendError, ContextOverflowError, FallbackExhausted, RemoteUnavailable
from edgekit.router import Policy, Router
from edgekit.router.calibration import is_correct
from edgekit.router.remote import RemoteLLM
from tests.router.conftest import OK_WORDS

CONFIDENT = [{"role": "user", "content": "What is the chemical symbol for silver?"}]
UNSURE = [{"role": "user", "content": "Which animal is known as the king of the jungle?"}]
LONG = [{"role": "user", "content": "Summarise this: " + "the quick brown fox jumps over the lazy dog " * 36}]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_ctx_local(smollm2_gguf):
    model = edgekit.load(smollm2_gguf, threads=1, context=256)  # llama.cpp pads smaller contexts to 256
    yield model
    model.close()


@pytest.fixture
def down(refused_url):
    return RemoteLLM(refused_url, "nobody", max_retries=0)


def remote_only(events) -> bool:
    return all(e.token_id == -1 and math.isnan(e.prob) for e in events)


# ---- low confidence ---------------------------------------------------------------------------------
def test_a_confident_right_answer_stays_local(local_gguf, remote):
    direct = local_gguf.chat(CONFIDENT, max_tokens=16)
    assert is_correct(direct.text, ["Ag"])
    router = Router(local_gguf, remote)  # the default, calibrated policy
    res = router.chat(CONFIDENT, max_tokens=16)
    d = res.decision
    assert (d.tier, d.trigger, d.degraded) == ("local", None, False)
    assert d.score >= Policy().threshold and d.confidence["tokens"] == Policy().first_k
    assert res.token_ids == direct.token_ids and res.text == direct.text
    assert d.remote_s == 0 and d.local_s > 0 and d.total_s >= d.local_s
    events = list(s := router.stream_chat(CONFIDENT, max_tokens=16))
    assert [e.token_id for e in events] == direct.token_ids  # the released draft and the rest, nothing lost
    assert s.decision.tier == "local" and s.decision.ttft_s is not None


def test_a_wrong_low_confidence_answer_goes_remote(local_gguf, remote):
    direct = local_gguf.chat(UNSURE, max_tokens=16)
    assert not is_correct(direct.text, ["Lion"])  # the small model is wrong...
    router = Router(local_gguf, remote)
    res = router.chat(UNSURE, max_tokens=16)
    d = res.decision
    assert (d.tier, d.trigger, d.degraded) == ("remote", "low_confidence", False)
    assert d.score < d.threshold == Policy().threshold  # ...and unsure about it
    assert res.text == remote.chat(UNSURE, max_tokens=16).text
    assert res.token_ids == [] and d.remote_s > 0
    assert "low_confidence" in d.line() and "remote" in d.line()


def test_streaming_fallback_never_leaks_the_draft(local_gguf, remote):
    router = Router(local_gguf, remote)
    stream = router.stream_chat(UNSURE, max_tokens=16)
    first = next(stream)
    assert stream.decision.tier == "remote"  # decided before anything was handed out
    events = [first, *stream]
    assert remote_only(events)  # not one local token reached the caller
    assert "".join(e.text for e in events) == remote.chat(UNSURE, max_tokens=16).text
    assert stream.decision.trigger == "low_confidence" and len(stream.decision.confidence) > 0


@pytest.mark.parametrize("question,policy,tier", [
    (CONFIDENT, Policy(threshold=1.0), "remote"),  # forced: nothing is confident enough
    (UNSURE, Policy(threshold=0.0), "local"),  # forced: everything is
    (UNSURE, Policy(low_confidence=False), "local"),  # the trigger is off
])
def test_forced_thresholds_and_the_off_switch(local_gguf, remote, question, policy, tier):
    res = Router(local_gguf, remote, policy).chat(question, max_tokens=12)
    assert res.decision.tier == tier
    assert res.decision.trigger == ("low_confidence" if tier == "remote" else None)
    if not policy.low_confidence:
        assert res.decision.score is None and "off" in res.decision.reason


# ---- context ---------------------------------------------------------------------------------------
def test_a_prompt_longer_than_the_local_context_goes_remote_untried(small_ctx_local, remote):
    router = Router(small_ctx_local, remote)
    res = router.chat(LONG, max_tokens=8)
    d = res.decision
    assert (d.tier, d.trigger) == ("remote", "context_overflow")
    assert d.prompt_tokens > small_ctx_local.context_length and d.confidence is None and d.score is None  # no draft
    assert res.text == remote.chat(LONG, max_tokens=8).text
    short = router.chat([{"role": "user", "content": "Hi"}], max_tokens=4)
    assert short.decision.trigger != "context_overflow" and short.decision.confidence["tokens"] > 0
    with pytest.raises(ContextOverflowError):
        Router(small_ctx_local, remote, Policy(context_overflow=False)).chat(LONG, max_tokens=8)


# ---- time budgets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget,trigger", [("ttft_budget_s", "ttft_budget"), ("total_budget_s", "total_budget")])
def test_time_budgets(local_gguf, remote, budget, trigger):
    tight = Router(local_gguf, remote, Policy(low_confidence=False, **{budget: 1e-6})).chat(CONFIDENT, max_tokens=8)
    assert (tight.decision.tier, tight.decision.trigger) == ("remote", trigger)
    assert "budget" in tight.decision.reason
    loose = Router(local_gguf, remote, Policy(low_confidence=False, **{budget: 600.0})).chat(CONFIDENT, max_tokens=8)
    assert (loose.decision.tier, loose.decision.trigger) == ("local", None)
    events = list(s := Router(local_gguf, remote, Policy(**{budget: 1e-6})).stream_chat(CONFIDENT, max_tokens=8))
    assert s.decision.trigger == trigger and remote_only(events)


# ---- local failure -------------------------------------------------------------------------------------
def test_a_local_failure_goes_remote(broken_local, remote):
    with pytest.raises(BackendError):
        broken_local.generate("Hello there", max_tokens=4)  # it really fails
    router = Router(broken_local, remote)
    res = router.generate("Hello there", max_tokens=8)
    d = res.decision
    assert (d.tier, d.trigger) == ("remote", "local_error") and "BackendError" in d.local_error
    assert res.text == remote.generate("Hello there", max_tokens=8).text
    events = list(s := router.stream("Hello there", max_tokens=8))
    assert s.decision.trigger == "local_error" and remote_only(events)
    with pytest.raises(BackendError):
        Router(broken_local, remote, Policy(local_error=False)).generate("Hello there", max_tokens=8)


# ---- remote down -------------------------------------------------------------------------------------------
def test_remote_down_answers_locally_marked_degraded(local_gguf, down):
    direct = local_gguf.chat(CONFIDENT, max_tokens=12)
    router = Router(local_gguf, down, Policy(threshold=1.0))
    res = router.chat(CONFIDENT, max_tokens=12)
    d = res.decision
    assert (d.tier, d.trigger, d.degraded) == ("local", "low_confidence", True)
    assert "RemoteUnavailable" in d.remote_error and "DEGRADED" in d.line()
    assert res.token_ids == direct.token_ids  # the suspended draft was continued, not restarted differently
    events = list(s := router.stream_chat(CONFIDENT, max_tokens=12))
    assert [e.token_id for e in events] == direct.token_ids and s.decision.degraded
    with pytest.raises(RemoteUnavailable):
        Router(local_gguf, down, Policy(threshold=1.0, degrade=False)).chat(CONFIDENT, max_tokens=12)


def test_both_down_raise_fallback_exhausted_with_both_causes(broken_local, small_ctx_local, down):
    for router, call, local_type in [
        (Router(broken_local, down), lambda r: r.generate("Hello there", max_tokens=4), BackendError),
        (Router(broken_local, down), lambda r: list(r.stream("Hello there", max_tokens=4)), BackendError),
        (Router(small_ctx_local, down), lambda r: r.chat(LONG, max_tokens=4), ContextOverflowError),
    ]:
        with pytest.raises(FallbackExhausted) as info:
            call(router)
        assert isinstance(info.value.local_error, local_type)
        assert isinstance(info.value.remote_error, RemoteUnavailable)
        assert "local:" in str(info.value) and "remote:" in str(info.value)


def test_remote_dropping_mid_stream(local_gguf, faulty):
    server = faulty(["drop"])
    router = Router(local_gguf, RemoteLLM(server.url, "faulty", max_retries=0), Policy(threshold=1.0))
    got = []
    with pytest.raises(RemoteUnavailable):
        for ev in router.stream_chat(CONFIDENT, max_tokens=8):
            got.append(ev.text)
    assert got == OK_WORDS[:2]  # what was streamed stays streamed; the error says the rest is missing
    assert router.breaker.consecutive_failures == 1
    res = router.chat(CONFIDENT, max_tokens=8)  # buffered: the local answer can still be given
    assert res.decision.degraded and res.text == local_gguf.chat(CONFIDENT, max_tokens=8).text


def test_a_plain_prompt_reaches_the_remote_as_one_user_message(local_gguf, faulty):
    server = faulty(["ok"])
    router = Router(local_gguf, RemoteLLM(server.url, "faulty"), Policy(threshold=1.0))
    res = router.generate("The capital of France is", max_tokens=9, stop=["\n"])
    assert res.text == "".join(OK_WORDS) and res.decision.tier == "remote"
    body = server.seen[0].body
    assert body["messages"] == [{"role": "user", "content": "The capital of France is"}]
    assert body["max_tokens"] == 9 and body["stop"] == ["\n"]


# ---- decision log ----------------------------------------------------------------------------------------------
def test_decision_log_has_one_line_per_request_and_no_prompt_text(local_gguf, broken_local, down, tmp_path):
    path = tmp_path / "logs" / "decisions.jsonl"
    router = Router(local_gguf, down, decision_log=path)
    router.chat(CONFIDENT, max_tokens=8)
    list(router.stream_chat(UNSURE, max_tokens=8))
    with pytest.raises(FallbackExhausted):
        Router(broken_local, down, decision_log=path).generate("Hello there", max_tokens=4)
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 3
    assert (lines[0]["tier"], lines[0]["trigger"], lines[0]["stream"]) == ("local", None, False)
    assert (lines[1]["trigger"], lines[1]["degraded"], lines[1]["stream"]) == ("low_confidence", True, True)
    assert len(lines[0]["draft_probs"]) == 8 and lines[0]["score"] == pytest.approx(
        float(__import__("numpy").quantile(lines[0]["draft_probs"], 0.1)))
    assert lines[2]["error"].startswith("FallbackExhausted") and lines[2]["trigger"] == "local_error"
    for word in ("silver", "jungle", "Hello"):
        assert word not in text
    assert all("prompt" not in line and "answer" not in line for line in lines)

    with_prompts = tmp_path / "with-prompts.jsonl"
    res = Router(local_gguf, down, decision_log=with_prompts, log_prompts=True).chat(CONFIDENT, max_tokens=8)
    line = json.loads(with_prompts.read_text())
    assert line["messages"] == CONFIDENT and line["answer"] == res.text


# ---- an ONNX local tier ----------------------------------------------------------------------------------------------
def test_router_with_an_onnx_artifact(onnx_artifact, remote):
    local = edgekit.load(onnx_artifact("smollm2-int8").path, threads=1)
    try:
        direct = local.chat(CONFIDENT, max_tokens=12)
        res = Router(local, remote, Policy(threshold=0.0)).chat(CONFIDENT, max_tokens=12)
        assert res.decision.tier == "local" and res.token_ids == direct.token_ids
        assert res.decision.confidence["tokens"] == 8
        s = Router(local, remote, Policy(threshold=1.0)).stream_chat(CONFIDENT, max_tokens=12)
        events = list(s)
        assert s.decision.tier == "remote" and remote_only(events)
        assert "".join(e.text for e in events) == remote.chat(CONFIDENT, max_tokens=12).text
    finally:
        local.close()
