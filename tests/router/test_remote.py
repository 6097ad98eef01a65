"""RemoteLLM against the real llama-cpp-python server and against servers that misbehave on purpose."""

from __future__ import annotations

import logging
import math
import time

import pytest

from edgekit.errors import (
    ConfigError,
    RemoteAuthError,
    RemoteError,
    RemoteProtocolError,
    RemoteTimeout,
    RemoteUnavailable,
)
from edgekit.router.remote import RemoteLLM, normalize_base_url, parse_retry_after
from tests.router.conftest import OK_WORDS

QUESTION = [{"role": "user", "content": "What is the chemical symbol for silver?"}]


def fast(url: str, **kw) -> RemoteLLM:
    """A client with short backoff so fault tests do not sleep for long."""
    kw.setdefault("backoff_s", 0.05)
    kw.setdefault("max_backoff_s", 0.2)
    kw.setdefault("timeout", 5.0)
    return RemoteLLM(url, "faulty", **kw)


@pytest.mark.slow
def test_real_server_chat_and_stream_agree(remote):
    res = remote.chat(QUESTION, max_tokens=12)
    assert res.text.strip()
    assert res.finish_reason in ("eos", "length")
    assert res.timings.prompt_tokens > 5  # from the server's usage
    events = list(remote.stream_chat(QUESTION, max_tokens=12))
    assert "".join(e.text for e in events) == res.text  # greedy on the same server: the same answer
    assert events[-1].finish_reason == res.finish_reason and events[-1].timings is not None
    assert all(e.token_id == -1 and math.isnan(e.prob) for e in events)
    assert [e.index for e in events] == list(range(len(events)))


@pytest.mark.slow
def test_real_server_rejects_a_wrong_key_without_retrying(llama_server):
    r = RemoteLLM(llama_server.url, llama_server.model, api_key="sk-wrong-key-0123456789", max_retries=3, backoff_s=5)
    with pytest.raises(RemoteAuthError) as info:
        r.generate("hello", max_tokens=4)
    assert "HTTP 401" in str(info.value)
    assert "sk-wrong-key-0123456789" not in str(info.value)


def test_401_is_not_retried_and_the_echoed_key_is_scrubbed(faulty):
    server = faulty(["echo401"])
    key = "sk-secret-" + "x" * 24
    r = fast(server.url, api_key=key, max_retries=3)
    with pytest.raises(RemoteAuthError) as info:
        r.chat(QUESTION)
    assert len(server.seen) == 1
    assert server.seen[0].headers["Authorization"] == f"Bearer {key}"  # it was sent...
    assert "Incorrect API key provided" in str(info.value)
    assert key not in str(info.value) and "***" in str(info.value)  # ...and never shown


def test_500_is_retried_then_reported(faulty):
    server = faulty([(500, {})])
    with pytest.raises(RemoteUnavailable) as info:
        fast(server.url, max_retries=2).chat(QUESTION)
    assert len(server.seen) == 3
    assert "HTTP 500" in str(info.value) and "induced failure 500" in str(info.value)


def test_500_then_success(faulty):
    server = faulty([(503, {}), (502, {}), "ok"])
    res = fast(server.url, max_retries=2).chat(QUESTION)
    assert res.text == "".join(OK_WORDS)
    assert len(server.seen) == 3


def test_429_honours_retry_after(faulty):
    server = faulty([(429, {"Retry-After": "1"}), "ok"])
    res = fast(server.url, max_retries=1, backoff_s=0.0).chat(QUESTION)
    assert res.text == "".join(OK_WORDS)
    assert len(server.seen) == 2
    assert server.seen[1].time - server.seen[0].time >= 0.95  # waited as told, not the 0 s backoff


def test_429_with_a_retry_after_beyond_the_cap_fails_at_once(faulty):
    server = faulty([(429, {"Retry-After": "120"}), "ok"])
    with pytest.raises(RemoteUnavailable) as info:
        fast(server.url, max_retries=3, max_retry_after_s=10).chat(QUESTION)
    assert len(server.seen) == 1  # no retry after a wait it would not honour
    assert "rate limiting" in str(info.value) and "120" in str(info.value)


def test_slow_first_byte_times_out(faulty):
    server = faulty(["slow"])
    with pytest.raises(RemoteTimeout) as info:
        fast(server.url, timeout=0.3, max_retries=1).chat(QUESTION)
    assert len(server.seen) == 2  # timeouts are retried (the server would only answer after 30 s)
    assert "read timeout" in str(info.value)


def test_stream_dropped_mid_answer_keeps_what_was_streamed_and_raises(faulty):
    server = faulty(["drop"])
    got = []
    with pytest.raises(RemoteUnavailable) as info:
        for ev in fast(server.url, max_retries=2).stream_chat(QUESTION):
            got.append(ev.text)
    assert got == OK_WORDS[:2]
    assert len(server.seen) == 1  # text was handed out: no retry could take it back
    assert "after 2 streamed token(s)" in str(info.value)


def test_stream_dropped_before_the_first_token_is_retried(faulty):
    server = faulty(["close", "ok"])
    text = "".join(e.text for e in fast(server.url, max_retries=1).stream_chat(QUESTION))
    assert text == "".join(OK_WORDS)
    assert len(server.seen) == 2


def test_body_dropped_mid_answer_is_retried_then_reported(faulty):
    server = faulty(["drop"])
    with pytest.raises(RemoteUnavailable) as info:
        fast(server.url, max_retries=1).chat(QUESTION)
    assert len(server.seen) == 2
    assert "dropped" in str(info.value)


def test_malformed_sse_is_a_protocol_error_without_retry(faulty):
    server = faulty(["malformed"])
    with pytest.raises(RemoteProtocolError) as info:
        list(fast(server.url, max_retries=2).stream_chat(QUESTION))
    assert len(server.seen) == 1
    assert "malformed stream event" in str(info.value)


def test_non_json_answer_is_a_protocol_error(faulty):
    server = faulty(["malformed"])
    with pytest.raises(RemoteProtocolError) as info:
        fast(server.url, max_retries=2).chat(QUESTION)
    assert "not a chat completion" in str(info.value)
    assert len(server.seen) == 1


def test_a_page_that_is_not_an_event_stream_is_a_protocol_error_not_an_outage(faulty):
    """200 with a web page to a streaming request: not retried, and the error quotes what came back."""
    server = faulty(["html"])
    with pytest.raises(RemoteProtocolError) as info:
        list(fast(server.url, max_retries=2).stream_chat(QUESTION))
    assert len(server.seen) == 1  # one request: the same URL would send the same page
    assert "without a single server-sent event" in str(info.value) and "Welcome to nginx" in str(info.value)
    assert "OpenAI-compatible API base" in str(info.value)
    with pytest.raises(RemoteProtocolError, match="not a chat completion"):
        fast(server.url, max_retries=2).chat(QUESTION)
    assert len(server.seen) == 2


def test_an_empty_stream_is_an_outage_and_a_page_a_protocol_error():
    """No event at all: nothing (or keep-alive comments only) before the end was cut off, and is retried like
    an outage; a body of other lines is not an event stream, and the same URL would send it again."""
    from edgekit.router.sse import chunks

    remote = RemoteLLM("http://127.0.0.1:9/v1", "m")
    with pytest.raises(RemoteUnavailable, match="before sending any event"):
        list(chunks(remote, iter(["", ": keep-alive", ""])))
    with pytest.raises(RemoteProtocolError, match="without a single server-sent event.*'<html>'"):
        list(chunks(remote, iter([": keep-alive", "<html>", ""])))


def test_connection_refused_is_unavailable(refused_url):
    with pytest.raises(RemoteUnavailable) as info:
        fast(refused_url, max_retries=1).chat(QUESTION)
    assert "unreachable" in str(info.value)


def test_request_body_carries_the_settings(faulty):
    server = faulty(["ok"])
    r = fast(server.url, extra_body={"top_k": 40})
    res = r.generate("Say hi", max_tokens=7, temperature=0.5, top_p=0.9, stop=["\n"], seed=3)
    assert res.text == "".join(OK_WORDS) and res.timings.prompt_tokens == 9
    body = server.seen[0].body
    assert body["messages"] == [{"role": "user", "content": "Say hi"}]
    assert body["model"] == "faulty" and body["stream"] is False
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop"], body["seed"]) == (7, 0.5, 0.9, ["\n"], 3)
    assert body["top_k"] == 40
    assert server.seen[0].path == "/v1/chat/completions"
    assert "Authorization" not in server.seen[0].headers  # no key configured: none sent


@pytest.mark.slow
def test_the_key_never_reaches_logs_errors_or_repr(llama_server, faulty, caplog, monkeypatch):
    key = llama_server.key
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    good = RemoteLLM(llama_server.url, llama_server.model, api_key_env=llama_server.key_env)
    assert good.generate("Hi", max_tokens=3).text is not None  # the server requires the key: it was sent
    echo = faulty(["echo401"])
    failing = faulty([(500, {})])
    monkeypatch.setenv("EDGEKIT_REMOTE_API_KEY", key)
    messages = []
    for url in (echo.url, failing.url):
        with pytest.raises(RemoteError) as info:
            fast(url, max_retries=1).chat(QUESTION)
        messages.append(str(info.value))
    assert echo.seen[0].headers["Authorization"] == f"Bearer {key}"
    text = caplog.text + "\n".join(messages) + repr(good) + str(vars(good))  # vars: the key holder's repr too
    assert "retrying" in caplog.text  # the logs did record the failures
    assert key not in text


def test_bad_configuration_is_a_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="must look like"):
        RemoteLLM("ftp://example.com", "m")
    with pytest.raises(ConfigError, match="model name"):
        RemoteLLM("http://127.0.0.1:1/v1", " ")
    monkeypatch.delenv("EDGEKIT_NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="EDGEKIT_NOT_SET_ANYWHERE"):
        RemoteLLM("http://127.0.0.1:1/v1", "m", api_key_env="EDGEKIT_NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match="timeout"):
        RemoteLLM("http://127.0.0.1:1/v1", "m", timeout=0)
    assert normalize_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/v1"
    assert normalize_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"


def test_retry_after_forms():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    import email.utils

    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= parse_retry_after(in_ten) <= 10
