"""The remote tier and the router never hang and never keep a broken answer.

Servers here are real (tests/router/conftest.py's FaultyServer on 127.0.0.1): one drips an
SSE chunk every 0.1 s forever, one ignores ``max_tokens``, one ignores ``stop``, one fails
with 500. The local tier is a real tiny GGUF model, healthy or with a NaN in a norm weight.
No test asserts a duration: a test that ends proves the limit held (without it the drip
would run for the pytest timeout); the messages say which limit it was.
"""

from __future__ import annotations

import logging
import math
import time

import pytest

from edgekit.errors import RemoteError, RemoteProtocolError, RemoteTimeout
from edgekit.router import Policy, Router
from edgekit.router.config import RemoteConfig, load_config
from edgekit.router.decision import RoutedRequest
from edgekit.router.remote import RemoteLLM
from edgekit.runtimes.base import GenerationConfig, TokenEvent
from tests.conftest import error_line
from tests.router.conftest import COUNTING, LONG_WORDS, OK_WORDS

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def client(url: str, **kw) -> RemoteLLM:
    kw.setdefault("backoff_s", 0.05)
    kw.setdefault("max_backoff_s", 0.2)
    kw.setdefault("timeout", 5.0)
    return RemoteLLM(url, "faulty", **kw)


# ---- deadlines: a server that drips -------------------------------------------------------------------
def test_a_dripping_stream_is_cut_at_the_deadline(faulty):
    server = faulty(["drip"])  # a chunk every 0.1 s: the 5 s read timeout never fires
    got = []
    with pytest.raises(RemoteTimeout) as info:
        for ev in client(server.url, deadline_s=1.5, max_retries=2).stream_chat(QUESTION, max_tokens=10_000):
            got.append(ev.text)
    assert "did not finish its answer within 1.5 s (deadline_s=1.5)" in str(info.value)
    if got:  # (on a very busy machine no chunk may have come in time: the deadline ends the call all the same)
        assert f"after {len(got)} streamed token(s)" in str(info.value)
    assert len(server.seen) == 1  # the deadline is the call's, retries included: no second attempt


def test_a_dripping_body_is_cut_at_the_deadline_and_not_retried_past_it(faulty):
    server = faulty(["drip"])
    with pytest.raises(RemoteTimeout, match=r"within 1 s \(deadline_s=1\)"):
        client(server.url, deadline_s=1.0, max_retries=3).chat(QUESTION)
    assert len(server.seen) == 1  # the deadline covers the retries: none was left time


def test_the_deadline_covers_retries_and_their_waits(faulty):
    server = faulty([(503, {})])
    with pytest.raises(RemoteError) as info:  # waits of 0.3-0.6 s, 0.6-1.2 s, 1.2-2.4 s...: 5 retries cannot fit
        client(server.url, deadline_s=1.0, max_retries=5, backoff_s=0.6, max_backoff_s=5).chat(QUESTION)
    assert "deadline_s=1" in str(info.value) and "gave up" not in str(info.value)
    assert 1 <= len(server.seen) <= 3


def test_a_silent_server_times_out_per_attempt_and_says_each_retry(faulty, caplog):
    caplog.set_level(logging.WARNING, logger="edgekit.remote")
    server = faulty(["slow"])
    with pytest.raises(RemoteTimeout) as info:
        client(server.url, timeout=0.2, max_retries=2).chat(QUESTION)
    assert "sent nothing for 0.2 s (read timeout)" in str(info.value) and "gave up after 3 attempts" in str(info.value)
    retries = [r for r in caplog.records if r.levelno == logging.WARNING and "retrying in" in r.getMessage()]
    assert [r.getMessage().split("(attempt ")[1] for r in retries] == ["2 of 3)", "3 of 3)"]
    assert all("read timeout" in r.getMessage() and " s (attempt" in r.getMessage() for r in retries)


def test_until_bounds_a_call_by_the_callers_clock(faulty):
    server = faulty(["drip"])
    remote = client(server.url, deadline_s=600)
    bounded = remote.until(time.monotonic() + 3.0, "the test's limit")  # room for a pause on a busy host
    with pytest.raises(RemoteTimeout, match=r"within [0-9.]+ s \(the test's limit\)"):
        list(bounded.stream_chat(QUESTION))
    with pytest.raises(RemoteTimeout, match=r"was not asked: no time was left for it \(the test's limit\)"):
        bounded.generate("hi")  # the time is spent: the next call is not even sent
    assert len(server.seen) == 1
    server.set_plan(["ok"])
    assert remote.chat(QUESTION).text == "".join(OK_WORDS)  # the remote itself is not bounded


# ---- the request's limits, enforced on the client ----------------------------------------------------
def test_a_server_ignoring_max_tokens_is_cut_on_the_client(faulty):
    server = faulty(["ignore_max"])
    events = list(client(server.url).stream_chat(QUESTION, max_tokens=5))
    assert "".join(e.text for e in events) == "".join(LONG_WORDS[:5])
    assert events[-1].finish_reason == "length" and events[-1].timings is not None
    assert all(e.finish_reason is None for e in events[:-1])
    with pytest.raises(RemoteProtocolError, match="ignored max_tokens=5: it sent 200 tokens"):
        client(server.url).chat(QUESTION, max_tokens=5)  # a whole answer cannot be cut by tokens: refused
    assert client(server.url).chat(QUESTION, max_tokens=500).text == "".join(LONG_WORDS)


def test_a_server_ignoring_stop_strings_is_cut_on_the_client(faulty):
    server = faulty(["ignore_stop"])
    events = list(client(server.url).stream_chat(QUESTION, stop=[","]))
    assert "".join(e.text for e in events) == "1" and events[-1].finish_reason == "stop"
    res = client(server.url).chat(QUESTION, stop=[", 3"])
    assert (res.text, res.finish_reason) == ("1, 2", "stop")
    assert "".join(e.text for e in client(server.url).stream_chat(QUESTION, stop=["4."])) == "1, 2, 3, "
    whole = "".join(e.text for e in client(server.url).stream_chat(QUESTION, stop=["never there"]))
    assert whole == "".join(COUNTING)  # text held back as a possible stop string is released at the end


def test_a_well_behaved_server_is_not_cut(faulty):
    server = faulty(["ok"])
    events = list(client(server.url).stream_chat(QUESTION, max_tokens=len(OK_WORDS)))
    assert "".join(e.text for e in events) == "".join(OK_WORDS) and events[-1].finish_reason == "eos"


# ---- defaults a person accepts, one place for each ----------------------------------------------------
def test_remote_defaults_bound_a_silent_server_to_a_minute_and_agree_with_the_config():
    r, cfg = RemoteLLM("http://127.0.0.1:9/v1", "m"), RemoteConfig()
    assert (r.connect_timeout, r.timeout, r.deadline_s, r.max_retries) == (5.0, 30.0, 60.0, 2)
    assert (cfg.connect_timeout_s, cfg.timeout_s, cfg.deadline_s, cfg.max_retries) == (5.0, 30.0, 60.0, 2)
    assert r.backoff_s == cfg.backoff_s == 0.5


def test_the_deadline_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "edgekit.toml"
    path.write_text('schema_version = 1\n[remote]\nurl = "http://127.0.0.1:9/v1"\nmodel = "m"\ndeadline_s = 12.5\n')
    assert load_config(path, env=False).make_remote().deadline_s == 12.5
    monkeypatch.setenv("EDGEKIT_REMOTE_DEADLINE", "7")
    assert load_config(path).make_remote().deadline_s == 7.0
    with pytest.raises(Exception, match="deadline_s"):
        RemoteLLM("http://127.0.0.1:9/v1", "m", deadline_s=0)


# ---- the router: a broken local answer is a local failure --------------------------------------------
def test_a_local_model_giving_nan_goes_remote_as_a_local_failure(nan_local, faulty):
    server = faulty(["ok"])
    router = Router(nan_local, client(server.url))
    res = router.chat(QUESTION, max_tokens=8)
    d = res.decision
    assert (d.tier, d.trigger, d.degraded) == ("remote", "local_error", False)
    assert "ArtifactError" in d.local_error and "corrupt" in d.local_error and str(nan_local.path) in d.local_error
    assert res.text == "".join(OK_WORDS)
    stream = router.stream_chat(QUESTION, max_tokens=8)
    assert "".join(e.text for e in stream) == "".join(OK_WORDS) and stream.decision.trigger == "local_error"


def test_a_broken_local_answer_with_the_remote_down_is_no_answer(nan_local, refused_url):
    from edgekit.errors import FallbackExhausted

    with pytest.raises(FallbackExhausted, match="corrupt"):
        Router(nan_local, client(refused_url, max_retries=0)).chat(QUESTION, max_tokens=4)
    with pytest.raises(Exception, match="corrupt"):  # the local_error trigger off: the failure is raised
        Router(nan_local, None, Policy(local_error=False)).chat(QUESTION, max_tokens=4)


def test_a_nan_confidence_is_never_confident(tiny_local):
    router = Router(tiny_local, None, Policy(threshold=0.0))  # any real score passes 0.0
    run = RoutedRequest("chat", None, QUESTION, GenerationConfig(), False)
    run.draft = [TokenEvent(i, 7, "x", math.nan, math.nan) for i in range(3)]
    assert router._judge(run) == "low_confidence"
    assert math.isnan(run.decision.score) and "nan < 0.000" in run.decision.reason


# ---- the router's total budget covers the remote ------------------------------------------------------
def test_the_total_budget_covers_a_dripping_remote(tiny_local, faulty):
    server = faulty(["drip"])
    policy = Policy(low_confidence=False, total_budget_s=1e-6, remote_min_s=0.5)
    router = Router(tiny_local, client(server.url, deadline_s=600), policy)
    res = router.chat(QUESTION, max_tokens=8)  # the remote is cut when its share ends: a degraded local answer
    d = res.decision
    assert (d.tier, d.trigger, d.degraded) == ("local", "total_budget", True)
    assert "RemoteTimeout" in d.remote_error and "total_budget_s" in d.remote_error
    assert res.token_ids == tiny_local.chat(QUESTION, max_tokens=8).token_ids
    stream = Router(tiny_local, client(server.url, deadline_s=600), policy).stream_chat(QUESTION, max_tokens=10_000)
    try:
        list(stream)
    except RemoteTimeout as exc:  # remote text was handed out, then its time ran out: the error ends the stream
        assert "total_budget_s" in str(exc)
    else:  # (no chunk came in time on a very busy machine: the local answer, degraded)
        assert stream.decision.degraded and "total_budget_s" in stream.decision.remote_error


def test_cli_says_when_it_retries_and_answers_degraded(cli, tiny_gguf_file, faulty, tmp_path):
    server = faulty([(503, {})])
    env = {"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": "", "EDGEKIT_REMOTE_MODEL": ""}
    proc = cli("run", tiny_gguf_file, "-p", "hello", "-n", "4", "--threads", "1", "--remote", server.url,
               "--model", "faulty", "--threshold", "1.0", env=env)
    assert proc.returncode == 0, proc.stderr
    retries = [line for line in proc.stderr.splitlines() if "retrying in" in line]
    assert len(retries) == 2 and all(line.startswith("warning: ") for line in retries)
    assert "(attempt 2 of 3)" in retries[0] and "(attempt 3 of 3)" in retries[1] and "HTTP 503" in retries[0]
    assert "DEGRADED" in proc.stderr and len(server.seen) == 3


def test_cli_total_budget_ends_a_dripping_remote(cli, tiny_gguf_file, faulty, tmp_path):
    server = faulty(["drip"])
    config = tmp_path / "edgekit.toml"
    config.write_text("schema_version = 1\n[policy]\nremote_min_s = 1.0\nlow_confidence = false\n")
    proc = cli("run", tiny_gguf_file, "-p", "hello", "-n", "1000", "--threads", "1", "--remote", server.url,
               "--model", "faulty", "--total-budget", "0.000001", "--config", config,
               env={"EDGEKIT_REMOTE_URL": "", "EDGEKIT_REMOTE_MODEL": ""})
    if proc.returncode == 1:  # streamed remote text, then the remote ran out of time: one error line
        assert "did not finish its answer within" in error_line(proc) and "total_budget_s" in error_line(proc)
    else:  # (no chunk came in time on a very busy machine: the local answer, degraded)
        assert proc.returncode == 0 and "DEGRADED" in proc.stderr and "total_budget_s" in proc.stderr
