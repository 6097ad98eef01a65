"""Fallback through the server: a real llama-cpp-python server and misbehaving servers as the remote tier.

Every answer's decision headers (x-edgekit-tier, x-edgekit-trigger, x-edgekit-degraded) and
body field must say what the router did, for every trigger, streamed or not.
"""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest

from edgekit.router import CircuitBreaker, Policy, RemoteLLM, Router
from tests.serve.conftest import client, metrics_of, total, wait_until

QUESTION = [{"role": "user", "content": "Which animal is known as the king of the jungle?"}]
LONG = [{"role": "user", "content": "Summarise: " + "the cat sat on the mat and looked at the dog. " * 14}]


def _ask(server, messages, stream: bool, max_tokens: int = 8):
    """One chat request through the openai client: (text, headers, edgekit decision)."""
    c = client(server.base, key="unused")
    if not stream:
        raw = c.chat.completions.with_raw_response.create(model="m", messages=messages, max_tokens=max_tokens)
        r = raw.parse()
        return r.choices[0].message.content, raw.headers, r.model_extra["edgekit"]
    with c.chat.completions.with_streaming_response.create(model="m", messages=messages, max_tokens=max_tokens,
                                                           stream=True) as resp:
        chunks = list(resp.parse())
        headers = resp.headers
    first, last = chunks[0].model_extra["edgekit"], chunks[-1].model_extra["edgekit"]
    assert (first["tier"], first["trigger"]) == (last["tier"], last["trigger"])
    return "".join(ch.choices[0].delta.content or "" for ch in chunks), headers, last


CASES = {
    # name: (local fixture, policy, messages, tier, trigger)
    "local": ("local_gguf", dict(threshold=0.0), QUESTION, "local", "none"),
    "low_confidence": ("local_gguf", dict(threshold=1.0, first_k=4), QUESTION, "remote", "low_confidence"),
    "context_overflow": ("short_context_gguf", dict(threshold=0.0), LONG, "remote", "context_overflow"),
    "local_error": ("broken_local", dict(threshold=0.0), QUESTION, "remote", "local_error"),
    "ttft_budget": ("local_gguf", dict(ttft_budget_s=1e-9, low_confidence=False), QUESTION, "remote", "ttft_budget"),
    "total_budget": ("local_gguf", dict(total_budget_s=1e-9, threshold=0.0, first_k=4), QUESTION, "remote", "total_budget"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_decision_headers_are_right_for_each_trigger(case, request, serve_app, remote, tmp_path):
    local_name, policy, messages, tier, trigger = CASES[case]
    log = tmp_path / "decisions.jsonl"
    router = Router(request.getfixturevalue(local_name), remote, Policy(**policy), decision_log=log)
    server = serve_app(router)
    for stream in (False, True):
        text, headers, decision = _ask(server, messages, stream)
        assert (headers["x-edgekit-tier"], headers["x-edgekit-trigger"], headers["x-edgekit-degraded"]) == (tier, trigger, "false")
        assert decision["tier"] == tier and (decision["trigger"] or "none") == trigger and text
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["tier"], r["trigger"] or "none", r["error"]) for r in records] == [(tier, trigger, None)] * 2
    m = metrics_of(server.url, key=None)
    assert total(m, "edgekit_requests_total", tier=tier, trigger=trigger, outcome="ok") == 2
    if tier == "remote":
        assert total(m, "edgekit_fallback_latency_seconds_count", trigger=trigger) == 2
        assert total(m, "edgekit_local_share") == 0.0


def test_remote_down_gives_a_degraded_local_answer_and_the_breaker_opens(serve_app, local_gguf, faulty):
    bad = faulty([(500, {})])
    remote = RemoteLLM(bad.url, "faulty", max_retries=0)
    router = Router(local_gguf, remote, Policy(threshold=1.0, first_k=4), breaker=CircuitBreaker(1, 60.0))
    server = serve_app(router)
    try:
        text, headers, decision = _ask(server, QUESTION, stream=False)
        assert (headers["x-edgekit-tier"], headers["x-edgekit-trigger"], headers["x-edgekit-degraded"]) == (
            "local", "low_confidence", "true")
        assert "HTTP 500" in decision["remote_error"] and text
        text, headers, decision = _ask(server, QUESTION, stream=True)  # the breaker is open: no remote call at all
        assert headers["x-edgekit-degraded"] == "true" and decision["breaker"] == "open" and text
        assert len(bad.seen) == 1
        m = metrics_of(server.url, key=None)
        assert total(m, "edgekit_breaker_state", state="open") == 1 and total(m, "edgekit_breaker_state", state="closed") == 0
    finally:
        remote.close()


@pytest.mark.parametrize("plan", ["malformed", "close"])
def test_misbehaving_remotes_before_the_first_token_degrade_to_local(plan, serve_app, local_gguf, faulty):
    bad = faulty([plan])
    remote = RemoteLLM(bad.url, "faulty", max_retries=0)
    server = serve_app(Router(local_gguf, remote, Policy(threshold=1.0, first_k=4)))
    try:
        for stream in (False, True):
            text, headers, decision = _ask(server, QUESTION, stream)
            assert (headers["x-edgekit-tier"], headers["x-edgekit-degraded"]) == ("local", "true") and text
            assert decision["remote_error"]
    finally:
        remote.close()


def test_a_stream_the_remote_drops_midway_ends_with_an_error_the_client_sees(serve_app, local_gguf, faulty):
    bad = faulty(["drop"])
    remote = RemoteLLM(bad.url, "faulty", max_retries=0)
    server = serve_app(Router(local_gguf, remote, Policy(threshold=1.0, first_k=4)))
    try:
        c = client(server.base, key="unused")
        stream = c.chat.completions.create(model="m", messages=QUESTION, max_tokens=8, stream=True)
        got = []
        with pytest.raises(openai.APIError, match="remote"):
            for ch in stream:
                got.append(ch.choices[0].delta.content or "")
        assert "".join(got).startswith("Paris")  # the two words the server sent before dropping
        with pytest.raises(openai.APIStatusError) as exc:
            c.chat.completions.create(model="m", messages=QUESTION, max_tokens=8)
        assert exc.value.status_code == 502 and exc.value.body["type"] == "server_error"
    finally:
        remote.close()


def test_the_remote_key_never_reaches_a_client_the_log_or_metrics(serve_app, local_gguf, short_context_gguf, faulty,
                                                                  tmp_path):
    secret = "sk-remote-secret-9a8b7c6d5e"
    bad = faulty(["echo401"])  # the server quotes the Authorization header it got in its error
    remote = RemoteLLM(bad.url, "faulty", api_key=secret, max_retries=0)
    log = tmp_path / "decisions.jsonl"
    server = serve_app(Router(local_gguf, remote, Policy(threshold=1.0, first_k=4), decision_log=log))
    both = serve_app(Router(short_context_gguf, remote, Policy(threshold=0.0)))  # overflow + 401: both tiers fail
    try:
        seen = []
        for stream in (False, True):
            c = client(server.base, key="unused")
            if stream:
                with c.chat.completions.with_streaming_response.create(model="m", messages=QUESTION, max_tokens=6,
                                                                       stream=True) as resp:
                    seen.append(str(resp.headers) + resp.read().decode())
            else:
                raw = c.chat.completions.with_raw_response.create(model="m", messages=QUESTION, max_tokens=6)
                seen.append(str(raw.headers) + raw.text)
                assert raw.headers["x-edgekit-degraded"] == "true"
        r = httpx.post(both.base + "/chat/completions", json={"messages": LONG, "max_tokens": 4}, timeout=60)
        assert r.status_code == 502 and r.json()["error"]["code"] == "fallback_exhausted"
        seen.append(r.text)
        seen.append(httpx.get(server.url + "/metrics", timeout=30).text)
        seen.append(log.read_text())
        assert bad.seen and secret in bad.seen[0].headers["Authorization"]  # it was sent to the remote
        assert all(secret not in s for s in seen)
        assert "rejected the credentials" in seen[0]
    finally:
        remote.close()


def test_both_tiers_down_is_a_502_in_openai_shape(serve_app, short_context_gguf, refused_url):
    remote = RemoteLLM(refused_url, "nobody", max_retries=0)
    server = serve_app(Router(short_context_gguf, remote, Policy()))
    try:
        with pytest.raises(openai.APIStatusError) as exc:
            client(server.base, key="unused").chat.completions.create(model="m", messages=LONG, max_tokens=4)
        assert exc.value.status_code == 502
        err = exc.value.body
        assert err["code"] == "fallback_exhausted" and "local" in err["message"] and "remote" in err["message"]
    finally:
        remote.close()


def test_requests_routed_remote_do_not_wait_behind_local_ones(serve_app, short_context_gguf, faulty):
    """The local slot is held by a request whose remote stalls; a context overflow still goes through at once."""
    bad = faulty(["slow", "ok"])  # the first remote call hangs until released, the others answer
    remote = RemoteLLM(bad.url, "faulty", max_retries=0, timeout=60)
    server = serve_app(Router(short_context_gguf, remote, Policy(threshold=1.0, first_k=2)), max_queue=0)
    held: dict = {}

    def hold():
        held["answer"] = _ask(server, QUESTION, stream=True)

    th = threading.Thread(target=hold)
    th.start()
    try:
        wait_until(lambda: len(bad.seen) == 1, what="the first request reaching the stalled remote")
        text, headers, _ = _ask(server, LONG, stream=False)  # overflows the local context: the remote lane
        assert (headers["x-edgekit-tier"], headers["x-edgekit-trigger"]) == ("remote", "context_overflow")
        assert text == "Paris is the capital of France."
        r = httpx.post(server.base + "/chat/completions", json={"messages": QUESTION, "max_tokens": 2}, timeout=60)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1  # the local slot is still held
        assert r.json()["error"]["code"] == "overloaded"
        assert "answer" not in held
    finally:
        bad.release.set()
        th.join(60)
        remote.close()
    assert held["answer"][1]["x-edgekit-trigger"] == "low_confidence"


def test_a_remote_tier_alone_is_served_as_remote(serve_app, remote):
    server = serve_app(remote)
    for stream in (False, True):
        text, headers, decision = _ask(server, QUESTION, stream)
        assert (headers["x-edgekit-tier"], headers["x-edgekit-trigger"]) == ("remote", "none") and text


def test_a_fallback_frees_the_local_model_once_the_remote_answers(serve_app, local_gguf):
    """After the remote's first token the local slot is free, while that answer still streams."""
    from tests.router.conftest import OK_WORDS, FaultyServer, _sse

    class DripServer(FaultyServer):  # "drip": the first word at once, the rest once released
        def act(self, h, step, stream):
            if step != "drip":
                return super().act(h, step, stream)
            self._sse_head(h)
            self._chunk(h, _sse({"choices": [{"index": 0, "delta": {"content": OK_WORDS[0]}, "finish_reason": None}]}))
            self.release.wait(60)
            for word in OK_WORDS[1:]:
                self._chunk(h, _sse({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
            self._chunk(h, _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            self._chunk(h, b"data: [DONE]\n\n")
            self._chunk(h, b"")

    drip = DripServer(["drip", "ok"])
    remote = RemoteLLM(drip.url, "drip", max_retries=0, timeout=90)
    server = serve_app(Router(local_gguf, remote, Policy(threshold=1.0, first_k=2)), max_queue=0)
    got: list[str] = []

    def first_request():
        body = {"messages": QUESTION, "max_tokens": 8, "stream": True}
        with httpx.stream("POST", server.base + "/chat/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    got.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")

    th = threading.Thread(target=first_request)
    th.start()
    try:
        wait_until(lambda: "Paris" in got, what="the remote's first word")
        # max_queue=0: were the local model still held by the first request, this would be a 503
        text, headers, _ = _ask(server, QUESTION, stream=False)
        assert (headers["x-edgekit-tier"], headers["x-edgekit-trigger"]) == ("remote", "low_confidence")
        assert text == "Paris is the capital of France." and "".join(got) == "Paris"  # the first still waits
    finally:
        drip.release.set()
        th.join(60)
        drip.close()
        remote.close()
    assert "".join(got) == "Paris is the capital of France."
